//! [`ActivityLogger`]: learning activities as xAPI 1.0.3 statements (DESIGN §7.2
//! `log_activity`), sent in batches to `logging.activity_log.endpoint` through the outbox.
//!
//! ```no_run
//! use mt_paas::{Activity, Tenant};
//! use serde_json::json;
//!
//! async fn chat(tenant: Tenant, activity: Activity) -> &'static str {
//!     activity.log("asked", "ai_tutor", json!({ "message_length": 12 })); // never waits
//!     "ok"
//! }
//! ```
//!
//! A statement: a stable `id` (UUID, kept across retries), `actor` = account {`homePage`:
//! `logging.activity_log.actor_home_page`, `name`: the user's `sub`}, `verb` = the ADL IRI
//! (`http://adlnet.gov/expapi/verbs/asked`, or any IRI given), `object` = the activity IRI
//! `{activity_base}/{service_id}/{object}`, `result.extensions`, and the tenant and service in
//! `context.extensions`. The request pays for an id and a channel send; the statement is built
//! and stored by the outbox's writer.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{
    config::Config,
    core::{models::TenantId, tenant::Tenant},
    http::{ApiError, ProblemCode},
    middleware::auth::CurrentUser,
    outbox::{Item, Kind, Outbox},
};

use mt_paas_protocol::xapi::{RESULT_EXTENSION, SERVICE_EXTENSION, TENANT_EXTENSION};

/// Logs activities as xAPI statements.
#[derive(Clone)]
pub struct ActivityLogger {
    inner: Option<Arc<Inner>>,
    /// Whether a log call while logging is off was already warned about.
    warned_off: Arc<std::sync::atomic::AtomicBool>,
}

struct Inner {
    outbox: Outbox,
    names: Names,
}

/// What a statement's IRIs are made of.
struct Names {
    service_id: Arc<str>,
    activity_base: Arc<str>,
    home_page: Arc<str>,
}

impl std::fmt::Debug for ActivityLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityLogger")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl ActivityLogger {
    /// A logger per `logging.activity_log`; it does nothing when that is disabled.
    pub fn new(config: &Config, outbox: Outbox) -> Self {
        let activity = &config.logging.activity_log;
        Self {
            inner: activity.enabled.then(|| {
                Arc::new(Inner {
                    outbox,
                    names: Names {
                        service_id: config.service.id.as_str().into(),
                        activity_base: activity.activity_base.trim_end_matches('/').into(),
                        home_page: activity.actor_home_page.as_str().into(),
                    },
                })
            }),
            warned_off: Arc::default(),
        }
    }

    /// Records that `user` of `tenant` did `verb` to `object` with `result`. Returns the
    /// statement's id, or `None` when activity logging is off or the outbox refused the
    /// statement (its buffer full: [`Full`](crate::outbox::Full)) or the system's RNG gave
    /// no statement id (logged as an error).
    pub fn log(
        &self,
        tenant: &TenantId,
        user: Option<&str>,
        verb: &str,
        object: &str,
        result: Value,
    ) -> Option<String> {
        let Some(inner) = self.inner.clone() else {
            if !self
                .warned_off
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    verb,
                    object,
                    "an activity was logged while logging.activity_log.enabled is false: activities are not recorded (said once)"
                );
            }
            return None;
        };
        let id = match crate::random::uuid() {
            Ok(id) => id.to_string(),
            Err(e) => {
                tracing::error!(verb, object, error = %e, "an activity was not recorded: no statement id");
                return None;
            }
        };
        let statement_id = id.clone();
        let tenant = tenant.clone();
        let user = user.map(str::to_owned);
        let verb = verb.to_owned();
        let object = object.to_owned();
        let timestamp = OffsetDateTime::now_utc();
        inner
            .outbox
            .clone()
            .push_with(move || Item {
                id: format!("activity:{id}"),
                kind: Kind::Activity,
                body: statement(
                    &inner.names,
                    &id,
                    &tenant,
                    user.as_deref(),
                    &verb,
                    &object,
                    result,
                    timestamp,
                ),
            })
            .ok()?;
        Some(statement_id)
    }
}

#[allow(clippy::too_many_arguments)]
fn statement(
    inner: &Names,
    id: &str,
    tenant: &TenantId,
    user: Option<&str>,
    verb: &str,
    object: &str,
    result: Value,
    timestamp: OffsetDateTime,
) -> Value {
    let verb_iri = if verb.starts_with("http://") || verb.starts_with("https://") {
        verb.to_owned()
    } else {
        format!("http://adlnet.gov/expapi/verbs/{verb}")
    };
    let verb_name = verb.rsplit('/').next().unwrap_or(verb);
    let object_iri = if object.starts_with("http://") || object.starts_with("https://") {
        object.to_owned()
    } else {
        format!("{}/{}/{object}", inner.activity_base, inner.service_id)
    };
    // The account lives in the tenant's space: the same `sub` at two universities (and each
    // university's anonymous users) are different actors.
    let home_page = format!("{}/tenants/{tenant}", inner.home_page.trim_end_matches('/'));
    json!({
        "id": id,
        "actor": {
            "objectType": "Agent",
            "account": { "homePage": home_page, "name": user.unwrap_or("anonymous") }
        },
        "verb": { "id": verb_iri, "display": { "en-US": verb_name } },
        "object": {
            "objectType": "Activity",
            "id": object_iri,
            "definition": { "name": { "en-US": object } }
        },
        "result": { "extensions": { RESULT_EXTENSION: result } },
        "context": {
            "platform": &*inner.service_id,
            "extensions": { TENANT_EXTENSION: tenant, SERVICE_EXTENSION: &*inner.service_id }
        },
        "timestamp": timestamp.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

/// The activity log of the request's tenant and user, as an extractor.
#[derive(Debug, Clone)]
pub struct Activity {
    logger: ActivityLogger,
    tenant: TenantId,
    user: Option<CurrentUser>,
}

impl Activity {
    /// Logs `verb` on `object` with `result` (DESIGN §7.2); never waits on the network.
    pub fn log(&self, verb: &str, object: &str, result: Value) -> Option<String> {
        self.logger.log(
            &self.tenant,
            self.user.as_ref().map(CurrentUser::sub),
            verb,
            object,
            result,
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Activity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<Tenant>().map(|t| t.id().clone());
        let logger = parts.extensions.get::<ActivityLogger>().cloned();
        let (Some(tenant), Some(logger)) = (tenant, logger) else {
            tracing::error!(
                "the Activity extractor found no tenant: is this route behind create_app?"
            );
            return Err(ApiError::new(ProblemCode::Internal));
        };
        Ok(Self {
            logger,
            tenant,
            user: parts.extensions.get::<CurrentUser>().cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_scoped_to_its_tenant() {
        let names = Names {
            service_id: "keli_tutor".into(),
            activity_base: "https://mt-paas.dev/xapi/activities".into(),
            home_page: "https://market.k-university.ai/".into(),
        };
        let actor = |tenant: &str, user: Option<&str>| {
            let tenant: TenantId = tenant.parse().unwrap();
            statement(
                &names,
                "id",
                &tenant,
                user,
                "asked",
                "ai_tutor",
                Value::Null,
                OffsetDateTime::UNIX_EPOCH,
            )["actor"]
                .clone()
        };
        assert_eq!(
            actor("hallym", Some("u1"))["account"],
            json!({"homePage": "https://market.k-university.ai/tenants/hallym", "name": "u1"})
        );
        assert_ne!(
            actor("hallym", Some("u1")),
            actor("korea", Some("u1")),
            "same sub, two tenants"
        );
        assert_ne!(
            actor("hallym", None),
            actor("korea", None),
            "anonymous users of two tenants"
        );
        assert_eq!(actor("hallym", Some("u1")), actor("hallym", Some("u1")));
    }
}
