//! `mt-paas dev`: the whole loop on one machine — the reference market in-process on
//! 127.0.0.1:8505 and the service (basic_service by default) with `MT_PAAS_ENV=dev`.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context as _;
use mt_paas_market::{Market, MarketConfig};
use tokio::{net::TcpListener, process::Command};

/// Runs the dev stack until Ctrl-C, SIGTERM or the service's exit.
pub(crate) async fn run(
    market_config: &Path,
    service_command: &[String],
    service_url: &str,
) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        .try_init();
    let config = if market_config.exists() {
        MarketConfig::load(market_config, None).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        MarketConfig::with_database("sqlite://./data/market/market.db")
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("the market cannot listen on {addr} (is another one running?)"))?;
    let market = Market::start(config)
        .await
        .context("the market did not start")?;
    let (stop_market, market_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = market.clone();
    let market_task = tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, async {
                let _ = market_stopped.await;
            })
            .await
    });
    println!("market      http://{addr}   (operator token: dev-operator-token)");

    let (program, args) = service_command
        .split_first()
        .context("no service command")?;
    let mut child = Command::new(program)
        .args(args)
        .env("MT_PAAS_ENV", "dev")
        .env("MT_PAAS_DEV_STACK", "1")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the service: {}", service_command.join(" ")))?;
    println!(
        "service     {}   starting: {} (MT_PAAS_ENV=dev)",
        service_url,
        service_command.join(" ")
    );

    let ready = async {
        let client = reqwest::Client::new();
        loop {
            if client
                .get(format!("{service_url}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::select! {
        () = ready => print_try(service_url),
        status = child.wait() => {
            let _ = stop_market.send(());
            let _ = market_task.await;
            let status = status?;
            eprintln!("the service exited before it was ready ({status})");
            return Ok(ExitCode::FAILURE);
        }
        () = mt_paas::shutdown_signal() => {
            stop(&mut child).await;
            let _ = stop_market.send(());
            let _ = market_task.await;
            return Ok(ExitCode::SUCCESS);
        }
    }

    let code = tokio::select! {
        status = child.wait() => {
            eprintln!("the service stopped ({})", status.map(|s| s.to_string()).unwrap_or_default());
            ExitCode::FAILURE
        }
        () = mt_paas::shutdown_signal() => {
            println!("stopping the service and the market");
            stop(&mut child).await;
            ExitCode::SUCCESS
        }
    };
    let _ = stop_market.send(());
    match market_task.await {
        Ok(Ok(())) => println!("stopped"),
        Ok(Err(e)) => eprintln!("the market stopped with an error: {e}"),
        Err(e) => eprintln!("the market task failed: {e}"),
    }
    Ok(code)
}

/// Asks the service to stop (SIGTERM: graceful), and kills it if it does not within 10 s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn print_try(url: &str) {
    println!();
    println!(
        "Both are up. Try (the market decides plans: hallym is premium, korea and snu basic):"
    );
    println!("  curl -H 'X-Tenant-ID: hallym' {url}/courses");
    println!("  curl -H 'Host: hallym.localhost' {url}/courses");
    println!("  curl '{url}/courses?tenant_id=hallym'");
    println!(
        "  curl -X POST -H 'X-Tenant-ID: hallym' -H 'Content-Type: application/json' -d '{{\"title\":\"데이터베이스 개론\"}}' {url}/courses"
    );
    println!("  curl -H 'X-Tenant-ID: hallym' {url}/premium-feature          # premium: 200");
    println!(
        "  curl -H 'X-Tenant-ID: korea' -H 'Accept-Language: en' {url}/premium-feature   # basic: 403"
    );
    println!(
        "  # the market's operator API: suspend korea, then korea gets 403 subscription_suspended"
    );
    println!(
        "  curl -X POST -H 'Authorization: Bearer dev-operator-token' http://127.0.0.1:8505/api/v1/admin/services/basic_service/tenants/korea/suspend"
    );
    println!("  curl -H 'X-Tenant-ID: korea' {url}/courses");
    println!(
        "  curl -X POST -H 'Authorization: Bearer dev-operator-token' http://127.0.0.1:8505/api/v1/admin/services/basic_service/tenants/korea/reinstate"
    );
    println!("Ctrl-C stops both.");
}
