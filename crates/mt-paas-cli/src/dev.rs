//! `mt-paas dev`: the whole loop on one machine — the reference market in-process on
//! 127.0.0.1:8505 and the service (basic_service by default) with `MT_PAAS_ENV=dev`.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context as _;
use mt_paas_market::{Market, MarketConfig};

use crate::text::Lang;
use tokio::{net::TcpListener, process::Command};

/// The dev LRS's port (`MT_PAAS_DEV_LRS` tells the service its URL).
const DEV_LRS_PORT: u16 = 8506;

/// Runs the dev stack until Ctrl-C, SIGTERM or the service's exit.
pub(crate) async fn run(
    market_config: &Path,
    service_command: &[String],
    service_url: &str,
) -> anyhow::Result<ExitCode> {
    let lang = Lang::from_env();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_target(false)
        // Colour codes only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
    let config = if market_config.exists() {
        MarketConfig::load(market_config, None).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        MarketConfig::with_database("sqlite://./data/market/market.db")
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let addr = config.listen;
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "{} {addr}",
            lang.pick(
                "마켓이 다음 주소에서 대기할 수 없습니다 (이미 실행 중인 마켓이 있습니까?):",
                "the market cannot listen on (is another one running?):"
            )
        )
    })?;
    let market = Market::start(config)
        .await
        .context(lang.pick("마켓이 시작되지 않았습니다", "the market did not start"))?;
    let (stop_market, market_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = market.clone();
    let market_task = tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, async {
                let _ = market_stopped.await;
            })
            .await
    });
    println!(
        "{}",
        lang.pick(
            &format!("마켓        http://{addr}   (운영자 토큰: dev-operator-token)"),
            &format!("market      http://{addr}   (operator token: dev-operator-token)"),
        )
    );

    // The service's activities go to an LRS of the dev stack's own, which prints each one.
    let lrs_listener = TcpListener::bind(("127.0.0.1", DEV_LRS_PORT))
        .await
        .with_context(|| {
            format!(
                "{} 127.0.0.1:{DEV_LRS_PORT}",
                lang.pick(
                    "개발용 LRS가 다음 주소에서 대기할 수 없습니다:",
                    "the dev LRS cannot listen on"
                )
            )
        })?;
    let lrs = crate::lrs::spawn(lrs_listener)?;
    println!(
        "{}",
        lang.pick(
            &format!("LRS         {lrs}   (활동 로그가 여기에 한 줄씩 표시됩니다)"),
            &format!("LRS         {lrs}   (each activity the service logs is printed here)"),
        )
    );

    let (program, args) = service_command
        .split_first()
        .context("no service command")?;
    let mut child = Command::new(program)
        .args(args)
        .env("MT_PAAS_ENV", "dev")
        .env("MT_PAAS_DEV_STACK", "1")
        .env("MT_PAAS_DEV_LRS", &lrs)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "{} {}",
                lang.pick("서비스를 시작할 수 없습니다:", "cannot start the service:"),
                service_command.join(" ")
            )
        })?;
    println!(
        "{}",
        lang.pick(
            &format!(
                "서비스      {service_url}   시작 중: {} (MT_PAAS_ENV=dev; 처음에는 빌드에 몇 분 걸립니다)",
                service_command.join(" ")
            ),
            &format!(
                "service     {service_url}   starting: {} (MT_PAAS_ENV=dev; the first build takes minutes)",
                service_command.join(" ")
            ),
        )
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
        () = ready => print_try(service_url, lang),
        status = child.wait() => {
            let _ = stop_market.send(());
            let _ = market_task.await;
            let status = status?;
            eprintln!(
                "{} ({status})",
                lang.pick("서비스가 준비되기 전에 종료되었습니다", "the service exited before it was ready")
            );
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
            eprintln!(
                "{} ({})",
                lang.pick("서비스가 멈췄습니다", "the service stopped"),
                status.map(|s| s.to_string()).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
        () = mt_paas::shutdown_signal() => {
            println!("{}", lang.pick("서비스와 마켓을 멈추는 중", "stopping the service and the market"));
            stop(&mut child).await;
            ExitCode::SUCCESS
        }
    };
    let _ = stop_market.send(());
    match market_task.await {
        Ok(Ok(())) => println!("{}", lang.pick("멈췄습니다", "stopped")),
        Ok(Err(e)) => eprintln!(
            "{} {e}",
            lang.pick(
                "마켓이 오류와 함께 멈췄습니다:",
                "the market stopped with an error:"
            )
        ),
        Err(e) => eprintln!(
            "{} {e}",
            lang.pick("마켓 작업이 실패했습니다:", "the market task failed:")
        ),
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

fn print_try(url: &str, lang: Lang) {
    let market = "http://127.0.0.1:8505/api/v1/admin/services/basic_service/tenants/korea";
    println!();
    println!(
        "{}",
        lang.pick(
            "둘 다 준비되었습니다. 다음 명령을 실행해 보십시오(요금제는 마켓이 정합니다. hallym은 premium, korea와 snu는 basic입니다):",
            "Both are up. Try (the market decides plans: hallym is premium, korea and snu basic):"
        )
    );
    println!("  curl -H 'X-Tenant-ID: hallym' {url}/courses");
    println!("  curl -H 'Host: hallym.localhost' {url}/courses");
    println!("  curl '{url}/courses?tenant_id=hallym'");
    println!(
        "  curl -X POST -H 'X-Tenant-ID: hallym' -H 'Content-Type: application/json' -d '{{\"title\":\"데이터베이스 개론\"}}' {url}/courses"
    );
    println!(
        "  curl -X POST -H 'X-Tenant-ID: hallym' -H 'Content-Type: application/json' -d '{{\"message\":\"안녕하세요\"}}' {url}/chat   # {}",
        lang.pick(
            "활동은 LRS가 activity 줄로 출력합니다",
            "the LRS prints the activity as an activity line"
        )
    );
    println!("  curl -H 'X-Tenant-ID: hallym' {url}/premium-feature          # premium: 200");
    println!(
        "  curl -H 'X-Tenant-ID: korea' -H 'Accept-Language: en' {url}/premium-feature   # basic: 403"
    );
    println!(
        "  # {}",
        lang.pick(
            "마켓의 운영자 API: korea를 정지하면 korea는 403 subscription_suspended를 받습니다",
            "the market's operator API: suspend korea, then korea gets 403 subscription_suspended"
        )
    );
    println!("  curl -X POST -H 'Authorization: Bearer dev-operator-token' {market}/suspend");
    println!("  curl -H 'X-Tenant-ID: korea' {url}/courses");
    println!("  curl -X POST -H 'Authorization: Bearer dev-operator-token' {market}/reinstate");
    let (operator, password) = (mt_paas_market::DEV_OPERATOR, mt_paas_market::DEV_PASSWORD);
    println!(
        "{} http://127.0.0.1:8505/console ({} {operator} / {password})",
        lang.pick("마켓 운영 콘솔:", "The market's operator console:"),
        lang.pick("데모 운영자", "demo operator"),
    );
    println!(
        "{}",
        lang.pick("Ctrl-C로 둘 다 멈춥니다.", "Ctrl-C stops both.")
    );
}
