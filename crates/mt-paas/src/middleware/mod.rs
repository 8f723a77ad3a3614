//! The request pipeline's layers (DESIGN §4).

pub(crate) mod app_router;
pub mod auth;
pub mod rate_limit;
pub mod subscription;
pub mod tenant;
pub(crate) mod tenant_app;

pub use self::app_router::{
    MAX_SKEW_SECONDS, RoutedCaller, RoutedContext, RouterRefusal, RouterVerifier,
};
