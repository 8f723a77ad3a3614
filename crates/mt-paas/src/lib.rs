//! # mt-paas
//!
//! Turn an axum service into a multi-tenant SaaS that a marketplace can host: tenant
//! identification, a database per tenant (or schema, or container), subscription and
//! kill-switch enforcement, plan features — the vendor writes only business logic.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use mt_paas::{ServiceMarketFramework, Tenant};
//! use serde_json::{Value, json};
//!
//! async fn courses(tenant: Tenant) -> Json<Value> {
//!     Json(json!({ "tenant": tenant.id(), "name": tenant.name() }))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), mt_paas::Error> {
//!     let framework = ServiceMarketFramework::from_config_path("mt_paas_config.yaml").await?;
//!     let app = framework.create_app(Router::new().route("/courses", get(courses)));
//!     framework.serve(app).await
//! }
//! ```
//!
//! The modules follow the seed's layout: [`config`], [`core`] (models, the registry, the
//! central DB), [`middleware`] (tenant, auth), [`http`] (problem+json errors), and
//! [`ServiceMarketFramework`].

pub mod config;
mod context;
pub mod control;
pub mod core;
pub mod encryption;
mod framework;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod integrations;
pub mod logging;
pub mod middleware;
pub mod outbox;
pub mod provisioning;
mod random;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vectors;

/// The code of `docs/DEVELOPER_GUIDE.md`, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/DEVELOPER_GUIDE.md")]
pub struct DeveloperGuide;

pub use crate::{
    context::{current_tenant, in_tenant, spawn_in_tenant},
    core::{
        database::{DatabaseRouter, TenantDb},
        manager::{NewTenant, TenantManager},
        models::{IsolationMode, TenantId, TenantRecord, TenantStatus},
        tenant::{Features, Tenant},
    },
    framework::{Error, ServiceMarketFramework, shutdown_signal},
    middleware::{
        auth::{CurrentUser, current_user},
        tenant::TenantLayer,
    },
    vectors::TenantVectors,
};
