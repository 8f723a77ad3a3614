//! DOCKER_PER_TENANT benchmark: the time to provision one tenant's stack (render, `compose up
//! --wait`, initdb in the container, one small migration, active) and to destroy it, median of
//! 5; and the memory of three tenants' stacks running side by side. Needs a Docker engine and
//! the image `mt-paas/postgres:15` (`bash .ci/docker.sh`):
//!
//! ```sh
//! cargo bench -p mt-paas --bench docker
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use mt_paas::{
    CentralDb, DatabaseRouter, Features, IsolationMode, TenantManager,
    config::ConfigLoader,
    provisioning::{Provisioned, Provisioner},
};

fn median(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "median {:.2} s  min {:.2} s  max {:.2} s  (n={})",
        samples[samples.len() / 2].as_secs_f64(),
        samples[0].as_secs_f64(),
        samples[samples.len() - 1].as_secs_f64(),
        samples.len()
    )
}

/// The resident memory of a container, from `docker stats` ("12.3MiB / 23.4GiB").
fn memory_mib(container: &str) -> f64 {
    let out = Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            container,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let used = text.split('/').next().unwrap_or("").trim();
    let (number, unit) = used.split_at(
        used.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(used.len()),
    );
    let n: f64 = number.trim().parse().unwrap_or(0.0);
    match unit {
        "KiB" | "kB" => n / 1024.0,
        "GiB" | "GB" => n * 1024.0,
        _ => n,
    }
}

/// Destroys tenant `t{n}` without an archive; returns how long it took.
async fn destroy(provisioner: &Provisioner, n: usize) -> Duration {
    let started = Instant::now();
    provisioner
        .destroy(&format!("t{n}").parse().unwrap(), false)
        .await
        .unwrap();
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        println!("no Docker engine answers: run `bash .ci/docker.sh` first");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let migrations = d.join("migrations/postgres");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_courses.sql"),
        "CREATE TABLE courses (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title TEXT NOT NULL);",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("migrations/sqlite")).unwrap();
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let service = format!("mtpd_bench_{}", std::process::id());
    let yaml = format!(
        "service:\n  id: {service}\nisolation:\n  mode: DOCKER_PER_TENANT\n  docker:\n    port_range_start: 32600\n    port_range_size: 5\n    compose_template: \"{t}/docker-compose.template.yml\"\n    env_template: \"{t}/.env.template\"\n    tenants_dir: \"{d}/tenants\"\n    database_url: \"postgresql://app:bench-pw@127.0.0.1:{{db_port}}/app\"\n    network: host\n    images:\n      db: \"mt-paas/postgres:15\"\ndatabase:\n  central:\n    url: \"sqlite://{d}/central.db\"\n  tenant:\n    url_template: \"sqlite://{d}/unused/{{tenant_id}}.db\"\n    migrations: \"{d}/migrations\"\nprovisioning:\n  archive_dir: \"{d}/archive\"\n",
        t = templates.display(),
        d = d.display(),
    );
    let path = d.join("mt_paas_config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Arc::new(ConfigLoader::new(&path).vars(|_| None).load().unwrap());
    let central = CentralDb::connect(&config.database.central).await.unwrap();
    let tenants = TenantManager::new(central, config.isolation.mode, Features::default());
    let provisioner: Provisioner =
        Provisioner::new(config.clone(), tenants, DatabaseRouter::new(config.clone()))
            .await
            .unwrap();

    let (mut created, mut destroyed) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let id = format!("t{n}").parse().unwrap();
        let started = Instant::now();
        let outcome = provisioner
            .create(id, "bench", Some(IsolationMode::DockerPerTenant))
            .await
            .unwrap();
        assert!(matches!(outcome, Provisioned::Ready(_)), "{outcome:?}");
        created.push(started.elapsed());
    }
    // Three stacks side by side, idle after provisioning.
    for n in 3..5 {
        destroyed.push(destroy(&provisioner, n).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut total = 0.0;
    for n in 0..3 {
        let project = mt_paas::provisioning::docker::project_name(&service, &format!("t{n}"));
        total += memory_mib(&format!("{project}-db-1"));
    }
    for n in 0..3 {
        destroyed.push(destroy(&provisioner, n).await);
    }
    println!("DOCKER_PER_TENANT, mt-paas/postgres:15, host network:");
    println!(
        "  tenant create (stack up, initdb, migrate, active)  {}",
        median(created)
    );
    println!(
        "  tenant destroy --no-archive (compose down -v)       {}",
        median(destroyed)
    );
    println!("  memory of three idle tenant stacks (docker stats)   {total:.1} MiB");
}
