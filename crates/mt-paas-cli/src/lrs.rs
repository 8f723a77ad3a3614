//! The dev stack's LRS: a small xAPI statement store on 127.0.0.1, so that what a service logs
//! with `activity.log(..)` is seen at once — one line per statement in the dev terminal, and
//! `GET /xapi/statements` lists them. It follows the xAPI 1.0.3 statement resource as far as
//! mt-paas uses it: `POST /statements` takes one statement or an array and answers the ids;
//! a statement id already stored is not stored twice; `GET /statements` answers
//! `{"statements": [...], "more": ""}`, newest first. Kept in memory, at most
//! [`KEEP`] statements: it is a window for a developer, not a record.

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    routing::post,
};
use mt_paas::integrations::activity_log::TENANT_EXTENSION;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Statements kept.
const KEEP: usize = 1_000;

#[derive(Default)]
struct Stored {
    statements: VecDeque<Value>,
    ids: HashSet<String>,
}

type Shared = Arc<Mutex<Stored>>;

/// Serves the LRS on `listener` until the process ends; returns its xAPI base URL.
pub(crate) fn spawn(listener: TcpListener) -> std::io::Result<String> {
    let addr: SocketAddr = listener.local_addr()?;
    let app = Router::new()
        .route("/xapi/statements", post(store).get(list))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(Shared::default());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the dev LRS stopped: {e}");
        }
    });
    Ok(format!("http://{addr}/xapi"))
}

async fn store(
    State(stored): State<Shared>,
    Json(body): Json<Value>,
) -> Result<Json<Vec<String>>, (StatusCode, Json<Value>)> {
    let statements = match body {
        Value::Array(many) => many,
        one @ Value::Object(_) => vec![one],
        _ => return Err(bad("a statement or an array of statements")),
    };
    let mut ids = Vec::with_capacity(statements.len());
    for statement in &statements {
        match statement["id"].as_str() {
            Some(id) if !id.is_empty() => ids.push(id.to_owned()),
            _ => return Err(bad("every statement needs its id")),
        }
    }
    let mut kept = stored.lock().unwrap_or_else(|e| e.into_inner());
    for (id, statement) in ids.iter().zip(statements) {
        if !kept.ids.insert(id.clone()) {
            continue;
        }
        println!("activity    {}", summary(&statement));
        kept.statements.push_front(statement);
        if kept.statements.len() > KEEP
            && let Some(old) = kept.statements.pop_back()
            && let Some(old_id) = old["id"].as_str()
        {
            kept.ids.remove(old_id);
        }
    }
    Ok(Json(ids))
}

async fn list(State(stored): State<Shared>) -> Json<Value> {
    let kept = stored.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({ "statements": kept.statements, "more": "" }))
}

fn bad(what: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": format!("the body must be {what}") })),
    )
}

/// `tenant user verb object result`, from an mt-paas statement.
fn summary(statement: &Value) -> String {
    let tenant = statement["context"]["extensions"][TENANT_EXTENSION]
        .as_str()
        .unwrap_or("?");
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let result = statement["result"]["extensions"]
        .as_object()
        .and_then(|e| e.values().next())
        .map(Value::to_string)
        .unwrap_or_default();
    format!(
        "{tenant}  {}  {}  {}  {result}",
        text(&statement["actor"]["account"]["name"]),
        text(&statement["verb"]["display"]["en-US"]),
        text(&statement["object"]["definition"]["name"]["en-US"]),
    )
}
