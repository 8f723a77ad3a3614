//! [`Tenant`]: the resolved tenant of a request, as handlers see it.

use std::{collections::BTreeMap, fmt, sync::Arc};

use super::{
    database::Placement,
    models::{IsolationMode, TenantId, TenantRecord},
};
use mt_paas_protocol::Entitlement;
use time::OffsetDateTime;

use crate::http::{ApiError, ProblemCode};

/// An entitlement as last confirmed by the market.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEntitlement {
    /// The entitlement.
    pub entitlement: Entitlement,
    /// Its ETag.
    pub etag: Option<String>,
    /// When the market last confirmed it.
    pub fetched_at: OffsetDateTime,
    /// The plan's features, built once rather than per request.
    features: Features,
}

impl CachedEntitlement {
    /// An entitlement confirmed by the market at `fetched_at`.
    pub fn new(entitlement: Entitlement, etag: Option<String>, fetched_at: OffsetDateTime) -> Self {
        let features = Features::new(entitlement.features.clone());
        Self {
            entitlement,
            etag,
            fetched_at,
            features,
        }
    }

    /// The plan's features.
    pub fn features(&self) -> &Features {
        &self.features
    }

    pub(crate) fn age(&self) -> std::time::Duration {
        let age = OffsetDateTime::now_utc() - self.fetched_at;
        age.try_into().unwrap_or(std::time::Duration::ZERO)
    }
}

/// The features a tenant may use: `feature → enabled`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Features(Arc<BTreeMap<String, bool>>);

impl Features {
    /// Features from a map.
    pub fn new(map: BTreeMap<String, bool>) -> Self {
        Self(Arc::new(map))
    }

    /// Whether `name` is enabled; an unknown feature is not.
    pub fn has(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }

    /// Every feature and whether it is enabled.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// The tenant a request belongs to. Cheap to clone.
///
/// Handlers take it as an extractor; anywhere inside the request,
/// [`current_tenant`](crate::current_tenant) returns it too.
///
/// ```
/// use mt_paas::{Tenant, http::ApiError};
///
/// async fn premium_feature(tenant: Tenant) -> Result<String, ApiError> {
///     tenant.require_feature("quiz")?; // 403 problem, localized
///     Ok(format!("quiz for {}", tenant.id()))
/// }
/// ```
#[derive(Clone)]
pub struct Tenant(Arc<Inner>);

struct Inner {
    registered: Arc<Registered>,
    features: Features,
    entitlement: Option<Arc<CachedEntitlement>>,
}

struct Registered {
    record: TenantRecord,
    isolation: IsolationMode,
    /// Where the record's data lives, derived once per record (a reloaded record is a new
    /// `Registered`, so a changed placement is never served from here).
    placement: std::sync::OnceLock<Arc<Placement>>,
}

impl Tenant {
    /// A tenant from its registry record, the isolation mode in force and its features.
    pub fn new(record: TenantRecord, default_isolation: IsolationMode, features: Features) -> Self {
        let isolation = record.isolation_or(default_isolation);
        Self(Arc::new(Inner {
            registered: Arc::new(Registered {
                record,
                isolation,
                placement: std::sync::OnceLock::new(),
            }),
            features,
            entitlement: None,
        }))
    }

    /// This tenant as the market entitles it: with the entitlement attached and, when
    /// `features_from_plan`, the plan's features instead of the configured defaults.
    pub fn with_entitlement(
        &self,
        entitlement: Arc<CachedEntitlement>,
        features_from_plan: bool,
    ) -> Self {
        let features = if features_from_plan {
            entitlement.features().clone()
        } else {
            self.0.features.clone()
        };
        Self(Arc::new(Inner {
            registered: self.0.registered.clone(),
            features,
            entitlement: Some(entitlement),
        }))
    }

    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        &self.0.registered.record.id
    }

    /// The tenant's display name.
    pub fn name(&self) -> &str {
        &self.0.registered.record.display_name
    }

    /// The registry record.
    pub fn record(&self) -> &TenantRecord {
        &self.0.registered.record
    }

    /// The placement derived from this record, once.
    pub(crate) fn placement_cell(&self) -> &std::sync::OnceLock<Arc<Placement>> {
        &self.0.registered.placement
    }

    /// The isolation mode in force for this tenant.
    pub fn isolation(&self) -> IsolationMode {
        self.0.registered.isolation
    }

    /// The market's entitlement, when subscriptions are checked.
    pub fn entitlement(&self) -> Option<&CachedEntitlement> {
        self.0.entitlement.as_deref()
    }

    /// The plan's id, when subscriptions are checked.
    pub fn plan(&self) -> Option<&str> {
        self.entitlement()
            .map(|e| e.entitlement.subscription.plan.as_str())
    }

    /// The tenant's features.
    pub fn features(&self) -> &Features {
        &self.0.features
    }

    /// Whether the tenant's plan includes `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.0.features.has(feature)
    }

    /// `Ok` when the plan includes `feature`; otherwise the 403 `feature_not_available`
    /// problem (DESIGN §3.3). With the market deciding plans it names the tenant's plan and
    /// the plans that include the feature — "이 기능은 Premium 요금제에서 사용 가능합니다
    /// (현재 요금제: Basic)." — with `plan` and `available_on` members; without a market it
    /// says the feature is not part of the tenant's plan.
    pub fn require_feature(&self, feature: &str) -> Result<(), ApiError> {
        if self.has_feature(feature) {
            return Ok(());
        }
        let mut error = ApiError::new(ProblemCode::FeatureNotAvailable).member("feature", feature);
        let Some(cached) = self.entitlement() else {
            return Err(error);
        };
        let subscription = &cached.entitlement.subscription;
        let plan = if subscription.plan_name.is_empty() {
            subscription.plan.as_str()
        } else {
            subscription.plan_name.as_str()
        };
        error = error.member("plan", subscription.plan.as_str());
        let elsewhere = cached
            .entitlement
            .available_on
            .get(feature)
            .filter(|names| !names.is_empty());
        Err(match elsewhere {
            Some(names) => {
                let list = names.join(", ");
                let noun = if names.len() == 1 { "plan" } else { "plans" };
                error
                    .member("available_on", names.clone())
                    .localized_detail(
                        format!("이 기능은 {list} 요금제에서 사용 가능합니다 (현재 요금제: {plan})."),
                        format!("This feature is available on the {list} {noun} (the tenant's plan: {plan})."),
                    )
            }
            None => error.localized_detail(
                format!("이 기능은 현재 요금제({plan})에 포함되어 있지 않습니다."),
                format!("This feature is not part of the tenant's plan ({plan})."),
            ),
        })
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", self.id())
            .field("name", &self.name())
            .field("isolation", &self.isolation())
            .field("features", self.features())
            .field("plan", &self.plan())
            .finish()
    }
}
