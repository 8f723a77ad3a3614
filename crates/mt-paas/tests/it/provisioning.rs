//! The provisioning saga on every store: create, undo on failure, resume, destroy with an
//! archive, restore.

use std::path::Path;

use mt_paas::{
    ServiceMarketFramework, Target, TargetError, TenantId, TenantStatus,
    provisioning::{MigrationOutcome, ProvisionError, Provisioned},
};

use crate::helpers::{Store, TestApp, TestDb};

fn id(s: &str) -> TenantId {
    s.parse().unwrap()
}

/// Whether the tenant's storage exists: file, database or schema.
async fn storage_exists(
    framework: &ServiceMarketFramework,
    db: &TestDb,
    store: Store,
    tenant: &str,
) -> bool {
    match store {
        Store::SqliteFiles => db
            .dir
            .path()
            .join("tenants")
            .join(format!("{tenant}.db"))
            .exists(),
        Store::PgDatabases => db
            .tenant_databases()
            .await
            .iter()
            .any(|d| d.ends_with(&format!("_t_{tenant}"))),
        Store::PgSchemas => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                    .bind(format!("tenant_{tenant}"))
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            let _ = framework;
            found.is_some()
        }
    }
}

async fn notes_app(db: &TestDb, store: Store) -> TestApp {
    TestApp::new(db.tenant_config(store, 4, ""), crate::isolation_routes()).await
}

async fn destroy_and_restore(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let app = notes_app(&db, store).await;
    let provisioner = app.framework.provisioner();
    assert!(matches!(
        provisioner
            .create(id("hallym"), "한림대학교", None)
            .await
            .unwrap(),
        Provisioned::Ready(_)
    ));
    crate::isolation_write(&app, "hallym", 7).await;
    crate::isolation_write(&app, "hallym", 8).await;

    let archive = provisioner
        .destroy(&id("hallym"), true)
        .await
        .unwrap()
        .expect("an archive");
    assert!(archive.is_file(), "{}", archive.display());
    assert!(archive.starts_with(db.dir.path().join("archive")));
    let manifest = mt_paas::provisioning::read_manifest(&archive).unwrap();
    assert_eq!(manifest.display_name, "한림대학교");
    assert!(
        !storage_exists(&app.framework, &db, store, "hallym").await,
        "storage dropped"
    );
    let record = app
        .framework
        .tenants()
        .get(&id("hallym"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, TenantStatus::Archived);
    app.get("/notes", &[("x-tenant-id", b"hallym")])
        .await
        .assert_problem(410, "tenant_archived");

    let restored = provisioner.restore(&id("hallym"), &archive).await.unwrap();
    assert_eq!(restored.status, TenantStatus::Active);
    let values: Vec<i64> = crate::isolation_read(&app, "hallym")
        .await
        .iter()
        .map(|n| n.1)
        .collect();
    assert_eq!(values, vec![7, 8], "the data is back");
    crate::isolation_write(&app, "hallym", 9).await;

    // Restoring over a live tenant is refused; so is another tenant's archive.
    let live = provisioner.restore(&id("hallym"), &archive).await;
    assert!(
        matches!(live, Err(ProvisionError::Conflict { .. })),
        "{live:?}"
    );
    provisioner
        .create(id("korea"), "고려대학교", None)
        .await
        .unwrap();
    provisioner.destroy(&id("korea"), false).await.unwrap();
    let wrong = provisioner.restore(&id("korea"), &archive).await;
    assert!(
        matches!(wrong, Err(ProvisionError::Conflict { .. })),
        "{wrong:?}"
    );

    // A tenant unknown to the registry comes back from its archive's manifest.
    let second = provisioner
        .destroy(&id("hallym"), true)
        .await
        .unwrap()
        .unwrap();
    app.framework.tenants().remove(&id("hallym")).await.unwrap();
    let record = provisioner.restore(&id("hallym"), &second).await.unwrap();
    assert_eq!(record.display_name, "한림대학교");
    assert_eq!(crate::isolation_read(&app, "hallym").await.len(), 3);

    // Without its manifest an archive says nothing of whose it is: refused, unless asked.
    let third = provisioner
        .destroy(&id("hallym"), true)
        .await
        .unwrap()
        .unwrap();
    let mut manifest = third.as_os_str().to_owned();
    manifest.push(".json");
    std::fs::remove_file(&manifest).unwrap();
    let unnamed = provisioner.restore(&id("korea"), &third).await;
    assert!(
        matches!(&unnamed, Err(ProvisionError::Archive(m)) if m.contains("no manifest")),
        "{unnamed:?}"
    );
    let record = provisioner
        .restore_unchecked(&id("hallym"), &third)
        .await
        .unwrap();
    assert_eq!(record.status, TenantStatus::Active);
    assert_eq!(crate::isolation_read(&app, "hallym").await.len(), 3);
    db.cleanup().await;
}

#[tokio::test]
async fn destroy_and_restore_sqlite_files() {
    destroy_and_restore(Store::SqliteFiles).await;
}

#[tokio::test]
async fn destroy_and_restore_postgres_databases() {
    destroy_and_restore(Store::PgDatabases).await;
}

#[tokio::test]
async fn destroy_and_restore_postgres_schemas() {
    destroy_and_restore(Store::PgSchemas).await;
}

async fn a_failed_migration_undoes_everything(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut config = db.tenant_config(store, 4, "");
    config.database.tenant.migrations = Some(broken);
    config.database.tenant.migrate_on_start = false;
    let app = TestApp::new(config, axum::Router::new()).await;
    let result = app
        .framework
        .provisioner()
        .create(id("doomed"), "Doomed", None)
        .await;
    assert!(
        matches!(result, Err(ProvisionError::Migrate { .. })),
        "{result:?}"
    );
    assert!(
        app.framework
            .tenants()
            .get(&id("doomed"))
            .await
            .unwrap()
            .is_none(),
        "no registry row"
    );
    assert!(
        !storage_exists(&app.framework, &db, store, "doomed").await,
        "no storage"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_failed_migration_undoes_everything_sqlite_files() {
    a_failed_migration_undoes_everything(Store::SqliteFiles).await;
}

#[tokio::test]
async fn a_failed_migration_undoes_everything_postgres_databases() {
    a_failed_migration_undoes_everything(Store::PgDatabases).await;
}

#[tokio::test]
async fn a_failed_migration_undoes_everything_postgres_schemas() {
    a_failed_migration_undoes_everything(Store::PgSchemas).await;
}

/// A crash after the registry row and part of the storage: the same call finishes the job.
async fn an_interrupted_create_resumes(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let app = notes_app(&db, store).await;
    let tenants = app.framework.tenants();
    tenants
        .create(mt_paas::NewTenant::new(id("halfway"), "Half").status(TenantStatus::Provisioning))
        .await
        .unwrap();
    app.get("/notes", &[("x-tenant-id", b"halfway")])
        .await
        .assert_problem(503, "tenant_not_ready");
    let record = tenants.get(&id("halfway")).await.unwrap().unwrap();
    let target = Target::of(app.framework.config(), &record).unwrap();
    // What the first attempt got done: the storage, without migrations.
    match &target {
        Target::SqliteFile { path } => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        Target::PgDatabase { database, .. } => {
            let pool = sqlx::PgPool::connect(&crate::helpers::pg_admin_url())
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{database}\""
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
        Target::PgSchema { schema, url } => {
            let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .execute(&pool)
                .await
                .unwrap();
        }
        _ => unreachable!(),
    }
    let done = app
        .framework
        .provisioner()
        .create(id("halfway"), "Half", None)
        .await
        .unwrap();
    assert!(matches!(done, Provisioned::Ready(ref r) if r.status == TenantStatus::Active));
    crate::isolation_write(&app, "halfway", 1).await;
    assert_eq!(crate::isolation_read(&app, "halfway").await.len(), 1);
    let again = app
        .framework
        .provisioner()
        .create(id("halfway"), "Half", None)
        .await;
    assert!(
        matches!(again, Err(ProvisionError::AlreadyExists(_))),
        "{again:?}"
    );
    assert_eq!(
        app.framework
            .provisioner()
            .migrate(&id("halfway"))
            .await
            .unwrap(),
        MigrationOutcome::UpToDate
    );
    db.cleanup().await;
}

#[tokio::test]
async fn an_interrupted_create_resumes_sqlite_files() {
    an_interrupted_create_resumes(Store::SqliteFiles).await;
}

#[tokio::test]
async fn an_interrupted_create_resumes_postgres_databases() {
    an_interrupted_create_resumes(Store::PgDatabases).await;
}

#[tokio::test]
async fn an_interrupted_create_resumes_postgres_schemas() {
    an_interrupted_create_resumes(Store::PgSchemas).await;
}

#[tokio::test]
async fn names_too_long_for_postgres_are_refused_before_anything_is_made() {
    let Some(db) = TestDb::new(crate::helpers::Backend::Postgres).await else {
        return;
    };
    let app = notes_app(&db, Store::PgDatabases).await;
    let long = "x".repeat(60);
    let result = app
        .framework
        .provisioner()
        .create(id(&long), "Long", None)
        .await;
    assert!(
        matches!(
            result,
            Err(ProvisionError::Target(TargetError::NameTooLong { .. }))
        ),
        "{result:?}"
    );
    assert!(
        app.framework
            .tenants()
            .get(&id(&long))
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.tenant_databases().await.is_empty());
    db.cleanup().await;
}

#[tokio::test]
async fn destroy_refuses_unknown_tenants_and_missing_storage() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await.unwrap();
    let app = notes_app(&db, Store::SqliteFiles).await;
    let provisioner = app.framework.provisioner();
    let unknown = provisioner.destroy(&id("nobody"), true).await;
    assert!(
        matches!(unknown, Err(ProvisionError::NotFound(_))),
        "{unknown:?}"
    );
    provisioner.create(id("gone"), "Gone", None).await.unwrap();
    std::fs::remove_file(db.dir.path().join("tenants/gone.db")).unwrap();
    let missing = provisioner.destroy(&id("gone"), true).await;
    assert!(
        matches!(missing, Err(ProvisionError::Archive(_))),
        "{missing:?}"
    );
    assert_eq!(
        app.framework
            .tenants()
            .get(&id("gone"))
            .await
            .unwrap()
            .unwrap()
            .status,
        TenantStatus::Active,
        "nothing changed"
    );
    assert_eq!(provisioner.destroy(&id("gone"), false).await.unwrap(), None);
    db.cleanup().await;
}

async fn the_seed_runs_once(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let mut config = db.tenant_config(store, 4, "");
    config.database.tenant.seed =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed.sql"));
    let app = TestApp::new(config, crate::isolation_routes()).await;
    let provisioner = app.framework.provisioner();
    provisioner
        .create(id("seeded"), "Seeded", None)
        .await
        .unwrap();
    let values: Vec<i64> = crate::isolation_read(&app, "seeded")
        .await
        .iter()
        .map(|n| n.1)
        .collect();
    assert_eq!(values, vec![100, 200]);
    // An interrupted provisioning that is resumed does not seed twice.
    app.framework
        .tenants()
        .set_status(&id("seeded"), TenantStatus::Provisioning)
        .await
        .unwrap();
    provisioner
        .create(id("seeded"), "Seeded", None)
        .await
        .unwrap();
    assert_eq!(crate::isolation_read(&app, "seeded").await.len(), 2);
    db.cleanup().await;
}

#[tokio::test]
async fn the_seed_runs_once_sqlite_files() {
    the_seed_runs_once(Store::SqliteFiles).await;
}

#[tokio::test]
async fn the_seed_runs_once_postgres_schemas() {
    the_seed_runs_once(Store::PgSchemas).await;
}

/// The market's provision command can arrive twice at once (pushed, and pulled by a
/// heartbeat): the tenant is built once, and the second call neither fails the first nor
/// undoes its work.
async fn concurrent_creates_build_once(store: Store) {
    let Some(db) = TestDb::new(store.backend()).await else {
        return;
    };
    let app = notes_app(&db, store).await;
    let provisioner = app.framework.provisioner().clone();
    // On a Postgres central DB the second call comes from another replica (its own process
    // state); on SQLite from the same one.
    let other = match store.backend() {
        crate::helpers::Backend::Postgres => Some(notes_app(&db, store).await),
        crate::helpers::Backend::Sqlite => None,
    };
    let second = other.as_ref().map_or_else(
        || provisioner.clone(),
        |o| o.framework.provisioner().clone(),
    );
    for round in 0..5 {
        let tenant = format!("twice{round}");
        // A resumed provisioning (a row left in `provisioning`) is the worst case: both
        // calls would otherwise build.
        if round % 2 == 1 {
            app.framework
                .tenants()
                .create(
                    mt_paas::NewTenant::new(id(&tenant), "Twice")
                        .status(TenantStatus::Provisioning),
                )
                .await
                .unwrap();
        }
        let (a, b) = tokio::join!(
            provisioner.create(id(&tenant), "Twice", None),
            second.create(id(&tenant), "Twice", None),
        );
        let outcomes = [a, b];
        let ready = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Provisioned::Ready(_))))
            .count();
        let already = outcomes
            .iter()
            .filter(|o| matches!(o, Err(ProvisionError::AlreadyExists(_))))
            .count();
        assert_eq!((ready, already), (1, 1), "{tenant}: {outcomes:?}");
        let record = app
            .framework
            .tenants()
            .get(&id(&tenant))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, TenantStatus::Active);
        assert!(storage_exists(&app.framework, &db, store, &tenant).await);
    }
    drop(other);
    drop(app);
    db.cleanup().await;
}

#[tokio::test]
async fn concurrent_creates_build_once_sqlite_files() {
    concurrent_creates_build_once(Store::SqliteFiles).await;
}

#[tokio::test]
async fn concurrent_creates_build_once_postgres_schemas() {
    concurrent_creates_build_once(Store::PgSchemas).await;
}

/// `tenant create` refuses too when the directory went away after the config was checked.
#[tokio::test]
async fn provisioning_refuses_a_missing_migrations_directory() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await.unwrap();
    let gone = db.dir.path().join("migrations-gone");
    std::fs::create_dir_all(&gone).unwrap();
    let mut config = db.config("");
    config.database.tenant.migrations = Some(gone.clone());
    std::fs::remove_dir(&gone).unwrap();
    let config = std::sync::Arc::new(config);
    let tenants = mt_paas::TenantManager::new(
        mt_paas::CentralDb::connect(&config.database.central)
            .await
            .unwrap(),
        config.isolation.mode,
        mt_paas::Features::new(Default::default()),
    );
    let databases = mt_paas::DatabaseRouter::new(config.clone());
    let error = mt_paas::provisioning::Provisioner::new(config, tenants, databases)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("migrations-gone"), "{error}");
    db.cleanup().await;
}
