//! keli_tutor end to end: the rendered per-tenant container sets, and the service on the
//! embedded defaults (SQLite, documents searched in the tenant database) and with a real
//! Chroma server, against the reference market's dev data (hallym premium, korea basic).

#![allow(clippy::unwrap_used)]

#[path = "../../../crates/mt-paas/tests/support/needs.rs"]
mod needs;

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, body::Bytes, extract::State, routing::post};
use keli_tutor_integration::{COLLECTION, Settings};
use mt_paas::{
    ServiceMarketFramework,
    config::{Config, ConfigLoader, VectorConfig},
    provisioning::Provisioned,
};
use mt_paas_market::{Market, MarketConfig};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

fn config_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mt_paas_config.yaml")
}

fn load(vars: HashMap<&'static str, String>) -> Config {
    ConfigLoader::new(config_path())
        .vars(move |name| vars.get(name).cloned())
        .load()
        .unwrap()
}

/// Every host port a rendered compose file publishes.
fn host_ports(compose: &Value) -> Vec<u16> {
    let mut ports = Vec::new();
    for service in compose["services"].as_object().unwrap().values() {
        for mapping in service["ports"].as_array().into_iter().flatten() {
            // "127.0.0.1:HOST:CONTAINER"
            let parts: Vec<&str> = mapping.as_str().unwrap().split(':').collect();
            assert_eq!(parts.len(), 3, "{mapping}");
            assert_eq!(parts[0], "127.0.0.1", "published on loopback only");
            ports.push(parts[1].parse().unwrap());
        }
    }
    ports
}

async fn three_tenants_get_disjoint_port_blocks_and_their_own_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let tenants_dir = dir.path().join("tenants");
    let config = load(HashMap::from([
        (
            "KELI_CENTRAL_DB",
            format!("sqlite://{}/central.db", dir.path().display()),
        ),
        ("KELI_TENANTS_DIR", tenants_dir.display().to_string()),
        // The stacks' files only (their images, pgvector and Chroma, need a registry).
        ("KELI_DOCKER_START", "false".to_owned()),
        // No market in this test: nothing to check subscriptions with.
        (
            "MARKETPLACE_API_URL",
            "http://127.0.0.1:9/api/v1".to_owned(),
        ),
    ]));
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    let mut blocks = Vec::new();
    for (id, name) in [
        ("hallym", "한림대학교"),
        ("korea", "고려대학교"),
        ("snu", "서울대학교"),
    ] {
        let outcome = framework
            .provisioner()
            .create(id.parse().unwrap(), name, None)
            .await
            .unwrap();
        // Not started: the files are written and the tenant waits.
        let Provisioned::AwaitingDocker { dir, record } = outcome else {
            panic!("{id}: expected the stack files, got {outcome:?}");
        };
        assert_eq!(dir, tenants_dir.join(id));
        let compose: Value =
            yaml_serde::from_str(&std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap())
                .unwrap();
        let env = std::fs::read_to_string(dir.join(".env")).unwrap();
        let block = record.port_block.unwrap();
        let base = 10_200 + u16::try_from(block).unwrap() * 100;
        let ports = host_ports(&compose);
        assert_eq!(
            ports,
            [base, base + 2, base + 3],
            "app, db (+2), vector (+3)"
        );
        let services: BTreeSet<&str> = compose["services"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(services, BTreeSet::from(["app", "db", "vector"]));
        assert!(
            compose["services"]["app"]["healthcheck"].is_object(),
            "create waits for the app"
        );
        assert_eq!(compose["services"]["db"]["image"], "pgvector/pgvector:pg16");
        assert_eq!(
            compose["services"]["app"]["environment"]["MT_PAAS_TENANT_ID"],
            id
        );
        let volumes: BTreeSet<String> = compose["volumes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            volumes,
            BTreeSet::from([
                format!("10-keli_tutor-{id}-app"),
                format!("10-keli_tutor-{id}-db"),
                format!("10-keli_tutor-{id}-vector")
            ])
        );
        assert!(env.contains(&format!("TENANT_ID={id}\n")), "{env}");
        assert!(env.contains(&format!("TENANT_NAME={name}\n")), "{env}");
        assert!(
            env.contains(&format!("VECTOR_PORT={}\n", base + 3)),
            "{env}"
        );
        blocks.push((id, ports, volumes));
    }
    for (i, (a, ports_a, volumes_a)) in blocks.iter().enumerate() {
        for (b, ports_b, volumes_b) in &blocks[i + 1..] {
            assert!(
                ports_a.iter().all(|p| !ports_b.contains(p)),
                "{a} and {b} share a port"
            );
            assert!(
                volumes_a.is_disjoint(volumes_b),
                "{a} and {b} share a volume"
            );
        }
    }
}

/// A local LRS: keeps the statements it receives.
type Statements = Arc<Mutex<Vec<Value>>>;

async fn lrs(State(stored): State<Statements>, body: Bytes) -> Json<Vec<String>> {
    let value: Value = serde_json::from_slice(&body).unwrap();
    let batch = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let ids = batch
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    stored.lock().unwrap().extend(batch);
    Json(ids)
}

async fn serve(router: Router) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

struct Stack {
    url: String,
    framework: ServiceMarketFramework,
    statements: Statements,
    _dir: tempfile::TempDir,
    _stops: Vec<oneshot::Sender<()>>,
}

/// The reference market with its dev data (hallym premium, korea basic) and an LRS, each
/// on a random port, for keli_tutor to talk to.
struct Services {
    dir: tempfile::TempDir,
    market: SocketAddr,
    lrs: SocketAddr,
    statements: Statements,
    stops: Vec<oneshot::Sender<()>>,
}

async fn services() -> Services {
    let dir = tempfile::tempdir().unwrap();
    let mut market_config =
        MarketConfig::with_database(&format!("sqlite://{}/market.db", dir.path().display()))
            .unwrap();
    market_config.seed_dev_data = true;
    let market = Market::start(market_config).await.unwrap();
    let (market_addr, market_stop) = serve(market.router()).await;
    let statements = Statements::default();
    let (lrs_addr, lrs_stop) = serve(
        Router::new()
            .route("/xapi/statements", post(lrs))
            .with_state(statements.clone()),
    )
    .await;
    Services {
        dir,
        market: market_addr,
        lrs: lrs_addr,
        statements,
        stops: vec![market_stop, lrs_stop],
    }
}

/// keli_tutor as its `main` serves it (`keli_tutor_integration::app`), with `hallym` and
/// `korea` created.
async fn start(services: Services, config: Config) -> Stack {
    let framework = ServiceMarketFramework::from_config(config).await.unwrap();
    for (id, name) in [("hallym", "한림대학교"), ("korea", "고려대학교")] {
        let outcome = framework
            .provisioner()
            .create(id.parse().unwrap(), name, None)
            .await
            .unwrap();
        assert!(matches!(outcome, Provisioned::Ready(_)), "{outcome:?}");
    }
    let settings = Settings::from_framework(&framework).unwrap();
    let app = keli_tutor_integration::app(&framework, settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = framework.clone();
    tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let mut stops = services.stops;
    stops.insert(0, stop);
    Stack {
        url: format!("http://{addr}"),
        framework,
        statements: services.statements,
        _dir: services.dir,
        _stops: stops,
    }
}

/// The market with its dev data, an LRS, and keli_tutor on `MT_PAAS_ENV=local` with
/// `vector` as its vector store (none: the tenant databases are searched).
async fn stack(vector: Option<VectorConfig>) -> Stack {
    let services = services().await;
    let dir = services.dir.path();
    let mut config = load(HashMap::from([
        ("MT_PAAS_ENV", "local".to_owned()),
        (
            "KELI_CENTRAL_DB",
            format!("sqlite://{}/central.db", dir.display()),
        ),
        (
            "KELI_TENANT_DB",
            format!("sqlite://{}/tenants/{{tenant_id}}.db", dir.display()),
        ),
        (
            "MARKETPLACE_API_URL",
            format!("http://{}/api/v1", services.market),
        ),
        ("KELI_SUBSCRIPTION_CHECK", "true".to_owned()),
        ("KELI_ACTIVITY_LOG", "true".to_owned()),
        ("LRS_ENDPOINT", format!("http://{}/xapi", services.lrs)),
    ]));
    config.database.vector = vector;
    start(services, config).await
}

impl Stack {
    async fn send(
        &self,
        method: &str,
        path: &str,
        tenant: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut request = client
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .header("x-tenant-id", tenant)
            .header("accept-language", "en");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

const HALLYM_DOC: &str = "A heap is a complete binary tree stored in an array: the parent of \
    index i sits at index (i - 1) / 2, and every parent is at least as large as its children in \
    a max-heap. Building a heap from n items takes linear time, and heapsort repeatedly moves the \
    maximum to the end of the array. Priority queues are usually heaps. A hash table maps keys to \
    buckets with a hash function; collisions are resolved by chaining or by open addressing, and \
    the table is resized when its load factor grows too large, which keeps lookups constant on \
    average. A binary search tree keeps every key of the left subtree smaller than \
    its root and every key of the right subtree larger. Searching a balanced binary search tree \
    takes logarithmic time. Inserting walks down from the root and adds a new leaf. Deleting a \
    node with two children replaces it with its in-order successor. An AVL tree rebalances \
    itself with rotations after every insertion and deletion so the height stays logarithmic.";

const KOREA_DOC: &str = "Supply and demand set the market price: when demand rises and supply \
    stays the same, the price goes up. Elasticity measures how much the quantity demanded \
    changes when the price changes. A price ceiling below the equilibrium creates a shortage.";

async fn tutor(stack: &Stack) {
    let (status, doc) = stack
        .send(
            "POST",
            "/documents",
            "hallym",
            Some(json!({"title": "자료구조 강의노트", "content": HALLYM_DOC})),
        )
        .await;
    assert_eq!(status, 201, "{doc}");
    assert!(doc["chunks"].as_u64().unwrap() >= 2, "{doc}");
    let (status, _) = stack
        .send(
            "POST",
            "/documents",
            "korea",
            Some(json!({"title": "경제학원론", "content": KOREA_DOC})),
        )
        .await;
    assert_eq!(status, 201);

    // Each tenant's question finds its own documents only.
    let (status, answer) = stack
        .send(
            "POST",
            "/ask",
            "hallym",
            Some(json!({"question": "How does a binary search tree delete a node?"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "gpt-4", "custom.llm.default_model");
    let sources = answer["sources"].as_array().unwrap();
    assert!(
        !sources.is_empty() && sources.len() <= 3,
        "custom.rag.top_k"
    );
    for source in sources {
        assert!(
            !source["content"].as_str().unwrap().contains("demand"),
            "korea's text reached hallym: {answer}"
        );
    }
    assert!(
        sources[0]["content"]
            .as_str()
            .unwrap()
            .contains("successor"),
        "the chunk about deleting is the best match: {answer}"
    );
    let statement_id = answer["statement_id"].as_str().unwrap().to_owned();

    let (_, answer) = stack
        .send(
            "POST",
            "/ask",
            "korea",
            Some(json!({"question": "binary search tree"})),
        )
        .await;
    for source in answer["sources"].as_array().unwrap() {
        assert!(
            !source["content"].as_str().unwrap().contains("tree"),
            "hallym's text reached korea: {answer}"
        );
    }

    // The quiz is premium: hallym (premium) gets one, korea (basic) a 403.
    let (status, quiz) = stack.send("GET", "/quiz", "hallym", None).await;
    assert_eq!(status, 200, "{quiz}");
    assert_eq!(quiz["questions"].as_array().unwrap().len(), 1);
    let (status, problem) = stack.send("GET", "/quiz", "korea", None).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "feature_not_available");

    // Bad input names the field.
    let (status, problem) = stack
        .send(
            "POST",
            "/documents",
            "hallym",
            Some(json!({"title": " ", "content": "x"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "title");

    // The question's xAPI statement reaches the LRS, with the tenant in its context.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = stack
            .statements
            .lock()
            .unwrap()
            .iter()
            .find(|s| s["id"] == statement_id.as_str())
            .cloned();
        if let Some(statement) = found {
            assert!(
                statement["verb"]["id"]
                    .as_str()
                    .unwrap()
                    .ends_with("/asked")
            );
            assert!(
                statement.to_string().contains("hallym"),
                "the tenant travels with the statement: {statement}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the statement never reached the LRS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn on_the_embedded_defaults_documents_are_searched_in_each_tenant_database() {
    let stack = stack(None).await;
    assert!(stack.framework.vectors().is_none());
    tutor(&stack).await;
}

async fn with_chroma_each_tenant_has_its_own_collection() {
    let chroma = needs::chroma_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let prefix = format!("keli{}x{nanos}_", std::process::id());
    let vector: VectorConfig = serde_json::from_value(json!({
        "type": "chroma",
        "url": chroma,
        "collection_prefix": prefix,
        "collections": [{"name": COLLECTION, "dimension": keli_tutor_integration::DIMENSION}],
    }))
    .unwrap();
    let stack = stack(Some(vector)).await;
    tutor(&stack).await;

    // The chunks are in each tenant's own collection.
    let listed: Vec<Value> = reqwest::get(format!(
        "{chroma}/api/v2/tenants/default_tenant/databases/default_database/collections?limit=1000"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ours: BTreeSet<String> = listed
        .iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        ours,
        BTreeSet::from([
            format!("{prefix}hallym_documents"),
            format!("{prefix}korea_documents")
        ])
    );
    for tenant in ["hallym", "korea"] {
        let record = stack
            .framework
            .tenants()
            .resolve(&tenant.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let vectors = stack.framework.vectors().unwrap().for_tenant(&record);
        assert!(vectors.count(COLLECTION).await.unwrap() >= 1);
    }
    // Destroying the tenants drops their collections.
    for tenant in ["hallym", "korea"] {
        stack
            .framework
            .provisioner()
            .destroy(&tenant.parse().unwrap(), false)
            .await
            .unwrap();
    }
    let listed: Vec<Value> = reqwest::get(format!(
        "{chroma}/api/v2/tenants/default_tenant/databases/default_database/collections?limit=1000"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        listed
            .iter()
            .filter_map(|c| c["name"].as_str())
            .all(|n| !n.starts_with(&prefix))
    );
}

/// Runs `docker build` on `context` with `args`.
fn docker_build(context: &Path, args: &[&str]) {
    let built = std::process::Command::new("docker")
        .arg("build")
        .args(args)
        .arg(context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

/// The app image the docker test's stacks run: the example's own Dockerfile, built from
/// this build's keli_tutor binary and the example's files on the locally built Debian base
/// (with CA certificates), then, on top, the test's settings: no vector store (no Chroma image
/// can be had here), the activity log to the test's LRS, and `MT_PAAS_CONFIG` = `config`.
fn app_image(dir: &Path, lrs: SocketAddr, config: &str) -> String {
    const SHIPPED: &str = "mtpd/keli_tutor:shipped";
    const IMAGE: &str = "mtpd/keli_tutor:test";
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The workspace root as the Dockerfile sees it, with only what it copies.
    let root = dir.join("image-root");
    let example = root.join("examples/keli_tutor_integration");
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::fs::create_dir_all(&example).unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(here.join("migrations"))
        .arg(here.join("templates"))
        .arg(here.join("mt_paas_config.yaml"))
        .arg(here.join("mt_paas_config.local.yaml"))
        .arg(&example)
        .status()
        .unwrap();
    assert!(copied.success());
    // Without its debug information: a smaller build context.
    let binary = root.join("target/release/keli_tutor_integration");
    let stripped = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&binary)
        .arg(env!("CARGO_BIN_EXE_keli_tutor_integration"))
        .status();
    if !stripped.is_ok_and(|s| s.success()) {
        std::fs::copy(env!("CARGO_BIN_EXE_keli_tutor_integration"), &binary).unwrap();
    }
    let dockerfile = here.join("Dockerfile");
    docker_build(
        &root,
        &[
            "-q",
            "-f",
            dockerfile.to_str().unwrap(),
            "--build-arg",
            &format!("BASE={}", needs::DOCKER_APP_BASE_IMAGE),
            "-t",
            SHIPPED,
        ],
    );
    let layer = dir.join("image-test");
    std::fs::create_dir_all(&layer).unwrap();
    let mut yaml: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(config_path()).unwrap()).unwrap();
    yaml["database"]["vector"] = yaml_serde::Value::Null;
    std::fs::write(
        layer.join("mt_paas_config.test.yaml"),
        yaml_serde::to_string(&yaml).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layer.join("Dockerfile"),
        format!(
            "FROM {SHIPPED}\nCOPY mt_paas_config.test.yaml /app/\n\
             ENV MT_PAAS_CONFIG={config} KELI_ACTIVITY_LOG=true \
             LRS_ENDPOINT=http://{lrs}/xapi RUST_LOG=info\n",
        ),
    )
    .unwrap();
    docker_build(&layer, &["-q", "-t", IMAGE]);
    IMAGE.to_owned()
}

/// Removes the containers and volumes a failed run of the docker test left.
fn sweep(service: &str) {
    for tenant in ["hallym", "korea", "snu"] {
        let project = mt_paas::provisioning::docker::project_name(service, tenant);
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=com.docker.compose.project={project}"))
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .output();
        }
        for volume in ["app", "db"] {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f"])
                .arg(format!("{project}-{volume}"))
                .output();
        }
    }
}

/// The port block the docker test's stacks use: below the ephemeral range, apart from the
/// mt-paas Docker tests' (20000-32475) and benchmarks' (32600 and up).
const DOCKER_PORTS: u16 = 32_480;

async fn behind_the_tenant_router_each_tenant_is_served_by_its_own_container() {
    let services = services().await;
    let dir = services.dir.path().to_path_buf();
    let lrs = services.lrs;
    let image = app_image(&dir, lrs, "/app/mt_paas_config.test.yaml");
    let mut config = load(HashMap::from([
        (
            "KELI_CENTRAL_DB",
            format!("sqlite://{}/central.db", dir.display()),
        ),
        (
            "KELI_TENANTS_DIR",
            dir.join("tenants").display().to_string(),
        ),
        (
            "MARKETPLACE_API_URL",
            format!("http://{}/api/v1", services.market),
        ),
        ("KELI_APP_IMAGE", image),
        ("KELI_ACTIVITY_LOG", "true".to_owned()),
        ("LRS_ENDPOINT", format!("http://{}/xapi", services.lrs)),
    ]));
    // What this machine can run: the local Postgres image (no pgvector or Chroma images
    // here), no vector store, host networking on a block of ports of the test's own.
    config.database.vector = None;
    let docker = &mut config.isolation.docker;
    docker.images.db = needs::DOCKER_DB_IMAGE.to_owned();
    docker.images.vector = None;
    docker.network = mt_paas::config::DockerNetwork::Host;
    docker.port_range_start = DOCKER_PORTS;
    docker.port_range_size = 5;
    docker.start_timeout_seconds = 60;
    let service = config.service.id.clone();
    sweep(&service);
    let stack = start(services, config).await;
    assert!(stack.framework.routes_to_tenant_apps());

    // The whole tutor flow, every request through the gateway's guard to the tenant's own
    // container: documents and questions in its own database, the premium quiz decided by
    // the plan the router signed for, the statement sent by the tenant's app to the LRS.
    tutor(&stack).await;

    // Each answer came from the tenant's own container, which knows its tenant's name.
    let (status, answer) = stack
        .send("POST", "/ask", "korea", Some(json!({"question": "price"})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tenant_id"], "korea");
    assert!(
        answer["answer"].as_str().unwrap().contains("고려대학교"),
        "{answer}"
    );

    // The app's own port refuses what did not come through the router.
    let hallym = stack
        .framework
        .tenants()
        .resolve(&"hallym".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let port = DOCKER_PORTS + u16::try_from(hallym.record().port_block.unwrap()).unwrap() * 5;
    let client = reqwest::Client::new();
    let direct = client
        .get(format!("http://127.0.0.1:{port}/quiz"))
        .header("x-tenant-id", "hallym")
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    let problem: Value = direct.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_signature", "{problem}");
    let forged = client
        .get(format!("http://127.0.0.1:{port}/quiz"))
        .header("x-mt-paas-tenant", "hallym")
        .header("x-mt-paas-context", "e30")
        .header("x-mt-paas-timestamp", "1")
        .header("x-mt-paas-nonce", "n")
        .header("x-mt-paas-signature", "v1=AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    for tenant in ["hallym", "korea"] {
        stack
            .framework
            .provisioner()
            .destroy(&tenant.parse().unwrap(), false)
            .await
            .unwrap();
    }
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!(
            "label=com.docker.compose.project={}",
            mt_paas::provisioning::docker::project_name(&service, "hallym")
        ))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "hallym's containers are gone");

    // An app that cannot start: what it said reaches the operator in the error, and the
    // failed stack leaves nothing behind.
    app_image(&dir, lrs, "/app/nowhere.yaml");
    let failed = stack
        .framework
        .provisioner()
        .create("snu".parse().unwrap(), "서울대학교", None)
        .await;
    let error = failed.expect_err("an app that exits at once").to_string();
    assert!(error.contains("/app/nowhere.yaml"), "{error}");
    let project = mt_paas::provisioning::docker::project_name(&service, "snu");
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "snu's failed stack is gone");
    sweep(&service);
}

fn main() -> std::process::ExitCode {
    use needs::{Needs, test};
    needs::main(vec![
        test(
            "three_tenants_get_disjoint_port_blocks_and_their_own_volumes",
            Needs::Nothing,
            three_tenants_get_disjoint_port_blocks_and_their_own_volumes,
        ),
        test(
            "on_the_embedded_defaults_documents_are_searched_in_each_tenant_database",
            Needs::Nothing,
            on_the_embedded_defaults_documents_are_searched_in_each_tenant_database,
        ),
        test(
            "with_chroma_each_tenant_has_its_own_collection",
            Needs::Chroma,
            with_chroma_each_tenant_has_its_own_collection,
        ),
        test(
            "behind_the_tenant_router_each_tenant_is_served_by_its_own_container",
            Needs::Docker,
            behind_the_tenant_router_each_tenant_is_served_by_its_own_container,
        ),
    ])
}
