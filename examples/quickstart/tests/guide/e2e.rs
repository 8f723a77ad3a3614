//! The guide's walkthroughs, replayed against the quickstart running in-process: on SQLite as
//! the quickstart configures it, on Postgres with the guide's two Postgres configurations,
//! against the reference marketplace with the quickstart's dev overlay, and with a Docker
//! stack per tenant on the guide's DOCKER_PER_TENANT configuration (a real engine:
//! `.ci/docker.sh`, which `bash .ci/test` runs).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use mt_paas::{
    ServiceMarketFramework,
    config::{Config, ConfigLoader, DatabaseUrl},
};
use mt_paas_market::{Market, MarketConfig};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    markdown,
    replay::{self, Hosts},
};

fn quickstart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Something serving until stopped.
struct Running {
    addr: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// The quickstart's routes behind the framework, on 127.0.0.1 at a free port.
async fn start_quickstart(listener: TcpListener, config: Config) -> Running {
    let addr = listener.local_addr().expect("a bound address").to_string();
    let framework = ServiceMarketFramework::from_config(config)
        .await
        .expect("the quickstart starts");
    let app = framework.create_app(crate::quickstart::routes());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        framework
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
            .expect("the quickstart serves");
    });
    Running { addr, stop, task }
}

async fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1")
}

/// Keeps a test's data (SQLite files, archives) in `dir`, as `./data` would be.
fn data_in(config: &mut Config, dir: &Path) {
    let sqlite = |rest: &str| DatabaseUrl::new(format!("sqlite://{}/{rest}", dir.display()));
    if config.database.central.url.expose().starts_with("sqlite:") {
        config.database.central.url = sqlite("central.db");
    }
    if config
        .database
        .tenant
        .url_template
        .expose()
        .starts_with("sqlite:")
    {
        config.database.tenant.url_template = sqlite("tenants/{tenant_id}.db");
    }
    config.provisioning.archive_dir = dir.join("archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_walkthrough_on_sqlite() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = ConfigLoader::new(quickstart_dir().join("mt_paas_config.yaml"))
        .env(None)
        .vars(|_| None)
        .load()
        .expect("the quickstart's configuration loads");
    data_in(&mut config, dir.path());
    let listener = free_listener().await;
    let service = start_quickstart(listener, config.clone()).await;
    let hosts = Hosts {
        service: service.addr.clone(),
        market: None,
    };
    replay::run("quickstart", &hosts, &config).await;
    service.stop().await;
}

/// The server fresh Postgres databases are made on; the suites need it, so a Postgres that
/// does not answer fails the test with the way to start it.
async fn postgres() -> Option<String> {
    let admin = std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    match sqlx::PgPool::connect(&admin).await {
        Ok(pool) => {
            pool.close().await;
            Some(admin)
        }
        Err(e) => panic!(
            "Postgres at {admin} is not reachable ({e}): the suites need it (`bash .ci/test` starts it)"
        ),
    }
}

/// Drops the databases whose names start with `prefix`.
async fn drop_databases(admin: &str, prefix: &str) {
    let Ok(pool) = sqlx::PgPool::connect(admin).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    for name in names {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
    }
    pool.close().await;
}

/// The guide's configuration block `<!-- config: label -->`, loaded with `vars`.
fn guide_config(label: &str, dir: &Path, vars: HashMap<&'static str, String>) -> Config {
    let guide = markdown::read("docs/DEVELOPER_GUIDE.md");
    let block = markdown::blocks(&guide)
        .into_iter()
        .find(|b| b.marker("config") == Some(label))
        .unwrap_or_else(|| panic!("the guide has no `config: {label}` block"));
    let path = dir.join("mt_paas_config.yaml");
    std::fs::write(&path, &block.content).expect("the config is written");
    // The block sits in the quickstart's directory in the guide, beside its migrations.
    let _ = std::fs::create_dir(dir.join("migrations"));
    let mut config = ConfigLoader::new(&path)
        .env(None)
        .vars(move |name| vars.get(name).cloned())
        .load()
        .unwrap_or_else(|e| panic!("the guide's `config: {label}` block loads:\n{e}"));
    // ... which are these.
    config.database.tenant.migrations = Some(quickstart_dir().join("migrations"));
    config.provisioning.archive_dir = dir.join("archive");
    config
}

/// The quickstart walkthrough, unchanged, on the guide's Postgres configuration `label`.
async fn walkthrough_on_postgres(label: &str, tenant_url: impl Fn(&str) -> String) {
    let Some(admin) = postgres().await else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("mtp_test_qs_{}_{nanos}", std::process::id());
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let central = format!("{base}/{name}");
    let vars = HashMap::from([
        ("CENTRAL_DATABASE_URL", central.clone()),
        ("TENANT_DATABASE_URL", tenant_url(&central)),
    ]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = guide_config(label, dir.path(), vars);
    let service = start_quickstart(free_listener().await, config.clone()).await;
    let hosts = Hosts {
        service: service.addr.clone(),
        market: None,
    };
    replay::run("quickstart", &hosts, &config).await;
    service.stop().await;
    drop_databases(&admin, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_walkthrough_on_postgres_databases() {
    walkthrough_on_postgres("postgres-databases", |central| {
        format!("{central}_{{tenant_id}}")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_walkthrough_on_postgres_schemas() {
    walkthrough_on_postgres("postgres-schemas", str::to_owned).await;
}

/// The reference market, empty, on 127.0.0.1 at a free port.
async fn start_market(dir: &Path) -> Running {
    let url = format!("sqlite://{}/market.db", dir.display());
    let mut config = MarketConfig::with_database(&url).expect("a market configuration");
    // The guide's commands make what the walkthrough needs; they also work on `mt-paas dev`'s
    // seeded market.
    config.seed_dev_data = false;
    config.delivery.poll_interval_ms = 50;
    let market = Market::start(config).await.expect("the market starts");
    let listener = free_listener().await;
    let addr = listener.local_addr().expect("a bound address").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        market
            .serve_with_shutdown(listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("the market serves");
    });
    Running { addr, stop, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_walkthrough() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let market = start_market(dir.path()).await;
    // What `mt-paas dev -- cargo run` runs: the quickstart with MT_PAAS_ENV=dev.
    let mut config = ConfigLoader::new(quickstart_dir().join("mt_paas_config.yaml"))
        .env(Some("dev"))
        .vars(|_| None)
        .load()
        .expect("the quickstart's configuration with its dev overlay loads");
    assert_eq!(
        config.marketplace.api_url, "http://127.0.0.1:8505/api/v1",
        "the overlay points at `mt-paas dev`'s market"
    );
    config.marketplace.api_url = format!("http://{}/api/v1", market.addr);
    data_in(&mut config, &dir.path().join("service"));
    let service = start_quickstart(free_listener().await, config.clone()).await;
    let hosts = Hosts {
        service: service.addr.clone(),
        market: Some(market.addr.clone()),
    };
    replay::run("market", &hosts, &config).await;
    service.stop().await;
    market.stop().await;
}

/// The first port of the Docker walkthrough's blocks: below the ephemeral range, apart from
/// the other Docker tests' when suites run at once.
const DOCKER_PORTS: u16 = 32_410;

/// Removes the walkthrough's stacks a failed run left.
fn sweep_stacks(service: &str) {
    for tenant in ["hallym", "korea", "snu"] {
        let project = mt_paas::provisioning::docker::project_name(service, tenant);
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=com.docker.compose.project={project}"))
            .output()
            .expect("docker answers (`bash .ci/docker.sh` starts it)");
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f"])
            .arg(format!("{project}-db"))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_walkthrough() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = guide_config(
        "docker",
        dir.path(),
        HashMap::from([(
            "TENANT_DB_SECRET",
            "the guide's walkthrough secret".to_owned(),
        )]),
    );
    data_in(&mut config, dir.path());
    // What the guide tells a reader without a registry to change, and the ports.
    let templates = quickstart_dir().join("../../templates");
    let docker = &mut config.isolation.docker;
    docker.compose_template = templates.join("docker-compose.template.yml");
    docker.env_template = templates.join(".env.template");
    docker.tenants_dir = dir.path().join("tenants");
    docker.network = mt_paas::config::DockerNetwork::Host;
    docker.images.db = "mt-paas/postgres:15".to_owned();
    docker.port_range_start = DOCKER_PORTS;
    docker.port_range_size = 5;
    let service_id = config.service.id.clone();
    sweep_stacks(&service_id);
    let service = start_quickstart(free_listener().await, config.clone()).await;
    let hosts = Hosts {
        service: service.addr.clone(),
        market: None,
    };
    replay::run("docker", &hosts, &config).await;
    // Three stacks ran, one database container each.
    for tenant in ["hallym", "korea", "snu"] {
        let project = mt_paas::provisioning::docker::project_name(&service_id, tenant);
        let running = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter"])
            .arg(format!("label=com.docker.compose.project={project}"))
            .output()
            .expect("docker answers");
        assert_eq!(
            String::from_utf8_lossy(&running.stdout).lines().count(),
            1,
            "{tenant}'s database container runs"
        );
    }
    service.stop().await;
    sweep_stacks(&service_id);
}
