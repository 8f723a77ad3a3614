//! Qdrant over its HTTP API: one collection per tenant collection, cosine distance. Qdrant
//! point ids are unsigned integers or UUIDs, so a record's id travels in the payload and the
//! point id is a UUID derived from it (SHA-256, so the same id always names the same point).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Exported, Hit, PAGE, TenantVectors, VectorError, VectorRecord, read, same_dimension, send,
    store_error, unreachable_store,
};

/// The point id of a record id: a UUID (version 8, RFC 9562) from its SHA-256.
pub(super) fn point_id(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[derive(Deserialize)]
struct Answer<T> {
    result: T,
}

fn url(v: &TenantVectors, path: &str) -> String {
    format!("{}/collections{path}", v.base_url)
}

async fn dimension(v: &TenantVectors, stored: &str) -> Result<Option<usize>, VectorError> {
    let what = "qdrant: get collection";
    let response = v
        .http()
        .get(url(v, &format!("/{stored}")))
        .send()
        .await
        .map_err(|e| unreachable_store(what, e))?;
    if response.status().as_u16() == 404 {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(store_error(what, response).await);
    }
    let info: Answer<Value> = read(what, response).await?;
    let size = info.result["config"]["params"]["vectors"]["size"].as_u64();
    Ok(Some(
        size.and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
            VectorError::Store(format!(
                "qdrant: collection {stored} has no single unnamed vector (not made by mt-paas)"
            ))
        })?,
    ))
}

async fn existing(v: &TenantVectors, stored: &str, name: &str) -> Result<usize, VectorError> {
    dimension(v, stored)
        .await?
        .ok_or_else(|| VectorError::NotFound(name.to_owned()))
}

/// The `result` of a successful answer to `request`.
async fn answer<T: serde::de::DeserializeOwned>(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, VectorError> {
    let answer: Answer<T> = read(what, send(what, request).await?).await?;
    Ok(answer.result)
}

/// A record's id, text and metadata from the payload of its point.
fn unpack(payload: Option<Map<String, Value>>) -> (String, Option<String>, Map<String, Value>) {
    let mut payload = payload.unwrap_or_default();
    let id = payload
        .remove("id")
        .and_then(|i| i.as_str().map(str::to_owned))
        .unwrap_or_default();
    let text = payload
        .remove("text")
        .and_then(|t| t.as_str().map(str::to_owned));
    let metadata = match payload.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    (id, text, metadata)
}

async fn create(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    wanted: usize,
) -> Result<(), VectorError> {
    let what = "qdrant: create collection";
    if let Some(existing) = dimension(v, stored).await? {
        return same_dimension(name, existing, wanted);
    }
    let response = v
        .http()
        .put(url(v, &format!("/{stored}")))
        .json(&json!({"vectors": {"size": wanted, "distance": "Cosine"}}))
        .send()
        .await
        .map_err(|e| unreachable_store(what, e))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        // Made meanwhile by another replica: fine if the dimension agrees.
        409 => match dimension(v, stored).await? {
            Some(existing) => same_dimension(name, existing, wanted),
            None => Ok(()),
        },
        _ => Err(store_error(what, response).await),
    }
}

async fn list(v: &TenantVectors) -> Result<Vec<String>, VectorError> {
    #[derive(Deserialize)]
    struct Listed {
        collections: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let listed: Listed = answer("qdrant: list collections", v.http().get(url(v, ""))).await?;
    Ok(listed.collections.into_iter().map(|c| c.name).collect())
}

async fn drop(v: &TenantVectors, stored: &str) -> Result<bool, VectorError> {
    if dimension(v, stored).await?.is_none() {
        return Ok(false);
    }
    send(
        "qdrant: delete collection",
        v.http().delete(url(v, &format!("/{stored}"))),
    )
    .await?;
    Ok(true)
}

async fn upsert(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    records: &[VectorRecord],
) -> Result<(), VectorError> {
    let dimension = existing(v, stored, name).await?;
    for record in records {
        record.check(name, dimension)?;
    }
    let points: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": point_id(&r.id),
                "vector": r.embedding,
                "payload": {"id": r.id, "text": r.text, "metadata": r.metadata},
            })
        })
        .collect();
    send(
        "qdrant: upsert",
        v.http()
            .put(url(v, &format!("/{stored}/points?wait=true")))
            .json(&json!({ "points": points })),
    )
    .await?;
    Ok(())
}

async fn search(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    query: &[f32],
    limit: usize,
) -> Result<Vec<Hit>, VectorError> {
    #[derive(Deserialize)]
    struct Scored {
        score: f32,
        #[serde(default)]
        payload: Option<Map<String, Value>>,
    }
    let dimension = existing(v, stored, name).await?;
    same_dimension(name, dimension, query.len())?;
    let found: Vec<Scored> = answer(
        "qdrant: search",
        v.http()
            .post(url(v, &format!("/{stored}/points/search")))
            .json(&json!({"vector": query, "limit": limit, "with_payload": true})),
    )
    .await?;
    Ok(found
        .into_iter()
        .map(|s| {
            let (id, text, metadata) = unpack(s.payload);
            Hit {
                id,
                score: s.score,
                text,
                metadata,
            }
        })
        .collect())
}

async fn delete(
    v: &TenantVectors,
    stored: &str,
    name: &str,
    ids: &[&str],
) -> Result<(), VectorError> {
    existing(v, stored, name).await?;
    let points: Vec<String> = ids.iter().map(|id| point_id(id)).collect();
    send(
        "qdrant: delete points",
        v.http()
            .post(url(v, &format!("/{stored}/points/delete?wait=true")))
            .json(&json!({ "points": points })),
    )
    .await?;
    Ok(())
}

async fn count(v: &TenantVectors, stored: &str, name: &str) -> Result<u64, VectorError> {
    #[derive(Deserialize)]
    struct Counted {
        count: u64,
    }
    existing(v, stored, name).await?;
    let counted: Counted = answer(
        "qdrant: count",
        v.http()
            .post(url(v, &format!("/{stored}/points/count")))
            .json(&json!({"exact": true})),
    )
    .await?;
    Ok(counted.count)
}

/// The dimension and every record of `stored`, page by page (`points/scroll`).
async fn export(
    v: &TenantVectors,
    stored: &str,
    name: &str,
) -> Result<Option<Exported>, VectorError> {
    #[derive(Deserialize)]
    struct Point {
        #[serde(default)]
        payload: Option<Map<String, Value>>,
        #[serde(default)]
        vector: Option<Vec<f32>>,
    }
    #[derive(Deserialize)]
    struct Scrolled {
        points: Vec<Point>,
        #[serde(default)]
        next_page_offset: Option<Value>,
    }
    let dimension = existing(v, stored, name).await?;
    let mut records = Vec::new();
    let mut offset: Option<Value> = None;
    loop {
        let mut body = json!({"limit": PAGE, "with_payload": true, "with_vector": true});
        if let Some(offset) = offset.take() {
            body["offset"] = offset;
        }
        let page: Scrolled = answer(
            "qdrant: scroll",
            v.http()
                .post(url(v, &format!("/{stored}/points/scroll")))
                .json(&body),
        )
        .await?;
        for point in page.points {
            let (id, text, metadata) = unpack(point.payload);
            records.push(VectorRecord {
                id,
                embedding: point.vector.unwrap_or_default(),
                text,
                metadata,
            });
        }
        match page.next_page_offset {
            Some(next) if !next.is_null() => offset = Some(next),
            _ => return Ok(Some((dimension, records))),
        }
    }
}

/// The `qdrant` backend.
pub(super) struct Qdrant;

/// Qdrant keeps the vectors in a store of its own.
const IN_TENANT_DATABASE: bool = false;

super::backend_of_this_module!(Qdrant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_uuids() {
        let a = point_id("doc-1");
        assert_eq!(a, point_id("doc-1"));
        assert_ne!(a, point_id("doc-2"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "version 8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "RFC variant");
    }
}
