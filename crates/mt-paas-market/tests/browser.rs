//! The market's console in a real browser: the market and a service on mt-paas started
//! in-process, then `tests/browser/console.mjs` drives Debian's headless Chromium through
//! playwright-core (sign in; suspend korea and see the service answer 403, reinstate and see
//! 200; block snu with a message and see the service answer it; a tampered CSRF token
//! refused; English; sign out and be sent back to sign-in). Screenshots go to
//! `MT_PAAS_SCREENSHOTS` (docs/console for the README), else to a temporary directory.

#![allow(unreachable_pub, clippy::unwrap_used)]

#[path = "e2e/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../../mt-paas/tests/support/needs.rs"]
mod needs;

use std::{process::ExitCode, time::Duration};

use helpers::{SERVICE, as_tenant, eventually, stack_with, subscribe};
use needs::{Needs, test};

const OPERATOR: &str = "minji";
const PASSWORD: &str = "a long operator password";

fn main() -> ExitCode {
    needs::main(vec![test(
        "the_console_in_a_real_browser",
        Needs::Browser,
        console_in_a_real_browser,
    )])
}

async fn console_in_a_real_browser() {
    // Heartbeats every second, so that the overview's charts have figures.
    let stack = stack_with(|config| config.marketplace.heartbeat_interval = 1).await;
    let service = stack.service.url.clone();
    let market = stack.market.url.clone();
    mt_paas_market::put_operator(stack.market.market.store(), OPERATOR, PASSWORD)
        .await
        .unwrap();
    for tenant in ["korea", "snu"] {
        subscribe(&market, tenant, "basic", true).await;
        assert!(
            eventually(Duration::from_secs(10), || async {
                as_tenant(&service, tenant, "/whoami").await.0 == 200
            })
            .await,
            "{tenant} was never served"
        );
    }
    // Some traffic for the charts: korea's requests, a few of them to a missing page.
    for n in 0..40 {
        let path = if n % 8 == 0 { "/missing" } else { "/whoami" };
        as_tenant(&service, "korea", path).await;
    }
    let shots = std::env::var("MT_PAAS_SCREENSHOTS").map_or_else(
        |_| std::env::temp_dir().join("mt-paas-console-screenshots"),
        std::path::PathBuf::from,
    );
    let script = needs::browser_tests_dir().join("console.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("MARKET_URL", &market)
        .env("SERVICE_URL", &service)
        .env("SERVICE_ID", SERVICE)
        .env("OPERATOR", OPERATOR)
        .env("PASSWORD", PASSWORD)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", needs::chromium_path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser run ended within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status
    );
    assert!(stdout.contains("every browser step passed"), "{stdout}");
    // What the browser did is what the market recorded.
    let (_, commands) = helpers::operator(
        &market,
        reqwest::Method::GET,
        &format!("/services/{SERVICE}/commands"),
        None,
    )
    .await;
    assert_eq!(commands[0]["command"]["kind"], "block", "{commands}");
    assert_eq!(commands[0]["command"]["tenant_id"], "snu");
    for page in [
        "login", "overview", "service", "confirm", "usage", "alerts", "plans", "keys",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "no {page}.png");
    }
}
