//! Per-tenant vector collections against real stores: pgvector in the local Postgres (schema
//! and database per tenant) and a Chroma server (`MT_PAAS_TEST_CHROMA`, default
//! `http://127.0.0.1:8100`, started by `.ci/test`). A tenant can never list, read, write or
//! drop another tenant's collections, also when one tenant id is a prefix of another.

use axum::{Json, Router, extract::Path, routing::get};
use mt_paas::{
    TenantVectors,
    http::ApiError,
    vectors::{VectorError, VectorRecord},
};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, Store, TestApp, TestDb},
    needs::chroma_url,
};

/// A unique collection prefix, so that runs sharing one Chroma server never meet.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}x{}_", std::process::id(), nanos % 1_000_000_000)
}

fn e(x: f32, y: f32, z: f32) -> Vec<f32> {
    vec![x, y, z]
}

async fn app(db: &TestDb, store: Store, vector: &str) -> TestApp {
    let config = db.tenant_config_with(store, 8, vector, "");
    let app = TestApp::new(config, Router::new()).await;
    // Tenant `a_b` has tenant `a`'s id as a prefix: the names must still never meet.
    for (id, name) in [
        ("hallym", "한림대"),
        ("korea", "고려대"),
        ("a", "A"),
        ("a_b", "AB"),
    ] {
        app.framework
            .provisioner()
            .create(id.parse().unwrap(), name, None)
            .await
            .unwrap();
    }
    app
}

/// The same checks on any store: collections are the tenant's own.
async fn tenants_never_meet(app: &TestApp) {
    let store = app
        .framework
        .vectors()
        .expect("a vector store is configured");
    let tenant = |id: &str| {
        let id = id.parse().unwrap();
        let framework = app.framework.clone();
        async move {
            let tenant = framework.tenants().resolve(&id).await.unwrap().unwrap();
            store.for_tenant(&tenant)
        }
    };
    let hallym = tenant("hallym").await;
    let korea = tenant("korea").await;
    let a = tenant("a").await;
    let a_b = tenant("a_b").await;

    // Made on provisioning, for every tenant.
    for v in [&hallym, &korea, &a, &a_b] {
        assert_eq!(v.collections().await.unwrap(), ["documents"], "{v:?}");
    }
    hallym
        .upsert(
            "documents",
            &[
                VectorRecord::new("h1", e(1.0, 0.0, 0.0))
                    .text("한림 강의계획서")
                    .meta("page", 1),
                VectorRecord::new("h2", e(0.0, 1.0, 0.0)).text("hallym notice"),
            ],
        )
        .await
        .unwrap();
    korea
        .upsert(
            "documents",
            &[VectorRecord::new("k1", e(1.0, 0.0, 0.0)).text("고려 secret")],
        )
        .await
        .unwrap();

    let hits = hallym
        .search("documents", &[0.9, 0.1, 0.0], 10)
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h2"], "only hallym's records, best first");
    assert!(hits[0].score > 0.98 && hits[0].score <= 1.0001, "{hits:?}");
    assert_eq!(hits[0].text.as_deref(), Some("한림 강의계획서"));
    assert_eq!(hits[0].metadata["page"], 1);
    assert_eq!(korea.count("documents").await.unwrap(), 1);
    let korea_hits = korea
        .search("documents", &[1.0, 0.0, 0.0], 10)
        .await
        .unwrap();
    assert_eq!(korea_hits.len(), 1);
    assert_eq!(korea_hits[0].id, "k1");

    // `a` cannot reach `a_b`'s collections by naming the rest of their stored name.
    a_b.create_collection("notes", 3).await.unwrap();
    a_b.upsert("notes", &[VectorRecord::new("x", e(0.0, 0.0, 1.0))])
        .await
        .unwrap();
    assert!(matches!(
        a.search("b_notes", &[0.0, 0.0, 1.0], 5).await,
        Err(VectorError::InvalidName { .. })
    ));
    assert!(matches!(
        a.count("notes").await,
        Err(VectorError::NotFound(_))
    ));
    assert_eq!(a.collections().await.unwrap(), ["documents"]);
    assert_eq!(a_b.collections().await.unwrap(), ["documents", "notes"]);
    assert!(!a.drop_collection("notes").await.unwrap());
    assert_eq!(a_b.count("notes").await.unwrap(), 1, "still there");

    // Upsert replaces; delete removes; dimensions are checked.
    hallym
        .upsert(
            "documents",
            &[VectorRecord::new("h2", e(0.0, 0.0, 1.0)).text("moved")],
        )
        .await
        .unwrap();
    assert_eq!(hallym.count("documents").await.unwrap(), 2);
    let moved = hallym
        .search("documents", &[0.0, 0.0, 1.0], 1)
        .await
        .unwrap();
    assert_eq!(moved[0].id, "h2");
    assert_eq!(moved[0].text.as_deref(), Some("moved"));
    hallym.delete("documents", &["h2"]).await.unwrap();
    assert_eq!(hallym.count("documents").await.unwrap(), 1);
    assert!(matches!(
        hallym
            .upsert("documents", &[VectorRecord::new("bad", vec![1.0, 2.0])])
            .await,
        Err(VectorError::Dimension {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        hallym.search("documents", &[1.0], 3).await,
        Err(VectorError::Dimension { .. })
    ));
    assert!(matches!(
        hallym.create_collection("documents", 4).await,
        Err(VectorError::Dimension { .. })
    ));
    hallym.create_collection("documents", 3).await.unwrap();

    assert!(a_b.drop_collection("notes").await.unwrap());
    assert_eq!(a_b.collections().await.unwrap(), ["documents"]);

    // Leave a shared store as it was found.
    for v in [&hallym, &korea, &a, &a_b] {
        for name in v.collections().await.unwrap() {
            assert!(v.drop_collection(&name).await.unwrap());
        }
        assert!(v.collections().await.unwrap().is_empty());
    }
}

/// Handlers see only their tenant's collections: the extractor scopes them.
async fn search_route(
    vectors: TenantVectors,
    Path(collection): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hits = vectors.search(&collection, &[1.0, 0.0, 0.0], 10).await?;
    Ok(Json(json!({
        "tenant": vectors.tenant_id(),
        "ids": hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
    })))
}

async fn collections_route(vectors: TenantVectors) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(vectors.collections().await?))
}

async fn over_http(db: &TestDb, store: Store, vector: &str) {
    let config = db.tenant_config_with(store, 8, vector, "");
    let routes = Router::new()
        .route("/search/{collection}", get(search_route))
        .route("/collections", get(collections_route));
    let app = TestApp::new(config, routes).await;
    for id in ["snu", "kaist"] {
        app.framework
            .provisioner()
            .create(id.parse().unwrap(), id, None)
            .await
            .unwrap();
    }
    let snu = app
        .framework
        .tenants()
        .resolve(&"snu".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    app.framework
        .vectors()
        .unwrap()
        .for_tenant(&snu)
        .upsert("documents", &[VectorRecord::new("s1", e(1.0, 0.0, 0.0))])
        .await
        .unwrap();

    let answer = app
        .get("/search/documents", &[("x-tenant-id", b"snu")])
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["ids"], json!(["s1"]));
    let answer = app
        .get("/search/documents", &[("x-tenant-id", b"kaist")])
        .await;
    assert_eq!(answer.body["ids"], json!([]), "kaist sees none of snu's");
    app.get("/search/b_documents", &[("x-tenant-id", b"kaist")])
        .await
        .assert_problem(422, "unprocessable_entity");
    app.get("/search/nothing", &[("x-tenant-id", b"kaist")])
        .await
        .assert_problem(404, "not_found");
    let listed = app.get("/collections", &[("x-tenant-id", b"kaist")]).await;
    assert_eq!(listed.body, json!(["documents"]));

    // Destroy drops the tenant's collections (after its archive); the others stay.
    let archive = app
        .framework
        .provisioner()
        .destroy(&"snu".parse().unwrap(), true)
        .await
        .unwrap()
        .unwrap();
    let kaist = app
        .framework
        .tenants()
        .resolve(&"kaist".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let store = app.framework.vectors().unwrap();
    assert_eq!(
        store.for_tenant(&kaist).collections().await.unwrap(),
        ["documents"]
    );
    let snu_again = store.for_tenant(&snu);
    assert!(
        snu_again.collections().await.map_or(true, |c| c.is_empty()),
        "snu's collections are gone"
    );
    // A store of its own gets its collections archived beside the database's archive
    // (pgvector's tables are inside it); a restore brings the records back.
    let beside = format!("{}.vectors.json", archive.display());
    assert_eq!(
        std::path::Path::new(&beside).is_file(),
        !vector.contains("pgvector"),
        "{beside}"
    );
    app.framework
        .provisioner()
        .restore(&"snu".parse().unwrap(), &archive)
        .await
        .unwrap();
    let answer = app
        .get("/search/documents", &[("x-tenant-id", b"snu")])
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["ids"], json!(["s1"]), "restored");
    app.framework
        .provisioner()
        .destroy(&"snu".parse().unwrap(), false)
        .await
        .unwrap();
    app.framework
        .provisioner()
        .destroy(&"kaist".parse().unwrap(), false)
        .await
        .unwrap();
    assert!(
        store
            .for_tenant(&kaist)
            .collections()
            .await
            .map_or(true, |c| c.is_empty())
    );
}

pub async fn pgvector_in_tenant_schemas() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let vector = "  vector:\n    type: pgvector\n    collections:\n      - name: documents\n        dimension: 3\n";
    let app = app(&db, Store::PgSchemas, vector).await;
    tenants_never_meet(&app).await;
    drop(app);
    db.cleanup().await;
}

pub async fn pgvector_in_tenant_databases() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let vector = "  vector:\n    type: pgvector\n    collections:\n      - name: documents\n        dimension: 3\n";
    let app = app(&db, Store::PgDatabases, vector).await;
    tenants_never_meet(&app).await;
    drop(app);
    over_http(&db, Store::PgDatabases, vector).await;
    db.cleanup().await;
}

pub async fn chroma_collections_per_tenant() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let vector = format!(
        "  vector:\n    type: chroma\n    url: \"{}\"\n    collection_prefix: \"{}\"\n    collections:\n      - name: documents\n        dimension: 3\n",
        chroma_url(),
        unique_prefix()
    );
    let app = app(&db, Store::SqliteFiles, &vector).await;
    tenants_never_meet(&app).await;
    drop(app);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    over_http(&db, Store::SqliteFiles, &vector).await;
}

pub async fn the_vector_store_is_checked_when_the_config_loads() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let path = db.write_config("");
    let base = std::fs::read_to_string(&path).unwrap();
    let cases = [
        (
            "  vector:\n    type: milvus\n    url: \"http://127.0.0.1:19530\"\n",
            "database.vector.type",
            "not supported",
        ),
        (
            "  vector:\n    type: chroma\n    url: \"localhost:8000\"\n",
            "database.vector.url",
            "http(s)",
        ),
        (
            "  vector:\n    type: pgvector\n",
            "database.vector.type",
            "SQLite",
        ),
        (
            "  vector:\n    type: qdrant\n    url: \"http://q:6333\"\n    collections:\n      - name: my_docs\n        dimension: 3\n",
            "database.vector.collections[0].name",
            "'_'",
        ),
        (
            "  vector:\n    type: qdrant\n    url: \"http://q:6333\"\n    collections:\n      - name: docs\n        dimension: 0\n",
            "database.vector.collections[0].dimension",
            "1-16000",
        ),
        (
            "  vector:\n    type: qdrant\n    url: \"http://127.0.0.1:{vector_port}\"\n",
            "database.vector.url",
            "DOCKER_PER_TENANT",
        ),
    ];
    for (yaml, key, words) in cases {
        // The vector section goes inside the `database:` mapping of the base file.
        let text = base.replacen("database:\n", &format!("database:\n{yaml}"), 1);
        std::fs::write(&path, text).unwrap();
        let err = mt_paas::config::ConfigLoader::new(&path)
            .vars(|_| None)
            .load()
            .unwrap_err();
        let problem = err
            .problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem at {key}: {err}"));
        assert!(
            problem.message.contains(words),
            "{key}: {}",
            problem.message
        );
    }
}

/// A Qdrant stand-in for the HTTP API mt-paas uses, after Qdrant's documented semantics
/// (api.qdrant.tech): `{"result", "status", "time"}` envelopes; 404 for a missing collection;
/// 409 for creating one that exists; point ids must be unsigned integers or UUIDs (400
/// otherwise); vectors of the wrong size are a 400; Cosine scores are similarities. We do not
/// ship Qdrant and it does not install here from the registries this machine reaches.
mod fake_qdrant {
    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
    };

    use axum::{
        Json, Router,
        extract::{Path, State},
        http::StatusCode,
        response::{IntoResponse, Response},
        routing::{get, post, put},
    };
    use serde_json::{Value, json};

    #[derive(Default)]
    struct Collection {
        size: usize,
        points: BTreeMap<String, (Vec<f32>, Value)>,
    }

    type Db = Arc<Mutex<BTreeMap<String, Collection>>>;

    fn ok(result: Value) -> Response {
        Json(json!({"result": result, "status": "ok", "time": 0.0001})).into_response()
    }

    fn error(status: StatusCode, message: String) -> Response {
        (
            status,
            Json(json!({"status": {"error": message}, "time": 0.0001})),
        )
            .into_response()
    }

    fn missing(name: &str) -> Response {
        error(
            StatusCode::NOT_FOUND,
            format!("Not found: Collection `{name}` doesn't exist!"),
        )
    }

    fn valid_point_id(id: &Value) -> bool {
        id.as_u64().is_some()
            || id.as_str().is_some_and(|s| {
                s.len() == 36
                    && s.char_indices().all(|(i, c)| {
                        if [8, 13, 18, 23].contains(&i) {
                            c == '-'
                        } else {
                            c.is_ascii_hexdigit()
                        }
                    })
            })
    }

    fn vector(value: &Value) -> Vec<f32> {
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_f64)
                    .map(|v| v as f32)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    async fn list(State(db): State<Db>) -> Response {
        let names: Vec<Value> = db
            .lock()
            .unwrap()
            .keys()
            .map(|n| json!({ "name": n }))
            .collect();
        ok(json!({ "collections": names }))
    }

    async fn info(State(db): State<Db>, Path(name): Path<String>) -> Response {
        match db.lock().unwrap().get(&name) {
            Some(c) => ok(json!({
                "status": "green",
                "points_count": c.points.len(),
                "config": {"params": {"vectors": {"size": c.size, "distance": "Cosine"}}},
            })),
            None => missing(&name),
        }
    }

    async fn create(
        State(db): State<Db>,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let mut db = db.lock().unwrap();
        if db.contains_key(&name) {
            return error(
                StatusCode::CONFLICT,
                format!("Wrong input: Collection `{name}` already exists!"),
            );
        }
        let Some(size) = body["vectors"]["size"].as_u64() else {
            return error(StatusCode::BAD_REQUEST, "vectors.size is required".into());
        };
        db.insert(
            name,
            Collection {
                size: usize::try_from(size).unwrap(),
                ..Collection::default()
            },
        );
        ok(json!(true))
    }

    async fn remove(State(db): State<Db>, Path(name): Path<String>) -> Response {
        ok(json!(db.lock().unwrap().remove(&name).is_some()))
    }

    async fn upsert(
        State(db): State<Db>,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let mut db = db.lock().unwrap();
        let Some(c) = db.get_mut(&name) else {
            return missing(&name);
        };
        let points = body["points"].as_array().cloned().unwrap_or_default();
        for p in &points {
            if !valid_point_id(&p["id"]) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Format error in JSON body: value {} is not a valid point ID, valid values are either an unsigned integer or a UUID",
                        p["id"]
                    ),
                );
            }
            let v = vector(&p["vector"]);
            if v.len() != c.size {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Wrong input: Vector dimension error: expected dim: {}, got {}",
                        c.size,
                        v.len()
                    ),
                );
            }
        }
        for p in points {
            c.points.insert(
                p["id"].to_string(),
                (vector(&p["vector"]), p["payload"].clone()),
            );
        }
        ok(json!({"operation_id": 1, "status": "completed"}))
    }

    async fn search(
        State(db): State<Db>,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let db = db.lock().unwrap();
        let Some(c) = db.get(&name) else {
            return missing(&name);
        };
        let query = vector(&body["vector"]);
        if query.len() != c.size {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Wrong input: Vector dimension error: expected dim: {}, got {}",
                    c.size,
                    query.len()
                ),
            );
        }
        let mut scored: Vec<(f32, &String, &Value)> = c
            .points
            .iter()
            .map(|(id, (v, payload))| (cosine(&query, v), id, payload))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let limit = usize::try_from(body["limit"].as_u64().unwrap_or(10)).unwrap();
        let with_payload = body["with_payload"].as_bool().unwrap_or(false);
        let result: Vec<Value> = scored
            .into_iter()
            .take(limit)
            .map(|(score, id, payload)| {
                let id: Value = serde_json::from_str(id).unwrap();
                json!({"id": id, "version": 1, "score": score, "payload": if with_payload { payload.clone() } else { Value::Null }})
            })
            .collect();
        ok(json!(result))
    }

    async fn delete(
        State(db): State<Db>,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let mut db = db.lock().unwrap();
        let Some(c) = db.get_mut(&name) else {
            return missing(&name);
        };
        for id in body["points"].as_array().cloned().unwrap_or_default() {
            c.points.remove(&id.to_string());
        }
        ok(json!({"operation_id": 2, "status": "completed"}))
    }

    async fn scroll(
        State(db): State<Db>,
        Path(name): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let db = db.lock().unwrap();
        let Some(c) = db.get(&name) else {
            return missing(&name);
        };
        let limit = usize::try_from(body["limit"].as_u64().unwrap_or(10)).unwrap();
        let from = body.get("offset").map(Value::to_string);
        let mut points = c
            .points
            .iter()
            .filter(|(id, _)| from.as_ref().is_none_or(|from| *id >= from));
        let page: Vec<Value> = points
            .by_ref()
            .take(limit)
            .map(|(id, (v, payload))| {
                let id: Value = serde_json::from_str(id).unwrap();
                json!({"id": id, "payload": payload, "vector": v})
            })
            .collect();
        let next = points
            .next()
            .map_or(Value::Null, |(id, _)| serde_json::from_str(id).unwrap());
        ok(json!({"points": page, "next_page_offset": next}))
    }

    async fn count(State(db): State<Db>, Path(name): Path<String>) -> Response {
        match db.lock().unwrap().get(&name) {
            Some(c) => ok(json!({ "count": c.points.len() })),
            None => missing(&name),
        }
    }

    /// Serves the stand-in on a random port; returns its URL.
    pub async fn start() -> String {
        let db: Db = Arc::default();
        let app = Router::new()
            .route("/collections", get(list))
            .route("/collections/{name}", get(info).put(create).delete(remove))
            .route("/collections/{name}/points", put(upsert))
            .route("/collections/{name}/points/search", post(search))
            .route("/collections/{name}/points/delete", post(delete))
            .route("/collections/{name}/points/count", post(count))
            .route("/collections/{name}/points/scroll", post(scroll))
            .with_state(db);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

pub async fn qdrant_collections_per_tenant() {
    let url = fake_qdrant::start().await;
    let vector = format!(
        "  vector:\n    type: qdrant\n    url: \"{url}\"\n    collections:\n      - name: documents\n        dimension: 3\n"
    );
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = app(&db, Store::SqliteFiles, &vector).await;
    tenants_never_meet(&app).await;
    drop(app);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    over_http(&db, Store::SqliteFiles, &vector).await;
}
