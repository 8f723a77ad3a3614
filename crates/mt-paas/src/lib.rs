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
//! What a vendor uses is here at the crate root — the framework, [`Tenant`] and its
//! database ([`TenantDb`], [`with_db!`]), the signed-in [`CurrentUser`], the guards
//! ([`require_user`], [`require_feature`]), the [`Activity`] log, [`FieldCipher`] — and in a
//! few modules: [`config`] (the YAML's types), [`http`] (problem+json errors, [`http::Locale`]),
//! [`provisioning`] (the tenant lifecycle and its manifests), [`control`] (kill switch,
//! alerts, usage, metrics), [`outbox`] (telemetry delivery and its dead letters) and, with
//! their features, `vectors` (per-tenant collections) and `testing`.
//!
//! Cargo features: `sso` (on by default), `vectors`, `redis` (rate limits across replicas),
//! `testing`. A configuration that needs a feature the build lacks is refused at start,
//! naming the key and the feature.

mod activity;
pub mod config;
mod context;
pub mod control;
mod core;
mod encryption;
mod framework;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
mod integrations;
mod logging;
mod middleware;
mod names;
pub mod outbox;
pub mod provisioning;
mod random;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "vectors")]
pub mod vectors;
/// Without the `vectors` feature: the types the provisioner names, without values.
#[cfg(not(feature = "vectors"))]
#[path = "vectors/off.rs"]
mod vectors;

/// The code of `docs/DEVELOPER_GUIDE.md`, compiled by `cargo test --doc` (with the features
/// the guide shows: `cargo test --workspace` turns them on).
#[cfg(all(doctest, feature = "vectors"))]
#[doc = include_str!("../../../docs/DEVELOPER_GUIDE.md")]
pub struct DeveloperGuide;

#[cfg(feature = "docker")]
pub use crate::middleware::app_router::{
    RoutedCaller, RoutedContext, RouterRefusal, RouterVerifier,
};
#[cfg(feature = "vectors")]
pub use crate::vectors::TenantVectors;
pub use crate::{
    activity::{Activity, ActivityLogger},
    context::{current_tenant, in_tenant, spawn_in_tenant},
    core::{
        central::{CentralDb, CentralDbError},
        database::{
            DatabaseRouter, DbConn, DbError, TenantDb,
            target::{Target, TargetError},
        },
        manager::{ManagerError, NewTenant, TenantManager},
        models::{TenantRecord, TenantStatus},
        tenant::{CachedEntitlement, Features, Tenant},
    },
    encryption::{EncryptionError, FieldCipher},
    framework::{Error, ServiceMarketFramework, shutdown_signal},
    integrations::marketplace::MarketError,
    middleware::{
        auth::{
            guard::{GuardLayer, require_feature, require_user},
            jwt::{Claims, JwtKeys, TokenError, TokenVerifier},
            layer::{CurrentUser, current_user},
        },
        tenant::layer::TenantLayer,
    },
    names::{InvalidTenantId, IsolationMode, TENANT_ID_MAX_LEN, TenantId, UnknownValue},
};
/// The `metrics` facade: a series recorded with its macros shows at `/metrics`
/// (`mt_paas::metrics::counter!("quiz_submissions_total").increment(1)`).
pub use metrics;
