//! The request pipeline's layers (DESIGN §4).

pub(crate) mod app_router;
pub(crate) mod auth;
pub(crate) mod policy;
pub(crate) mod rate_limit;
pub(crate) mod subscription;
pub(crate) mod tenant;
pub(crate) mod tenant_app;
pub(crate) mod usage;
