//! Tenant A never reads or writes tenant B's data, in every isolation mode, under
//! concurrency, with connections shared and evicted across tenants; and the connection budget
//! holds for any number of tenants.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::body::Body;
use http::Request;
use mt_paas::{TenantId, provisioning::Provisioned};
use serde_json::json;

use crate::helpers::{
    Note, Store, TestApp, TestDb, interleaved_isolation, notes_routes as routes, read, write,
};

async fn provision(app: &TestApp, ids: &[String], concurrency: usize) {
    let provisioner = app.framework.provisioner().clone();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for id in ids {
        let provisioner = provisioner.clone();
        let id: TenantId = id.parse().unwrap();
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let out = provisioner
                .create(id.clone(), &format!("Tenant {id}"), None)
                .await;
            drop(permit);
            match out {
                Ok(Provisioned::Ready(_)) => {}
                other => panic!("provisioning {id}: {other:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Random interleavings of writes and reads by many tenants through HTTP, 16 at a time on
/// a budget of 3 connections (so connections pass between tenants constantly): every read
/// sees only its own tenant's rows, and in the end every tenant holds exactly what it wrote.
fn isolation_under_interleaving(store: Store) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some((db, app)) = runtime.block_on(async {
        let db = TestDb::new(store.backend()).await?;
        let app = TestApp::new(db.tenant_config(store, 3, ""), routes()).await;
        Some((db, app))
    }) else {
        return;
    };
    let tenants: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    runtime.block_on(provision(&app, &tenants, 4));
    let app = Arc::new(app);
    interleaved_isolation(runtime.handle(), &app, &tenants, 6);
    assert!(app.framework.databases().open_connections() <= 3);
    runtime.block_on(db.cleanup());
}

#[test]
fn isolation_under_interleaving_sqlite_files() {
    isolation_under_interleaving(Store::SqliteFiles);
}

#[test]
fn isolation_under_interleaving_postgres_databases() {
    isolation_under_interleaving(Store::PgDatabases);
}

#[test]
fn isolation_under_interleaving_postgres_schemas() {
    isolation_under_interleaving(Store::PgSchemas);
}

/// A mixed fleet: schemas by default, one premium tenant with its own database; the same
/// handler serves both, and neither sees the other.
#[tokio::test]
async fn a_tenant_can_override_the_isolation_mode() {
    let Some(db) = TestDb::new(crate::helpers::Backend::Postgres).await else {
        return;
    };
    let config = db.tenant_config(Store::PgSchemas, 4, "");
    // url_template names per-tenant databases for the premium override.
    let base = crate::helpers::pg_admin_url();
    let server = base.rsplit_once('/').unwrap().0;
    let path = db.dir.path().join("mt_paas_config.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        &format!(
            "sqlite://{}/{{tenant_id}}.db",
            db.dir.path().join("tenants").display()
        ),
        &format!(
            "{server}/{}_t_{{tenant_id}}",
            db.url.rsplit_once('/').unwrap().1
        ),
    );
    std::fs::write(&path, yaml).unwrap();
    drop(config);
    let config = crate::helpers::load(&path, &[]);
    let app = TestApp::new(config, routes()).await;
    let provisioner = app.framework.provisioner();
    provisioner
        .create("basic1".parse().unwrap(), "Basic", None)
        .await
        .unwrap();
    provisioner
        .create(
            "premium1".parse().unwrap(),
            "Premium",
            Some(mt_paas::IsolationMode::DatabasePerTenant),
        )
        .await
        .unwrap();
    write(&app, "basic1", 1).await;
    write(&app, "premium1", 2).await;
    assert_eq!(
        read(&app, "basic1").await,
        vec![Note {
            tenant: "basic1".into(),
            value: 1
        }]
    );
    assert_eq!(
        read(&app, "premium1").await,
        vec![Note {
            tenant: "premium1".into(),
            value: 2
        }]
    );
    let databases = db.tenant_databases().await;
    assert_eq!(
        databases.len(),
        1,
        "only the premium tenant has a database: {databases:?}"
    );
    assert!(databases[0].ends_with("_t_premium1"));
    db.cleanup().await;
}

/// 1,000 tenants in schema mode on a budget of 20 connections: all served, and Postgres
/// never sees more than 20 connections of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_schemas_share_twenty_connections() {
    let Some(pg) = TestDb::new(crate::helpers::Backend::Postgres).await else {
        return;
    };
    // The central DB is SQLite here, so every connection to the Postgres database is a
    // tenant connection.
    let sqlite = TestDb::new(crate::helpers::Backend::Sqlite).await.unwrap();
    let path = sqlite.dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "isolation:\n  mode: SCHEMA_PER_TENANT\ndatabase:\n  central:\n    url: \"{}\"\n  tenant:\n    url_template: \"{}\"\n    max_connections: 20\n    pool_size_per_tenant: 2\n    acquire_timeout_ms: 60000\n    migrations: \"{}\"\n",
            sqlite.url,
            pg.url,
            crate::helpers::notes_migrations().display()
        ),
    )
    .unwrap();
    let app = Arc::new(TestApp::new(crate::helpers::load(&path, &[]), routes()).await);
    let database = pg.url.rsplit_once('/').unwrap().1.to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let admin = crate::helpers::pg_admin_url();
        tokio::spawn(async move {
            let pool = sqlx::PgPool::connect(&admin).await.unwrap();
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&database)
                .fetch_one(&pool)
                .await
                .unwrap();
                peak.fetch_max(usize::try_from(n).unwrap(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let tenants: Vec<String> = (0..1000).map(|i| format!("s{i:04}")).collect();
    provision(&app, &tenants, 16).await;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let app = app.clone();
        let tenant = tenant.clone();
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            write(&app, &tenant, i64::try_from(i).unwrap()).await;
            let notes = read(&app, &tenant).await;
            drop(permit);
            assert_eq!(
                notes,
                vec![Note {
                    tenant,
                    value: i64::try_from(i).unwrap()
                }]
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    monitor.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 20, "Postgres saw {peak} connections of the service");
    assert!(
        peak >= 2,
        "the monitor saw the service's connections ({peak})"
    );
    assert!(app.framework.databases().open_connections() <= 20);
    pg.cleanup().await;
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 300 SQLite tenants on a budget of 50: all served, and the process's open file
/// descriptors stay bounded (each connection holds the file, its WAL and its shared memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_sqlite_tenants_keep_file_descriptors_bounded() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await.unwrap();
    let app = Arc::new(TestApp::new(db.tenant_config(Store::SqliteFiles, 50, ""), routes()).await);
    let tenants: Vec<String> = (0..300).map(|i| format!("f{i:03}")).collect();
    provision(&app, &tenants, 8).await;
    let baseline = open_fds();
    let peak = Arc::new(AtomicUsize::new(0));
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for round in 0..2 {
        for (i, tenant) in tenants.iter().enumerate() {
            let (app, tenant, peak) = (app.clone(), tenant.clone(), peak.clone());
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                write(&app, &tenant, i64::try_from(round * 1000 + i).unwrap()).await;
                assert!(read(&app, &tenant).await.iter().all(|n| n.tenant == tenant));
                peak.fetch_max(open_fds(), Ordering::SeqCst);
                assert!(app.framework.databases().open_connections() <= 50);
                drop(permit);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    // 50 connections × 3 files, plus slack for sockets and threads of the test itself.
    assert!(
        peak <= baseline + 50 * 3 + 32,
        "open fds peaked at {peak} (baseline {baseline})"
    );
    for tenant in &tenants {
        assert_eq!(read(&app, tenant).await.len(), 2, "{tenant}");
    }
    db.cleanup().await;
}

/// On a SQLite central DB, what another process does to a tenant (the CLI beside a running
/// service) is seen through the change feed, long before the tenant cache expires: a suspension is enforced, and a destroy stops the
/// service before the archive is taken — every write the service accepted is in the archive,
/// and none lands after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_s_lifecycle_change_is_seen_on_sqlite() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await.unwrap();
    let config = db.tenant_config(Store::SqliteFiles, 4, "");
    let service = Arc::new(TestApp::new(config.clone(), routes()).await);
    // The "CLI": another framework on the same files, sharing nothing in memory.
    let cli = TestApp::new(config, routes()).await;
    let hallym: TenantId = "hallym".parse().unwrap();
    cli.framework
        .provisioner()
        .create(hallym.clone(), "한림대학교", None)
        .await
        .unwrap();
    write(&service, "hallym", 1).await;

    // Suspended elsewhere: refused here through the change feed (polled every 200 ms), long
    // before the 30 s the tenant cache would otherwise hold the old state.
    cli.framework
        .tenants()
        .set_status(&hallym, mt_paas::TenantStatus::Suspended)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let answer = service.get("/notes", &[("x-tenant-id", b"hallym")]).await;
        if answer.status == 403 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still served after 10 s: the change feed was not read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("suspension seen after {:?}", started.elapsed());
    cli.framework
        .tenants()
        .set_status(&hallym, mt_paas::TenantStatus::Active)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while service
        .get("/notes", &[("x-tenant-id", b"hallym")])
        .await
        .status
        != 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still refused 10 s after reinstatement"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Writes keep coming while the CLI destroys the tenant.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(1));
    let writer = {
        let (service, stop, accepted) = (service.clone(), stop.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut value = 100;
            while !stop.load(Ordering::SeqCst) {
                let request = Request::post("/notes")
                    .header("x-tenant-id", "hallym")
                    .header("content-type", "application/json")
                    .body(Body::from(json!({ "value": value }).to_string()))
                    .unwrap();
                let answer = service.send(request).await;
                match answer.status.as_u16() {
                    200 => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    410 | 503 => {}
                    other => panic!("unexpected {other}: {:?}", answer.body),
                }
                value += 1;
            }
        })
    };
    // The destroy starts once writes are flowing.
    while accepted.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let archive = cli
        .framework
        .provisioner()
        .destroy(&hallym, true)
        .await
        .unwrap()
        .unwrap();
    // By the time the destroy is done, the service refuses the tenant.
    service
        .get("/notes", &[("x-tenant-id", b"hallym")])
        .await
        .assert_problem(410, "tenant_archived");
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let accepted = accepted.load(Ordering::SeqCst);
    assert!(accepted > 2, "writes ran during the destroy: {accepted}");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&archive);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        archived,
        i64::try_from(accepted).unwrap(),
        "every write the service accepted is in the archive"
    );
    db.cleanup().await;
}
