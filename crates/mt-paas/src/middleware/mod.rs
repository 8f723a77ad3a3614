//! The request pipeline's layers (DESIGN §4).

pub mod auth;
pub mod rate_limit;
pub mod subscription;
pub mod tenant;
