//! The request pipeline's layers (DESIGN §4).

#[cfg(feature = "docker")]
pub(crate) mod app_router;
pub(crate) mod auth;
pub(crate) mod policy;
pub(crate) mod rate_limit;
pub(crate) mod subscription;
pub(crate) mod tenant;
#[cfg(feature = "docker")]
pub(crate) mod tenant_app;
pub(crate) mod usage;
