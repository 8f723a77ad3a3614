//! DOCKER_PER_TENANT: rendered stacks with disjoint port blocks, reused after a destroy; and a
//! tenant's database reached at its block's port.

use std::{collections::BTreeSet, path::Path};

use mt_paas::{
    Target, TenantId, TenantStatus,
    provisioning::{Provisioned, docker},
};
use yaml_serde::Value;

use crate::helpers::{Backend, TestApp, TestDb};

fn id(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn templates() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

fn docker_yaml(db: &TestDb, extra: &str) -> String {
    format!(
        "service:\n  id: keli_tutor\n  version: \"1.2.0\"\nisolation:\n  mode: DOCKER_PER_TENANT\n  docker:\n    port_range_start: 10200\n    port_range_size: 100\n    compose_template: \"{t}/docker-compose.template.yml\"\n    env_template: \"{t}/.env.template\"\n    tenants_dir: \"{dir}/tenants\"\n    database_url: \"postgresql://app:pa%40ss@127.0.0.1:{{db_port}}/app\"\n    start: false\n    password_secret: \"a render test secret\"\n    images:\n      db: \"postgres:16\"\n      app: \"keli_tutor:1.2.0\"\n      vector: \"qdrant/qdrant:v1.12.5\"\n{extra}",
        t = templates().display(),
        dir = db.dir.path().display(),
    )
}

/// The host ports a rendered compose file publishes.
fn published_ports(compose: &Value) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for (_, service) in compose["services"].as_mapping().unwrap() {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let spec = port.as_str().unwrap();
            // "127.0.0.1:HOST:CONTAINER"
            let host: u16 = spec.split(':').nth(1).unwrap().parse().unwrap();
            ports.insert(host);
        }
    }
    ports
}

#[tokio::test]
async fn stacks_get_disjoint_port_blocks_that_are_reused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let config = db.config(&docker_yaml(&db, ""));
    let app = TestApp::new(config, axum::Router::new()).await;
    let provisioner = app.framework.provisioner();
    let mut all_ports = BTreeSet::new();
    for (n, tenant) in ["hallym", "korea", "snu"].into_iter().enumerate() {
        let outcome = provisioner
            .create(id(tenant), &format!("{tenant} univ"), None)
            .await
            .unwrap();
        let Provisioned::AwaitingDocker { record, dir } = outcome else {
            panic!("no Docker engine here: the stack waits ({outcome:?})");
        };
        assert_eq!(record.port_block, Some(u32::try_from(n).unwrap()));
        assert_eq!(record.status, TenantStatus::Provisioning);
        assert_eq!(dir, db.dir.path().join("tenants").join(tenant));

        let text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
        let compose: Value = yaml_serde::from_str(&text).unwrap();
        let project = format!("10-keli_tutor-{tenant}");
        let base = 10200 + 100 * u16::try_from(n).unwrap();
        let ports = published_ports(&compose);
        assert_eq!(
            ports,
            BTreeSet::from([base, base + 2, base + 3]),
            "{tenant}"
        );
        assert!(ports.iter().all(|p| (base..base + 100).contains(p)));
        assert!(all_ports.is_disjoint(&ports), "blocks overlap");
        all_ports.extend(ports);
        assert_eq!(
            compose["services"]["app"]["image"].as_str(),
            Some("keli_tutor:1.2.0")
        );
        assert_eq!(
            compose["services"]["app"]["environment"]["MT_PAAS_TENANT_ID"].as_str(),
            Some(tenant)
        );
        assert_eq!(
            compose["volumes"]["db-data"]["name"].as_str(),
            Some(format!("{project}-db").as_str())
        );

        let env = std::fs::read_to_string(dir.join(".env")).unwrap();
        assert!(env.contains(&format!("TENANT_ID={tenant}\n")));
        assert!(env.contains("POSTGRES_PASSWORD=pa@ss\n"), "{env}");
        assert!(env.contains(&format!("DB_PORT={}\n", base + 2)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(".env"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, ".env holds a password");
        }
    }

    // Destroying korea frees block 1; the next tenant takes it.
    provisioner.destroy(&id("korea"), false).await.unwrap();
    assert!(!db.dir.path().join("tenants/korea").exists());
    let Provisioned::AwaitingDocker { record, .. } = provisioner
        .create(id("yonsei"), "Yonsei", None)
        .await
        .unwrap()
    else {
        panic!("expected a waiting stack");
    };
    assert_eq!(record.port_block, Some(1));

    // Running create again for a waiting tenant keeps its block and files.
    let Provisioned::AwaitingDocker { record, .. } = provisioner
        .create(id("hallym"), "hallym univ", None)
        .await
        .unwrap()
    else {
        panic!("expected a waiting stack");
    };
    assert_eq!(record.port_block, Some(0));
    db.cleanup().await;
}

#[tokio::test]
async fn a_template_with_an_unknown_variable_is_an_error() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let bad = db.dir.path().join("bad.yml");
    std::fs::write(&bad, "name: {{ project }}\nimage: {{ no_such_variable }}\n").unwrap();
    let yaml = docker_yaml(&db, "").replace(
        &format!("{}/docker-compose.template.yml", templates().display()),
        &bad.display().to_string(),
    );
    let app = TestApp::new(db.config(&yaml), axum::Router::new()).await;
    let err = app
        .framework
        .provisioner()
        .create(id("hallym"), "H", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("compose_template"), "{err}");
    assert!(
        app.framework
            .tenants()
            .get(&id("hallym"))
            .await
            .unwrap()
            .is_none(),
        "undone"
    );
    db.cleanup().await;
}

/// The stack's database is reached at the block's port: a block laid over the local
/// Postgres (port 5432) stands in for the tenant's container.
#[tokio::test]
async fn the_tenant_database_is_reached_at_its_block_port() {
    let Some(pg) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let sqlite = TestDb::new(Backend::Sqlite).await.unwrap();
    let database = pg.url.rsplit_once('/').unwrap().1.to_owned();
    let pool = sqlx::PgPool::connect(&crate::helpers::pg_admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&pool)
    .await
    .unwrap();
    let yaml = format!(
        "isolation:\n  mode: DOCKER_PER_TENANT\n  docker:\n    port_range_start: 5430\n    port_range_size: 10\n    db_port_offset: 2\n    database_url: \"postgres://postgres@127.0.0.1:{{db_port}}/{database}\"\n"
    );
    let app = TestApp::new(sqlite.config(&yaml), axum::Router::new()).await;
    let tenants = app.framework.tenants();
    tenants
        .create(mt_paas::NewTenant::new(id("hallym"), "H"))
        .await
        .unwrap();
    assert_eq!(tenants.allocate_port_block(&id("hallym")).await.unwrap(), 0);
    let tenant = tenants.resolve(&id("hallym")).await.unwrap().unwrap();
    let target = Target::of(app.framework.config(), tenant.record()).unwrap();
    assert!(matches!(&target, Target::PgDatabase { url, .. } if url.expose().contains(":5432/")));
    assert_eq!(docker::APP_PORT_OFFSET, 0);
    let mut db = app.framework.databases().acquire(&tenant).await.unwrap();
    let current: String = mt_paas::with_db!(db, conn => {
        sqlx::query_scalar("SELECT current_database()::text").fetch_one(conn).await
    })
    .unwrap();
    assert_eq!(current, database);
    drop(db);
    pg.cleanup().await;
}

/// Names are injective: two tenants (of one service or of two) never share a compose project
/// or a volume; a display name can add nothing to the compose file or `.env`; a password that
/// `.env` could not hold literally is refused, naming where it comes from.
#[tokio::test]
async fn names_are_unique_and_values_cannot_inject() {
    let pairs = [
        (("keli_tutor", "a_b"), ("keli_tutor", "a-b")),
        (("a-b", "c"), ("a", "b-c")),
        (("a_b", "c"), ("a", "b_c")),
        (("s", "x1"), ("s1", "x")),
    ];
    for ((s1, t1), (s2, t2)) in pairs {
        assert_ne!(
            docker::project_name(s1, t1),
            docker::project_name(s2, t2),
            "{s1}/{t1} and {s2}/{t2}"
        );
    }

    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::new(db.config(&docker_yaml(&db, "")), axum::Router::new()).await;
    let provisioner = app.framework.provisioner();
    // A line break in a name is refused before anything is written.
    let err = provisioner
        .create(id("evil"), "x\nevil: true", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("control characters"), "{err}");
    // Quotes, `$` and `#` are kept as text.
    let hostile = r#"Univ" # ${HOME} $(id) \"#;
    let Provisioned::AwaitingDocker { dir, .. } = provisioner
        .create(id("quoted"), hostile, None)
        .await
        .unwrap()
    else {
        panic!("no Docker engine here: the stack waits")
    };
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(
        text.contains("$${HOME}") && !text.contains(" ${HOME}"),
        "`$` is doubled (compose interpolates nothing):\n{text}"
    );
    let compose: Value = yaml_serde::from_str(&text).unwrap();
    let keys: BTreeSet<&str> = compose
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, BTreeSet::from(["services", "volumes"]));
    db.cleanup().await;

    // A database password with a quote or a `$` cannot be written to `.env` literally.
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let yaml = docker_yaml(&db, "").replace("pa%40ss", "pa%24%7BHOME%7D");
    let app = TestApp::new(db.config(&yaml), axum::Router::new()).await;
    let err = app
        .framework
        .provisioner()
        .create(id("hallym"), "Hallym", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("isolation.docker.database_url (password)"),
        "{err}"
    );
    db.cleanup().await;
}
