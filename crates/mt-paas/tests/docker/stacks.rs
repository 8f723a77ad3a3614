use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use mt_paas::{
    IsolationMode, RouterRefusal, RouterVerifier, TenantId, TenantStatus, provisioning::Provisioned,
};

use crate::helpers::{
    Backend, TestApp, TestDb, load, notes_migrations, notes_routes, read_notes, write_note,
};

fn id(s: &str) -> TenantId {
    s.parse().unwrap()
}

/// A test's own service id and port range (`slot` tells the tests of one run apart; the
/// process id, runs on one machine): ranges below 32768, out of the ephemeral ports.
struct Stage {
    service: String,
    port_start: u16,
}

const BLOCK: u16 = 5;

/// The HS256 secret of the tenant router test's tokens.
const JWT_SECRET: &str = "a jwt secret for the tenant router test";

fn stage(slot: u16) -> Stage {
    let run = u16::try_from(std::process::id() % 100).unwrap();
    Stage {
        service: format!("mtpd_{slot}_{}", std::process::id()),
        port_start: 20000 + (run * 5 + slot) * 5 * BLOCK,
    }
}

fn templates() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

/// A DOCKER_PER_TENANT config for `stage`: the shipped templates, host networking, the
/// local database image, the fixture migrations; `docker_extra` goes inside
/// `isolation.docker`.
fn config(db: &TestDb, stage: &Stage, docker_extra: &str) -> mt_paas::config::Config {
    let dir = db.dir.path();
    let yaml = format!(
        "service:\n  id: {service}\n  version: \"1.0.0\"\nisolation:\n  mode: DOCKER_PER_TENANT\n  docker:\n    port_range_start: {start}\n    port_range_size: {BLOCK}\n    compose_template: \"{t}/docker-compose.template.yml\"\n    env_template: \"{t}/.env.template\"\n    tenants_dir: \"{dir}/tenants\"\n    database_url: \"postgresql://app:{{tenant_password}}@127.0.0.1:{{db_port}}/app\"\n    password_secret: \"a test secret of the stacks\"\n    network: host\n{images}    start_timeout_seconds: 60\n{docker_extra}database:\n  central:\n    url: \"{central}\"\n    pool_size: 4\n  tenant:\n    url_template: \"sqlite://{dir}/unused/{{tenant_id}}.db\"\n    max_connections: 12\n    pool_size_per_tenant: 2\n    acquire_timeout_ms: 5000\n    migrations: \"{migrations}\"\nprovisioning:\n  archive_dir: \"{dir}/archive\"\nsecurity:\n  rate_limit:\n    default_rpm: 1000000\n    anonymous_rpm: 1000000\n",
        service = stage.service,
        start = stage.port_start,
        t = templates().display(),
        dir = dir.display(),
        // The database image unless `docker_extra` names the images itself.
        images = if docker_extra.contains("    images:") {
            String::new()
        } else {
            format!(
                "    images:\n      db: \"{}\"\n",
                crate::needs::DOCKER_DB_IMAGE
            )
        },
        central = db.url,
        migrations = notes_migrations().display(),
    );
    let path = dir.join("mt_paas_config.yaml");
    std::fs::write(&path, yaml).unwrap();
    load(&path, &[])
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The running containers of `service`'s stacks, by compose project.
fn projects(service: &str) -> BTreeSet<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ])
    .lines()
    .filter(|p| p.contains(&format!("-{service}-")))
    .map(str::to_owned)
    .collect()
}

fn volumes(service: &str) -> BTreeSet<String> {
    docker(&["volume", "ls", "-q"])
        .lines()
        .filter(|v| v.contains(&format!("-{service}-")))
        .map(str::to_owned)
        .collect()
}

fn project(stage: &Stage, tenant: &str) -> String {
    mt_paas::provisioning::docker::project_name(&stage.service, tenant)
}

/// Removes whatever a failed test left (stacks and volumes of its service).
fn sweep(stage: &Stage) {
    for project in projects(&stage.service) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ]);
        for container in ids.lines() {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
    }
    for volume in volumes(&stage.service) {
        let _ = Command::new("docker")
            .args(["volume", "rm", volume.as_str()])
            .output();
    }
}

/// A value of `tenant`'s stack `.env`.
fn stack_env(db: &TestDb, tenant: &str, name: &str) -> String {
    let env =
        std::fs::read_to_string(db.dir.path().join(format!("tenants/{tenant}/.env"))).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

/// Destroys `tenants` without archives, checks that no container of the test's service is
/// left, and removes whatever a failure would have left.
async fn finish(app: &TestApp, stage: &Stage, db: TestDb, tenants: &[&str]) {
    for tenant in tenants {
        app.framework
            .provisioner()
            .destroy(&id(tenant), false)
            .await
            .unwrap();
    }
    assert!(projects(&stage.service).is_empty(), "no container left");
    sweep(stage);
    db.cleanup().await;
}

async fn create(app: &TestApp, tenant: &str) -> mt_paas::TenantRecord {
    match app
        .framework
        .provisioner()
        .create(
            id(tenant),
            &format!("{tenant} 대학교"),
            Some(IsolationMode::DockerPerTenant),
        )
        .await
    {
        Ok(Provisioned::Ready(record)) => record,
        other => panic!("creating {tenant}: {other:?}"),
    }
}

/// The port the tenant's database server listens on, as the server says.
async fn server_port(app: &TestApp, tenant: &str) -> u16 {
    let resolved = app
        .framework
        .tenants()
        .resolve(&id(tenant))
        .await
        .unwrap()
        .unwrap();
    let mut db = app.framework.databases().acquire(&resolved).await.unwrap();
    let port: String = mt_paas::with_db!(db, conn => {
        sqlx::query_scalar("SELECT current_setting('port')").fetch_one(conn).await
    })
    .unwrap();
    port.parse().unwrap()
}

pub async fn three_tenants_each_in_their_own_stack() {
    let stage = stage(0);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(config(&db, &stage, ""), notes_routes()).await;
    let tenants = ["hallym", "korea", "snu"];
    // Three stacks come up side by side.
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in tenants {
        let provisioner = app.framework.provisioner().clone();
        tasks.spawn(async move {
            provisioner
                .create(id(tenant), tenant, Some(IsolationMode::DockerPerTenant))
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert!(matches!(done.unwrap(), Ok(Provisioned::Ready(_))));
    }
    assert_eq!(
        projects(&stage.service),
        tenants.iter().map(|t| project(&stage, t)).collect(),
    );
    let mut blocks = BTreeSet::new();
    for tenant in tenants {
        let record = app
            .framework
            .tenants()
            .get(&id(tenant))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, TenantStatus::Active);
        let block = record.port_block.unwrap();
        assert!(blocks.insert(block), "blocks never overlap");
        // The tenant's database is the one in its own stack, at its block's port.
        let expected = stage.port_start + u16::try_from(block).unwrap() * BLOCK + 2;
        assert_eq!(server_port(&app, tenant).await, expected, "{tenant}");
    }

    // Each stack has its own database password: hallym's does not open korea's database.
    let password = |tenant: &str| stack_env(&db, tenant, "POSTGRES_PASSWORD");
    assert_ne!(password("hallym"), password("korea"));
    assert_eq!(password("hallym").len(), 32);
    let korea_block = app
        .framework
        .tenants()
        .get(&id("korea"))
        .await
        .unwrap()
        .unwrap()
        .port_block
        .unwrap();
    let korea_port = stage.port_start + u16::try_from(korea_block).unwrap() * BLOCK + 2;
    let wrong = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(korea_port)
        .username("app")
        .password(&password("hallym"))
        .database("app");
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect_with(&wrong).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("password authentication failed")),
        "another tenant's password is refused: {refused:?}"
    );
    let right = wrong.password(&password("korea"));
    assert!(
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&right)
            .await
            .is_ok()
    );

    // Through the whole guard, each tenant reads only what it wrote.
    for (n, tenant) in tenants.iter().enumerate() {
        for value in 0..3 {
            write_note(&app, tenant, i64::try_from(n * 10).unwrap() + value).await;
        }
    }
    for (n, tenant) in tenants.iter().enumerate() {
        let base = i64::try_from(n * 10).unwrap();
        assert_eq!(
            read_notes(&app, tenant).await,
            (base..base + 3)
                .map(|v| ((*tenant).to_owned(), v))
                .collect::<Vec<_>>(),
        );
    }

    // A stopped stack: its tenant gets 503 with Retry-After; the others are served.
    let korea = db.dir.path().join("tenants/korea");
    let stopped = Command::new("docker")
        .args(["compose", "-p", &project(&stage, "korea"), "stop"])
        .current_dir(&korea)
        .output()
        .unwrap();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let answer = app.get("/notes", &[("x-tenant-id", b"korea")]).await;
    answer.assert_problem(503, "tenant_db_unavailable");
    assert_eq!(answer.headers["retry-after"], "5");
    assert_eq!(read_notes(&app, "hallym").await.len(), 3);
    assert_eq!(read_notes(&app, "snu").await.len(), 3);
    let started = Command::new("docker")
        .args(["compose", "-p", &project(&stage, "korea"), "start"])
        .current_dir(&korea)
        .output()
        .unwrap();
    assert!(started.status.success());
    let mut back = false;
    for _ in 0..60 {
        if app.get("/notes", &[("x-tenant-id", b"korea")]).await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(back, "korea is served again once its stack runs");
    assert_eq!(
        read_notes(&app, "korea").await.len(),
        3,
        "its data survived the stop"
    );

    for tenant in tenants {
        app.framework
            .provisioner()
            .destroy(&id(tenant), false)
            .await
            .unwrap();
    }
    assert!(projects(&stage.service).is_empty(), "no container left");
    assert!(volumes(&stage.service).is_empty(), "no volume left");
    sweep(&stage);
    db.cleanup().await;
}

pub async fn destroy_archives_and_restore_brings_the_data_back() {
    let stage = stage(1);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(config(&db, &stage, ""), notes_routes()).await;
    create(&app, "hallym").await;
    let korea = create(&app, "korea").await;
    write_note(&app, "korea", 42).await;
    write_note(&app, "hallym", 7).await;

    let archive = app
        .framework
        .provisioner()
        .destroy(&id("korea"), true)
        .await
        .unwrap()
        .expect("an archive");
    assert!(archive.is_file(), "{}", archive.display());
    assert!(!projects(&stage.service).contains(&project(&stage, "korea")));
    assert!(
        !volumes(&stage.service)
            .iter()
            .any(|v| v.contains("-korea-"))
    );
    app.get("/notes", &[("x-tenant-id", b"korea")])
        .await
        .assert_problem(410, "tenant_archived");

    // A new tenant takes the freed block; korea comes back in a fresh stack with its data.
    let yonsei = create(&app, "yonsei").await;
    assert_eq!(
        yonsei.port_block, korea.port_block,
        "a freed block is reused"
    );
    let restored = app
        .framework
        .provisioner()
        .restore(&id("korea"), &archive)
        .await
        .unwrap();
    assert_eq!(restored.status, TenantStatus::Active);
    assert_ne!(restored.port_block, yonsei.port_block);
    assert_eq!(
        read_notes(&app, "korea").await,
        vec![("korea".to_owned(), 42)]
    );
    assert_eq!(
        read_notes(&app, "hallym").await,
        vec![("hallym".to_owned(), 7)]
    );
    assert!(read_notes(&app, "yonsei").await.is_empty());

    finish(&app, &stage, db, &["hallym", "korea", "yonsei"]).await;
}

pub async fn a_stack_that_does_not_start_leaves_nothing_behind() {
    let stage = stage(2);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    config(&db, &stage, "");
    let yaml_path = db.dir.path().join("mt_paas_config.yaml");
    let yaml = std::fs::read_to_string(&yaml_path)
        .unwrap()
        .replace(crate::needs::DOCKER_DB_IMAGE, "mt-paas/no-such-image:0");
    std::fs::write(&yaml_path, yaml).unwrap();
    let app = TestApp::new(load(&yaml_path, &[]), notes_routes()).await;
    let failed = app
        .framework
        .provisioner()
        .create(id("hallym"), "Hallym", Some(IsolationMode::DockerPerTenant))
        .await;
    let error = failed.expect_err("an image that is not there cannot start");
    assert!(
        matches!(error, mt_paas::provisioning::ProvisionError::Docker(_))
            && error.to_string().contains("compose up"),
        "{error}"
    );
    assert!(projects(&stage.service).is_empty(), "no container left");
    assert!(volumes(&stage.service).is_empty(), "no volume left");
    assert!(
        !db.dir.path().join("tenants/hallym").exists(),
        "no files left"
    );
    assert!(
        app.framework
            .tenants()
            .get(&id("hallym"))
            .await
            .unwrap()
            .is_none(),
        "no registry row left"
    );
    // The block is free again: the next tenant gets block 0.
    let yaml = std::fs::read_to_string(&yaml_path)
        .unwrap()
        .replace("mt-paas/no-such-image:0", crate::needs::DOCKER_DB_IMAGE);
    std::fs::write(&yaml_path, yaml).unwrap();
    let app = TestApp::new(load(&yaml_path, &[]), notes_routes()).await;
    assert_eq!(create(&app, "korea").await.port_block, Some(0));
    app.framework
        .provisioner()
        .destroy(&id("korea"), false)
        .await
        .unwrap();
    sweep(&stage);
    db.cleanup().await;
}

pub async fn an_interrupted_create_is_resumed_by_the_same_command() {
    let stage = stage(3);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(config(&db, &stage, ""), notes_routes()).await;
    // The create is cut off while compose brings the stack up (as a kill -9 of the CLI
    // would: compose is killed with it, the registry row stays `provisioning`).
    let provisioner = app.framework.provisioner().clone();
    let cut = tokio::time::timeout(
        Duration::from_millis(1500),
        provisioner.create(id("hallym"), "Hallym", Some(IsolationMode::DockerPerTenant)),
    )
    .await;
    assert!(cut.is_err(), "the stack took longer than the cut: {cut:?}");
    let record = app
        .framework
        .tenants()
        .get(&id("hallym"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, TenantStatus::Provisioning);
    let block = record.port_block;
    // The same command finishes it, in the same block.
    let record = create(&app, "hallym").await;
    assert_eq!(record.port_block, block);
    write_note(&app, "hallym", 1).await;
    assert_eq!(read_notes(&app, "hallym").await.len(), 1);
    assert_eq!(projects(&stage.service).len(), 1);
    app.framework
        .provisioner()
        .destroy(&id("hallym"), false)
        .await
        .unwrap();
    assert!(projects(&stage.service).is_empty());
    sweep(&stage);
    db.cleanup().await;
}

pub async fn compose_v1_runs_the_same_template() {
    let stage = stage(4);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(config(&db, &stage, "    compose: v1\n"), notes_routes()).await;
    create(&app, "hallym").await;
    write_note(&app, "hallym", 5).await;
    assert_eq!(
        read_notes(&app, "hallym").await,
        vec![("hallym".to_owned(), 5)]
    );
    assert_eq!(
        projects(&stage.service),
        BTreeSet::from([project(&stage, "hallym")])
    );
    app.framework
        .provisioner()
        .destroy(&id("hallym"), false)
        .await
        .unwrap();
    assert!(projects(&stage.service).is_empty());
    assert!(volumes(&stage.service).is_empty());
    sweep(&stage);
    db.cleanup().await;
}

/// Builds the tenant router tests' app image (`tests/docker/echo-app`: Perl on the base
/// image, an HTTP server that answers with what it received).
fn echo_app_image() -> &'static str {
    const IMAGE: &str = "mtpd/echo-app:1";
    let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/echo-app");
    let built = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(&context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    IMAGE
}

/// The router's headers the echo app saw, as a `HeaderMap` for [`RouterVerifier`].
fn seen_headers(seen: &serde_json::Value) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in seen.as_object().unwrap() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    headers
}

pub async fn the_tenant_router_sends_each_tenant_to_its_own_app() {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt as _;

    let stage = stage(5);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let image = echo_app_image();
    config(
        &db,
        &stage,
        &format!(
            "    images:\n      db: \"{}\"\n      app: \"{image}\"\n    app_read_timeout_seconds: 1\n",
            crate::needs::DOCKER_DB_IMAGE
        ),
    );
    // Signed-in users too: the app learns who the user is.
    let path = db.dir.path().join("mt_paas_config.yaml");
    let mut yaml = std::fs::read_to_string(&path).unwrap();
    yaml.push_str(&format!("auth:\n  jwt:\n    secret: \"{JWT_SECRET}\"\n"));
    std::fs::write(&path, yaml).unwrap();
    let app = TestApp::new(load(&path, &[]), notes_routes()).await;
    for tenant in ["hallym", "korea"] {
        create(&app, tenant).await;
    }
    let key = |tenant: &str| stack_env(&db, tenant, "MT_PAAS_ROUTER_KEY");
    assert_ne!(key("hallym"), key("korea"));
    // The app listens a moment after its container starts.
    let mut answered = None;
    for _ in 0..40 {
        let answer = app.get("/hello?x=1", &[("x-tenant-id", b"hallym")]).await;
        if answer.status == 200 {
            answered = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    answered.expect("hallym's app answers");

    // Through the guard to hallym's own app; what the client claimed is not passed on.
    let request = Request::post("/upload?x=1")
        .header("x-tenant-id", "hallym")
        .header("x-mt-paas-tenant", "korea")
        .header("x-mt-paas-signature", "v1=forged")
        .header("forwarded", "for=6.6.6.6")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("content-type", "text/plain")
        .body(Body::from("안녕하세요 korea"))
        .unwrap();
    let answer = app.send(request).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let seen = &answer.body;
    assert_eq!(
        seen["tenant_env"], "hallym",
        "hallym's own container: {seen}"
    );
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/upload?x=1");
    assert_eq!(seen["body"], "안녕하세요 korea");
    let headers = &seen["headers"];
    assert_eq!(headers["x-mt-paas-tenant"], "hallym", "{seen}");
    assert!(
        headers.get("x-drop-me").is_none() && headers.get("connection").is_none(),
        "{seen}"
    );
    assert!(
        !headers["forwarded"].as_str().unwrap().contains("6.6.6.6"),
        "{seen}"
    );
    // The app verifies it came from its own router, once; another tenant's key does not.
    let post = http::Method::POST;
    let forwarded = seen_headers(headers);
    assert_eq!(
        RouterVerifier::new("korea", &key("hallym")).verify(&post, "/upload?x=1", &forwarded),
        Err(RouterRefusal::OtherTenant("hallym".into()))
    );
    assert_eq!(
        RouterVerifier::new("hallym", &key("korea")).verify(&post, "/upload?x=1", &forwarded),
        Err(RouterRefusal::Signature)
    );
    let hallym = RouterVerifier::new("hallym", &key("hallym"));
    assert_eq!(
        hallym
            .verify(&post, "/upload?x=1", &forwarded)
            .map(|c| c.user),
        Ok(None)
    );
    assert_eq!(
        hallym.verify(&post, "/upload?x=1", &forwarded),
        Err(RouterRefusal::Replayed)
    );
    // The app's hop-by-hop headers stay behind; its own come through.
    assert_eq!(answer.headers["x-echo"], "yes");
    assert!(answer.headers.get("keep-alive").is_none());

    // A signed-in user is named to the app, and signed for.
    let token = mt_paas::JwtKeys::from_config(
        &serde_json::from_value(serde_json::json!({
            "secret": JWT_SECRET, "algorithm": "HS256", "expiry_hours": 1, "leeway_seconds": 0
        }))
        .unwrap(),
    )
    .unwrap()
    .issue(
        serde_json::json!({"sub": "minji", "tenant_id": "hallym"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let answer = app
        .get(
            "/me",
            &[
                ("x-tenant-id", b"hallym"),
                ("authorization", bearer.as_bytes()),
            ],
        )
        .await;
    let headers = &answer.body["headers"];
    assert_eq!(headers["x-mt-paas-user"], "minji", "{}", answer.body);
    assert_eq!(
        hallym
            .verify(&http::Method::GET, "/me", &seen_headers(headers))
            .map(|c| c.user),
        Ok(Some("minji".into()))
    );
    // A token of another tenant never reaches an app.
    app.get(
        "/me",
        &[
            ("x-tenant-id", b"korea"),
            ("authorization", bearer.as_bytes()),
        ],
    )
    .await
    .assert_problem(403, "cross_tenant_access");

    let answer = app.get("/hello", &[("x-tenant-id", b"korea")]).await;
    assert_eq!(answer.body["tenant_env"], "korea");
    // The service's own routes are still its own.
    write_note(&app, "hallym", 3).await;
    assert_eq!(
        read_notes(&app, "hallym").await,
        vec![("hallym".to_owned(), 3)]
    );
    // The guard holds before the router: an unknown tenant never reaches an app.
    app.get("/hello", &[("x-tenant-id", b"nobody")])
        .await
        .assert_problem(404, "tenant_not_found");

    // Server-sent events stream through, event by event.
    let response = tower::ServiceExt::oneshot(
        app.router.clone(),
        Request::get("/events")
            .header("x-tenant-id", "korea")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    assert_eq!(frames.concat(), "data: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert!(frames.len() >= 3, "streamed, not buffered: {frames:?}");

    // A WebSocket upgrade over a real connection: the router joins the client to korea's app.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app.router.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: service\r\nX-Tenant-ID: korea\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(
                socket.read(&mut byte).await.unwrap(),
                1,
                "the connection closed: {head:?}"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("x-tenant: korea"), "korea's own app: {head}");
        for message in ["ping", "안녕"] {
            socket.write_all(message.as_bytes()).await.unwrap();
            let want = format!("echo:{message}");
            let mut got = vec![0u8; want.len()];
            socket.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
        drop(socket);
        server.abort();
    }

    // An app slower than app_read_timeout_seconds: 504, and the next request is served.
    app.get("/slow", &[("x-tenant-id", b"korea")])
        .await
        .assert_problem(504, "tenant_app_timeout");
    assert_eq!(
        app.get("/hello", &[("x-tenant-id", b"korea")]).await.status,
        200
    );

    // hallym's app stops: hallym gets 503 with Retry-After; korea is served.
    let container = format!("{}-app-1", project(&stage, "hallym"));
    docker(&["stop", "-t", "1", &container]);
    let answer = app.get("/hello", &[("x-tenant-id", b"hallym")]).await;
    answer.assert_problem(503, "tenant_app_unavailable");
    assert_eq!(answer.headers["retry-after"], "5");
    assert_eq!(
        app.get("/hello", &[("x-tenant-id", b"korea")]).await.status,
        200
    );

    finish(&app, &stage, db, &["hallym", "korea"]).await;
}

/// The isolation property of every mode (`it/isolation.rs`), with three tenants' stacks up at
/// once and a budget of 3 connections for all of them: random interleavings of writes and
/// reads through the whole guard, every read its own tenant's rows only.
pub async fn isolation_under_interleaving_across_three_stacks() {
    let stage = stage(6);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Written as the other tests' config, then with a budget of 3 for all tenants.
    config(&db, &stage, "");
    let path = db.dir.path().join("mt_paas_config.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_connections: 12", "max_connections: 3")
        .replace("pool_size_per_tenant: 2", "pool_size_per_tenant: 1");
    std::fs::write(&path, yaml).unwrap();
    let app = std::sync::Arc::new(TestApp::new(load(&path, &[]), notes_routes()).await);
    let tenants: Vec<String> = ["hallym", "korea", "snu"].map(str::to_owned).to_vec();
    for tenant in &tenants {
        create(&app, tenant).await;
    }
    let handle = tokio::runtime::Handle::current();
    let (shared, names) = (app.clone(), tenants.clone());
    tokio::task::spawn_blocking(move || {
        crate::helpers::interleaved_isolation(&handle, &shared, &names, 4);
    })
    .await
    .unwrap();
    assert!(app.framework.databases().open_connections() <= 3);
    for tenant in &tenants {
        app.framework
            .provisioner()
            .destroy(&id(tenant), false)
            .await
            .unwrap();
    }
    sweep(&stage);
    db.cleanup().await;
}
