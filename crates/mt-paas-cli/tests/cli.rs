//! The `mt-paas` binary as an operator uses it.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use mt_paas::middleware::auth::JwtKeys;

fn mt_paas(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mt-paas"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("MT_PAAS_ENV")
        .env_remove("MT_PAAS_CONFIG")
        .env_remove("JWT_SECRET")
        .env_remove("MARKETPLACE_API_KEY")
        .env_remove("AES_SECRET_KEY")
        .env_remove("RUST_LOG");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mt_paas_config.example.yaml")
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let example = example();
    let vars = [
        ("MARKETPLACE_API_KEY", "mk_live_secret_value"),
        ("JWT_SECRET", "jwt_secret_value"),
        ("AES_SECRET_KEY", "aes_secret_value"),
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
    let out = mt_paas(
        d,
        &[
            "tenant",
            "create",
            "snu",
            "--name",
            "서울대학교",
            "--mode",
            "schema",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

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
    assert!(lines[2].starts_with("snu") && lines[2].contains("SCHEMA_PER_TENANT"));

    let out = mt_paas(d, &["tenant", "list", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["id"], "hallym");

    let out = mt_paas(d, &["tenant", "show", "snu"], &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("name:       서울대학교"), "{stdout}");
    assert!(
        stdout.contains("SCHEMA_PER_TENANT (tenant override)"),
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
