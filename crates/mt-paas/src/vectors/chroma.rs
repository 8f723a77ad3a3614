//! Chroma over its HTTP API (v2): collections of tenant `default_tenant`, database
//! `default_database`, cosine space, the dimension kept in the collection's metadata.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Exported, Hit, PAGE, TenantVectors, VectorError, VectorRecord, read, same_dimension, send,
    store_error, unreachable_store,
};

const BASE: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";

#[derive(Deserialize)]
struct Collection {
    id: String,
    name: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

impl Collection {
    fn dimension(&self) -> Option<usize> {
        self.metadata
            .as_ref()?
            .get("dimension")?
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
    }
}

fn collections_url(v: &TenantVectors) -> String {
    format!("{}{BASE}", v.base_url)
}

/// The collection `stored`, if it exists.
async fn get(v: &TenantVectors, stored: &str) -> Result<Option<Collection>, VectorError> {
    let what = "chroma: get collection";
    let response = v
        .http()
        .get(format!("{}/{stored}", collections_url(v)))
        .send()
        .await
        .map_err(|e| unreachable_store(what, e))?;
    match response.status().as_u16() {
        200 => Ok(Some(read(what, response).await?)),
        // Chroma answers a missing collection with 404 (and some versions with 400).
        404 | 400 => Ok(None),
        _ => Err(store_error(what, response).await),
    }
}

/// The collection `stored` (id and dimension), or `NotFound`.
async fn existing(
    v: &TenantVectors,
    stored: &str,
    name: &str,
) -> Result<(String, usize), VectorError> {
    let collection = get(v, stored)
        .await?
        .ok_or_else(|| VectorError::NotFound(name.to_owned()))?;
    let dimension = collection.dimension().ok_or_else(|| {
        VectorError::Store(format!(
            "chroma: collection {stored} has no dimension in its metadata (not made by mt-paas)"
        ))
    })?;
    Ok((collection.id, dimension))
}

/// `POST {collections}/{id}/{action}` with `body`.
async fn on_records(
    v: &TenantVectors,
    id: &str,
    action: &str,
    body: &Value,
) -> Result<reqwest::Response, VectorError> {
    send(
        &format!("chroma: {action}"),
        v.http()
            .post(format!("{}/{id}/{action}", collections_url(v)))
            .json(body),
    )
    .await
}

async fn create(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    dimension: usize,
) -> Result<(), VectorError> {
    let what = "chroma: create collection";
    let body = json!({
        "name": stored,
        "metadata": {"hnsw:space": "cosine", "dimension": dimension, "tenant_id": v.id.as_str()},
        "get_or_create": true,
    });
    let response = send(what, v.http().post(collections_url(v)).json(&body)).await?;
    let made: Collection = read(what, response).await?;
    match made.dimension() {
        // It existed already, with another dimension.
        Some(existing) => same_dimension(name, existing, dimension),
        None => Ok(()),
    }
}

async fn list(v: &TenantVectors) -> Result<Vec<String>, VectorError> {
    let what = "chroma: list collections";
    let mut names = Vec::new();
    loop {
        let request = v
            .http()
            .get(collections_url(v))
            .query(&[("limit", PAGE), ("offset", names.len())]);
        let batch: Vec<Collection> = read(what, send(what, request).await?).await?;
        let done = batch.len() < PAGE;
        names.extend(batch.into_iter().map(|c| c.name));
        if done {
            return Ok(names);
        }
    }
}

async fn drop(v: &TenantVectors, stored: &str) -> Result<bool, VectorError> {
    let what = "chroma: delete collection";
    if get(v, stored).await?.is_none() {
        return Ok(false);
    }
    let response = v
        .http()
        .delete(format!("{}/{stored}", collections_url(v)))
        .send()
        .await
        .map_err(|e| unreachable_store(what, e))?;
    match response.status().as_u16() {
        200..=299 => Ok(true),
        404 => Ok(false),
        _ => Err(store_error(what, response).await),
    }
}

async fn upsert(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    records: &[VectorRecord],
) -> Result<(), VectorError> {
    let (id, dimension) = existing(v, stored, name).await?;
    for record in records {
        record.check(name, dimension)?;
    }
    let metadatas: Vec<Value> = records
        .iter()
        .map(|r| {
            if r.metadata.is_empty() {
                Value::Null
            } else {
                Value::Object(r.metadata.clone())
            }
        })
        .collect();
    let body = json!({
        "ids": records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "embeddings": records.iter().map(|r| &r.embedding).collect::<Vec<_>>(),
        "documents": records.iter().map(|r| r.text.as_deref()).collect::<Vec<_>>(),
        "metadatas": metadatas,
    });
    on_records(v, &id, "upsert", &body).await.map(|_| ())
}

/// One list per query; we send one.
type PerQuery<T> = Option<Vec<Vec<Option<T>>>>;

#[derive(Deserialize)]
struct QueryResult {
    ids: Vec<Vec<String>>,
    #[serde(default)]
    distances: PerQuery<f32>,
    #[serde(default)]
    documents: PerQuery<String>,
    #[serde(default)]
    metadatas: PerQuery<Map<String, Value>>,
}

/// The first (only) query's list of a per-query field.
fn first<T>(field: PerQuery<T>) -> Vec<Option<T>> {
    field.and_then(|f| f.into_iter().next()).unwrap_or_default()
}

async fn search(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    query: &[f32],
    limit: usize,
) -> Result<Vec<Hit>, VectorError> {
    let (id, dimension) = existing(v, stored, name).await?;
    same_dimension(name, dimension, query.len())?;
    let body = json!({
        "query_embeddings": [query],
        "n_results": limit,
        "include": ["distances", "documents", "metadatas"],
    });
    let result: QueryResult =
        read("chroma: query", on_records(v, &id, "query", &body).await?).await?;
    let ids = result.ids.into_iter().next().unwrap_or_default();
    let distances = first(result.distances);
    let documents = first(result.documents);
    let metadatas = first(result.metadatas);
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| Hit {
            id,
            // Chroma's cosine space gives the distance 1 - similarity.
            score: 1.0 - distances.get(i).copied().flatten().unwrap_or(1.0),
            text: documents.get(i).cloned().flatten(),
            metadata: metadatas.get(i).cloned().flatten().unwrap_or_default(),
        })
        .collect())
}

async fn delete(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    ids: &[&str],
) -> Result<(), VectorError> {
    let (id, _) = existing(v, stored, name).await?;
    on_records(v, &id, "delete", &json!({ "ids": ids }))
        .await
        .map(|_| ())
}

async fn count(v: &TenantVectors, stored: &str, name: &str) -> Result<u64, VectorError> {
    let what = "chroma: count";
    let (id, _) = existing(v, stored, name).await?;
    let response = send(
        what,
        v.http().get(format!("{}/{id}/count", collections_url(v))),
    )
    .await?;
    read(what, response).await
}

/// The dimension and every record of `stored`, page by page.
async fn export(
    v: &TenantVectors,
    stored: &str,
    name: &str,
) -> Result<Option<Exported>, VectorError> {
    #[derive(Deserialize)]
    struct Page {
        ids: Vec<String>,
        #[serde(default)]
        embeddings: Option<Vec<Vec<f32>>>,
        #[serde(default)]
        documents: Option<Vec<Option<String>>>,
        #[serde(default)]
        metadatas: Option<Vec<Option<Map<String, Value>>>>,
    }
    let (id, dimension) = existing(v, stored, name).await?;
    let mut records = Vec::new();
    loop {
        let body = json!({
            "limit": PAGE,
            "offset": records.len(),
            "include": ["embeddings", "documents", "metadatas"],
        });
        let page: Page = read("chroma: get", on_records(v, &id, "get", &body).await?).await?;
        let count = page.ids.len();
        let embeddings = page.embeddings.unwrap_or_default();
        let documents = page.documents.unwrap_or_default();
        let metadatas = page.metadatas.unwrap_or_default();
        for (i, record_id) in page.ids.into_iter().enumerate() {
            records.push(VectorRecord {
                id: record_id,
                embedding: embeddings.get(i).cloned().unwrap_or_default(),
                text: documents.get(i).cloned().flatten(),
                metadata: metadatas.get(i).cloned().flatten().unwrap_or_default(),
            });
        }
        if count < PAGE {
            return Ok(Some((dimension, records)));
        }
    }
}

/// The `chroma` backend.
pub(super) struct Chroma;

/// Chroma keeps the vectors in a store of its own.
const IN_TENANT_DATABASE: bool = false;

super::backend_of_this_module!(Chroma);
