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

    // block_at two seconds ahead: served with a notice until then, refused after.
    let block_at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let (status, _) = operator(
        &stack.market.url,
        reqwest::Method::POST,
        &format!("{path}/block"),
        Some(json!({"reason": "subscription_expired", "message": message, "block_at": block_at.format(&time::format_description::well_known::Rfc3339).unwrap()})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(2), || async {
            let (status, _, headers) = as_tenant(&url, "snu", "/whoami").await;
            status == 200 && headers.contains_key("mt-paas-notice-until")
        })
        .await,
        "a scheduled block is announced"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (status, body, _) = as_tenant(&url, "snu", "/whoami").await;
            status == 403 && body["code"] == "tenant_blocked" && body["detail"] == message
        })
        .await,
        "the block applies at block_at with the market's message"
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
    let market_db = format!("sqlite://{}/market.db", dir.path().display());
    let market = start_market(&market_db, None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    crate::helpers::register_service(
        &market.url,
        Some(format!("http://{}", listener.local_addr().unwrap())),
    )
    .await;
    subscribe(&market.url, "hallym", "premium", true).await;
    let service_dir = dir.path().join("service");
    std::fs::create_dir_all(&service_dir).unwrap();
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
    market.running.stop().await;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(as_tenant(&url, "hallym", "/whoami").await.0, 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
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
