//! [`SubscriptionLayer`]: whether the tenant's subscription and the kill switch let the
//! request through, and which features its plan has (DESIGN §4.4, §6.8).
//!
//! Runs after [`TenantLayer`](crate::TenantLayer). With `marketplace.subscription_check`, the
//! tenant's entitlement decides: `active` passes (with the plan's features when
//! `features.controlled_by_subscription`); `suspended` and `cancelled` are 403;
//! `pending_activation` is a 503 while provisioning finishes; no subscription is a 403. A
//! market outage is served from the cached entitlement; only a tenant never seen before (or
//! cached beyond the offline grace) gets a 503 `market_unavailable`. An expired subscription
//! passes with a notice for `marketplace.grace_period_hours`, then is 403
//! `subscription_expired`.
//!
//! The kill switch applies whether or not subscriptions are checked: a block whose `block_at`
//! (plus its grace) lies ahead passes with the `mt-paas-notice` and `mt-paas-notice-until`
//! headers; once due, requests get 403 `tenant_blocked` with the market's message as given.

use std::convert::Infallible;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, header};
use mt_paas_protocol::SubscriptionState;

use time::OffsetDateTime;

use super::policy::{Policy, PolicyLayer};
use crate::{
    control::{Access, KillSwitch, kill_switch::access},
    core::tenant::Tenant,
    http::{ApiError, ProblemCode},
    integrations::{Entitlements, Lookup, entitlements::EntitlementError},
};

/// Checks each request's tenant against its entitlement.
pub(crate) type SubscriptionLayer = PolicyLayer<Subscription>;

/// The policy of [`SubscriptionLayer`].
pub(crate) struct Subscription {
    entitlements: Option<Entitlements>,
    kill_switch: KillSwitch,
    features_from_plan: bool,
    grace_period_hours: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionLayer")
            .field("features_from_plan", &self.features_from_plan)
            .finish_non_exhaustive()
    }
}

impl SubscriptionLayer {
    /// A layer deciding by `entitlements` (when subscriptions are checked) and the kill
    /// switch (always); with `features_from_plan` the plan's features replace
    /// `features.defaults`.
    pub(crate) fn new(
        entitlements: Option<Entitlements>,
        kill_switch: KillSwitch,
        features_from_plan: bool,
        grace_period_hours: u64,
    ) -> Self {
        Self::of(Subscription {
            entitlements,
            kill_switch,
            features_from_plan,
            grace_period_hours,
        })
    }
}

/// A response header telling the client that access ends soon (percent-encoded UTF-8).
pub(crate) const NOTICE_HEADER: &str = "mt-paas-notice";
/// When access ends, RFC 3339.
pub(crate) const NOTICE_UNTIL_HEADER: &str = "mt-paas-notice-until";

/// Why a request passes only with a notice.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    message: String,
    until: OffsetDateTime,
}

impl Subscription {
    async fn decide(&self, tenant: &Tenant) -> Result<(Tenant, Option<Notice>), ApiError> {
        let lookup = match &self.entitlements {
            Some(entitlements) => Some(entitlements.get(tenant.id()).await),
            None => None,
        };
        self.judge(tenant, lookup)
    }

    /// [`decide`](Self::decide) when it need not wait: subscriptions unchecked, or the
    /// entitlement fresh in memory.
    fn decide_now(&self, tenant: &Tenant) -> Option<Result<(Tenant, Option<Notice>), ApiError>> {
        let lookup = match &self.entitlements {
            Some(entitlements) => Some(Ok(entitlements.get_now(tenant.id())?)),
            None => None,
        };
        Some(self.judge(tenant, lookup))
    }

    /// What the market's word (`None`: subscriptions are not checked) and the kill switch
    /// make of `tenant`'s request.
    fn judge(
        &self,
        tenant: &Tenant,
        lookup: Option<Result<Lookup, EntitlementError>>,
    ) -> Result<(Tenant, Option<Notice>), ApiError> {
        let id = tenant.id();
        let now = OffsetDateTime::now_utc();
        let refuse = |code| ApiError::new(code).param("tenant_id", id.to_string());
        let mut notice = None;
        let mut admitted = tenant.clone();
        if let Some(lookup) = lookup {
            let lookup = lookup.map_err(|e| {
                tracing::warn!(tenant = %id, error = %e, "no entitlement could be had");
                ApiError::new(ProblemCode::MarketUnavailable)
                    .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            })?;
            let entitlement = match lookup {
                Lookup::Subscribed(entitlement) => entitlement,
                Lookup::NotSubscribed => return Err(refuse(ProblemCode::SubscriptionMissing)),
            };
            match entitlement.entitlement.subscription.state {
                SubscriptionState::Active => {}
                SubscriptionState::PendingActivation => {
                    return Err(refuse(ProblemCode::TenantNotReady)
                        .header(header::RETRY_AFTER, HeaderValue::from_static("5")));
                }
                SubscriptionState::Suspended => {
                    return Err(refuse(ProblemCode::SubscriptionSuspended));
                }
                SubscriptionState::Cancelled | SubscriptionState::Unknown => {
                    return Err(refuse(ProblemCode::SubscriptionCancelled));
                }
            }
            if let Some(expires_at) = entitlement.entitlement.subscription.expires_at
                && now >= expires_at
            {
                let until = mt_paas_protocol::after_hours(expires_at, self.grace_period_hours);
                if now >= until {
                    return Err(refuse(ProblemCode::SubscriptionExpired));
                }
                notice = Some(Notice {
                    message: "subscription expired; access continues during the grace period"
                        .to_owned(),
                    until,
                });
            }
            admitted = tenant.with_entitlement(entitlement, self.features_from_plan);
        }
        // The kill switch: the newest of the commands received and the entitlement's block.
        let switch = self.kill_switch.current(id);
        let mut block = switch.as_ref().and_then(|s| s.block.clone());
        let sequence = switch.map_or(0, |s| s.sequence);
        if let Some(overlay) = admitted
            .entitlement()
            .and_then(|e| e.entitlement.block.clone())
            && overlay.sequence > sequence
        {
            block = Some(overlay);
        }
        match access(block.as_ref(), now) {
            Access::Open => {}
            Access::Notice {
                message,
                blocked_from,
            } => {
                notice = Some(Notice {
                    message,
                    until: blocked_from,
                });
            }
            Access::Blocked { message } => {
                let error = refuse(ProblemCode::TenantBlocked);
                // The market's message is passed through as given.
                return Err(if message.is_empty() {
                    error
                } else {
                    error.detail(message)
                });
            }
        }
        Ok((admitted, notice))
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b' '
            | b','
            | b';'
            | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Policy for Subscription {
    /// The tenant with the features it may use, and a notice of access ending soon.
    type Admitted = (Tenant, Option<Notice>);

    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Self::Admitted, Response> {
        let Some(tenant) = request.extensions().get::<Tenant>().cloned() else {
            tracing::error!("SubscriptionLayer found no tenant: add it inside TenantLayer");
            return Err(ApiError::new(ProblemCode::Internal).into_response());
        };
        let (tenant, notice) = self
            .decide(&tenant)
            .await
            .map_err(IntoResponse::into_response)?;
        request.extensions_mut().insert(tenant.clone());
        Ok((tenant, notice))
    }

    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        let Some(tenant) = request.extensions().get::<Tenant>() else {
            // `admit` says why, once.
            return None;
        };
        let (tenant, notice) = match self.decide_now(tenant)? {
            Ok(admitted) => admitted,
            Err(refused) => return Some(Err(refused.into_response())),
        };
        request.extensions_mut().insert(tenant.clone());
        Some(Ok((tenant, notice)))
    }

    fn serve<F>(
        &self,
        (tenant, _): &Self::Admitted,
        route: F,
    ) -> impl Future<Output = F::Output> + Send
    where
        F: Future<Output = Result<Response, Infallible>> + Send,
    {
        crate::context::in_tenant(tenant.clone(), route)
    }

    async fn answered(&self, (_, notice): Self::Admitted, response: &mut Response) {
        let Some(notice) = notice else {
            return;
        };
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&percent_encode(&notice.message)) {
            headers.insert(NOTICE_HEADER, value);
        }
        if let Ok(until) = notice
            .until
            .format(&time::format_description::well_known::Rfc3339)
            && let Ok(value) = HeaderValue::from_str(&until)
        {
            headers.insert(NOTICE_UNTIL_HEADER, value);
        }
    }
}
