//! Provisioning benchmark (DESIGN §11): time to provision one tenant in each mode, and
//! `migrate --all` over 1,000 schemas. Run with
//!
//! ```sh
//! cargo bench -p mt-paas --bench provisioning            # needs the local Postgres
//! MT_PAAS_BENCH_SCHEMAS=200 cargo bench -p mt-paas --bench provisioning
//! ```
//!
//! Each figure is printed as median / p95 / max over the tenants provisioned.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use mt_paas::{
    CentralDb, DatabaseRouter, Features, TenantManager,
    config::{Config, ConfigLoader},
    provisioning::{MigrationOutcome, Provisioner},
};

const PG: &str = "postgres://postgres@127.0.0.1:5432";

fn config(dir: &Path, yaml: &str) -> Config {
    let path = dir.join("mt_paas_config.yaml");
    std::fs::write(&path, yaml).unwrap();
    ConfigLoader::new(&path).vars(|_| None).load().unwrap()
}

async fn provisioner(config: Config) -> Provisioner {
    let config = Arc::new(config);
    let central = CentralDb::connect(&config.database.central).await.unwrap();
    let tenants = TenantManager::new(central, config.isolation.mode, Features::default());
    let databases = DatabaseRouter::new(config.clone());
    Provisioner::new(config, tenants, databases).await.unwrap()
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "median {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms  (n={})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len()
    )
}

async fn drop_databases(prefix: &str) {
    let pool = sqlx::PgPool::connect(&format!("{PG}/postgres"))
        .await
        .unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&pool)
            .await
            .unwrap();
    for name in names {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}

async fn provision_each(provisioner: &Provisioner, prefix: &str, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}{i:04}").parse().unwrap();
        let started = Instant::now();
        provisioner.create(id, "Bench", None).await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let schemas: usize = std::env::var("MT_PAAS_BENCH_SCHEMAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let migrations = tempfile::tempdir().unwrap();
    let m = migrations.path();
    for (dir, sql) in [
        (
            "sqlite",
            "CREATE TABLE courses (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);",
        ),
        (
            "postgres",
            "CREATE TABLE courses (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title TEXT NOT NULL);",
        ),
    ] {
        std::fs::create_dir_all(m.join(dir)).unwrap();
        std::fs::write(m.join(dir).join("0001_courses.sql"), sql).unwrap();
    }
    let prefix = format!("mtp_bench_{}", std::process::id());
    for url in [
        format!("{PG}/postgres"),
        format!("{PG}/postgres?sslmode=disable"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            samples.push(started.elapsed());
            let _ = sqlx::Connection::close(conn).await;
        }
        println!("connect to Postgres ({url}): {}", summary(samples));
    }
    println!("provisioning one tenant (registry + storage + one small migration + active):");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = provisioner(config(
        dir.path(),
        &format!(
            "database:\n  central:\n    url: sqlite://{d}/central.db\n  tenant:\n    url_template: \"sqlite://{d}/t/{{tenant_id}}.db\"\n    migrations: \"{m}\"\n",
            d = dir.path().display(),
            m = m.display()
        ),
    ))
    .await;
    println!(
        "  DATABASE_PER_TENANT, SQLite   {}",
        summary(provision_each(&sqlite, "f", 50).await)
    );

    let dir = tempfile::tempdir().unwrap();
    let pg_db = provisioner(config(
        dir.path(),
        &format!(
            "database:\n  central:\n    url: sqlite://{d}/central.db\n  tenant:\n    url_template: \"{PG}/{prefix}_t_{{tenant_id}}\"\n    migrations: \"{m}\"\n",
            d = dir.path().display(),
            m = m.display()
        ),
    ))
    .await;
    println!(
        "  DATABASE_PER_TENANT, Postgres {}",
        summary(provision_each(&pg_db, "d", 20).await)
    );

    let dir = tempfile::tempdir().unwrap();
    let schema_config = format!(
        "isolation:\n  mode: SCHEMA_PER_TENANT\ndatabase:\n  central:\n    url: sqlite://{d}/central.db\n  tenant:\n    url_template: \"{PG}/{prefix}_shared\"\n    max_connections: 20\n    migrations: \"{m}\"\n",
        d = dir.path().display(),
        m = m.display()
    );
    let pg_schema = provisioner(config(dir.path(), &schema_config)).await;
    let samples = provision_each(&pg_schema, "s", schemas).await;
    println!("  SCHEMA_PER_TENANT             {}", summary(samples));

    // A second migration for every schema, then the fleet migration.
    std::fs::write(
        m.join("postgres").join("0002_tags.sql"),
        "CREATE TABLE tags (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL); CREATE INDEX tags_name ON tags (name);",
    )
    .unwrap();
    let pg_schema = provisioner(config(dir.path(), &schema_config)).await;
    for concurrency in [8usize] {
        let started = Instant::now();
        let results = pg_schema.migrate_all(concurrency, |_, _| {}).await.unwrap();
        let elapsed = started.elapsed();
        let migrated = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(MigrationOutcome::Migrated)))
            .count();
        println!(
            "migrate --all over {} schemas (concurrency {concurrency}): {:.2} s ({migrated} migrated)",
            results.len(),
            elapsed.as_secs_f64()
        );
    }
    let started = Instant::now();
    let results = pg_schema.migrate_all(8, |_, _| {}).await.unwrap();
    let skipped = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(MigrationOutcome::UpToDate)))
        .count();
    println!(
        "migrate --all again (nothing to do): {:.2} s ({skipped} up to date)",
        started.elapsed().as_secs_f64()
    );
    drop_databases(&prefix).await;
}
