//! The whole loop: provisioning, subscription changes, blocks and outages, as a tenant's
//! requests see them.

use std::time::{Duration, Instant};

use mt_paas::TenantStatus;
use serde_json::json;

use crate::helpers::{SERVICE, as_tenant, eventually, operator, stack, start_market, subscribe};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_provisioned_through_the_market_is_served() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    let (status, _, _) = as_tenant(&url, "hallym", "/whoami").await;
    assert_eq!(status, 404, "not provisioned yet");

    subscribe(&stack.market.url, "hallym", "premium", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "hallym", "/whoami").await.0 == 200
        })
        .await,
        "the service never served hallym"
    );
    let (_, body, _) = as_tenant(&url, "hallym", "/whoami").await;
    assert_eq!(body["plan"], "premium");
    assert_eq!(body["quiz"], true, "features come from the plan");
    assert_eq!(body["name"], "hallym 대학교");

    let record = stack
        .service
        .framework
        .tenants()
        .get(&"hallym".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, TenantStatus::Active);
    // The market agrees: the subscription is active and the command acknowledged.
    assert!(
        eventually(WAIT, || async {
            let (_, view) = operator(
                &stack.market.url,
                reqwest::Method::GET,
                &format!("/services/{SERVICE}/tenants/hallym"),
                None,
            )
            .await;
            view["subscription"]["state"] == "active"
        })
        .await
    );
    let (_, commands) = operator(
        &stack.market.url,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/commands"),
        None,
    )
    .await;
    assert_eq!(commands[0]["command"]["kind"], "provision");
    assert_eq!(commands[0]["status"], "applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_in_the_market_refuses_requests_after_the_hint() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    subscribe(&stack.market.url, "korea", "basic", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.0 == 200
        })
        .await
    );
    let (_, body, _) = as_tenant(&url, "korea", "/whoami").await;
    assert_eq!(body["quiz"], false);

    let path = format!("/services/{SERVICE}/tenants/korea");
    let (status, _) = operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/suspend"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || async {
            let (status, body, _) = as_tenant(&url, "korea", "/whoami").await;
            status == 403 && body["code"] == "subscription_suspended"
        })
        .await,
        "suspension not seen"
    );
    eprintln!("suspension seen after {:?}", started.elapsed());

    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/reinstate"),
        None,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.0 == 200
        })
        .await
    );

    // A plan change reaches the features the same way.
    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/plan"),
        Some(json!({"plan_id": "premium"})),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.1["quiz"] == true
        })
        .await
    );

    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/cancel"),
        None,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.1["code"] == "subscription_cancelled"
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_outage_keeps_cached_tenants_served_and_converges_after() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    subscribe(&stack.market.url, "hallym", "premium", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "hallym", "/whoami").await.0 == 200
        })
        .await
    );
    // A tenant the service knows but whose entitlement it never fetched.
    stack
        .service
        .framework
        .provisioner()
        .create("late".parse().unwrap(), "Late", None)
        .await
        .unwrap();

    let market_addr = stack.market.running.addr;
    let db_url = stack.market.db_url.clone();
    stack.market.running.stop().await;

    for _ in 0..5 {
        let (status, body, _) = as_tenant(&url, "hallym", "/whoami").await;
        assert_eq!(
            status, 200,
            "a cached tenant is served during the outage: {body}"
        );
    }
    let started = Instant::now();
    let (status, body, headers) = as_tenant(&url, "late", "/whoami").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "market_unavailable");
    assert_eq!(headers["retry-after"], "5");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the client timeout, not a hang: {:?}",
        started.elapsed()
    );

    // The market comes back on the same address; the tenant is subscribed; all converges.
    let market = start_market(&db_url, Some(market_addr.port())).await;
    subscribe(&market.url, "late", "basic", false).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "late", "/whoami").await.0 == 200
        })
        .await,
        "the late tenant is served once the market answers"
    );
    assert_eq!(as_tenant(&url, "hallym", "/whoami").await.0, 200);
    market.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_apply_when_due_and_unblock_lifts_them() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    subscribe(&stack.market.url, "snu", "basic", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "snu", "/whoami").await.0 == 200
        })
        .await
    );
    let path = format!("/services/{SERVICE}/tenants/snu");
    let message = "구독이 만료되었습니다. 갱신해주세요.";

    let rfc3339 = &time::format_description::well_known::Rfc3339;

    // A block an hour ahead: served with a notice until then. (When the notice turns into a
    // refusal is `kill_switch::tests::access_over_time`, on a clock of its own; here only
    // delivery is awaited, so a loaded machine cannot make the notice come too late to see.)
    let block_at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (status, _) = operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/block"),
        Some(json!({"reason": "subscription_expired", "message": message, "block_at": block_at.format(rfc3339).unwrap()})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        eventually(WAIT, || async {
            let (status, _, headers) = as_tenant(&url, "snu", "/whoami").await;
            status == 200
                && headers
                    .get("mt-paas-notice-until")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| time::OffsetDateTime::parse(v, rfc3339).ok())
                    .is_some_and(|until| until.unix_timestamp() == block_at.unix_timestamp())
        })
        .await,
        "a scheduled block is announced with its time"
    );
    // A block without `block_at` (due now) supersedes it and refuses with the market's message.
    let (status, _) = operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/block"),
        Some(json!({"reason": "subscription_expired", "message": message})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        eventually(WAIT, || async {
            let (status, body, _) = as_tenant(&url, "snu", "/whoami").await;
            status == 403 && body["code"] == "tenant_blocked" && body["detail"] == message
        })
        .await,
        "a due block applies with the market's message"
    );
    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/unblock"),
        None,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "snu", "/whoami").await.0 == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioning_through_the_market_archives_the_tenant() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    subscribe(&stack.market.url, "hallym", "basic", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "hallym", "/whoami").await.0 == 200
        })
        .await
    );
    let (status, _) = operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("/services/{SERVICE}/tenants/hallym/deprovision"),
        Some(json!({"archive": true})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "hallym", "/whoami").await.0 == 410
        })
        .await
    );
    assert!(
        eventually(WAIT, || async {
            let (_, view) = operator(
                &stack.market.url,
                reqwest::Method::GET,
                &format!("/services/{SERVICE}/tenants/hallym"),
                None,
            )
            .await;
            view["subscription"]["state"] == "cancelled"
        })
        .await,
        "the market and the registry agree"
    );
    let archives: Vec<_> = std::fs::read_dir(stack.service.dir.join("archive"))
        .unwrap()
        .collect();
    assert_eq!(archives.len(), 2, "the archive and its manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_subscription_has_its_grace_then_is_refused() {
    let stack = stack().await;
    let url = stack.service.url.clone();
    subscribe(&stack.market.url, "korea", "basic", true).await;
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "korea", "/whoami").await.0 == 200
        })
        .await
    );
    let path = format!("/services/{SERVICE}/tenants/korea/expiry");
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();

    // Expired an hour ago: within the 24 h grace, served with a notice.
    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &path,
        Some(json!({"expires_at": rfc(now - time::Duration::hours(1))})),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            let (status, _, headers) = as_tenant(&url, "korea", "/whoami").await;
            status == 200 && headers.contains_key("mt-paas-notice")
        })
        .await,
        "the grace period is announced"
    );
    let (_, _, headers) = as_tenant(&url, "korea", "/whoami").await;
    let until = time::OffsetDateTime::parse(
        headers["mt-paas-notice-until"].to_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (until - (now + time::Duration::hours(23))).abs() < time::Duration::minutes(1),
        "grace ends 24 h after expiry"
    );

    // Expired 25 hours ago: beyond the grace.
    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &path,
        Some(json!({"expires_at": rfc(now - time::Duration::hours(25))})),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            let (status, body, _) = as_tenant(&url, "korea", "/whoami").await;
            status == 403 && body["code"] == "subscription_expired"
        })
        .await
    );
    // Renewed: served again, no notice.
    operator(
        &stack.market.url,
        reqwest::Method::POST,
        &path,
        Some(json!({"expires_at": rfc(now + time::Duration::days(30))})),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            let (status, _, headers) = as_tenant(&url, "korea", "/whoami").await;
            status == 200 && !headers.contains_key("mt-paas-notice")
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_usage_reach_the_market_and_outlive_its_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (market, listener, service_dir) = market_with_hallym(dir.path()).await;
    let config = crate::helpers::service_config(&service_dir, &market.url, "");
    let mut config = config;
    config.marketplace.heartbeat_interval = 1;
    let service = crate::helpers::start_service(listener, config, service_dir).await;
    let url = service.url.clone();
    assert!(
        eventually(WAIT, || async {
            as_tenant(&url, "hallym", "/whoami").await.0 == 200
        })
        .await
    );
    for _ in 0..9 {
        assert_eq!(as_tenant(&url, "hallym", "/whoami").await.0, 200);
    }

    // Heartbeats arrive with this replica's id and an increasing seq.
    let instances = || async {
        operator(
            &market.url,
            reqwest::Method::GET,
            &format!("/services/{SERVICE}/instances"),
            None,
        )
        .await
        .1
    };
    assert!(
        eventually(WAIT, || async {
            instances().await.as_array().is_some_and(|a| !a.is_empty())
        })
        .await
    );
    let first = instances().await;
    assert_eq!(first[0]["instance_id"], service.framework.instance_id());
    assert!(
        eventually(WAIT, || async {
            let now = instances().await;
            now[0]["heartbeat"]["active_tenants"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("hallym")))
                || now[0]["seq"].as_i64() > first[0]["seq"].as_i64()
        })
        .await
    );

    // Usage: reported once, resent, counted once.
    let reporter = service.framework.usage();
    let period = reporter.period_start(time::OffsetDateTime::now_utc());
    assert!(reporter.report(period).await >= 3);
    service.framework.outbox().flush().await;
    let total = || async {
        let (_, totals) = operator(
            &market.url,
            reqwest::Method::GET,
            &format!("/services/{SERVICE}/usage?tenant_id=hallym"),
            None,
        )
        .await;
        totals
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["dimension"] == "requests")
            .map(|t| t["quantity"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert!(
        eventually(WAIT, || async { total().await >= 10 }).await,
        "usage delivered"
    );
    let counted = total().await;
    // The same period again (a redelivery of the same keys) changes nothing.
    let outbox = service.framework.outbox();
    assert_eq!(
        outbox
            .counts(Some(mt_paas::outbox::Kind::Usage))
            .await
            .unwrap()
            .pending,
        0
    );
    assert_eq!(outbox.retry(None).await.unwrap(), 0);

    // The market goes away: requests are not slowed, heartbeats fail quietly...
    let market_port = market.running.addr.port();
    let market_db = market.db_url.clone();
    market.running.stop().await;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(as_tenant(&url, "hallym", "/whoami").await.0, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited on the market: {:?}",
            started.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ... and resume by themselves when it is back.
    let market = start_market(&market_db, Some(market_port)).await;
    let before = instances_seq(&market.url).await;
    assert!(
        eventually(WAIT, || async { instances_seq(&market.url).await > before }).await,
        "heartbeats resumed"
    );
    assert_eq!(
        total_of(&market.url).await,
        counted,
        "nothing counted twice"
    );
    market.running.stop().await;
}

/// A market on a SQLite file in `dir`, the test service registered at a port reserved for
/// it, and hallym subscribed to premium: the market, that port's listener, the service's dir.
async fn market_with_hallym(
    dir: &std::path::Path,
) -> (
    crate::helpers::TestMarket,
    tokio::net::TcpListener,
    std::path::PathBuf,
) {
    let market_db = format!("sqlite://{}/market.db", dir.display());
    let market = start_market(&market_db, None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    crate::helpers::register_service(
        &market.url,
        Some(format!("http://{}", listener.local_addr().unwrap())),
    )
    .await;
    subscribe(&market.url, "hallym", "premium", true).await;
    let service_dir = dir.join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
    (market, listener, service_dir)
}

async fn instances_seq(market_url: &str) -> i64 {
    let (_, instances) = operator(
        market_url,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/instances"),
        None,
    )
    .await;
    instances[0]["seq"].as_i64().unwrap_or(0)
}

async fn total_of(market_url: &str) -> i64 {
    let (_, totals) = operator(
        market_url,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/usage?tenant_id=hallym"),
        None,
    )
    .await;
    totals
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["dimension"] == "requests")
        .map(|t| t["quantity"].as_i64().unwrap())
        .sum()
}

/// Stopping a service with work queued: the requests are answered, then the partial usage
/// period, the audit window's summary and what the outbox holds reach the market, and what
/// cannot be delivered (no LRS answers) stays queued in the central DB for the next start —
/// nothing is lost, and nothing is written to a pool already closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_delivers_queued_work_or_keeps_it_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (market, listener, service_dir) = market_with_hallym(dir.path()).await;
    // An LRS nobody answers: statements can only wait.
    let extra =
        "logging:\n  activity_log:\n    enabled: true\n    endpoint: \"http://127.0.0.1:9/xapi\"\n";
    let config = crate::helpers::service_config(&service_dir, &market.url, extra);
    let service =
        crate::helpers::start_service(listener, config.clone(), service_dir.clone()).await;
    let url = service.url.clone();
    let served = std::sync::atomic::AtomicI64::new(0);
    assert!(
        eventually(WAIT, || async {
            let ok = as_tenant(&url, "hallym", "/whoami").await.0 == 200;
            if ok {
                served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            ok
        })
        .await
    );
    for _ in 0..6 {
        assert_eq!(as_tenant(&url, "hallym", "/whoami").await.0, 200);
        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let framework = service.framework.clone();
    // Three refusals in one window: the first is an alert now, the other two one summary at
    // the window's end — which the shutdown must not wait a minute for, nor drop.
    for _ in 0..3 {
        framework
            .audit()
            .refused(
                mt_paas::control::SIGNATURE_FAILURE,
                mt_paas_protocol::Severity::Medium,
                "203.0.113.7",
                || json!({"reason": "test"}),
            )
            .await;
    }
    let hallym: mt_paas::TenantId = "hallym".parse().unwrap();
    assert!(
        framework
            .activity_log()
            .log(&hallym, Some("alice"), "asked", "ai_tutor", json!({"n": 1}))
            .is_some()
    );
    service.running.stop().await;

    let served = served.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        total_of(&market.url).await,
        served,
        "the partial period's usage"
    );
    let (_, alerts) = operator(
        &market.url,
        reqwest::Method::GET,
        &format!("/alerts?service_id={SERVICE}"),
        None,
    )
    .await;
    let refusals: Vec<&serde_json::Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alert_type"] == mt_paas::control::SIGNATURE_FAILURE)
        .collect();
    assert_eq!(refusals.len(), 2, "the first and the summary: {alerts}");

    // The statement is still queued for the next start.
    drop(framework);
    let again = mt_paas::ServiceMarketFramework::from_config(config)
        .await
        .unwrap();
    let counts = again
        .outbox()
        .counts(Some(mt_paas::outbox::Kind::Activity))
        .await
        .unwrap();
    assert_eq!((counts.pending, counts.dead), (1, 0), "{counts:?}");
    again.shutdown().await;
    market.running.stop().await;
}
