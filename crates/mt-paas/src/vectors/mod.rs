//! Per-tenant vector collections (`database.vector`): [`TenantVectors`] scopes every
//! collection to one tenant, whatever the store.
//!
//! A collection `documents` of tenant `hallym` is `{collection_prefix}hallym_documents` in the
//! store (DESIGN §5.7). Collection names within a tenant may not contain `_`, so the last `_`
//! of a stored name always separates tenant and collection: tenant `a` cannot reach tenant
//! `a_b`'s collections by naming `b_documents`, and listing shows a tenant only its own.
//! Every name is built from the validated [`TenantId`] of the request; a handler never
//! passes a store-level name.
//!
//! | `database.vector.type` | where the vectors are |
//! |---|---|
//! | `qdrant` | a Qdrant server over HTTP (`url`; `{vector_port}` for the tenant's own container) |
//! | `chroma` | a Chroma server over HTTP (v2 API, tenant `default_tenant`, database `default_database`) |
//! | `pgvector` | a table per collection in the tenant's own Postgres database or schema |
//!
//! Similarity is cosine everywhere; [`Hit::score`] is the cosine similarity (1 is identical).
//!
//! ```no_run
//! use axum::Json;
//! use mt_paas::vectors::{Hit, TenantVectors, VectorRecord};
//!
//! async fn remember(vectors: TenantVectors) -> Result<Json<Vec<Hit>>, mt_paas::http::ApiError> {
//!     vectors.create_collection("notes", 3).await?;
//!     vectors
//!         .upsert("notes", &[VectorRecord::new("n1", vec![0.1, 0.2, 0.3]).text("hello")])
//!         .await?;
//!     Ok(Json(vectors.search("notes", &[0.1, 0.2, 0.3], 5).await?))
//! }
//! ```

/// Implements [`Backend`] for `$backend` with the functions of the module it is invoked in
/// (`create`, `list`, `drop`, `upsert`, `search`, `delete`, `count`, `export`, each taking the
/// trait method's arguments) and its `IN_TENANT_DATABASE`: a backend module is its functions.
macro_rules! backend_of_this_module {
    ($backend:ident) => {
        impl super::Backend for $backend {
            fn create<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
                dimension: usize,
            ) -> super::Answer<'a, ()> {
                Box::pin(create(v, stored, name, dimension))
            }

            fn list<'a>(&'a self, v: &'a super::TenantVectors) -> super::Answer<'a, Vec<String>> {
                Box::pin(list(v))
            }

            fn drop<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
            ) -> super::Answer<'a, bool> {
                Box::pin(drop(v, stored))
            }

            fn upsert<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
                records: &'a [super::VectorRecord],
            ) -> super::Answer<'a, ()> {
                Box::pin(upsert(v, stored, name, records))
            }

            fn search<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
                query: &'a [f32],
                limit: usize,
            ) -> super::Answer<'a, Vec<super::Hit>> {
                Box::pin(search(v, stored, name, query, limit))
            }

            fn delete<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
                ids: &'a [&'a str],
            ) -> super::Answer<'a, ()> {
                Box::pin(delete(v, stored, name, ids))
            }

            fn count<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
            ) -> super::Answer<'a, u64> {
                Box::pin(count(v, stored, name))
            }

            fn export<'a>(
                &'a self,
                v: &'a super::TenantVectors,
                stored: &'a str,
                name: &'a str,
            ) -> super::Answer<'a, Option<super::Exported>> {
                Box::pin(export(v, stored, name))
            }

            fn in_tenant_database(&self) -> bool {
                IN_TENANT_DATABASE
            }
        }
    };
}
use backend_of_this_module;

mod chroma;
mod pgvector;
mod qdrant;

use std::{fmt, sync::Arc, time::Duration};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use futures_util::future::BoxFuture;
use http::{HeaderValue, header, request::Parts};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    config::{CollectionSpec, Config, VectorConfig, VectorStoreKind},
    core::{
        database::{DatabaseRouter, DbError, Target},
        models::{TenantId, TenantRecord},
        tenant::Tenant,
    },
    http::{ApiError, ProblemCode},
};

/// Why a vector operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VectorError {
    /// The collection name is not allowed.
    #[error("collection name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A vector of the wrong length, or a collection that exists with another dimension.
    #[error("collection {collection}: expected vectors of {expected} dimensions, got {got}")]
    Dimension {
        /// The collection.
        collection: String,
        /// Its dimension.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A record is unusable (empty id, a metadata value that is not a string, number or bool).
    #[error("record {id:?}: {reason}")]
    InvalidRecord {
        /// The record's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The tenant has no such collection.
    #[error("no collection {0:?} for this tenant")]
    NotFound(String),
    /// No vector store is configured (`database.vector`).
    #[error("no vector store is configured (database.vector)")]
    NotConfigured,
    /// No tenant in scope (outside a tenant route).
    #[error("no tenant in scope: get_tenant_vectors() works inside a tenant route")]
    NoTenant,
    /// The store answered with an error or could not be reached.
    #[error("vector store: {0}")]
    Store(String),
    /// The tenant's database (pgvector) failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<sqlx::Error> for VectorError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.to_string())
    }
}

impl From<VectorError> for ApiError {
    fn from(error: VectorError) -> Self {
        match &error {
            VectorError::InvalidName { .. }
            | VectorError::Dimension { .. }
            | VectorError::InvalidRecord { .. } => {
                ApiError::new(ProblemCode::UnprocessableEntity).detail(error.to_string())
            }
            VectorError::NotFound(_) => {
                ApiError::new(ProblemCode::NotFound).detail(error.to_string())
            }
            VectorError::Database(e) => ApiError::new(ProblemCode::TenantDbUnavailable)
                .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
                .cause(e),
            VectorError::NotConfigured | VectorError::NoTenant => {
                tracing::error!(error = %error, "vector store misuse");
                ApiError::new(ProblemCode::Internal)
            }
            VectorError::Store(_) => {
                tracing::error!(error = %error, "vector store error");
                ApiError::new(ProblemCode::TenantDbUnavailable)
                    .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            }
        }
    }
}

pub(crate) use crate::names::check_collection_name;

/// One record to store: an id unique within the collection, its vector, and optionally its
/// text and flat metadata (strings, numbers, booleans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Its id.
    pub id: String,
    /// Its vector.
    pub embedding: Vec<f32>,
    /// The text it was made from.
    pub text: Option<String>,
    /// Flat metadata.
    pub metadata: Map<String, Value>,
}

impl VectorRecord {
    /// A record with `id` and `embedding`.
    pub fn new(id: impl Into<String>, embedding: Vec<f32>) -> Self {
        Self {
            id: id.into(),
            embedding,
            text: None,
            metadata: Map::new(),
        }
    }

    /// With its text.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// With a metadata value (a string, number or boolean).
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    fn check(&self, collection: &str, dimension: usize) -> Result<(), VectorError> {
        if self.id.is_empty() || self.id.len() > 256 {
            return Err(VectorError::InvalidRecord {
                id: self.id.clone(),
                reason: "an id is 1-256 bytes".to_owned(),
            });
        }
        same_dimension(collection, dimension, self.embedding.len())?;
        if self.embedding.iter().any(|v| !v.is_finite()) {
            return Err(VectorError::InvalidRecord {
                id: self.id.clone(),
                reason: "a vector holds only finite numbers".to_owned(),
            });
        }
        if let Some((key, _)) = self
            .metadata
            .iter()
            .find(|(_, v)| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
        {
            return Err(VectorError::InvalidRecord {
                id: self.id.clone(),
                reason: format!("metadata {key:?} is not a string, number or boolean"),
            });
        }
        Ok(())
    }
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The record's id.
    pub id: String,
    /// Cosine similarity to the query (1 is identical, 0 unrelated, -1 opposite).
    pub score: f32,
    /// The record's text.
    pub text: Option<String>,
    /// The record's metadata.
    pub metadata: Map<String, Value>,
}

/// One collection's records, as written beside a tenant's archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExportedCollection {
    pub(crate) name: String,
    pub(crate) dimension: usize,
    pub(crate) records: Vec<VectorRecord>,
}

/// A collection's dimension and records, as a backend exports them.
type Exported = (usize, Vec<VectorRecord>);

/// What a backend's operation answers, in time.
type Answer<'a, T> = BoxFuture<'a, Result<T, VectorError>>;

/// What a store does with one tenant's collections: one implementation per
/// `database.vector.type`. `stored` is the collection's name in the store (already scoped to
/// the tenant and checked), `name` the tenant's own for errors; [`TenantVectors`] checks the
/// arguments once, before any backend sees them.
trait Backend: Sync {
    /// Creates `stored` for `dimension`; an existing one of that dimension is kept, another
    /// dimension is an error.
    fn create<'a>(
        &'a self,
        v: &'a TenantVectors,
        stored: &'a str,
        name: &'a str,
        dimension: usize,
    ) -> Answer<'a, ()>;
    /// Every stored name the store lists (the tenant's and others'; the caller filters).
    fn list<'a>(&'a self, v: &'a TenantVectors) -> Answer<'a, Vec<String>>;
    /// Drops `stored`; `false` when there was none.
    fn drop<'a>(&'a self, v: &'a TenantVectors, stored: &'a str) -> Answer<'a, bool>;
    /// Inserts or replaces `records` (not empty).
    fn upsert<'a>(
        &'a self,
        v: &'a TenantVectors,
        stored: &'a str,
        name: &'a str,
        records: &'a [VectorRecord],
    ) -> Answer<'a, ()>;
    /// The `limit` (1-1000) records most similar to `query` (finite), best first.
    fn search<'a>(
        &'a self,
        v: &'a TenantVectors,
        stored: &'a str,
        name: &'a str,
        query: &'a [f32],
        limit: usize,
    ) -> Answer<'a, Vec<Hit>>;
    /// Deletes the records `ids` (not empty).
    fn delete<'a>(
        &'a self,
        v: &'a TenantVectors,
        stored: &'a str,
        name: &'a str,
        ids: &'a [&'a str],
    ) -> Answer<'a, ()>;
    /// How many records `stored` holds.
    fn count<'a>(&'a self, v: &'a TenantVectors, stored: &'a str, name: &'a str)
    -> Answer<'a, u64>;
    /// The dimension and every record of `stored`, for the archive; `None` when the vectors
    /// live in the tenant's database and travel in its dump (pgvector).
    fn export<'a>(
        &'a self,
        v: &'a TenantVectors,
        stored: &'a str,
        name: &'a str,
    ) -> Answer<'a, Option<Exported>>;
    /// Whether the vectors live in the tenant's own database (dropped with it).
    fn in_tenant_database(&self) -> bool;
}

/// The backend of `kind`; `None` for a type mt-paas has none for (Milvus).
fn backend(kind: VectorStoreKind) -> Option<&'static dyn Backend> {
    match kind {
        VectorStoreKind::Chroma => Some(&chroma::Chroma),
        VectorStoreKind::Qdrant => Some(&qdrant::Qdrant),
        VectorStoreKind::Pgvector => Some(&pgvector::Pgvector),
        VectorStoreKind::Milvus => None,
    }
}

/// Records read or written per request when a collection is exported or imported.
const PAGE: usize = 500;

/// The configured vector store, shared by every tenant. Cheap to clone.
#[derive(Clone)]
pub struct VectorStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    vector: VectorConfig,
    databases: DatabaseRouter,
    http: reqwest::Client,
}

impl fmt::Debug for VectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorStore")
            .field("type", &self.inner.vector.kind)
            .field("collection_prefix", &self.inner.vector.collection_prefix)
            .finish_non_exhaustive()
    }
}

impl VectorStore {
    /// The store of `config.database.vector`, if one is configured.
    pub fn from_config(config: Arc<Config>, databases: DatabaseRouter) -> Option<Self> {
        let vector = config.database.vector.clone()?;
        let mut headers = http::HeaderMap::new();
        if let Some(key) = &vector.api_key
            && let Ok(mut value) = HeaderValue::from_str(key.expose())
        {
            value.set_sensitive(true);
            let name = match vector.kind {
                VectorStoreKind::Chroma => "x-chroma-token",
                _ => "api-key",
            };
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .unwrap_or_default();
        Some(Self {
            inner: Arc::new(Inner {
                config,
                vector,
                databases,
                http,
            }),
        })
    }

    /// The collections every tenant gets on provisioning.
    pub fn provisioned_collections(&self) -> &[CollectionSpec] {
        &self.inner.vector.collections
    }

    /// Whether the vectors live in a store of their own (Qdrant, Chroma) rather than in the
    /// tenant's database (pgvector), and so need dropping when the tenant goes.
    pub(crate) fn keeps_vectors_outside_the_database(&self) -> bool {
        backend(self.inner.vector.kind).is_some_and(|b| !b.in_tenant_database())
    }

    /// `tenant`'s collections.
    pub fn for_tenant(&self, tenant: &Tenant) -> TenantVectors {
        TenantVectors {
            store: self.clone(),
            id: tenant.id().clone(),
            base_url: self.base_url(tenant.record()),
            db: DbAccess::Tenant(Box::new(tenant.clone())),
        }
    }

    /// The collections of a tenant being provisioned or destroyed.
    pub(crate) fn for_record(
        &self,
        record: &TenantRecord,
        target: Option<Target>,
    ) -> TenantVectors {
        TenantVectors {
            store: self.clone(),
            id: record.id.clone(),
            base_url: self.base_url(record),
            db: DbAccess::Target(target),
        }
    }

    fn base_url(&self, record: &TenantRecord) -> String {
        let mut url = self
            .inner
            .vector
            .url
            .replace("{tenant_id}", record.id.as_str());
        if url.contains("{vector_port}")
            && let Some(port) = record
                .port_block
                .and_then(|block| vector_port(&self.inner.config, block))
        {
            url = url.replace("{vector_port}", &port.to_string());
        }
        url.trim_end_matches('/').to_owned()
    }
}

/// The vector store's port of a DOCKER_PER_TENANT block: its base + 3 (the compose
/// template's `vector_port`).
pub(crate) fn vector_port(config: &Config, block: u32) -> Option<u16> {
    let docker = &config.isolation.docker;
    let base = u32::from(docker.port_range_start)
        + block.checked_mul(u32::from(docker.port_range_size))?;
    if docker.port_range_size <= 3 {
        return None;
    }
    u16::try_from(base + 3).ok()
}

enum DbAccess {
    Tenant(Box<Tenant>),
    Target(Option<Target>),
}

/// One tenant's vector collections: every name is scoped to the tenant. The extractor (on a
/// tenant route) and [`ServiceMarketFramework::get_tenant_vectors`](crate::ServiceMarketFramework::get_tenant_vectors)
/// give it.
pub struct TenantVectors {
    store: VectorStore,
    id: TenantId,
    base_url: String,
    db: DbAccess,
}

impl fmt::Debug for TenantVectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantVectors")
            .field("tenant", &self.id)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl TenantVectors {
    /// The tenant.
    pub fn tenant_id(&self) -> &TenantId {
        &self.id
    }

    fn prefix(&self) -> String {
        format!("{}{}_", self.store.inner.vector.collection_prefix, self.id)
    }

    /// The stored name of the tenant's collection `name`, after checking `name`.
    pub fn stored_name(&self, name: &str) -> Result<String, VectorError> {
        check_collection_name(name).map_err(|reason| VectorError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        Ok(format!("{}{name}", self.prefix()))
    }

    /// The tenant's collection name of a stored name, if it is one of the tenant's.
    fn own_name<'a>(&self, stored: &'a str) -> Option<&'a str> {
        let rest = stored.strip_prefix(&self.prefix())?;
        check_collection_name(rest).ok().map(|()| rest)
    }

    /// The store's backend (`NotConfigured` for a type mt-paas has none for).
    fn backend(&self) -> Result<&'static dyn Backend, VectorError> {
        backend(self.store.inner.vector.kind).ok_or(VectorError::NotConfigured)
    }

    /// Creates the collection `name` for vectors of `dimension`; nothing happens when it
    /// exists with that dimension, and another dimension is an error.
    pub async fn create_collection(&self, name: &str, dimension: usize) -> Result<(), VectorError> {
        let stored = self.stored_name(name)?;
        if dimension == 0 || dimension > 16_000 {
            return Err(VectorError::Dimension {
                collection: name.to_owned(),
                expected: dimension,
                got: dimension,
            });
        }
        self.backend()?.create(self, &stored, name, dimension).await
    }

    /// The tenant's collections, sorted.
    pub async fn collections(&self) -> Result<Vec<String>, VectorError> {
        let stored = self.backend()?.list(self).await?;
        let mut own: Vec<String> = stored
            .iter()
            .filter_map(|s| self.own_name(s).map(str::to_owned))
            .collect();
        own.sort();
        Ok(own)
    }

    /// Drops the collection `name`; `false` when the tenant has none of that name.
    pub async fn drop_collection(&self, name: &str) -> Result<bool, VectorError> {
        let stored = self.stored_name(name)?;
        self.backend()?.drop(self, &stored).await
    }

    /// Every collection of the tenant with all its records (the archive of a store of its
    /// own; pgvector's tables travel in the tenant database's archive).
    pub(crate) async fn export(&self) -> Result<Vec<ExportedCollection>, VectorError> {
        let mut out = Vec::new();
        for name in self.collections().await? {
            let stored = self.stored_name(&name)?;
            let Some((dimension, records)) = self.backend()?.export(self, &stored, &name).await?
            else {
                continue;
            };
            out.push(ExportedCollection {
                name,
                dimension,
                records,
            });
        }
        Ok(out)
    }

    /// Brings exported collections back (restore): made if missing, records upserted.
    pub(crate) async fn import(
        &self,
        collections: &[ExportedCollection],
    ) -> Result<(), VectorError> {
        for collection in collections {
            self.create_collection(&collection.name, collection.dimension)
                .await?;
            for page in collection.records.chunks(PAGE) {
                self.upsert(&collection.name, page).await?;
            }
        }
        Ok(())
    }

    /// Drops every collection of the tenant (destroy).
    pub(crate) async fn drop_all(&self) -> Result<usize, VectorError> {
        let names = self.collections().await?;
        for name in &names {
            self.drop_collection(name).await?;
        }
        Ok(names.len())
    }

    /// Inserts or replaces `records` in the collection `name`.
    pub async fn upsert(&self, name: &str, records: &[VectorRecord]) -> Result<(), VectorError> {
        let stored = self.stored_name(name)?;
        if records.is_empty() {
            return Ok(());
        }
        self.backend()?.upsert(self, &stored, name, records).await
    }

    /// The `limit` records of the collection `name` most similar to `query`, best first.
    pub async fn search(
        &self,
        name: &str,
        query: &[f32],
        limit: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        let stored = self.stored_name(name)?;
        if query.iter().any(|v| !v.is_finite()) {
            return Err(VectorError::InvalidRecord {
                id: "query".to_owned(),
                reason: "a vector holds only finite numbers".to_owned(),
            });
        }
        let limit = limit.clamp(1, 1000);
        self.backend()?
            .search(self, &stored, name, query, limit)
            .await
    }

    /// Deletes the records `ids` from the collection `name`.
    pub async fn delete(&self, name: &str, ids: &[&str]) -> Result<(), VectorError> {
        let stored = self.stored_name(name)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.backend()?.delete(self, &stored, name, ids).await
    }

    /// How many records the collection `name` holds.
    pub async fn count(&self, name: &str) -> Result<u64, VectorError> {
        let stored = self.stored_name(name)?;
        self.backend()?.count(self, &stored, name).await
    }

    /// A connection to the tenant's database (pgvector).
    async fn database(&self) -> Result<crate::core::database::TenantDb, VectorError> {
        let router = &self.store.inner.databases;
        match &self.db {
            DbAccess::Tenant(tenant) => Ok(router.acquire(tenant).await?),
            DbAccess::Target(Some(target)) => Ok(router.acquire_target(&self.id, target).await?),
            DbAccess::Target(None) => Err(VectorError::Store(format!(
                "tenant {} has no database to keep vectors in",
                self.id
            ))),
        }
    }

    fn http(&self) -> &reqwest::Client {
        &self.store.inner.http
    }
}

/// The error of a store's answer: its status and the start of its body.
async fn store_error(what: &str, response: reqwest::Response) -> VectorError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    VectorError::Store(format!("{what}: {status}: {body}"))
}

/// The error of a store that could not be reached (its URL, which may hold a key, left out).
fn unreachable_store(what: &str, error: reqwest::Error) -> VectorError {
    VectorError::Store(format!("{what}: {}", error.without_url()))
}

/// Sends `request` to the store: its answer when it is a success, else an error naming
/// `what` with the store's status and message.
async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, VectorError> {
    let response = request
        .send()
        .await
        .map_err(|e| unreachable_store(what, e))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(store_error(what, response).await)
    }
}

/// The JSON body of a store's answer.
async fn read<T: serde::de::DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Result<T, VectorError> {
    response
        .json()
        .await
        .map_err(|e| VectorError::Store(format!("{what}: unreadable answer: {}", e.without_url())))
}

/// A vector of `got` dimensions against collection `collection` of `expected`.
fn same_dimension(collection: &str, expected: usize, got: usize) -> Result<(), VectorError> {
    if expected == got {
        Ok(())
    } else {
        Err(VectorError::Dimension {
            collection: collection.to_owned(),
            expected,
            got,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantVectors {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<Tenant>();
        let store = parts.extensions.get::<VectorStore>();
        match (tenant, store) {
            (Some(tenant), Some(store)) => Ok(store.for_tenant(tenant)),
            (None, _) => Err(VectorError::NoTenant.into()),
            (_, None) => Err(VectorError::NotConfigured.into()),
        }
    }
}

/// `Option<TenantVectors>`: `None` when no vector store is configured, so one handler serves
/// both set-ups (an error only outside a tenant route).
impl<S: Send + Sync> OptionalFromRequestParts<S> for TenantVectors {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(tenant) = parts.extensions.get::<Tenant>() else {
            return Err(VectorError::NoTenant.into());
        };
        Ok(parts
            .extensions
            .get::<VectorStore>()
            .map(|store| store.for_tenant(tenant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_cannot_cross_tenants() {
        assert!(check_collection_name("documents").is_ok());
        assert!(check_collection_name("q-a-2").is_ok());
        for bad in [
            "",
            "b_documents",
            "Docs",
            "-x",
            "x-",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(check_collection_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_are_checked_before_they_travel() {
        let ok = VectorRecord::new("r1", vec![0.0, 1.0]).meta("page", 3);
        assert!(ok.check("c", 2).is_ok());
        assert!(matches!(
            ok.check("c", 3),
            Err(VectorError::Dimension {
                expected: 3,
                got: 2,
                ..
            })
        ));
        let nested = VectorRecord::new("r1", vec![0.0, 1.0]).meta("x", serde_json::json!({"a": 1}));
        assert!(matches!(
            nested.check("c", 2),
            Err(VectorError::InvalidRecord { .. })
        ));
        let nan = VectorRecord::new("r1", vec![f32::NAN, 1.0]);
        assert!(matches!(
            nan.check("c", 2),
            Err(VectorError::InvalidRecord { .. })
        ));
        assert!(VectorRecord::new("", vec![0.0, 1.0]).check("c", 2).is_err());
    }
}
