//! keli_tutor: `cargo run -p keli_tutor_integration` (DOCKER_PER_TENANT, the market on
//! 127.0.0.1:8505: every tenant's requests go to its own container running this binary
//! with `MT_PAAS_TENANT_ID`, which serves the routes to that tenant alone), or
//! `MT_PAAS_ENV=local cargo run -p keli_tutor_integration` on the embedded defaults
//! (SQLite, no vector store, no market).

use keli_tutor_integration::{Settings, app, config_path, describe_vectors};
use mt_paas::ServiceMarketFramework;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let framework = ServiceMarketFramework::from_config_path(config_path()).await?;
    let settings = Settings::from_framework(&framework)?;
    tracing::info!("{}", describe_vectors(framework.vectors()));
    let app = app(&framework, settings);
    framework.serve(app).await?;
    Ok(())
}
