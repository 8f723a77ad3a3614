//! The tenant model (DESIGN §2.2 `core/`): [`models`], the registry ([`manager`]) in the
//! [`central`] database, and the request-facing [`Tenant`](tenant::Tenant).

pub mod background;
pub mod central;
pub mod database;
pub mod manager;
pub mod models;
pub(crate) mod slots;
pub mod tenant;
