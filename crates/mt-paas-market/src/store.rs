//! The market's database: plans, services, tenants, users, subscriptions, the command queue
//! and what services report. SQLite or Postgres; the same SQL runs on both.

use std::collections::BTreeMap;

use mt_paas::{CentralDb, on_pool};
use mt_paas_protocol::{
    AuditAlert, Block, Command, Entitlement, Heartbeat, Limits, SubscriptionInfo,
    SubscriptionState, UsageRecord,
};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use time::OffsetDateTime;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("market database: {0}")]
    Db(#[from] sqlx::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] mt_paas::CentralDbError),
    /// A migration failed.
    #[error("market database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is unreadable.
    #[error("stored {what} is invalid: {detail}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// Now, to the microsecond (what Postgres keeps).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its id, e.g. `premium`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its features.
    pub features: BTreeMap<String, bool>,
    /// Requests per minute per tenant; the service's default when `None`.
    pub requests_per_minute: Option<u32>,
}

/// A service registered at the market. `Debug` leaves the webhook secret out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Its id, e.g. `keli_tutor`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where its control endpoints are (`None`: commands travel on the pull path only).
    pub base_url: Option<String>,
    /// The secret that signs its commands (`whsec_...`). Never serialized.
    #[serde(skip)]
    pub webhook_secret: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A tenant (an organisation) at the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A subscription of a tenant to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// The service.
    pub service_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The plan.
    pub plan_id: String,
    /// Its state.
    pub state: SubscriptionState,
    /// When it ends.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Its revision.
    pub revision: i64,
    /// The last block/unblock sequence number.
    pub sequence: i64,
    /// A block in force or scheduled.
    pub block: Option<Block>,
}

/// A command in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedCommand {
    /// The command.
    pub command: Command,
    /// The service.
    pub service_id: String,
    /// `pending`, `applied`, `superseded`, `failed` or `rejected` (the service refused its
    /// signed target).
    pub status: String,
    /// Push attempts so far.
    pub attempts: i64,
    /// The last push error.
    pub last_error: Option<String>,
    /// The service's detail on acknowledging.
    pub detail: Option<String>,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was acknowledged.
    #[serde(with = "time::serde::rfc3339::option")]
    pub acked_at: Option<OffsetDateTime>,
    /// When the next push is due (while `pending`).
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// When it last went out in a heartbeat response (delivered, not yet answered).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// A service's heartbeat counters summed over its replicas in one five-minute bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricBucket {
    /// The bucket's start.
    pub start: OffsetDateTime,
    /// Seconds of heartbeat windows in it, summed over replicas.
    pub window_seconds: i64,
    /// Requests answered.
    pub requests: i64,
    /// Of which 5xx.
    pub errors: i64,
    /// Sum of their latencies, milliseconds.
    pub latency_sum_ms: f64,
}

/// The length of a heartbeat sample bucket.
pub const METRIC_BUCKET: time::Duration = time::Duration::minutes(5);

/// A replica's last heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The replica.
    pub instance_id: String,
    /// Its last sequence number.
    pub seq: i64,
    /// The heartbeat.
    pub heartbeat: Heartbeat,
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// Usage summed over a service's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UsageTotal {
    /// The tenant.
    pub tenant_id: String,
    /// The dimension.
    pub dimension: String,
    /// The period's start.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// The sum.
    pub quantity: i64,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// The alert.
    #[serde(flatten)]
    pub alert: AuditAlert,
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// When an operator marked it seen; `None` while it is open.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    /// The operator who did.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
}

/// A market user (for SSO). `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// PBKDF2 hash.
    pub password_hash: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    service_id: String,
    tenant_id: String,
    plan_id: String,
    state: String,
    expires_at: Option<OffsetDateTime>,
    revision: i64,
    sequence: i64,
    block: Option<String>,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> Result<Self> {
        let state = serde_json::from_value(serde_json::Value::String(row.state))
            .map_err(|e| corrupt("state", e))?;
        let block = row
            .block
            .map(|b| serde_json::from_str(&b).map_err(|e| corrupt("block", e)))
            .transpose()?;
        Ok(Self {
            service_id: row.service_id,
            tenant_id: row.tenant_id,
            plan_id: row.plan_id,
            state,
            expires_at: row.expires_at,
            revision: row.revision,
            sequence: row.sequence,
            block,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CommandRow {
    service_id: String,
    body: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    detail: Option<String>,
    created_at: OffsetDateTime,
    acked_at: Option<OffsetDateTime>,
    next_attempt_at: OffsetDateTime,
    delivered_at: Option<OffsetDateTime>,
}

impl TryFrom<CommandRow> for QueuedCommand {
    type Error = StoreError;

    fn try_from(row: CommandRow) -> Result<Self> {
        let mut command: Command =
            serde_json::from_str(&row.body).map_err(|e| corrupt("command", e))?;
        // Queued before commands named their service: it is the row's.
        command.fill_service(&row.service_id);
        Ok(Self {
            command,
            service_id: row.service_id,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            detail: row.detail,
            created_at: row.created_at,
            acked_at: row.acked_at,
            next_attempt_at: row.next_attempt_at,
            delivered_at: row.delivered_at,
        })
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "service_id, tenant_id, plan_id, state, expires_at, revision, sequence, block";
const COMMAND_COLUMNS: &str = "service_id, body, status, attempts, last_error, detail, created_at, acked_at, next_attempt_at, delivered_at";

fn state_str(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::PendingActivation => "pending_activation",
        SubscriptionState::Active => "active",
        SubscriptionState::Suspended => "suspended",
        SubscriptionState::Cancelled | SubscriptionState::Unknown => "cancelled",
    }
}

/// The market's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: CentralDb,
}

/// A change to a subscription, applied with a revision bump.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    State(SubscriptionState),
    Plan(String),
    Expiry(Option<OffsetDateTime>),
    Block(Block),
    Unblock,
}

impl Store {
    /// Opens the database at `url` and applies the market's migrations.
    pub async fn open(url: &mt_paas::config::DatabaseUrl, pool_size: u32) -> Result<Self> {
        let db = CentralDb::open(url, pool_size).await?;
        match &db {
            CentralDb::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            CentralDb::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(Self { db })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Whether nothing has been set up yet (no plans, no services).
    pub async fn is_empty(&self) -> Result<bool> {
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT (SELECT COUNT(*) FROM plans) + (SELECT COUNT(*) FROM services)").fetch_one(pool).await?
        });
        Ok(n == 0)
    }

    // ------------------------------------------------------------ plans

    /// Creates or replaces a plan, and gives every subscription on it a new revision so
    /// that its services fetch the changed entitlement. Returns (service, tenant, revision)
    /// of each.
    pub async fn put_plan(&self, plan: &Plan) -> Result<Vec<(String, String, i64)>> {
        let features = serde_json::to_string(&plan.features).unwrap_or_else(|_| "{}".into());
        let rpm = plan.requests_per_minute.map(i64::from);
        let changed = on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO plans (id, name, features, requests_per_minute, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = $2, features = $3, requests_per_minute = $4",
            )
            .bind(&plan.id)
            .bind(&plan.name)
            .bind(&features)
            .bind(rpm)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            let on_plan: Vec<(String, String)> = sqlx::query_as(
                "SELECT service_id, tenant_id FROM subscriptions WHERE plan_id = $1 ORDER BY service_id, tenant_id",
            )
            .bind(&plan.id)
            .fetch_all(&mut *tx)
            .await?;
            let mut changed = Vec::with_capacity(on_plan.len());
            // One revision each: a service reads changes in pages by revision, and a page
            // must never end inside a revision.
            for (service_id, tenant_id) in on_plan {
                let revision: i64 = sqlx::query_scalar("UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("UPDATE subscriptions SET revision = $1, updated_at = $2 WHERE service_id = $3 AND tenant_id = $4")
                    .bind(revision)
                    .bind(now())
                    .bind(&service_id)
                    .bind(&tenant_id)
                    .execute(&mut *tx)
                    .await?;
                changed.push((service_id, tenant_id, revision));
            }
            tx.commit().await?;
            changed
        });
        Ok(changed)
    }

    /// Every plan.
    pub async fn plans(&self) -> Result<Vec<Plan>> {
        let rows: Vec<(String, String, String, Option<i64>)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, features, requests_per_minute FROM plans ORDER BY id").fetch_all(pool).await?
        });
        rows.into_iter().map(plan_from).collect()
    }

    /// One plan.
    pub async fn plan(&self, id: &str) -> Result<Option<Plan>> {
        let row: Option<(String, String, String, Option<i64>)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, features, requests_per_minute FROM plans WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(plan_from).transpose()
    }

    // ------------------------------------------------------------ services

    /// Registers a service; `false` when its id is taken.
    pub async fn create_service(&self, service: &Service, api_key_hash: &str) -> Result<bool> {
        let result = on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO services (id, name, api_key_hash, webhook_secret, base_url, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&service.id)
            .bind(&service.name)
            .bind(api_key_hash)
            .bind(&service.webhook_secret)
            .bind(&service.base_url)
            .bind(now())
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One service.
    pub async fn service(&self, id: &str) -> Result<Option<Service>> {
        Ok(self.service_with_key(id).await?.map(|(service, _)| service))
    }

    /// One service and the hash of its API key.
    pub async fn service_with_key(&self, id: &str) -> Result<Option<(Service, String)>> {
        let row: Option<(String, String, Option<String>, String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, base_url, webhook_secret, api_key_hash FROM services WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id, name, base_url, webhook_secret, hash)| {
            (
                Service {
                    id,
                    name,
                    base_url,
                    webhook_secret,
                },
                hash,
            )
        }))
    }

    /// Every service.
    pub async fn services(&self) -> Result<Vec<Service>> {
        Ok(self
            .services_with_keys()
            .await?
            .into_iter()
            .map(|(service, _)| service)
            .collect())
    }

    /// Every service with the hash of its API key, by id.
    pub async fn services_with_keys(&self) -> Result<Vec<(Service, String)>> {
        let rows: Vec<(String, String, Option<String>, String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, base_url, webhook_secret, api_key_hash FROM services ORDER BY id").fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, base_url, webhook_secret, key_hash)| {
                (
                    Service {
                        id,
                        name,
                        base_url,
                        webhook_secret,
                    },
                    key_hash,
                )
            })
            .collect())
    }

    // ------------------------------------------------------------ tenants and users

    /// Creates a tenant; `false` when the id is taken.
    pub async fn create_tenant(&self, tenant: &Tenant) -> Result<bool> {
        let result = on_pool!(&self.db, pool => {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(now())
                .execute(pool)
                .await
                .map(|_| ())
        });
        match result {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One tenant.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row: Option<(String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name FROM tenants WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(|(id, name)| Tenant { id, name }))
    }

    /// Every tenant.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<(String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, name FROM tenants ORDER BY id").fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name)| Tenant { id, name })
            .collect())
    }

    /// Creates a user.
    pub async fn create_user(&self, user: &User) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query("INSERT INTO users (id, tenant_id, name, email, password_hash) VALUES ($1, $2, $3, $4, $5)")
                .bind(&user.id)
                .bind(&user.tenant_id)
                .bind(&user.name)
                .bind(&user.email)
                .bind(&user.password_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// One user.
    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row: Option<(String, String, String, String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT id, tenant_id, name, email, password_hash FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id, tenant_id, name, email, password_hash)| User {
            id,
            tenant_id,
            name,
            email,
            password_hash,
        }))
    }

    // ------------------------------------------------------------ subscriptions

    /// Creates a subscription; `false` when the tenant already subscribes to the service.
    pub async fn create_subscription(
        &self,
        service_id: &str,
        tenant_id: &str,
        plan_id: &str,
        state: SubscriptionState,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<bool> {
        let result = on_pool!(&self.db, pool => {
            async {
                let mut tx = pool.begin().await?;
                let revision: i64 = sqlx::query_scalar("UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO subscriptions (service_id, tenant_id, plan_id, state, expires_at, revision, sequence, block, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7)",
                )
                .bind(service_id)
                .bind(tenant_id)
                .bind(plan_id)
                .bind(state_str(state))
                .bind(expires_at)
                .bind(revision)
                .bind(now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await
        });
        match result {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One subscription.
    pub async fn subscription(
        &self,
        service_id: &str,
        tenant_id: &str,
    ) -> Result<Option<Subscription>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = $1 AND tenant_id = $2"
        );
        let row: Option<SubscriptionRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(service_id).bind(tenant_id).fetch_optional(pool).await?
        });
        row.map(Subscription::try_from).transpose()
    }

    /// A service's subscriptions changed after `revision`, oldest change first.
    pub async fn subscriptions_since(
        &self,
        service_id: &str,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<Subscription>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE service_id = $1 AND revision > $2 ORDER BY revision LIMIT $3"
        );
        let rows: Vec<SubscriptionRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(service_id).bind(revision).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(Subscription::try_from).collect()
    }

    /// Applies `change` with a new revision; for block/unblock also a new sequence number.
    /// Returns the subscription after the change, or `None` when there is none.
    pub(crate) async fn change(
        &self,
        service_id: &str,
        tenant_id: &str,
        change: Change,
    ) -> Result<Option<Subscription>> {
        let found = on_pool!(&self.db, pool => {
            async {
                let mut tx = pool.begin().await?;
                // Write first: on SQLite a transaction that reads and then writes fails at
                // once ("database is locked") when another connection wrote in between; one
                // that starts with a write takes the lock up front and waits its turn.
                let revision: i64 = sqlx::query_scalar("UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value")
                    .fetch_one(&mut *tx)
                    .await?;
                let exists: Option<i64> = sqlx::query_scalar("SELECT sequence FROM subscriptions WHERE service_id = $1 AND tenant_id = $2")
                    .bind(service_id)
                    .bind(tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(sequence) = exists else {
                    return Ok::<bool, sqlx::Error>(false);
                };
                let stamp = now();
                let tail = "revision = $2, updated_at = $3 WHERE service_id = $4 AND tenant_id = $5";
                match &change {
                    Change::State(state) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE subscriptions SET state = $1, {tail}")))
                            .bind(state_str(*state))
                            .bind(revision)
                            .bind(stamp)
                            .bind(service_id)
                            .bind(tenant_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Change::Plan(plan) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE subscriptions SET plan_id = $1, {tail}")))
                            .bind(plan)
                            .bind(revision)
                            .bind(stamp)
                            .bind(service_id)
                            .bind(tenant_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Change::Expiry(at) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE subscriptions SET expires_at = $1, {tail}")))
                            .bind(*at)
                            .bind(revision)
                            .bind(stamp)
                            .bind(service_id)
                            .bind(tenant_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Change::Block(block) => {
                        let mut block = block.clone();
                        block.sequence = u64::try_from(sequence + 1).unwrap_or_default();
                        let json = serde_json::to_string(&block).unwrap_or_default();
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE subscriptions SET block = $1, sequence = sequence + 1, {tail}"
                        )))
                        .bind(json)
                        .bind(revision)
                        .bind(stamp)
                        .bind(service_id)
                        .bind(tenant_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Change::Unblock => {
                        sqlx::query(
                            "UPDATE subscriptions SET block = NULL, sequence = sequence + 1, revision = $1, updated_at = $2 \
                             WHERE service_id = $3 AND tenant_id = $4",
                        )
                        .bind(revision)
                        .bind(stamp)
                        .bind(service_id)
                        .bind(tenant_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }
            .await?
        });
        if !found {
            return Ok(None);
        }
        self.subscription(service_id, tenant_id).await
    }

    /// The entitlement a service sees for one subscription.
    pub async fn entitlement(&self, subscription: &Subscription) -> Result<Entitlement> {
        let plan = self.plan(&subscription.plan_id).await?;
        let tenant = self.tenant(&subscription.tenant_id).await?;
        // What the plan lacks, and which plans have it.
        let mut available_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for other in self.plans().await? {
            if other.id == subscription.plan_id {
                continue;
            }
            for (feature, on) in &other.features {
                let here = plan
                    .as_ref()
                    .and_then(|p| p.features.get(feature).copied())
                    .unwrap_or(false);
                if *on && !here {
                    available_on
                        .entry(feature.clone())
                        .or_default()
                        .push(other.name.clone());
                }
            }
        }
        for names in available_on.values_mut() {
            names.sort();
        }
        Ok(Entitlement {
            service_id: subscription.service_id.clone(),
            tenant_id: subscription.tenant_id.clone(),
            tenant_name: tenant.map(|t| t.name).unwrap_or_default(),
            revision: subscription.revision,
            subscription: SubscriptionInfo {
                state: subscription.state,
                plan: subscription.plan_id.clone(),
                plan_name: plan.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                expires_at: subscription.expires_at,
            },
            features: plan
                .as_ref()
                .map(|p| p.features.clone())
                .unwrap_or_default(),
            limits: Limits {
                requests_per_minute: plan.and_then(|p| p.requests_per_minute),
            },
            block: subscription.block.clone(),
            available_on,
        })
    }

    /// The current revision of the whole market.
    pub async fn revision(&self) -> Result<i64> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT value FROM revision_counter WHERE id = 1").fetch_one(pool).await?
        }))
    }

    // ------------------------------------------------------------ commands

    /// Queues a command.
    pub async fn enqueue(&self, service_id: &str, command: &Command) -> Result<()> {
        let body = serde_json::to_string(command).unwrap_or_default();
        let kind = serde_json::to_value(command)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
            .unwrap_or_default();
        let stamp = now();
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO commands (id, service_id, tenant_id, kind, body, status, attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
            )
            .bind(command.command_id())
            .bind(service_id)
            .bind(command.tenant_id())
            .bind(&kind)
            .bind(&body)
            .bind(stamp)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// One queued command.
    pub async fn command(&self, id: &str) -> Result<Option<QueuedCommand>> {
        let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1");
        let row: Option<CommandRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        });
        row.map(QueuedCommand::try_from).transpose()
    }

    /// A service's commands, newest first; only unacknowledged ones when `pending`.
    pub async fn commands(
        &self,
        service_id: &str,
        pending: bool,
        limit: i64,
    ) -> Result<Vec<QueuedCommand>> {
        let filter = if pending {
            "AND status = 'pending'"
        } else {
            ""
        };
        let order = if pending {
            "created_at, id"
        } else {
            "created_at DESC, id DESC"
        };
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE service_id = $1 {filter} ORDER BY {order} LIMIT $2"
        );
        let rows: Vec<CommandRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(service_id).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(QueuedCommand::try_from).collect()
    }

    /// Pending commands due for a push attempt.
    pub async fn due_commands(&self, max_attempts: u32, limit: i64) -> Result<Vec<QueuedCommand>> {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE status = 'pending' AND attempts < $1 AND next_attempt_at <= $2 \
             AND service_id IN (SELECT id FROM services WHERE base_url IS NOT NULL) ORDER BY next_attempt_at LIMIT $3"
        );
        let rows: Vec<CommandRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(max_attempts))
                .bind(now())
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(QueuedCommand::try_from).collect()
    }

    /// Makes a service's pending commands due now (the service just showed it is up).
    /// Returns how many were waiting.
    pub async fn reschedule(&self, service_id: &str) -> Result<u64> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query("UPDATE commands SET next_attempt_at = $1 WHERE service_id = $2 AND status = 'pending' AND next_attempt_at > $1")
                .bind(now())
                .bind(service_id)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Records a failed push attempt.
    pub async fn push_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: OffsetDateTime,
    ) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query(
                "UPDATE commands SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3 AND status = 'pending'",
            )
            .bind(error.chars().take(500).collect::<String>())
            .bind(next_attempt_at)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records a command's acknowledgement (from a push receipt or the ack endpoint). An
    /// acknowledged command keeps its first answer.
    pub async fn acknowledge(&self, id: &str, status: &str, detail: &str) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query(
                "UPDATE commands SET status = $1, detail = $2, acked_at = $3, attempts = attempts + 1 WHERE id = $4 AND status = 'pending'",
            )
            .bind(status)
            .bind(detail.chars().take(1000).collect::<String>())
            .bind(now())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    // ------------------------------------------------------------ telemetry

    /// Stores a heartbeat unless the replica already sent a later one. Returns whether it
    /// was stored.
    pub async fn record_heartbeat(&self, heartbeat: &Heartbeat) -> Result<bool> {
        let body = serde_json::to_string(heartbeat).unwrap_or_default();
        let status = serde_json::to_value(heartbeat.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let seq = i64::try_from(heartbeat.seq).unwrap_or(i64::MAX);
        let stored = on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO instances (service_id, instance_id, seq, status, body, received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (service_id, instance_id) DO UPDATE SET seq = $3, status = $4, body = $5, received_at = $6 \
                 WHERE instances.seq < $3 OR $3 = 0",
            )
            .bind(&heartbeat.service_id)
            .bind(&heartbeat.instance_id)
            .bind(seq)
            .bind(&status)
            .bind(&body)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if stored > 0 {
            self.record_sample(heartbeat).await?;
        }
        Ok(stored > 0)
    }

    /// Adds a heartbeat's window counters to its replica's five-minute bucket. The figures
    /// are the replica's own and bounded here (a window of at most an hour, errors at most
    /// the requests, latencies finite and not negative), so a bad replica skews only itself.
    async fn record_sample(&self, heartbeat: &Heartbeat) -> Result<()> {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let window = &heartbeat.window;
        let (seconds, requests, errors, latency) = if window.window_seconds > 0 {
            (
                window.window_seconds,
                window.requests,
                window.status_5xx,
                window.latency_sum_ms,
            )
        } else {
            // A replica that sends no counters: its per-minute summary stands for a minute.
            let m = &heartbeat.metrics;
            let requests = m.requests_per_minute;
            (
                60,
                requests,
                (m.error_rate.clamp(0.0, 1.0) * requests as f64).round() as u64,
                m.avg_response_time_ms * requests as f64,
            )
        };
        let latency = if latency.is_finite() {
            latency.max(0.0)
        } else {
            0.0
        };
        let at = now();
        let start =
            at - time::Duration::seconds(
                at.unix_timestamp()
                    .rem_euclid(METRIC_BUCKET.whole_seconds()),
            ) - time::Duration::nanoseconds(i64::from(at.nanosecond()));
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO heartbeat_samples (service_id, instance_id, bucket_start, window_seconds, requests, errors, latency_sum_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (service_id, instance_id, bucket_start) DO UPDATE SET \
                 window_seconds = heartbeat_samples.window_seconds + excluded.window_seconds, \
                 requests = heartbeat_samples.requests + excluded.requests, \
                 errors = heartbeat_samples.errors + excluded.errors, \
                 latency_sum_ms = heartbeat_samples.latency_sum_ms + excluded.latency_sum_ms",
            )
            .bind(&heartbeat.service_id)
            .bind(&heartbeat.instance_id)
            .bind(start)
            .bind(clamp(seconds.min(3600)))
            .bind(clamp(requests))
            .bind(clamp(errors.min(requests)))
            .bind(latency)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A service's heartbeat counters by five-minute bucket since `since`, summed over its
    /// replicas, oldest first.
    pub async fn metric_buckets(
        &self,
        service_id: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<MetricBucket>> {
        let rows: Vec<(OffsetDateTime, i64, i64, i64, f64)> = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT bucket_start, CAST(SUM(window_seconds) AS BIGINT), CAST(SUM(requests) AS BIGINT), \
                 CAST(SUM(errors) AS BIGINT), CAST(SUM(latency_sum_ms) AS DOUBLE PRECISION) FROM heartbeat_samples \
                 WHERE service_id = $1 AND bucket_start >= $2 GROUP BY bucket_start ORDER BY bucket_start",
            )
            .bind(service_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(start, window_seconds, requests, errors, latency_sum_ms)| MetricBucket {
                    start,
                    window_seconds,
                    requests,
                    errors,
                    latency_sum_ms,
                },
            )
            .collect())
    }

    /// Deletes heartbeat samples of buckets before `before`. Returns how many.
    pub async fn prune_samples(&self, before: OffsetDateTime) -> Result<u64> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM heartbeat_samples WHERE bucket_start < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Notes that these pending commands went out in a heartbeat response.
    pub async fn mark_delivered(&self, ids: &[&str]) -> Result<()> {
        let at = now();
        on_pool!(&self.db, pool => {
            for id in ids {
                sqlx::query("UPDATE commands SET delivered_at = $1 WHERE id = $2 AND status = 'pending'")
                    .bind(at)
                    .bind(*id)
                    .execute(pool)
                    .await?;
            }
        });
        Ok(())
    }

    /// A service's replicas and their last heartbeats.
    pub async fn instances(&self, service_id: &str) -> Result<Vec<Instance>> {
        let rows: Vec<(String, i64, String, OffsetDateTime)> = on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT instance_id, seq, body, received_at FROM instances WHERE service_id = $1 ORDER BY instance_id")
                .bind(service_id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(instance_id, seq, body, received_at)| {
                Ok(Instance {
                    instance_id,
                    seq,
                    heartbeat: serde_json::from_str(&body).map_err(|e| corrupt("heartbeat", e))?,
                    received_at,
                })
            })
            .collect()
    }

    /// Stores usage records; a record already stored (same tenant, dimension, period start
    /// and replica) is a duplicate. Returns (accepted, duplicates).
    pub async fn record_usage(
        &self,
        service_id: &str,
        instance_id: &str,
        records: &[UsageRecord],
    ) -> Result<(u64, u64)> {
        let mut accepted = 0;
        let stamp = now();
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for record in records {
                accepted += sqlx::query(
                    "INSERT INTO usage_records (service_id, tenant_id, dimension, period_start, instance_id, period_seconds, quantity, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(service_id)
                .bind(&record.tenant_id)
                .bind(&record.dimension)
                .bind(record.period_start)
                .bind(instance_id)
                .bind(i64::try_from(record.period_seconds).unwrap_or(i64::MAX))
                .bind(i64::try_from(record.quantity).unwrap_or(i64::MAX))
                .bind(stamp)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
        });
        let total = u64::try_from(records.len()).unwrap_or(u64::MAX);
        Ok((accepted, total - accepted))
    }

    /// Usage of a service, summed over replicas, per tenant, dimension and period.
    pub async fn usage(
        &self,
        service_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<UsageTotal>> {
        let rows: Vec<UsageTotal> = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, dimension, period_start, CAST(SUM(quantity) AS BIGINT) AS quantity FROM usage_records \
                 WHERE service_id = $1 AND ($2 IS NULL OR tenant_id = $2) \
                 GROUP BY tenant_id, dimension, period_start ORDER BY period_start, tenant_id, dimension",
            )
            .bind(service_id)
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Stores an alert; `false` for an event id already stored.
    pub async fn record_alert(&self, alert: &AuditAlert) -> Result<bool> {
        let severity = serde_json::to_value(alert.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let details = serde_json::to_string(&alert.details).unwrap_or_else(|_| "{}".into());
        let stored = on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO alerts (service_id, event_id, alert_type, severity, details, occurred_at, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&alert.service_id)
            .bind(&alert.event_id)
            .bind(&alert.alert_type)
            .bind(&severity)
            .bind(&details)
            .bind(alert.timestamp)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(stored > 0)
    }

    /// Deletes alerts received before `before`. Returns how many.
    pub async fn prune_alerts(&self, before: OffsetDateTime) -> Result<u64> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM alerts WHERE received_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Stored alerts, newest first; only those no operator acknowledged when `open_only`.
    pub async fn alerts(
        &self,
        service_id: Option<&str>,
        open_only: bool,
        limit: i64,
    ) -> Result<Vec<StoredAlert>> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            OffsetDateTime,
            OffsetDateTime,
            Option<OffsetDateTime>,
            Option<String>,
        );
        let rows: Vec<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT service_id, event_id, alert_type, severity, details, occurred_at, received_at, acknowledged_at, acknowledged_by \
                 FROM alerts WHERE ($1 IS NULL OR service_id = $1) AND (NOT $2 OR acknowledged_at IS NULL) \
                 ORDER BY received_at DESC, event_id LIMIT $3",
            )
            .bind(service_id)
            .bind(open_only)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(
                    service_id,
                    event_id,
                    alert_type,
                    severity,
                    details,
                    occurred_at,
                    received_at,
                    acknowledged_at,
                    acknowledged_by,
                )| {
                    Ok(StoredAlert {
                        alert: AuditAlert {
                            service_id,
                            alert_type,
                            severity: serde_json::from_value(serde_json::Value::String(severity))
                                .map_err(|e| corrupt("severity", e))?,
                            details: serde_json::from_str(&details)
                                .map_err(|e| corrupt("details", e))?,
                            timestamp: occurred_at,
                            event_id,
                        },
                        received_at,
                        acknowledged_at,
                        acknowledged_by,
                    })
                },
            )
            .collect()
    }

    /// Marks an open alert as seen by `operator`. Returns whether it was open.
    pub async fn acknowledge_alert(
        &self,
        service_id: &str,
        event_id: &str,
        operator: &str,
    ) -> Result<bool> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(
                "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2 \
                 WHERE service_id = $3 AND event_id = $4 AND acknowledged_at IS NULL",
            )
            .bind(now())
            .bind(operator)
            .bind(service_id)
            .bind(event_id)
            .execute(pool)
            .await?
            .rows_affected()
        }) > 0)
    }

    /// Stores a provisioning result; `false` when the command's result was stored before.
    pub async fn record_provisioning_result(
        &self,
        service_id: &str,
        tenant_id: &str,
        command_id: &str,
        status: &str,
        detail: &str,
    ) -> Result<bool> {
        let stored = on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO provisioning_results (command_id, service_id, tenant_id, status, detail, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(command_id)
            .bind(service_id)
            .bind(tenant_id)
            .bind(status)
            .bind(detail)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(stored > 0)
    }

    // ------------------------------------------------------------ SSO codes

    /// Stores an authorization code (its hash).
    pub async fn put_code(
        &self,
        code_hash: &str,
        service_id: &str,
        user_id: &str,
        redirect_uri: &str,
        challenge: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO sso_codes (code_hash, service_id, user_id, redirect_uri, code_challenge, expires_at, used) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(code_hash)
            .bind(service_id)
            .bind(user_id)
            .bind(redirect_uri)
            .bind(challenge)
            .bind(expires_at)
            .bind(false)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes a code once: returns (service, user, redirect_uri, challenge, expires_at) and
    /// marks it used; `None` when unknown or used before.
    pub async fn take_code(
        &self,
        code_hash: &str,
    ) -> Result<Option<(String, String, String, String, OffsetDateTime)>> {
        let row: Option<(String, String, String, String, OffsetDateTime)> = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "UPDATE sso_codes SET used = $1 WHERE code_hash = $2 AND used = $3 \
                 RETURNING service_id, user_id, redirect_uri, code_challenge, expires_at",
            )
            .bind(true)
            .bind(code_hash)
            .bind(false)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }
}

impl Store {
    // ------------------------------------------------------------ signing keys

    /// Every signing key as (kid, PKCS #8 in base64, created_at, retired_at), oldest first.
    pub async fn signing_keys(
        &self,
    ) -> Result<Vec<(String, String, OffsetDateTime, Option<OffsetDateTime>)>> {
        let rows = on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT kid, pkcs8, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Stores a new signing key.
    pub async fn add_signing_key(&self, kid: &str, pkcs8: &str) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)")
                .bind(kid)
                .bind(pkcs8)
                .bind(now())
                .execute(pool)
                .await
                .map(drop)?
        });
        Ok(())
    }

    /// Retires a key; `false` when no such key is in use.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<bool> {
        let result = on_pool!(&self.db, pool => {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL")
                .bind(now())
                .bind(kid)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(result == 1)
    }
}

impl Store {
    // ------------------------------------------------------------ console operators

    /// Sets the password of operator `name`, creating it if needed; `true` when it is new.
    pub async fn put_operator(&self, name: &str, password_hash: &str) -> Result<bool> {
        let existed: Option<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT name FROM operators WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO operators (name, password_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            )
            .bind(name)
            .bind(password_hash)
            .bind(now())
            .execute(pool)
            .await?;
            // A new password ends the operator's sessions.
            sqlx::query("DELETE FROM console_sessions WHERE operator = $1")
                .bind(name)
                .execute(pool)
                .await?;
        });
        Ok(existed.is_none())
    }

    /// Every operator with its password hash, by name.
    pub async fn operators(&self) -> Result<Vec<(String, String)>> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as("SELECT name, password_hash FROM operators ORDER BY name")
                .fetch_all(pool)
                .await?
        }))
    }

    /// The password hash of operator `name`.
    pub async fn operator_password(&self, name: &str) -> Result<Option<String>> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT password_hash FROM operators WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Starts a console session (its token's hash), dropping expired ones.
    pub async fn start_console_session(
        &self,
        token_hash: &str,
        operator: &str,
        csrf: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
                .bind(now())
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (token_hash, operator, csrf, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(operator)
            .bind(csrf)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The unexpired session of `token_hash`: its operator and CSRF token.
    pub async fn console_session(&self, token_hash: &str) -> Result<Option<(String, String)>> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT operator, csrf FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Ends the session of `token_hash`.
    pub async fn end_console_session(&self, token_hash: &str) -> Result<()> {
        on_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

fn plan_from((id, name, features, rpm): (String, String, String, Option<i64>)) -> Result<Plan> {
    Ok(Plan {
        id,
        name,
        features: serde_json::from_str(&features).map_err(|e| corrupt("plan features", e))?,
        requests_per_minute: rpm.and_then(|r| u32::try_from(r).ok()),
    })
}
