//! The tenant model (DESIGN §2.2 `core/`): [`models`], the registry ([`manager`]) in the
//! [`central`] database, and the request-facing [`Tenant`](tenant::Tenant).

pub(crate) mod background;
pub(crate) mod central;
pub(crate) mod database;
pub(crate) mod manager;
pub(crate) mod models;
pub(crate) mod slots;
pub(crate) mod tenant;
