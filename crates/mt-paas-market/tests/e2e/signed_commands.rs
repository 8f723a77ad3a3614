//! Market → service commands: only a fresh, correctly signed message changes anything, also
//! after the service restarts.

use mt_paas_protocol::webhook::{self, WebhookSecret};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{
    SECRET, SERVICE, eventually, register_service, service_config, start_market, start_service,
};

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
    let status = response.status().as_u16();
    crate::market_api::assert_documented("POST", url, status);
    Sent {
        status,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn block_body(sequence: u64, command_id: &str) -> Vec<u8> {
    block_for(SERVICE, "hallym", sequence, command_id)
}

/// A block command whose signed target is `service` / `tenant`.
fn block_for(service: &str, tenant: &str, sequence: u64, command_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "service_id": service,
        "tenant_id": tenant,
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
    let old = serde_json::to_vec(&json!({"service_id": SERVICE, "tenant_id": "hallym", "command_id": "cmd_4", "sequence": 4})).unwrap();
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
    let newer = serde_json::to_vec(&json!({"service_id": SERVICE, "tenant_id": "hallym", "command_id": "cmd_6", "sequence": 6})).unwrap();
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

/// A signature covers the body, not the path: a captured command re-aimed at another tenant's
/// path, at another service sharing the secret, or one naming no target at all (a market on
/// the old protocol) is refused with 403 and changes nothing.
#[tokio::test]
async fn a_signed_command_cannot_be_re_aimed() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = service_config(dir.path(), "http://127.0.0.1:9", "");
    let service = start_service(listener, config, dir.path().to_path_buf()).await;
    let path = |tenant: &str, what: &str| {
        format!(
            "{}/api/v1/services/{SERVICE}/tenants/{tenant}/{what}",
            service.url
        )
    };
    let switch = service.framework.kill_switch();
    let (hallym, korea) = ("hallym".parse().unwrap(), "korea".parse().unwrap());

    let for_hallym = block_for(SERVICE, "hallym", 1, "cmd_h");
    let for_other_service = block_for("keli_tutor", "korea", 1, "cmd_k");
    let untargeted = serde_json::to_vec(&json!({
        "reason": "abuse", "block_at": "2026-01-03T12:00:00Z", "message": "x",
        "command_id": "cmd_old", "sequence": 1,
    }))
    .unwrap();
    let unblock_hallym = serde_json::to_vec(&json!({
        "service_id": SERVICE, "tenant_id": "hallym", "command_id": "cmd_u", "sequence": 9,
    }))
    .unwrap();
    for (what, url, body) in [
        (
            "hallym's block on korea's path",
            path("korea", "block"),
            &for_hallym,
        ),
        (
            "another service's block",
            path("korea", "block"),
            &for_other_service,
        ),
        (
            "a block naming no target",
            path("korea", "block"),
            &untargeted,
        ),
        (
            "hallym's unblock on korea's path",
            path("korea", "unblock"),
            &unblock_hallym,
        ),
    ] {
        let id = format!("msg_{}", what.len());
        let reply = send(&url, &id, now(), body, body, SECRET).await;
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert_eq!(reply.body["code"], "command_target_mismatch", "{what}");
        assert!(switch.state(&korea).await.is_none(), "{what} changed korea");
        assert!(
            switch.state(&hallym).await.is_none(),
            "{what} changed hallym"
        );
    }
    // A deprovision re-aimed the same way removes nothing.
    service
        .framework
        .provisioner()
        .create("korea".parse().unwrap(), "고려대학교", None)
        .await
        .unwrap();
    let deprovision_hallym = serde_json::to_vec(&json!({
        "service_id": SERVICE, "tenant_id": "hallym", "command_id": "cmd_d", "archive": false,
    }))
    .unwrap();
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let headers = webhook::sign(&secret, "msg_del", now(), &deprovision_hallym);
    let reply = reqwest::Client::new()
        .delete(format!(
            "{}/api/v1/services/{SERVICE}/tenants/korea",
            service.url
        ))
        .header(webhook::HEADER_ID, headers.id)
        .header(webhook::HEADER_TIMESTAMP, headers.timestamp)
        .header(webhook::HEADER_SIGNATURE, headers.signature)
        .body(deprovision_hallym)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    assert!(
        service
            .framework
            .tenants()
            .get(&korea)
            .await
            .unwrap()
            .is_some(),
        "korea is still there"
    );
    // The command as signed, on its own path, applies.
    let reply = send(
        &path("hallym", "block"),
        "msg_right",
        now(),
        &for_hallym,
        &for_hallym,
        SECRET,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(switch.state(&hallym).await.is_some());
    service.running.stop().await;
}

/// The pull path checks the same target: a command in this service's heartbeat answers that
/// names another service, or no tenant, is acknowledged `rejected` and not applied.
#[tokio::test]
async fn a_pulled_command_for_another_target_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(
        &format!("sqlite://{}/market.db", dir.path().display()),
        None,
    )
    .await;
    // No base_url: the market cannot push, the service pulls.
    register_service(&market.url, None).await;
    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let mut config = service_config(&service_dir, &market.url, "");
    config.marketplace.heartbeat_interval = 1;
    config.marketplace.subscription_check = false;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = start_service(listener, config, service_dir).await;
    let command = |service_id: &str, tenant_id: &str, id: &str| {
        mt_paas_protocol::Command::Block(mt_paas_protocol::BlockCommand {
            service_id: service_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            reason: "abuse".to_owned(),
            block_at: time::OffsetDateTime::now_utc(),
            grace_period_hours: 0,
            message: "차단".to_owned(),
            command_id: id.to_owned(),
            sequence: 1,
        })
    };
    let store = market.market.store();
    store
        .enqueue(
            SERVICE,
            &command("keli_tutor", "hallym", "cmd_other_service"),
        )
        .await
        .unwrap();
    store
        .enqueue(SERVICE, &command(SERVICE, "Not A Tenant", "cmd_bad_tenant"))
        .await
        .unwrap();
    store
        .enqueue(SERVICE, &command(SERVICE, "korea", "cmd_right"))
        .await
        .unwrap();
    let status = |id: &'static str| async move {
        store
            .command(id)
            .await
            .unwrap()
            .map(|c| c.status)
            .unwrap_or_default()
    };
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            status("cmd_right").await == "applied"
        })
        .await,
        "the command for this service and a tenant applied"
    );
    assert_eq!(status("cmd_other_service").await, "rejected");
    assert_eq!(status("cmd_bad_tenant").await, "rejected");
    let switch = service.framework.kill_switch();
    assert!(switch.state(&"hallym".parse().unwrap()).await.is_none());
    assert!(switch.state(&"korea".parse().unwrap()).await.is_some());
    service.running.stop().await;
    market.running.stop().await;
}

/// The market never follows a redirect with a signed command: a service whose base_url
/// answers 307 to another address gets nothing there.
#[tokio::test]
async fn the_market_does_not_follow_redirects_when_delivering() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let dir = tempfile::tempdir().unwrap();
    let market = start_market(
        &format!("sqlite://{}/market.db", dir.path().display()),
        None,
    )
    .await;
    // Where a redirect would lead: counts what reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}", elsewhere.local_addr().unwrap());
    let counter = reached.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        });
        axum::serve(elsewhere, app).await.unwrap();
    });
    let redirector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_url = format!("http://{}", redirector.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            seen.fetch_add(1, Ordering::SeqCst);
            let to = format!("{elsewhere_url}{uri}");
            async move { axum::response::Redirect::temporary(&to) }
        });
        axum::serve(redirector, app).await.unwrap();
    });
    register_service(&market.url, Some(redirector_url)).await;
    crate::helpers::subscribe(&market.url, "hallym", "basic", false).await;
    let (status, body) = crate::helpers::operator(
        &market.url,
        reqwest::Method::POST,
        &format!("/services/{SERVICE}/tenants/hallym/block"),
        Some(json!({"reason": "abuse", "message": "x"})),
    )
    .await;
    assert!(status < 300, "{body}");
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            hits.load(Ordering::SeqCst) >= 2
        })
        .await,
        "the market pushed to the redirector"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0, "and never followed it");
    market.running.stop().await;
}

/// A flood of signature entries costs a bounded amount of work: refused at once, and every
/// refusal within a minute makes at most one alert per source and reason, not one each.
#[tokio::test]
async fn a_signature_flood_is_refused_cheaply_and_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = service_config(dir.path(), "http://127.0.0.1:9", "");
    let service = start_service(listener, config, dir.path().to_path_buf()).await;
    let url = format!(
        "{}/api/v1/services/{SERVICE}/tenants/hallym/block",
        service.url
    );
    let body = vec![b' '; 60 * 1024];
    let flood = "v1, ".repeat(95_000);
    let client = reqwest::Client::new();
    for i in 0..50 {
        let reply = client
            .post(&url)
            .header(webhook::HEADER_ID, format!("msg_flood_{i}"))
            .header(webhook::HEADER_TIMESTAMP, now().to_string())
            .header(webhook::HEADER_SIGNATURE, &flood)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401);
        let problem: Value = reply.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_signature");
    }
    service.framework.outbox().flush().await;
    let counts = service.framework.outbox().counts(None).await.unwrap();
    assert_eq!(
        counts.pending + counts.delivered + counts.dead,
        1,
        "50 refusals from one source are one alert so far (the rest are counted): {counts:?}"
    );
    service.framework.audit().flush_refusals().await;
    service.framework.outbox().flush().await;
    let items = service.framework.outbox().list(None, 10).await.unwrap();
    assert_eq!(items.len(), 2, "and one summary at the end of the window");
    service.running.stop().await;
}

/// Two replicas on one Postgres central DB: a block received by one applies on the other
/// through LISTEN/NOTIFY (the kill switch has no expiry to wait for: without the notification
/// the other replica would serve the tenant for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_received_by_one_replica_applies_on_the_other() {
    let admin = std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if let Err(e) = sqlx::PgPool::connect(&admin).await {
        panic!(
            "Postgres at {admin} is not reachable ({e}): the suites need it (`bash .ci/test` starts it)"
        );
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
        "service_id": SERVICE, "tenant_id": "hallym",
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
    while sent_at.elapsed() < std::time::Duration::from_secs(10) {
        if whoami(two.url.clone()).await == 403 {
            seen = Some(sent_at.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let seen = seen.expect("the other replica enforced the block within 10 s");
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

/// A provisioning result goes through the outbox: the market down when the tenant is
/// provisioned, the service restarted, the market back — and the result arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_result_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let market_db = format!("sqlite://{}/market.db", dir.path().display());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    // The market queues a provision command, then goes away.
    let market = start_market(&market_db, Some(port)).await;
    register_service(&market.url, None).await;
    crate::helpers::subscribe(&market.url, "hallym", "basic", true).await;
    let queued = market
        .market
        .store()
        .commands(SERVICE, true, 10)
        .await
        .unwrap()
        .remove(0)
        .command;
    let market_url = market.url.clone();
    market.running.stop().await;

    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    let mut config = service_config(&service_dir, &market_url, "");
    config.marketplace.heartbeat_interval = 3600;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = start_service(listener, config.clone(), service_dir.clone()).await;
    let mt_paas_protocol::Command::Provision(provision) = queued else {
        panic!("a provision command: {queued:?}")
    };
    let body = serde_json::to_vec(&provision).unwrap();
    let url = format!("{}/api/v1/services/{SERVICE}/tenants", service.url);
    let reply = send(&url, "msg_provision", now(), &body, &body, SECRET).await;
    assert_eq!(reply.body["status"], "applied", "{}", reply.body);
    let pending = service
        .framework
        .outbox()
        .counts(Some(mt_paas::outbox::Kind::Provisioning))
        .await
        .unwrap();
    assert_eq!(pending.pending, 1, "the result waits in the central DB");
    service.running.stop().await;

    // Restarted, and the market back: the result is delivered, the subscription active.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = start_service(listener, config, service_dir).await;
    let market = start_market(&market_db, Some(port)).await;
    let active = eventually(std::time::Duration::from_secs(30), || async {
        market
            .market
            .store()
            .subscription(SERVICE, "hallym")
            .await
            .unwrap()
            .is_some_and(|s| s.state == mt_paas_protocol::SubscriptionState::Active)
    })
    .await;
    assert!(active, "the result reached the market after the restart");
    service.running.stop().await;
    market.running.stop().await;
}
