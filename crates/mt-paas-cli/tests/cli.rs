//! The `mt-paas` binary as an operator uses it.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use mt_paas::JwtKeys;

/// Runs `mt-paas` in `dir`, where a service keeps its config beside its `migrations/`.
fn mt_paas(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mt-paas"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("MT_PAAS_ENV")
        .env_remove("MT_PAAS_CONFIG")
        .env_remove("JWT_SECRET")
        .env_remove("MARKETPLACE_API_KEY")
        .env_remove("AES_SECRET_KEY")
        .env_remove("RUST_LOG")
        // English unless a test asks for another language.
        .env_remove("MT_PAAS_LANG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C.UTF-8");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_is_in_korean_when_the_locale_asks_for_it() {
    let d = tempfile::tempdir().unwrap();
    let ko = mt_paas(
        d.path(),
        &["tenant", "create", "--help"],
        &[("LANG", "ko_KR.UTF-8")],
    );
    assert!(ko.status.success());
    let ko = text(&ko.stdout);
    assert!(ko.contains("테넌트를 프로비저닝합니다"), "{ko}");
    assert!(ko.contains("사용법: mt-paas tenant create"), "{ko}");
    assert!(ko.contains("격리 모드"), "{ko}");
    assert!(ko.contains("도움말 출력"), "{ko}");
    let en = text(&mt_paas(d.path(), &["tenant", "create", "--help"], &[]).stdout);
    assert!(en.contains("Provision a tenant"), "{en}");
    assert!(en.contains("Usage: mt-paas tenant create"), "{en}");
    // MT_PAAS_LANG wins over the locale; a subcommand's help list is Korean too.
    let top = mt_paas(
        d.path(),
        &["--help"],
        &[("MT_PAAS_LANG", "ko"), ("LC_ALL", "en_US.UTF-8")],
    );
    let top = text(&top.stdout);
    assert!(top.contains("명령:"), "{top}");
    assert!(top.contains("아웃박스"), "{top}");
    // Parsing is unchanged: a bad tenant id is still refused, naming the rule.
    let bad = mt_paas(
        d.path(),
        &["token", "--tenant", "Bad!"],
        &[("LANG", "ko_KR.UTF-8")],
    );
    assert!(!bad.status.success());
}

/// The seed's example, copied into a directory of its own beside a `migrations/` directory
/// (where a service keeps it; the repository root has none).
fn example() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    // Its `database.tenant.migrations`, relative to it.
    std::fs::create_dir_all(dir.join("examples/keli_tutor_integration/migrations")).unwrap();
    let path = dir.join("mt_paas_config.example.yaml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mt_paas_config.example.yaml"),
        &path,
    )
    .unwrap();
    path
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let example = example();
    let vars = [
        ("MARKETPLACE_API_KEY", "mk_live_secret_value"),
        ("JWT_SECRET", "jwt_secret_value"),
        (
            "AES_SECRET_KEY",
            "YWVzLXNlY3JldC12YWx1ZS14eXotMzItYnl0ZXMhISE=",
        ),
    ];
    let out = mt_paas(
        dir.path(),
        &["config", "check", "--config", example.to_str().unwrap()],
        &vars,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("id: keli_tutor"), "{stdout}");
    assert!(stdout.contains("mode: DATABASE_PER_TENANT"));
    assert!(stdout.contains("[redacted]"));
    let all = format!("{stdout}{}", text(&out.stderr));
    for (_, secret) in vars {
        assert!(!all.contains(secret), "{secret} printed");
    }
    assert!(text(&out.stderr).starts_with("ok: "));
}

#[test]
fn config_check_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let example = example();
    let out = mt_paas(
        dir.path(),
        &["config", "check", "-c", example.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for key in [
        "marketplace.api_key",
        "auth.jwt.secret",
        "security.encryption.key",
    ] {
        assert!(
            stderr.contains(&format!("mt_paas_config.example.yaml: {key}: ")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("3 problems"));
}

#[test]
fn config_check_names_the_key_of_each_broken_config() {
    let cases = [
        (
            "isolation:\n  mode: \"DATABASE_PER_TENAT\"\n",
            "isolation.mode",
        ),
        ("servce:\n  id: x\n", "servce"),
        (
            "marketplace:\n  heartbeat_interval: often\n",
            "marketplace.heartbeat_interval",
        ),
        (
            "auth:\n  jwt:\n    secret: ${NOT_SET_ANYWHERE}\n",
            "auth.jwt.secret",
        ),
        (
            "tenant_identification:\n  methods:\n    - type: subdomain\n      extract_pattern: \"(\"\n",
            "tenant_identification.methods[0]",
        ),
        (
            "isolation:\n  mode: SCHEMA_PER_TENANT\ndatabase:\n  tenant:\n    url_template: sqlite://./t.db\n",
            "database.tenant.url_template",
        ),
        (
            "database:\n  tenant:\n    url_template: postgresql://localhost/shared\n",
            "database.tenant.url_template",
        ),
    ];
    for (yaml, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mt_paas_config.yaml"), yaml).unwrap();
        let out = mt_paas(dir.path(), &["config", "check"], &[]);
        assert_eq!(out.status.code(), Some(1), "{yaml}");
        let stderr = text(&out.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("mt_paas_config.yaml: {key}: "))),
            "{yaml}\n{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout for an invalid config"
        );
    }
}

#[test]
fn config_check_applies_the_env_overlay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mt_paas_config.yaml"),
        "logging:\n  level: INFO\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mt_paas_config.dev.yaml"),
        "logging:\n  level: DEBUG\n",
    )
    .unwrap();
    let out = mt_paas(dir.path(), &["config", "check", "--env", "dev"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("level: DEBUG"));
    let out = mt_paas(dir.path(), &["config", "check"], &[("MT_PAAS_ENV", "dev")]);
    assert!(text(&out.stdout).contains("level: DEBUG"));
    let out = mt_paas(dir.path(), &["config", "check"], &[]);
    assert!(text(&out.stdout).contains("level: INFO"));
    let out = mt_paas(dir.path(), &["config", "check", "--env", "prod"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("mt_paas_config.prod.yaml"));
}

#[test]
fn tenant_create_list_show() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mt_paas_config.yaml"),
        "database:\n  central:\n    url: sqlite://./data/central.db\n",
    )
    .unwrap();
    let d = dir.path();
    let out = mt_paas(
        d,
        &["tenant", "create", "hallym", "--name", "한림대학교"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created tenant hallym"));
    let out = mt_paas(d, &["tenant", "create", "snu", "--name", "서울대학교"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        d.join("data/tenants/snu.db").is_file(),
        "its database file is made"
    );
    // A schema needs a shared Postgres database, which this config lacks.
    let out = mt_paas(
        d,
        &[
            "tenant", "create", "kaist", "--name", "KAIST", "--mode", "schema",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("database.tenant.schema_url"),
        "{}",
        text(&out.stderr)
    );

    let out = mt_paas(d, &["tenant", "list"], &[]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("ID"));
    assert!(
        lines[1].starts_with("hallym")
            && lines[1].contains("한림대학교")
            && lines[1].contains("active")
    );
    assert!(lines[2].starts_with("snu") && lines[2].contains("DATABASE_PER_TENANT"));
    // The columns line up on a terminal, Hangul (two cells a syllable) or not.
    let status_cell = |line: &str| {
        let at = line.find("active").unwrap();
        unicode_width::UnicodeWidthStr::width(&line[..at])
    };
    assert_eq!(status_cell(lines[1]), status_cell(lines[2]), "{stdout}");
    assert_eq!(
        unicode_width::UnicodeWidthStr::width(&lines[0][..lines[0].find("STATUS").unwrap()]),
        status_cell(lines[1]),
        "{stdout}"
    );

    let out = mt_paas(d, &["tenant", "list", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["id"], "hallym");

    let out = mt_paas(d, &["tenant", "show", "snu"], &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("name:       서울대학교"), "{stdout}");
    assert!(
        stdout.contains("DATABASE_PER_TENANT (isolation.mode)"),
        "{stdout}"
    );

    let out = mt_paas(d, &["tenant", "create", "hallym", "--name", "again"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("tenant hallym already exists"));

    let out = mt_paas(d, &["tenant", "show", "nobody"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nobody does not exist"));

    let out = mt_paas(d, &["tenant", "create", "../etc", "--name", "x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<ID>"), "{}", text(&out.stderr));

    let out = mt_paas(
        d,
        &[
            "tenant", "create", "ok1", "--name", "x", "--mode", "cluster",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("database, schema or docker"));
}

/// `tenant render --target kubernetes` writes manifests that the Kubernetes schemas accept
/// (`kubernetes-validate --strict`, offline; `.ci/docker.sh` installs it from PyPI): a
/// namespace per tenant with its database, secret, network policy and quota, and the app
/// when `images.app` is set; two tenants never share a namespace or a password.
#[test]
fn kubernetes_manifests_of_a_tenant_pass_the_schemas() {
    let validate = Command::new("kubernetes-validate")
        .arg("--version")
        .output();
    assert!(
        validate.is_ok_and(|o| o.status.success()),
        "kubernetes-validate is missing: `pip install kubernetes-validate` (or `bash .ci/docker.sh`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("mt_paas_config.yaml"),
        "service:\n  id: keli_tutor\n  version: \"1.2.0\"\nisolation:\n  docker:\n    database_url: \"postgresql://keli:{tenant_password}@127.0.0.1:{db_port}/keli\"\n    password_secret: \"a kubernetes test secret\"\n    images:\n      db: \"postgres:16\"\n      app: \"keli_tutor:1.2.0\"\ndatabase:\n  central:\n    url: sqlite://./data/central.db\n",
    )
    .unwrap();
    let out = mt_paas(
        d,
        &["tenant", "create", "a_b", "--name", "에이 \"비\""],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut namespaces = Vec::new();
    let mut passwords = Vec::new();
    for tenant in ["a_b", "a-b"] {
        let out = mt_paas(
            d,
            &["tenant", "render", tenant, "--target", "kubernetes"],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let yaml = text(&out.stdout);
        let file = d.join(format!("{tenant}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let checked = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", "1.30.0"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}{}\n{yaml}",
            text(&checked.stdout),
            text(&checked.stderr)
        );
        let kinds: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Secret",
                "StatefulSet",
                "Service",
                "Deployment",
                "Service",
                "NetworkPolicy",
                "ResourceQuota"
            ],
        );
        let namespace = yaml
            .lines()
            .find_map(|l| l.strip_prefix("  name: mtp-"))
            .unwrap()
            .to_owned();
        namespaces.push(namespace);
        passwords.push(
            yaml.lines()
                .find_map(|l| l.trim().strip_prefix("POSTGRES_PASSWORD: "))
                .unwrap()
                .to_owned(),
        );
        if tenant == "a_b" {
            assert!(
                yaml.contains("에이 \\\"비\\\"") || yaml.contains("에이 \"비\""),
                "the display name, quoted: {yaml}"
            );
        }
    }
    assert_ne!(
        namespaces[0], namespaces[1],
        "a_b and a-b get namespaces of their own"
    );
    assert_ne!(passwords[0], passwords[1]);
    // The compose file needs a docker tenant.
    let out = mt_paas(d, &["tenant", "render", "a_b", "--target", "compose"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--mode docker"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn token_mints_a_verifiable_jwt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mt_paas_config.yaml"),
        "auth:\n  jwt:\n    secret: ${JWT_SECRET:-cli-test-secret}\n",
    )
    .unwrap();
    let out = mt_paas(
        dir.path(),
        &["token", "--tenant", "hallym", "--sub", "alice"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let config = mt_paas::config::ConfigLoader::new(dir.path().join("mt_paas_config.yaml"))
        .vars(|_| None)
        .load()
        .unwrap();
    let claims = JwtKeys::from_config(&config.auth.jwt)
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(claims["tenant_id"], "hallym");
    assert_eq!(claims["sub"], "alice");

    std::fs::write(dir.path().join("mt_paas_config.yaml"), "").unwrap();
    let out = mt_paas(dir.path(), &["token", "--tenant", "hallym"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("auth.jwt.secret is not set"));
}

fn write_migrations(dir: &Path, files: &[(&str, &str)]) {
    for (name, sql) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
}

#[test]
fn fleet_migration_reports_each_tenant_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("mt_paas_config.yaml"),
        "database:\n  tenant:\n    migrations: migrations\n",
    )
    .unwrap();
    write_migrations(
        d,
        &[(
            "migrations/0001_notes.sql",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
        )],
    );
    for n in 0..5 {
        let out = mt_paas(
            d,
            &["tenant", "create", &format!("t{n}"), "--name", "T"],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = mt_paas(d, &["tenant", "migrate", "--all"], &[]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("5 tenants: 0 migrated, 5 up to date, 0 failed"),
        "{}",
        text(&out.stdout)
    );

    write_migrations(
        d,
        &[(
            "migrations/0002_tags.sql",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY);",
        )],
    );
    let out = mt_paas(
        d,
        &["tenant", "migrate", "--all", "--concurrency", "3"],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with("  migrated")).count(),
        5,
        "{stdout}"
    );
    assert!(
        stdout.contains("5 tenants: 5 migrated, 0 up to date, 0 failed"),
        "{stdout}"
    );

    // A second run finds nothing to do.
    let out = mt_paas(d, &["tenant", "migrate", "--all"], &[]);
    assert!(text(&out.stdout).contains("5 tenants: 0 migrated, 5 up to date, 0 failed"));

    // One broken tenant fails the run, the others are still migrated.
    write_migrations(
        d,
        &[(
            "migrations/0003_more.sql",
            "CREATE TABLE more (id INTEGER PRIMARY KEY);",
        )],
    );
    std::fs::write(d.join("data/tenants/t2.db"), b"this is not a database").unwrap();
    let _ = std::fs::remove_file(d.join("data/tenants/t2.db-wal"));
    let _ = std::fs::remove_file(d.join("data/tenants/t2.db-shm"));
    let out = mt_paas(d, &["tenant", "migrate", "--all"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("t2 ") && l.contains("FAILED")),
        "{stdout}"
    );
    assert!(
        stdout.contains("5 tenants: 4 migrated, 0 up to date, 1 failed"),
        "{stdout}"
    );

    let out = mt_paas(d, &["tenant", "migrate", "t1"], &[]);
    assert!(text(&out.stdout).contains("t1: up to date (skipped)"));
}

#[test]
fn destroy_and_restore_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("mt_paas_config.yaml"), "").unwrap();
    assert!(
        mt_paas(
            d,
            &["tenant", "create", "hallym", "--name", "한림대학교"],
            &[]
        )
        .status
        .success()
    );
    let out = mt_paas(d, &["tenant", "destroy", "hallym"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let archive = stdout.trim().rsplit("archive: ").next().unwrap().to_owned();
    assert!(
        d.join(&archive).is_file() || Path::new(&archive).is_file(),
        "{stdout}"
    );
    assert!(!d.join("data/tenants/hallym.db").exists());
    let out = mt_paas(d, &["tenant", "show", "hallym"], &[]);
    assert!(text(&out.stdout).contains("archived"));
    let out = mt_paas(d, &["tenant", "restore", "hallym", "--from", &archive], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("status:     active"));
    assert!(d.join("data/tenants/hallym.db").is_file());
    let out = mt_paas(d, &["tenant", "destroy", "nobody"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("tenant nobody does not exist"));
}

fn pg_admin() -> Option<String> {
    let url = std::env::var("MT_PAAS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let up = Command::new("psql")
        .args([&url, "-Atqc", "SELECT 1"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        up,
        "Postgres at {url} is not reachable: the suites need it (`bash .ci/test` starts it)"
    );
    Some(url)
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-Atqc", sql])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

/// `kill -9` in the middle of `tenant create` (inside a slow migration), then the same
/// command again: it completes, and no orphan database or schema is left.
fn kill_9_then_create_again(mode: &str) {
    let Some(admin) = pg_admin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = admin.rsplit_once('/').unwrap().0.to_owned();
    let prefix = format!("mtp_test_kill_{}_{}", std::process::id(), mode);
    let shared = format!("{prefix}_shared");
    let yaml = match mode {
        "database" => format!(
            "database:\n  tenant:\n    url_template: \"{server}/{prefix}_t_{{tenant_id}}\"\n    migrations: migrations\n"
        ),
        _ => format!(
            "isolation:\n  mode: SCHEMA_PER_TENANT\ndatabase:\n  tenant:\n    url_template: \"{server}/{shared}\"\n    migrations: migrations\n"
        ),
    };
    std::fs::write(d.join("mt_paas_config.yaml"), yaml).unwrap();
    write_migrations(
        d,
        &[
            (
                "migrations/postgres/0001_a.sql",
                "CREATE TABLE a (id BIGINT PRIMARY KEY);",
            ),
            (
                "migrations/postgres/0002_slow.sql",
                "SELECT pg_sleep(2); CREATE TABLE b (id BIGINT PRIMARY KEY);",
            ),
        ],
    );
    let exists = |what: &str| -> bool {
        match what {
            "database" => {
                psql(
                    &admin,
                    &format!("SELECT count(*) FROM pg_database WHERE datname = '{prefix}_t_slow'"),
                ) == "1"
            }
            _ => {
                let url = format!("{server}/{shared}");
                psql(
                    &url,
                    "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_slow'",
                ) == "1"
            }
        }
    };

    let mut child = Command::new(env!("CARGO_BIN_EXE_mt-paas"))
        .current_dir(d)
        .args(["tenant", "create", "slow", "--name", "Slow"])
        .env_remove("MT_PAAS_ENV")
        .env_remove("MT_PAAS_CONFIG")
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !exists(mode) {
        assert!(
            started.elapsed().as_secs() < 30,
            "the storage never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let out = mt_paas(d, &["tenant", "show", "slow", "--json"], &[]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        record["status"], "provisioning",
        "the crash left a resumable record"
    );

    let out = mt_paas(d, &["tenant", "create", "slow", "--name", "Slow"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("status:     active"));
    assert!(exists(mode));
    let tables = match mode {
        "database" => psql(
            &format!("{server}/{prefix}_t_slow"),
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
        ),
        _ => psql(
            &format!("{server}/{shared}"),
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'tenant_slow'",
        ),
    };
    assert_eq!(tables, "_sqlx_migrations,a,b");

    let out = mt_paas(d, &["tenant", "destroy", "slow", "--no-archive"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!exists(mode), "no orphan left");
    let orphans = psql(
        &admin,
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{prefix}\\_t\\_%'"),
    );
    assert_eq!(orphans, "0");
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS \"{shared}\" WITH (FORCE)"),
    );
}

#[test]
fn kill_9_then_create_again_database_per_tenant() {
    kill_9_then_create_again("database");
}

#[test]
fn kill_9_then_create_again_schema_per_tenant() {
    kill_9_then_create_again("schema");
}
