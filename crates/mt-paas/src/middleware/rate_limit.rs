//! [`RateLimitLayer`]: requests per minute per tenant, from the plan
//! (`limits.requests_per_minute`) or `security.rate_limit.default_rpm`.
//!
//! Only requests of a verified user spend the tenant's allowance. A request without one
//! (named by a header, a host name or a query parameter, which anyone can send) is limited per
//! tenant and client address (`security.rate_limit.anonymous_rpm`; the address is the peer's,
//! or `security.trusted_proxy_header`'s): a flood from anywhere cannot use up a tenant's
//! minute. An anonymous request that the route answers 401 `authentication_required` (a
//! route for signed-in users) gives its allowance back: it costs the client nothing.
//!
//! The algorithm is GCRA: a tenant may send its whole minute's allowance at once, then one
//! request per `60 s / rpm`; exactly `rpm` requests pass in any burst, the next gets 429 with
//! `Retry-After`. Every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`. In memory, state is one integer per active tenant; a tenant whose
//! allowance is full again carries no state and is swept when the map grows (memory stays
//! bounded as tenants come and go). With
//! `security.rate_limit.redis_url` the same algorithm runs atomically in Redis (one Lua script,
//! Redis's clock), so the limit holds across replicas; if Redis fails, each replica falls back
//! to its own memory rather than refusing or admitting everything.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use moka::future::Cache;
use mt_paas_protocol::Severity;

use super::policy::{Policy, PolicyLayer};
use crate::{
    control::{AuditLogger, audit::RATE_LIMIT_EXCEEDED},
    core::{models::TenantId, slots::TenantSlots, tenant::Tenant},
    http::{ApiError, ClientAddresses, ProblemCode},
    middleware::auth::CurrentUser,
};

/// 429s within a minute after which a tenant is reported to the market.
const REPORT_AFTER: u64 = 100;

/// One decision of the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether the request passes.
    pub allowed: bool,
    /// The limit per minute.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the allowance is whole again.
    pub reset: u64,
    /// Seconds until a refused request would pass.
    pub retry_after: u64,
}

/// The in-memory GCRA state of every active tenant, and of every active (tenant, client
/// address) for requests without a user.
#[derive(Clone)]
pub(crate) struct MemoryLimiter {
    tats: Arc<TenantSlots<AtomicU64>>,
    anonymous: Arc<TenantSlots<AtomicU64, (TenantId, Option<IpAddr>)>>,
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("tenants", &self.tats.len())
            .field("anonymous_clients", &self.anonymous.len())
            .finish()
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        // A theoretical arrival time already past is the same as no state at all.
        let idle = |tat: &AtomicU64| tat.load(Ordering::Acquire) <= clock();
        Self {
            tats: Arc::new(TenantSlots::new(idle)),
            anonymous: Arc::new(TenantSlots::new(idle)),
        }
    }
}

/// Nanoseconds on a monotonic clock shared by every limiter of the process.
fn clock() -> u64 {
    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// GCRA on nanosecond clocks: `tat` is the theoretical arrival time.
fn gcra(tat: u64, now: u64, limit: u32) -> (Option<u64>, Decision) {
    let limit = limit.max(1);
    let interval = 60_000_000_000 / u64::from(limit);
    let tolerance = interval * u64::from(limit);
    let new_tat = tat.max(now) + interval;
    let allow_at = new_tat.saturating_sub(tolerance);
    let secs = |nanos: u64| nanos.div_ceil(1_000_000_000);
    if allow_at > now {
        return (
            None,
            Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset: secs(tat.max(now) - now),
                retry_after: secs(allow_at - now).max(1),
            },
        );
    }
    let remaining = (now + tolerance - new_tat) / interval;
    (
        Some(new_tat),
        Decision {
            allowed: true,
            limit,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: secs(new_tat - now),
            retry_after: 0,
        },
    )
}

/// GCRA's step on one clock: counts a request against `limit` per minute.
fn spend(tat: &AtomicU64, limit: u32) -> Decision {
    let now = clock();
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let (next, decision) = gcra(current, now, limit);
        let Some(next) = next else { return decision };
        match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return decision,
            Err(actual) => current = actual,
        }
    }
}

/// Gives back one request's worth of `limit` per minute.
fn refund(tat: &AtomicU64, limit: u32) {
    let interval = 60_000_000_000 / u64::from(limit.max(1));
    let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
        Some(t.saturating_sub(interval))
    });
}

impl MemoryLimiter {
    /// Counts one request of `tenant` against `limit` per minute.
    pub(crate) fn check(&self, tenant: &TenantId, limit: u32) -> Decision {
        spend(
            &self.tats.get_or_insert_with(tenant, || AtomicU64::new(0)),
            limit,
        )
    }

    /// Counts one request without a user from `client` to `tenant` against `limit`.
    pub(crate) fn check_anonymous(
        &self,
        tenant: &TenantId,
        client: Option<IpAddr>,
        limit: u32,
    ) -> Decision {
        let key = (tenant.clone(), client);
        spend(
            &self
                .anonymous
                .get_or_insert_with(&key, || AtomicU64::new(0)),
            limit,
        )
    }

    /// Gives an anonymous request's allowance back.
    pub(crate) async fn refund_anonymous(
        &self,
        tenant: &TenantId,
        client: Option<IpAddr>,
        limit: u32,
    ) {
        let key = (tenant.clone(), client);
        refund(
            &self
                .anonymous
                .get_or_insert_with(&key, || AtomicU64::new(0)),
            limit,
        );
    }
}

/// GCRA in Redis (the `redis` feature): the limit holds across replicas.
#[cfg(feature = "redis")]
mod cluster {
    use std::{net::IpAddr, sync::Arc};

    use super::Decision;
    use crate::core::models::TenantId;

    const GCRA_SCRIPT: &str = r"
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local interval = tonumber(ARGV[1])
    local tolerance = interval * tonumber(ARGV[2])
    local tat = tonumber(redis.call('GET', KEYS[1]) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local allow_at = new_tat - tolerance
    if allow_at > now then
      return {0, 0, tat - now, allow_at - now}
    end
    redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
    return {1, math.floor((now + tolerance - new_tat) / interval), new_tat - now, 0}
    ";

    const REFUND_SCRIPT: &str = r"
    local tat = tonumber(redis.call('GET', KEYS[1]))
    if tat then redis.call('SET', KEYS[1], tat - tonumber(ARGV[1]), 'KEEPTTL') end
    return 0
    ";

    /// GCRA in Redis: one atomic script per request, Redis's clock for every replica.
    #[derive(Clone)]
    pub(crate) struct RedisLimiter {
        connection: redis::aio::ConnectionManager,
        script: Arc<redis::Script>,
        refund: Arc<redis::Script>,
        prefix: String,
    }

    impl std::fmt::Debug for RedisLimiter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RedisLimiter")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    impl RedisLimiter {
        /// Connects to `url`; keys are `mt-paas:rl:{service_id}:{tenant}`.
        pub(crate) async fn connect(
            url: &str,
            service_id: &str,
        ) -> Result<Self, redis::RedisError> {
            let client = redis::Client::open(url)?;
            let connection = redis::aio::ConnectionManager::new(client).await?;
            Ok(Self {
                connection,
                script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
                refund: Arc::new(redis::Script::new(REFUND_SCRIPT)),
                prefix: format!("mt-paas:rl:{service_id}:"),
            })
        }

        /// Counts one request of `tenant` against `limit` per minute.
        pub(crate) async fn check(
            &self,
            tenant: &TenantId,
            limit: u32,
        ) -> Result<Decision, redis::RedisError> {
            self.spend(format!("{}{tenant}", self.prefix), limit).await
        }

        /// Counts one request without a user from `client` to `tenant` against `limit`.
        pub(crate) async fn check_anonymous(
            &self,
            tenant: &TenantId,
            client: Option<IpAddr>,
            limit: u32,
        ) -> Result<Decision, redis::RedisError> {
            self.spend(self.anonymous_key(tenant, client), limit).await
        }

        /// Gives an anonymous request's allowance back.
        pub(crate) async fn refund_anonymous(
            &self,
            tenant: &TenantId,
            client: Option<IpAddr>,
            limit: u32,
        ) -> Result<(), redis::RedisError> {
            let interval = 60_000_000 / u64::from(limit.max(1));
            let mut connection = self.connection.clone();
            self.refund
                .key(self.anonymous_key(tenant, client))
                .arg(interval)
                .invoke_async::<i64>(&mut connection)
                .await
                .map(drop)
        }

        fn anonymous_key(&self, tenant: &TenantId, client: Option<IpAddr>) -> String {
            match client {
                Some(client) => format!("{}{tenant}:anon:{client}", self.prefix),
                None => format!("{}{tenant}:anon", self.prefix),
            }
        }

        async fn spend(&self, key: String, limit: u32) -> Result<Decision, redis::RedisError> {
            let limit = limit.max(1);
            let interval = 60_000_000 / u64::from(limit);
            let mut connection = self.connection.clone();
            let (allowed, remaining, reset, retry): (i64, i64, i64, i64) = self
                .script
                .key(key)
                .arg(interval)
                .arg(limit)
                .invoke_async(&mut connection)
                .await?;
            let secs = |micros: i64| {
                u64::try_from(micros.max(0))
                    .unwrap_or_default()
                    .div_ceil(1_000_000)
            };
            Ok(Decision {
                allowed: allowed == 1,
                limit,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                reset: secs(reset),
                retry_after: if allowed == 1 { 0 } else { secs(retry).max(1) },
            })
        }
    }
}

/// Without the `redis` feature there is no limiter across replicas: the configuration refuses
/// `security.rate_limit.redis_url`, so this type has no values.
#[cfg(not(feature = "redis"))]
mod cluster {
    use std::{convert::Infallible, net::IpAddr};

    use super::Decision;
    use crate::core::models::TenantId;

    #[derive(Debug, Clone)]
    pub(crate) enum RedisLimiter {}

    impl RedisLimiter {
        pub(crate) async fn check(&self, _: &TenantId, _: u32) -> Result<Decision, Infallible> {
            match *self {}
        }

        pub(crate) async fn check_anonymous(
            &self,
            _: &TenantId,
            _: Option<IpAddr>,
            _: u32,
        ) -> Result<Decision, Infallible> {
            match *self {}
        }

        pub(crate) async fn refund_anonymous(
            &self,
            _: &TenantId,
            _: Option<IpAddr>,
            _: u32,
        ) -> Result<(), Infallible> {
            match *self {}
        }
    }
}

pub(crate) use self::cluster::RedisLimiter;

/// Limits each tenant's requests per minute.
pub(crate) type RateLimitLayer = PolicyLayer<RateLimit>;

/// The policy of [`RateLimitLayer`].
pub(crate) struct RateLimit {
    memory: MemoryLimiter,
    redis: Option<RedisLimiter>,
    default_rpm: u32,
    anonymous_rpm: u32,
    clients: ClientAddresses,
    audit: Option<AuditLogger>,
    refusals: Cache<TenantId, Arc<AtomicU64>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("default_rpm", &self.default_rpm)
            .field("anonymous_rpm", &self.anonymous_rpm)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A limiter with `default_rpm` for tenants whose plan names no limit and
    /// `anonymous_rpm` per tenant and client address (read by `clients`) for requests
    /// without a user, across replicas when `redis` is given; repeated refusals are
    /// reported to `audit`.
    pub(crate) fn new(
        default_rpm: u32,
        anonymous_rpm: u32,
        clients: ClientAddresses,
        redis: Option<RedisLimiter>,
        audit: Option<AuditLogger>,
    ) -> Self {
        Self::of(RateLimit {
            memory: MemoryLimiter::default(),
            redis,
            default_rpm,
            anonymous_rpm,
            clients,
            audit,
            refusals: Cache::builder()
                .time_to_live(Duration::from_secs(60))
                .max_capacity(100_000)
                .build(),
        })
    }
}

/// Whose allowance a request spends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spender {
    /// The tenant's: a verified user's request.
    Tenant,
    /// The (tenant, client address)'s: a request without a user.
    Anonymous(Option<IpAddr>),
}

impl RateLimit {
    /// The allowance per minute of `spender`'s requests to `tenant`.
    fn limit(&self, tenant: &Tenant, spender: Spender) -> u32 {
        match spender {
            Spender::Tenant => tenant
                .entitlement()
                .and_then(|e| e.entitlement.limits.requests_per_minute)
                .unwrap_or(self.default_rpm),
            Spender::Anonymous(_) => self.anonymous_rpm,
        }
    }

    async fn decide(&self, tenant: &Tenant, spender: Spender) -> (Decision, u32) {
        let limit = self.limit(tenant, spender);
        if let Some(redis) = &self.redis {
            // Boxed: the Redis round trip is a large future; the in-memory path stays small.
            let decided = match spender {
                Spender::Tenant => Box::pin(redis.check(tenant.id(), limit)).await,
                Spender::Anonymous(client) => {
                    Box::pin(redis.check_anonymous(tenant.id(), client, limit)).await
                }
            };
            match decided {
                Ok(decision) => return (decision, limit),
                Err(e) => {
                    tracing::warn!(error = %e, "the Redis rate limiter failed; limiting in memory")
                }
            }
        }
        (self.in_memory(tenant, spender, limit), limit)
    }

    /// Counts the request in this replica's memory.
    fn in_memory(&self, tenant: &Tenant, spender: Spender, limit: u32) -> Decision {
        match spender {
            Spender::Tenant => self.memory.check(tenant.id(), limit),
            Spender::Anonymous(client) => self.memory.check_anonymous(tenant.id(), client, limit),
        }
    }

    /// Whose allowance `request` spends.
    fn spender<B>(&self, request: &Request<B>) -> Spender {
        if request.extensions().get::<CurrentUser>().is_some() {
            Spender::Tenant
        } else {
            Spender::Anonymous(self.clients.of(request.headers(), request.extensions()))
        }
    }

    /// An anonymous request the route refused for want of a user costs nothing.
    async fn refund(&self, tenant: &TenantId, client: Option<IpAddr>, limit: u32) {
        if let Some(redis) = &self.redis
            && Box::pin(redis.refund_anonymous(tenant, client, limit))
                .await
                .is_ok()
        {
            return;
        }
        self.memory.refund_anonymous(tenant, client, limit).await;
    }

    async fn refused(&self, tenant: &TenantId, limit: u32) {
        let count = self
            .refusals
            .get_with_by_ref(tenant, async { Arc::new(AtomicU64::new(0)) })
            .await
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if count == REPORT_AFTER
            && let Some(audit) = &self.audit
        {
            audit
                .report(
                    RATE_LIMIT_EXCEEDED,
                    Severity::Medium,
                    serde_json::json!({ "tenant": tenant, "limit_per_minute": limit, "refused_in_a_minute": count }),
                )
                .await;
        }
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset));
}

impl Policy for RateLimit {
    /// For a tenant's request: the decision, the limit and whose allowance it spent.
    type Admitted = Option<(Decision, u32, Spender, TenantId)>;

    async fn admit<B: Send>(&self, request: &mut Request<B>) -> Result<Self::Admitted, Response> {
        let Some(tenant) = request.extensions().get::<Tenant>().cloned() else {
            return Ok(None);
        };
        let spender = self.spender(request);
        let (decision, limit) = self.decide(&tenant, spender).await;
        if !decision.allowed {
            self.refused(tenant.id(), decision.limit).await;
            let mut response = ApiError::new(ProblemCode::RateLimited)
                .param("limit", decision.limit.to_string())
                .param("retry_after", decision.retry_after.to_string())
                .into_response();
            set_headers(response.headers_mut(), &decision);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(decision.retry_after));
            return Err(response);
        }
        Ok(Some((decision, limit, spender, tenant.id().clone())))
    }

    /// In memory, an admitted request decides at once. A refusal changes no allowance
    /// (GCRA spends only on admission), so `admit` counts and reports it from scratch.
    fn admit_now<B>(&self, request: &mut Request<B>) -> Option<Result<Self::Admitted, Response>> {
        if self.redis.is_some() {
            return None;
        }
        let Some(tenant) = request.extensions().get::<Tenant>() else {
            return Some(Ok(None));
        };
        let spender = self.spender(request);
        let limit = self.limit(tenant, spender);
        let decision = self.in_memory(tenant, spender, limit);
        if !decision.allowed {
            return None;
        }
        Some(Ok(Some((decision, limit, spender, tenant.id().clone()))))
    }

    async fn answered(&self, admitted: Self::Admitted, response: &mut Response) {
        let Some((decision, limit, spender, tenant)) = admitted else {
            return;
        };
        // A request without a user that the route refused for want of one costs nothing.
        if let Spender::Anonymous(client) = spender
            && response
                .extensions()
                .get::<ApiError>()
                .is_some_and(|e| e.code() == ProblemCode::AuthenticationRequired)
        {
            self.refund(&tenant, client, limit).await;
            return;
        }
        set_headers(response.headers_mut(), &decision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_exactly_the_limit_in_a_burst() {
        let mut tat = 0;
        let now = 10_000_000_000;
        let mut passed = 0;
        for _ in 0..100 {
            let (next, decision) = gcra(tat, now, 60);
            if let Some(next) = next {
                tat = next;
                passed += 1;
            } else {
                assert_eq!(decision.retry_after, 1);
            }
        }
        assert_eq!(passed, 60);
        // One interval later (1 s for 60/min) exactly one more passes.
        let later = now + 1_000_000_000;
        assert!(gcra(tat, later, 60).0.is_some());
    }

    #[test]
    fn remaining_counts_down() {
        let (tat, first) = gcra(0, 1_000, 10);
        assert_eq!(first.remaining, 9);
        let (_, second) = gcra(tat.unwrap(), 1_000, 10);
        assert_eq!(second.remaining, 8);
    }
}
