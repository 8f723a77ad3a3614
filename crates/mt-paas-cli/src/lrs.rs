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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    fn statement(id: &str, tenant: &str) -> Value {
        json!({
            "id": id,
            "actor": {"objectType": "Agent", "account": {"homePage": format!("https://m/tenants/{tenant}"), "name": "alice"}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/asked", "display": {"en-US": "asked"}},
            "object": {"objectType": "Activity", "id": "https://x/ai_tutor", "definition": {"name": {"en-US": "ai_tutor"}}},
            "context": {"extensions": {super::TENANT_EXTENSION: tenant}},
        })
    }

    /// What mt-paas's LRS client sends is stored once per id and listed newest first; a body
    /// that is not a statement is a 400.
    #[tokio::test]
    async fn statements_are_stored_once_and_listed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = super::spawn(listener).unwrap();
        let client = reqwest::Client::new();
        let post = |body: Value| {
            client
                .post(format!("{base}/statements"))
                .header("X-Experience-API-Version", "1.0.3")
                .json(&body)
                .send()
        };
        let answer = post(json!([statement("s1", "hallym"), statement("s2", "korea")]))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.json::<Vec<String>>().await.unwrap(), ["s1", "s2"]);
        // A resend (the outbox retries) is not stored twice; one statement alone is taken too.
        assert_eq!(post(statement("s1", "hallym")).await.unwrap().status(), 200);
        assert_eq!(post(json!("nope")).await.unwrap().status(), 400);
        assert_eq!(post(json!([{"verb": {}}])).await.unwrap().status(), 400);
        let listed: Value = client
            .get(format!("{base}/statements"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = listed["statements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["s2", "s1"]);
        assert_eq!(
            super::summary(&statement("s3", "snu")),
            "snu  alice  asked  ai_tutor  "
        );
    }
}
