//! keli_tutor on mt-paas (DESIGN §2.1): a RAG-style tutor whose tenants each get their
//! own containers (DOCKER_PER_TENANT: the service, Postgres with pgvector, Chroma), their own
//! documents and vector collection, and a premium-only quiz. The handlers hold business logic
//! only; tenant, plan, isolation and activity logging come from the framework.
//!
//! Routes:
//! - `POST /documents` `{"title", "content"}`: split into chunks (`custom.rag.chunk_size`,
//!   `overlap`), stored in the tenant's database and, when `database.vector` is configured,
//!   in the tenant's `documents` collection;
//! - `POST /ask` `{"question"}`: the `custom.rag.top_k` closest chunks of the tenant's
//!   documents and an answer built from them (the LLM call is out of scope: the answer names
//!   `custom.llm.default_model` and quotes the best chunk); logs an xAPI `asked` statement;
//! - `GET /quiz`: a quiz from the tenant's documents, for plans with the `quiz` feature.
//!
//! In production shape (`mt_paas_config.yaml`) the process the market talks to routes each
//! tenant to its own container running this same binary ([`app`]).
//!
//! Without `database.vector` (the embedded defaults: SQLite, no vector store) the chunks'
//! embeddings are searched in the tenant's own database instead, with the same results.

use std::path::PathBuf;

use axum::{
    Json, Router,
    http::StatusCode,
    routing::{get, post},
};
use mt_paas::{
    Activity, ServiceMarketFramework, Tenant, TenantDb,
    http::{ApiError, ProblemCode},
    vectors::{TenantVectors, VectorRecord, VectorStore},
    with_db,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The length of the embeddings (the `documents` collection's dimension).
pub const DIMENSION: usize = 64;

/// The vector collection every tenant gets (`database.vector.collections`).
pub const COLLECTION: &str = "documents";

/// Longest document accepted, in characters.
pub const MAX_CONTENT_CHARS: usize = 200_000;

/// `custom.llm`.
#[derive(Debug, Clone, Deserialize)]
pub struct LlmConfig {
    /// The model answers are attributed to.
    pub default_model: String,
    /// The model used when the default is unavailable.
    pub fallback_model: String,
}

/// `custom.rag`.
#[derive(Debug, Clone, Deserialize)]
pub struct RagConfig {
    /// Characters per chunk.
    pub chunk_size: usize,
    /// Characters shared by neighbouring chunks.
    pub overlap: usize,
    /// Chunks an answer draws on.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    3
}

/// What the handlers need besides the request: the typed `custom` sections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `custom.llm`.
    pub llm: LlmConfig,
    /// `custom.rag`.
    pub rag: RagConfig,
    /// Whether a vector store is configured (else the tenant database is searched).
    pub vector_store: bool,
}

impl Settings {
    /// Reads `custom.llm` and `custom.rag` (a clear error naming the key when they are
    /// missing or malformed) and checks them.
    pub fn from_framework(framework: &ServiceMarketFramework) -> anyhow::Result<Self> {
        let llm: LlmConfig = framework.custom("llm")?;
        let rag: RagConfig = framework.custom("rag")?;
        anyhow::ensure!(
            rag.chunk_size >= 20 && rag.overlap < rag.chunk_size,
            "custom.rag: chunk_size must be at least 20 and overlap smaller than chunk_size"
        );
        anyhow::ensure!(
            (1..=20).contains(&rag.top_k),
            "custom.rag.top_k must be 1-20"
        );
        Ok(Self {
            llm,
            rag,
            vector_store: framework.vectors().is_some(),
        })
    }
}

/// The configuration the service reads: `$MT_PAAS_CONFIG`, else its own.
pub fn config_path() -> PathBuf {
    std::env::var_os("MT_PAAS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/mt_paas_config.yaml"))
        })
}

/// The whole service as it serves: its routes behind the framework's pipeline, or, where
/// each tenant's requests go to its own keli_tutor container (DOCKER_PER_TENANT with
/// `isolation.docker.images.app`), no routes here: the tenant router sends everything, after
/// the whole guard, to the tenant's app, which is this same binary run with
/// `MT_PAAS_TENANT_ID` and serves the routes to that tenant alone.
pub fn app(framework: &ServiceMarketFramework, settings: Settings) -> Router {
    if framework.routes_to_tenant_apps() {
        framework.create_app(Router::new())
    } else {
        framework.create_app(router(settings))
    }
}

/// The service's routes.
pub fn router(settings: Settings) -> Router {
    Router::new()
        .route("/documents", post(add_document))
        .route("/ask", post(ask))
        .route("/quiz", get(quiz))
        .with_state(settings)
}

/// A deterministic local embedding: hashed word unigrams and bigrams, L2-normalised. It
/// stands in for a real embedding model (DESIGN §5.7: the model is the vendor's choice) and is
/// good enough to find the chunk that shares a question's words.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMENSION];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut add = |token: &str, weight: f32| {
        let digest = fnv1a(token);
        let index = usize::try_from(digest % DIMENSION as u64).unwrap_or(0);
        let sign = if digest >> 63 == 0 { 1.0 } else { -1.0 };
        v[index] += sign * weight;
    };
    for w in &words {
        add(w, 1.0);
    }
    for pair in words.windows(2) {
        add(&format!("{} {}", pair[0], pair[1]), 0.5);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// FNV-1a, 64 bits: stable across runs and platforms (unlike `DefaultHasher`).
fn fnv1a(token: &str) -> u64 {
    token.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `content` split into chunks of `size` characters sharing `overlap` characters.
pub fn chunks(content: &str, size: usize, overlap: usize) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    let step = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let end = (start + size).min(chars.len());
        let chunk: String = chars[start..end].iter().collect();
        if !chunk.trim().is_empty() {
            out.push(chunk.trim().to_owned());
        }
        if end == chars.len() {
            break;
        }
        start += step;
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn unprocessable(field: &'static str, message: &'static str) -> ApiError {
    ApiError::new(ProblemCode::UnprocessableEntity)
        .member("field", field)
        .detail(message)
}

#[derive(Debug, Deserialize)]
struct DocumentIn {
    title: String,
    content: String,
}

/// A stored document.
#[derive(Debug, Serialize)]
pub struct DocumentOut {
    /// Its id within the tenant.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// How many chunks it was split into.
    pub chunks: usize,
}

async fn add_document(
    axum::extract::State(settings): axum::extract::State<Settings>,
    tenant: Tenant,
    mut db: TenantDb,
    vectors: Option<TenantVectors>,
    Json(input): Json<DocumentIn>,
) -> Result<(StatusCode, Json<DocumentOut>), ApiError> {
    tenant.require_feature("file_upload")?;
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(unprocessable("title", "a title is 1-200 characters"));
    }
    let content = input.content.trim();
    if content.is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
        return Err(unprocessable("content", "content is 1-200000 characters"));
    }
    let pieces = chunks(content, settings.rag.chunk_size, settings.rag.overlap);
    let embedded: Vec<(String, Vec<f32>)> = pieces
        .into_iter()
        .map(|c| {
            let e = embed(&format!("{title} {c}"));
            (c, e)
        })
        .collect();
    let id: i64 = with_db!(db, conn => {
        async {
            let id: i64 = sqlx::query_scalar("INSERT INTO documents (title) VALUES ($1) RETURNING id")
                .bind(title)
                .fetch_one(&mut *conn)
                .await?;
            for (position, (content, embedding)) in embedded.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO chunks (id, document_id, position, content, embedding) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(format!("{id}-{position}"))
                .bind(id)
                .bind(i32::try_from(position).unwrap_or(i32::MAX))
                .bind(content)
                .bind(serde_json::to_string(embedding).unwrap_or_default())
                .execute(&mut *conn)
                .await?;
            }
            Ok::<i64, sqlx::Error>(id)
        }
        .await
    })
    .map_err(ApiError::database)?;
    if let Some(vectors) = vectors {
        let records: Vec<VectorRecord> = embedded
            .iter()
            .enumerate()
            .map(|(position, (content, embedding))| {
                VectorRecord::new(format!("{id}-{position}"), embedding.clone())
                    .text(content.clone())
                    .meta("document_id", id)
                    .meta("title", title)
            })
            .collect();
        vectors.upsert(COLLECTION, &records).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(DocumentOut {
            id,
            title: title.to_owned(),
            chunks: embedded.len(),
        }),
    ))
}

/// A chunk found for a question.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `{document_id}-{position}`.
    pub chunk: String,
    /// The chunk's text.
    pub content: String,
    /// Cosine similarity to the question.
    pub score: f32,
}

/// The closest chunks of the tenant's documents: from its vector collection, or from its
/// own database when no vector store is configured.
async fn search(
    db: &mut TenantDb,
    vectors: Option<&TenantVectors>,
    query: &[f32],
    top_k: usize,
) -> Result<Vec<Source>, ApiError> {
    if let Some(vectors) = vectors {
        let hits = vectors.search(COLLECTION, query, top_k).await?;
        return Ok(hits
            .into_iter()
            .map(|h| Source {
                chunk: h.id,
                content: h.text.unwrap_or_default(),
                score: h.score,
            })
            .collect());
    }
    let rows: Vec<(String, String, String)> = with_db!(db, conn => {
        sqlx::query_as("SELECT id, content, embedding FROM chunks")
            .fetch_all(conn)
            .await
    })
    .map_err(ApiError::database)?;
    let mut scored: Vec<Source> = rows
        .into_iter()
        .filter_map(|(chunk, content, embedding)| {
            let embedding: Vec<f32> = serde_json::from_str(&embedding).ok()?;
            Some(Source {
                score: cosine(query, &embedding),
                chunk,
                content,
            })
        })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(top_k);
    Ok(scored)
}

#[derive(Debug, Deserialize)]
struct Question {
    question: String,
}

async fn ask(
    axum::extract::State(settings): axum::extract::State<Settings>,
    tenant: Tenant,
    mut db: TenantDb,
    vectors: Option<TenantVectors>,
    activity: Activity,
    Json(input): Json<Question>,
) -> Result<Json<Value>, ApiError> {
    tenant.require_feature("ai_chat")?;
    let question = input.question.trim();
    let length = question.chars().count();
    if length == 0 || length > 2_000 {
        return Err(unprocessable("question", "a question is 1-2000 characters"));
    }
    let sources = search(
        &mut db,
        vectors.as_ref(),
        &embed(question),
        settings.rag.top_k,
    )
    .await?;
    let answer = match sources.first() {
        Some(best) => format!(
            "[{}] {}: {}",
            settings.llm.default_model,
            tenant.name(),
            best.content
        ),
        None => format!(
            "[{}] {}: 아직 올라온 자료가 없습니다. 먼저 문서를 올려 주세요.",
            settings.llm.default_model,
            tenant.name()
        ),
    };
    // An xAPI statement per question (DESIGN §7.2), sent in the background.
    let statement = activity.log(
        "asked",
        "keli_tutor/question",
        json!({ "question_length": length, "sources": sources.len() }),
    );
    Ok(Json(json!({
        "tenant_id": tenant.id(),
        "model": settings.llm.default_model,
        "answer": answer,
        "sources": sources,
        "statement_id": statement,
    })))
}

async fn quiz(tenant: Tenant, mut db: TenantDb) -> Result<Json<Value>, ApiError> {
    // Premium only: 403 with the DESIGN §3.3 message for other plans.
    tenant.require_feature("quiz")?;
    let rows: Vec<(String, String)> = with_db!(db, conn => {
        sqlx::query_as(
            "SELECT d.title, c.content FROM chunks c JOIN documents d ON d.id = c.document_id \
             WHERE c.position = 0 ORDER BY d.id LIMIT 5",
        )
        .fetch_all(conn)
        .await
    })
    .map_err(ApiError::database)?;
    let questions: Vec<Value> = rows
        .into_iter()
        .map(|(title, content)| {
            let first: String = content
                .split_whitespace()
                .take(8)
                .collect::<Vec<_>>()
                .join(" ");
            json!({
                "question": format!("'{title}'에서 다음 문장의 뒤를 이어 보세요: {first} …"),
                "document": title,
            })
        })
        .collect();
    Ok(Json(json!({
        "tenant_id": tenant.id(),
        "title": "오늘의 퀴즈",
        "questions": questions,
    })))
}

/// The vector store, if configured: for the startup log line.
pub fn describe_vectors(store: Option<&VectorStore>) -> String {
    store.map_or_else(
        || "no vector store: documents are searched in each tenant's database".to_owned(),
        |s| format!("vector store: {s:?}"),
    )
}
