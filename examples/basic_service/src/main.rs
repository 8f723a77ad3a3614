//! `cargo run -p basic_service`: the example service of DESIGN §3.1 on 127.0.0.1:8000.

use mt_paas::ServiceMarketFramework;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = basic_service::config_path();
    let framework = match ServiceMarketFramework::from_config_path(&path).await {
        Ok(framework) => framework,
        Err(e) => {
            eprintln!("basic_service: {e}");
            std::process::exit(1);
        }
    };
    let seeded = basic_service::seed_demo_tenants(&framework).await?;
    if seeded > 0 {
        println!("registered {seeded} demo tenants (hallym, korea, snu)");
    }
    let app = framework.create_app(basic_service::router());
    let addr = framework.config().service.listen;
    if std::env::var_os("MT_PAAS_DEV_STACK").is_some() {
        // `mt-paas dev` prints the lines to try once both servers are up.
        framework.serve(app).await?;
        return Ok(());
    }
    println!("basic_service on http://{addr} — try:");
    println!("  curl -H 'X-Tenant-ID: hallym' http://{addr}/courses");
    println!("  curl -H 'Host: hallym.localhost' http://{addr}/courses");
    println!("  curl 'http://{addr}/courses?tenant_id=hallym'");
    println!(
        "  curl -H \"Authorization: Bearer $(cargo run -q -p mt-paas-cli -- --config {} token --tenant hallym)\" http://{addr}/courses",
        path.display()
    );
    println!(
        "  curl -X POST -H 'X-Tenant-ID: korea' -H 'Content-Type: application/json' -d '{{\"message\":\"안녕하세요\"}}' http://{addr}/chat"
    );
    println!("  curl -H 'X-Tenant-ID: snu' -H 'Accept-Language: en' http://{addr}/premium-feature");
    println!("Ctrl-C stops it.");
    framework.serve(app).await?;
    Ok(())
}
