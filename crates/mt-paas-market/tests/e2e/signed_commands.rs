//! Market → service commands: only a fresh, correctly signed message changes anything, also
//! after the service restarts.

use mt_paas_protocol::webhook::{self, WebhookSecret};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{SECRET, SERVICE, service_config, start_service};

struct Sent {
    status: u16,
    body: Value,
}

async fn send(
    url: &str,
    id: &str,
    timestamp: i64,
    signed_body: &[u8],
    sent_body: &[u8],
    secret: &str,
) -> Sent {
    let secret: WebhookSecret = secret.parse().unwrap();
    let headers = webhook::sign(&secret, id, timestamp, signed_body);
    let response = reqwest::Client::new()
        .post(url)
        .header(webhook::HEADER_ID, headers.id)
        .header(webhook::HEADER_TIMESTAMP, headers.timestamp)
        .header(webhook::HEADER_SIGNATURE, headers.signature)
        .header("content-type", "application/json")
        .body(sent_body.to_vec())
        .send()
        .await
        .unwrap();
    Sent {
        status: response.status().as_u16(),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn block_body(sequence: u64, command_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "reason": "abuse",
        "block_at": "2026-01-03T12:00:00Z",
        "grace_period_hours": 0,
        "message": "차단되었습니다",
        "command_id": command_id,
        "sequence": sequence,
    }))
    .unwrap()
}

#[tokio::test]
async fn only_fresh_correctly_signed_commands_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // No market is running: commands must work (and be refused) on their own.
    let config = service_config(dir.path(), "http://127.0.0.1:9", "");
    let service = start_service(listener, config.clone(), dir.path().to_path_buf()).await;
    let block_url = format!(
        "{}/api/v1/services/{SERVICE}/tenants/hallym/block",
        service.url
    );
    let tenant = "hallym".parse().unwrap();
    let state = || async { service.framework.kill_switch().state(&tenant).await };

    let valid = block_body(5, "cmd_5");
    let tampered = block_body(6, "cmd_5");
    let other_secret = "whsec_b3RoZXItc2VjcmV0LW9mLWVub3VnaC1sZW5ndGg=";
    let refusals = [
        (
            "tampered body",
            "msg_a",
            now(),
            valid.as_slice(),
            tampered.as_slice(),
            SECRET,
        ),
        (
            "wrong secret",
            "msg_b",
            now(),
            valid.as_slice(),
            valid.as_slice(),
            other_secret,
        ),
        (
            "ten minutes old",
            "msg_c",
            now() - 600,
            valid.as_slice(),
            valid.as_slice(),
            SECRET,
        ),
        (
            "ten minutes ahead",
            "msg_d",
            now() + 600,
            valid.as_slice(),
            valid.as_slice(),
            SECRET,
        ),
    ];
    for (what, id, ts, signed, sent, secret) in refusals {
        let reply = send(&block_url, id, ts, signed, sent, secret).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["code"], "invalid_signature", "{what}");
        assert!(state().await.is_none(), "{what} changed nothing");
    }

    let reply = send(&block_url, "msg_ok", now(), &valid, &valid, SECRET).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "applied");
    assert_eq!(reply.body["command_id"], "cmd_5");
    assert_eq!(state().await.unwrap().sequence, 5);

    let replay = send(&block_url, "msg_ok", now(), &valid, &valid, SECRET).await;
    assert_eq!(replay.status, 401, "a replayed webhook-id: {}", replay.body);

    // An older sequence is acknowledged as superseded; the same command again is applied.
    let unblock_url = format!(
        "{}/api/v1/services/{SERVICE}/tenants/hallym/unblock",
        service.url
    );
    let old = serde_json::to_vec(&json!({"command_id": "cmd_4", "sequence": 4})).unwrap();
    let reply = send(&unblock_url, "msg_old", now(), &old, &old, SECRET).await;
    assert_eq!(reply.body["status"], "superseded");
    assert!(state().await.unwrap().block.is_some(), "still blocked");
    let again = send(&block_url, "msg_again", now(), &valid, &valid, SECRET).await;
    assert_eq!(again.body["status"], "applied");

    // Bad bodies and paths with a valid signature are 4xx, never 500.
    let garbage = b"{not json";
    let reply = send(&block_url, "msg_garbage", now(), garbage, garbage, SECRET).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let bad_path = format!(
        "{}/api/v1/services/{SERVICE}/tenants/..%2Fetc/block",
        service.url
    );
    let other = block_body(9, "cmd_9");
    let reply = send(&bad_path, "msg_path", now(), &other, &other, SECRET).await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // After a restart: the block holds and the replay is still refused.
    service.running.stop().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let restarted = start_service(listener, config, dir.path().to_path_buf()).await;
    let tenant_state = restarted
        .framework
        .kill_switch()
        .state(&tenant)
        .await
        .unwrap();
    assert_eq!(tenant_state.sequence, 5);
    assert!(tenant_state.block.is_some());
    let block_url = format!(
        "{}/api/v1/services/{SERVICE}/tenants/hallym/block",
        restarted.url
    );
    let replay = send(&block_url, "msg_ok", now(), &valid, &valid, SECRET).await;
    assert_eq!(replay.status, 401, "replay after restart: {}", replay.body);
    let unblock_url = format!(
        "{}/api/v1/services/{SERVICE}/tenants/hallym/unblock",
        restarted.url
    );
    let newer = serde_json::to_vec(&json!({"command_id": "cmd_6", "sequence": 6})).unwrap();
    let reply = send(&unblock_url, "msg_new", now(), &newer, &newer, SECRET).await;
    assert_eq!(reply.body["status"], "applied");
    assert!(
        restarted
            .framework
            .kill_switch()
            .state(&tenant)
            .await
            .unwrap()
            .block
            .is_none()
    );
    restarted.running.stop().await;
}

/// Two replicas on one Postgres central DB: a block received by one applies on the other
/// within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_received_by_one_replica_applies_on_the_other() {
    let admin = std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if sqlx::PgPool::connect(&admin).await.is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Postgres is required in CI"
        );
        eprintln!("skipped: Postgres is not reachable");
        return;
    }
    let name = format!("mtp_test_replicas_{}", std::process::id());
    let central = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let start = |dir: std::path::PathBuf| {
        let central = central.clone();
        async move {
            let mut config = service_config(&dir, "http://127.0.0.1:9", "");
            config.database.central.url = mt_paas::config::DatabaseUrl::new(central);
            config.marketplace.subscription_check = false;
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            start_service(listener, config, dir).await
        }
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = start(d1.path().to_path_buf()).await;
    let two = start(d2.path().to_path_buf()).await;
    one.framework
        .provisioner()
        .create("hallym".parse().unwrap(), "한림대학교", None)
        .await
        .unwrap();
    let whoami = |url: String| async move {
        reqwest::Client::new()
            .get(format!("{url}/whoami"))
            .header("x-tenant-id", "hallym")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(whoami(two.url.clone()).await, 200, "the registry is shared");

    let body = serde_json::to_vec(&json!({
        "reason": "abuse", "block_at": "2026-01-03T12:00:00Z", "grace_period_hours": 0,
        "message": "차단되었습니다", "command_id": "cmd_r1", "sequence": 1
    }))
    .unwrap();
    let block_url = format!("{}/api/v1/services/{SERVICE}/tenants/hallym/block", one.url);
    let sent_at = std::time::Instant::now();
    assert_eq!(
        send(&block_url, "msg_r1", now(), &body, &body, SECRET)
            .await
            .status,
        200
    );
    let mut seen = None;
    while sent_at.elapsed() < std::time::Duration::from_secs(1) {
        if whoami(two.url.clone()).await == 403 {
            seen = Some(sent_at.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let seen = seen.expect("the other replica enforced the block within a second");
    eprintln!("block seen by the other replica after {seen:?}");
    one.running.stop().await;
    two.running.stop().await;
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
}
