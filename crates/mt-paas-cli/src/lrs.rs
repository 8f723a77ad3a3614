//! The dev stack's LRS: a small xAPI statement store on 127.0.0.1, so that what a service logs
//! with `activity.log(..)` is seen at once — one line per statement in the dev terminal, and
//! `GET /xapi/statements` lists them. It follows the xAPI 1.0.3 statement resource as far as
//! mt-paas uses it: `POST /statements` takes one statement or an array and answers the ids;
//! a statement id already stored is not stored twice; `GET /statements` answers
//! `{"statements": [...], "more": ""}`, newest first. Kept in memory, at most [`KEEP`]
//! statements and [`KEEP_BYTES`] of their JSON: it is a window for a developer, not a record.

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
use mt_paas_protocol::xapi::TENANT_EXTENSION;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Statements kept.
const KEEP: usize = 1_000;
/// JSON bytes of the statements kept: a thousand statements at the body limit would
/// otherwise hold a gigabyte.
const KEEP_BYTES: usize = 8 * BODY_LIMIT;
/// The largest body taken.
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Default)]
struct Stored {
    /// Newest first, each with its size as JSON.
    statements: VecDeque<(Value, usize)>,
    bytes: usize,
    ids: HashSet<String>,
}

impl Stored {
    fn push(&mut self, statement: Value) {
        let size = json_size(&statement);
        self.statements.push_front((statement, size));
        self.bytes += size;
        while self.statements.len() > KEEP || self.bytes > KEEP_BYTES {
            let Some((old, old_size)) = self.statements.pop_back() else {
                break;
            };
            self.bytes -= old_size;
            if let Some(old_id) = old["id"].as_str() {
                self.ids.remove(old_id);
            }
        }
    }
}

/// The length of `value` as JSON, without writing it out.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

type Shared = Arc<Mutex<Stored>>;

/// Serves the LRS on `listener` until the process ends; returns its xAPI base URL.
pub(crate) fn spawn(listener: TcpListener) -> std::io::Result<String> {
    let addr: SocketAddr = listener.local_addr()?;
    let app = Router::new()
        .route("/xapi/statements", post(store).get(list))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
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
        kept.push(statement);
    }
    Ok(Json(ids))
}

async fn list(State(stored): State<Shared>) -> Json<Value> {
    let kept = stored.lock().unwrap_or_else(|e| e.into_inner());
    let statements: Vec<&Value> = kept.statements.iter().map(|(s, _)| s).collect();
    Json(json!({ "statements": statements, "more": "" }))
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

    /// The window holds at most KEEP statements and KEEP_BYTES of JSON, dropping the oldest
    /// (whose ids may then be stored again).
    #[test]
    fn the_window_is_bounded_in_count_and_bytes() {
        let mut stored = super::Stored::default();
        for n in 0..super::KEEP + 5 {
            let id = format!("s{n}");
            stored.ids.insert(id.clone());
            stored.push(statement(&id, "hallym"));
        }
        assert_eq!(stored.statements.len(), super::KEEP);
        assert!(!stored.ids.contains("s0") && stored.ids.contains("s5"));
        let big = "x".repeat(super::BODY_LIMIT - 500);
        for n in 0..10 {
            let mut s = statement(&format!("big{n}"), "hallym");
            s["result"] = json!({"response": big});
            stored.push(s);
        }
        assert!(stored.bytes <= super::KEEP_BYTES, "{} bytes", stored.bytes);
        assert_eq!(
            stored.bytes,
            stored.statements.iter().map(|(_, n)| n).sum::<usize>()
        );
        assert_eq!(stored.statements.len(), 8, "the 8 newest large ones fit");
        assert_eq!(stored.statements[0].0["id"], "big9");
    }
}
