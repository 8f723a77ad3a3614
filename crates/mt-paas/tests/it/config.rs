//! The configuration loader: the seed's file, overlays, defaults, and every kind of mistake
//! reported at once with its file and key path.

use std::path::{Path, PathBuf};

use mt_paas::config::{ConfigError, IsolationMode, JwtAlgorithm, LogLevel};
use serde::Deserialize;

use crate::helpers::{load, loader};

/// The seed's example, copied into a directory with the migrations directory it names.
/// The example, copied once beside its migrations directory. (Copied once: tests run in
/// parallel, and a copy truncates the file another test may be reading.) The example needs
/// the `vectors` and `sso` features.
#[cfg(all(feature = "vectors", feature = "sso"))]
fn example_path() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Its `database.tenant.migrations`, relative to it.
        std::fs::create_dir_all(
            dir.path()
                .join("examples/keli_tutor_integration/migrations"),
        )
        .unwrap();
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mt_paas_config.example.yaml");
        std::fs::copy(source, dir.path().join("mt_paas_config.example.yaml")).unwrap();
        dir
    });
    dir.path().join("mt_paas_config.example.yaml")
}

#[cfg(all(feature = "vectors", feature = "sso"))]
const EXAMPLE_VARS: &[(&str, &str)] = &[
    ("MARKETPLACE_API_KEY", "mk_live_0123456789"),
    ("JWT_SECRET", "jwt-secret-value-xyz"),
    (
        "AES_SECRET_KEY",
        "YWVzLXNlY3JldC12YWx1ZS14eXotMzItYnl0ZXMhISE=",
    ),
];

/// Writes a config file, beside a `migrations/` directory (the default the loader checks).
fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    let _ = std::fs::create_dir(dir.join("migrations"));
    path
}

fn problems(result: Result<mt_paas::config::Config, ConfigError>) -> ConfigError {
    match result {
        Ok(_) => panic!("the configuration should have been refused"),
        Err(e) => e,
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct LlmConfig {
    default_model: String,
    fallback_model: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct RagConfig {
    chunk_size: u32,
    overlap: u32,
}

// The seed's example has a vector store and SSO.
#[cfg(all(feature = "vectors", feature = "sso"))]
#[test]
fn the_seed_example_loads_as_is() {
    use mt_paas::config::IdentificationMethod;

    let config = load(&example_path(), EXAMPLE_VARS);
    assert_eq!(config.service.id, "keli_tutor");
    assert_eq!(config.service.name, "KELI TUTOR");
    assert_eq!(config.service.description, "AI 기반 학습 튜터");
    assert_eq!(
        config.marketplace.api_url,
        "https://market.k-university.ai/api/v1"
    );
    assert_eq!(
        config.marketplace.api_key.as_ref().unwrap().expose(),
        "mk_live_0123456789"
    );
    assert_eq!(config.marketplace.heartbeat_interval, 60);
    assert!(config.marketplace.subscription_check);
    assert_eq!(config.marketplace.grace_period_hours, 24);
    assert_eq!(config.isolation.mode, IsolationMode::DatabasePerTenant);
    assert_eq!(config.isolation.docker.port_range_start, 10200);
    assert_eq!(config.isolation.docker.port_range_size, 100);
    assert_eq!(
        config.database.central.url.expose(),
        "postgresql://localhost:5432/mt_paas_central"
    );
    assert_eq!(config.database.central.pool_size, 10);
    assert_eq!(
        config.database.tenant.url_template.expose(),
        "postgresql://localhost:5432/tenant_{tenant_id}"
    );
    assert_eq!(config.database.tenant.pool_size_per_tenant, 5);
    let vector = config.database.vector.as_ref().unwrap();
    assert_eq!(vector.url, "http://localhost:6333");
    assert_eq!(vector.collection_prefix, "tenant_");
    let methods = &config.tenant_identification.methods;
    assert_eq!(methods.len(), 4);
    assert!(matches!(&methods[0], IdentificationMethod::Header { name } if name == "X-Tenant-ID"));
    assert!(
        matches!(&methods[1], IdentificationMethod::Subdomain { extract_pattern } if extract_pattern.0.as_str() == "^([^.]+)")
    );
    assert!(
        matches!(&methods[2], IdentificationMethod::JwtClaim { claim_name } if claim_name == "tenant_id")
    );
    assert!(
        matches!(&methods[3], IdentificationMethod::QueryParam { name } if name == "tenant_id")
    );
    assert_eq!(config.auth.jwt.algorithm, JwtAlgorithm::HS256);
    assert_eq!(config.auth.jwt.expiry_hours, 24);
    assert!(config.auth.marketplace_sso.enabled);
    assert_eq!(
        config.auth.marketplace_sso.callback_url,
        "/auth/marketplace/callback"
    );
    assert!(config.features.controlled_by_subscription);
    assert_eq!(config.features.defaults.get("ai_chat"), Some(&true));
    assert_eq!(config.features.defaults.get("quiz"), Some(&false));
    assert_eq!(config.features.defaults.len(), 6);
    assert!(config.security.cross_tenant_audit);
    assert!(config.security.encryption.enabled);
    assert!(config.security.rate_limit.enabled);
    assert_eq!(config.security.rate_limit.default_rpm, 60);
    assert_eq!(config.logging.level, LogLevel::Info);
    assert_eq!(
        config.logging.activity_log.endpoint.as_deref(),
        Some("https://lrs.k-university.ai/xapi")
    );
    assert_eq!(config.logging.usage_report.interval_minutes, 5);

    let llm: LlmConfig = config.custom("llm").unwrap();
    assert_eq!(
        llm,
        LlmConfig {
            default_model: "gpt-4".into(),
            fallback_model: "gpt-3.5-turbo".into()
        }
    );
    let rag: RagConfig = config.custom("rag").unwrap();
    assert_eq!(
        rag,
        RagConfig {
            chunk_size: 500,
            overlap: 50
        }
    );
}

// The seed's example has a vector store and SSO.
#[cfg(all(feature = "vectors", feature = "sso"))]
#[test]
fn the_seed_example_without_its_variables_names_each_one() {
    let err = problems(loader(&example_path(), &[]).load());
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "marketplace.api_key",
            "auth.jwt.secret",
            "security.encryption.key"
        ]
    );
    for (problem, var) in
        err.problems
            .iter()
            .zip(["MARKETPLACE_API_KEY", "JWT_SECRET", "AES_SECRET_KEY"])
    {
        assert!(
            problem.file.ends_with("mt_paas_config.example.yaml"),
            "{problem}"
        );
        assert!(problem.message.contains(var), "{problem}");
    }
}

#[test]
fn an_empty_file_takes_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mt_paas_config.yaml", "");
    let config = load(&path, &[]);
    assert_eq!(
        config.database.central.url.expose(),
        "sqlite://./data/central.db"
    );
    assert_eq!(
        config.database.tenant.url_template.expose(),
        "sqlite://./data/tenants/{tenant_id}.db"
    );
    assert_eq!(config.isolation.mode, IsolationMode::DatabasePerTenant);
    assert_eq!(config.service.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(config.tenant_identification.methods.len(), 3);
}

#[test]
fn the_env_overlay_is_deep_merged_over_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "mt_paas_config.yaml",
        "service:\n  id: svc\n  name: Base\ndatabase:\n  central:\n    url: sqlite://./base.db\n    pool_size: 7\nlogging:\n  level: INFO\n",
    );
    write(
        dir.path(),
        "mt_paas_config.dev.yaml",
        "database:\n  central:\n    url: sqlite://./dev.db\nlogging:\n  level: DEBUG\n",
    );

    for config in [
        load(&base, &[("MT_PAAS_ENV", "dev")]),
        loader(&base, &[]).env(Some("dev")).load().unwrap(),
    ] {
        assert_eq!(config.database.central.url.expose(), "sqlite://./dev.db");
        assert_eq!(config.database.central.pool_size, 7, "kept from the base");
        assert_eq!(config.service.name, "Base");
        assert_eq!(config.logging.level, LogLevel::Debug);
        assert_eq!(config.sources.env.as_deref(), Some("dev"));
        assert!(
            config
                .sources
                .overlay
                .as_ref()
                .unwrap()
                .ends_with("mt_paas_config.dev.yaml")
        );
    }

    let plain = load(&base, &[]);
    assert_eq!(plain.database.central.url.expose(), "sqlite://./base.db");
    assert!(plain.sources.overlay.is_none());

    let err = problems(loader(&base, &[("MT_PAAS_ENV", "prod")]).load());
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].file.ends_with("mt_paas_config.prod.yaml"));
    assert!(err.problems[0].message.contains("does not exist"));

    let err = problems(loader(&base, &[("MT_PAAS_ENV", "../x")]).load());
    assert!(err.problems[0].message.contains("may only contain"));
}

#[test]
fn a_problem_in_the_overlay_names_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "c.yaml", "service:\n  id: svc\n");
    write(dir.path(), "c.dev.yaml", "isolation:\n  mode: SCHEMA\n");
    let err = problems(loader(&base, &[("MT_PAAS_ENV", "dev")]).load());
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].file.ends_with("c.dev.yaml"), "{err}");
    assert_eq!(err.problems[0].key, "isolation.mode");
}

/// Loads `yaml` and returns its single problem as `key: message`.
fn single_problem(yaml: &str, vars: &[(&str, &str)]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mt_paas_config.yaml", yaml);
    let err = problems(loader(&path, vars).load());
    assert_eq!(err.problems.len(), 1, "expected one problem, got:\n{err}");
    let problem = &err.problems[0];
    assert!(problem.file.ends_with("mt_paas_config.yaml"), "{problem}");
    assert!(err.to_string().starts_with(&problem.file));
    (problem.key.clone(), problem.message.clone())
}

#[test]
fn an_unknown_key_is_named_with_a_suggestion() {
    let (key, message) = single_problem(
        "tenant_identification:\n  methods:\n    - type: subdomain\n      extract_patern: \"^([^.]+)\"\n",
        &[],
    );
    assert_eq!(key, "tenant_identification.methods[0].extract_patern");
    assert!(
        message.contains("did you mean `extract_pattern`"),
        "{message}"
    );

    let (key, message) = single_problem("servce:\n  id: x\n", &[]);
    assert_eq!(key, "servce");
    assert!(message.contains("did you mean `service`"), "{message}");
}

#[test]
fn a_wrong_type_is_named() {
    let (key, message) = single_problem("marketplace:\n  heartbeat_interval: often\n", &[]);
    assert_eq!(key, "marketplace.heartbeat_interval");
    assert!(message.contains("whole number"), "{message}");

    let (key, _) = single_problem("isolation:\n  docker:\n    port_range_start: 70000\n", &[]);
    assert_eq!(key, "isolation.docker.port_range_start");
}

#[test]
fn docker_stack_settings_are_checked() {
    let (key, message) = single_problem(
        "isolation:\n  docker:\n    database_url: \"postgresql://app:{tenant_password}@127.0.0.1:{db_port}/app\"\n    password_secret: short\n",
        &[],
    );
    assert_eq!(key, "isolation.docker.password_secret");
    assert!(message.contains("16 characters"), "{message}");
    let (key, _) = single_problem("isolation:\n  docker:\n    start_timeout_seconds: 0\n", &[]);
    assert_eq!(key, "isolation.docker.start_timeout_seconds");
    let (key, _) = single_problem(
        "isolation:\n  docker:\n    app_read_timeout_seconds: 0\n",
        &[],
    );
    assert_eq!(key, "isolation.docker.app_read_timeout_seconds");
    let (key, message) = single_problem(
        "isolation:\n  docker:\n    images:\n      db: \"postgres:16\"\n      app: \"keli:1\"\n",
        &[],
    );
    assert_eq!(key, "isolation.docker.password_secret");
    assert!(message.contains("router key"), "{message}");
    let (key, _) = single_problem(
        "isolation:\n  docker:\n    images:\n      db: \"postgres 16; rm\"\n",
        &[],
    );
    assert_eq!(key, "isolation.docker.images.db");
    let (key, message) = single_problem("isolation:\n  docker:\n    network: overlay\n", &[]);
    assert_eq!(key, "isolation.docker.network");
    assert!(message.contains("host"), "{message}");
}

#[test]
fn a_missing_environment_variable_is_named() {
    let (key, message) = single_problem("auth:\n  jwt:\n    secret: ${JWT_SECRET}\n", &[]);
    assert_eq!(key, "auth.jwt.secret");
    assert!(message.contains("JWT_SECRET is not set"), "{message}");
}

#[test]
fn an_invalid_enum_value_lists_the_allowed_ones() {
    let (key, message) = single_problem("isolation:\n  mode: \"DATABASE_PER_TENAT\"\n", &[]);
    assert_eq!(key, "isolation.mode");
    assert!(message.contains("`DATABASE_PER_TENAT`"), "{message}");
    assert!(
        message.contains("did you mean `DATABASE_PER_TENANT`"),
        "{message}"
    );
    assert!(message.contains("SCHEMA_PER_TENANT"), "{message}");
}

#[test]
fn an_invalid_extract_pattern_is_named() {
    let (key, message) = single_problem(
        "tenant_identification:\n  methods:\n    - type: header\n    - type: subdomain\n      extract_pattern: \"^([^.]+\"\n",
        &[],
    );
    assert_eq!(key, "tenant_identification.methods[1]");
    assert!(
        message.contains("invalid extract_pattern regex"),
        "{message}"
    );
}

#[test]
fn schema_per_tenant_on_sqlite_is_refused() {
    let (key, message) = single_problem(
        "isolation:\n  mode: SCHEMA_PER_TENANT\ndatabase:\n  tenant:\n    url_template: \"sqlite://./data/t.db\"\n",
        &[],
    );
    assert_eq!(key, "database.tenant.url_template");
    assert!(
        message.contains("SCHEMA_PER_TENANT needs a Postgres"),
        "{message}"
    );
}

#[test]
fn database_per_tenant_needs_the_placeholder() {
    let (key, message) = single_problem(
        "database:\n  tenant:\n    url_template: \"postgresql://localhost/tenants\"\n",
        &[],
    );
    assert_eq!(key, "database.tenant.url_template");
    assert!(message.contains("{tenant_id}"), "{message}");
}

#[test]
fn jwt_claim_without_a_secret_is_refused() {
    let (key, message) = single_problem(
        "tenant_identification:\n  methods:\n    - type: jwt_claim\n",
        &[],
    );
    assert_eq!(key, "auth.jwt.secret");
    assert!(message.contains("jwt_claim"), "{message}");
}

#[test]
fn rs256_reads_the_markets_keys_and_checks_their_address() {
    // RS256 needs no secret: jwt_claim verifies the market's tokens.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "mt_paas_config.yaml",
        "auth:\n  jwt:\n    algorithm: RS256\ntenant_identification:\n  methods:\n    - type: jwt_claim\n",
    );
    let config = loader(&path, &[]).load().unwrap();
    assert_eq!(config.auth.jwt.algorithm, JwtAlgorithm::RS256);
    assert_eq!(config.auth.jwt.jwks_url, None);

    let (key, message) = single_problem(
        "auth:\n  jwt:\n    algorithm: RS256\n    jwks_url: \"ftp://market/keys\"\n",
        &[],
    );
    assert_eq!(key, "auth.jwt.jwks_url");
    assert!(message.contains("http(s) URL"), "{message}");

    let (key, message) = single_problem(
        "auth:\n  jwt:\n    secret: s\n    jwks_url: \"http://127.0.0.1:8505/api/v1/.well-known/jwks.json\"\n",
        &[],
    );
    assert_eq!(key, "auth.jwt.jwks_url");
    assert!(message.contains("RS256"), "{message}");

    let (key, message) = single_problem("auth:\n  jwt:\n    algorithm: ES256\n", &[]);
    assert_eq!(key, "auth.jwt.algorithm");
    assert!(message.contains("RS256"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = r#"
service:
  id: "svc"
  nmae: "typo"
marketplace:
  heartbeat_interval: "sixty"
  api_key: ${MISSING_KEY}
isolation:
  mode: "DATABASE_PER_TENAT"
tenant_identification:
  methods:
    - type: header
    - type: subdomain
      extract_pattern: "^([^.]+"
    - type: query_parm
auth:
  jwt:
    secret: [1, 2]
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mt_paas_config.yaml", yaml);
    let err = problems(loader(&path, &[]).load());
    let mut keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "auth.jwt.secret",
            "isolation.mode",
            "marketplace.api_key",
            "marketplace.heartbeat_interval",
            "service.nmae",
            "tenant_identification.methods[1]",
            "tenant_identification.methods[2].type",
        ],
        "{err}"
    );
    assert_eq!(err.to_string().lines().count(), 7);
}

#[test]
fn rules_spanning_keys_are_reported_with_type_errors() {
    let yaml = "marketplace:\n  heartbeat_interval: often\ndatabase:\n  tenant:\n    url_template: postgresql://h/shared\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", yaml);
    let err = problems(loader(&path, &[]).load());
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "marketplace.heartbeat_interval",
            "database.tenant.url_template"
        ]
    );
}

#[test]
fn environment_values_are_coerced_to_the_field_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        "service:\n  version: 1.0\n  listen: ${LISTEN:-127.0.0.1:9000}\nmarketplace:\n  heartbeat_interval: ${HB}\n  subscription_check: ${CHECK:-false}\n",
    );
    let config = load(&path, &[("HB", "15")]);
    assert_eq!(config.marketplace.heartbeat_interval, 15);
    assert!(!config.marketplace.subscription_check);
    assert_eq!(config.service.version, "1.0");
    assert_eq!(config.service.listen.port(), 9000);

    let err = problems(loader(&path, &[("HB", "soon")]).load());
    assert_eq!(err.problems[0].key, "marketplace.heartbeat_interval");
}

#[test]
fn an_environment_value_cannot_inject_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", "service:\n  name: ${NAME}\n");
    let config = load(
        &path,
        &[("NAME", "x\nisolation:\n  mode: SCHEMA_PER_TENANT")],
    );
    assert_eq!(
        config.service.name,
        "x\nisolation:\n  mode: SCHEMA_PER_TENANT"
    );
    assert_eq!(config.isolation.mode, IsolationMode::DatabasePerTenant);
}

#[test]
fn invalid_yaml_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        "service:\n  id: svc\n  name: [unclosed\n",
    );
    let err = problems(loader(&path, &[]).load());
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].message.contains("line"), "{err}");
    assert!(err.problems[0].message.contains("invalid YAML"), "{err}");

    let err = problems(loader(&dir.path().join("missing.yaml"), &[]).load());
    assert!(err.problems[0].message.contains("cannot read"), "{err}");
}

// The seed's example has a vector store and SSO.
#[cfg(all(feature = "vectors", feature = "sso"))]
#[test]
fn secrets_never_appear_in_debug_output_or_the_redacted_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        "database:\n  central:\n    url: postgresql://app:pg-password-value@db/central\ncustom:\n  llm:\n    api_key: custom-key-value\n    model: gpt-4\n",
    );
    let mut vars = EXAMPLE_VARS.to_vec();
    vars.push(("UNUSED", "x"));
    let example = load(&example_path(), &vars);
    let custom = load(&path, &[]);
    let secrets = [
        "mk_live_0123456789",
        "jwt-secret-value-xyz",
        "YWVzLXNlY3JldC12YWx1ZS14eXotMzItYnl0ZXMhISE=",
        "pg-password-value",
        "custom-key-value",
    ];
    for config in [&example, &custom] {
        let debug = format!("{config:?}");
        let yaml = config.to_redacted_yaml();
        for secret in secrets {
            assert!(!debug.contains(secret), "Debug shows {secret}");
            assert!(!yaml.contains(secret), "redacted YAML shows {secret}");
        }
    }
    assert!(example.to_redacted_yaml().contains("api_key: '[redacted]'"));
    assert!(custom.to_redacted_yaml().contains("model: gpt-4"));
    assert!(custom.to_redacted_yaml().contains("app:[redacted]@db"));
}

#[test]
fn a_wrong_type_on_a_secret_does_not_echo_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        "auth:\n  jwt:\n    secret: {value: hunter2-secret}\n",
    );
    let err = problems(loader(&path, &[]).load());
    assert_eq!(err.problems[0].key, "auth.jwt.secret");
    assert!(!err.to_string().contains("hunter2-secret"), "{err}");
}

#[test]
fn custom_sections_read_as_typed_structs_with_paths_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        "custom:\n  rag:\n    chunk_size: lots\n    overlap: 5\n",
    );
    let config = load(&path, &[]);
    let err = config.custom::<RagConfig>("rag").unwrap_err();
    assert_eq!(err.problems[0].key, "custom.rag.chunk_size");
    let err = config.custom::<LlmConfig>("llm").unwrap_err();
    assert_eq!(err.problems[0].key, "custom.llm");
    assert!(err.problems[0].message.contains("missing"));
}

/// Durations that would overflow clock arithmetic are config errors naming the key, never a
/// panic when the value is first used.
#[test]
fn out_of_range_durations_are_named() {
    for (yaml, key) in [
        (
            "marketplace:\n  grace_period_hours: 1000000000000000000\n",
            "marketplace.grace_period_hours",
        ),
        (
            "marketplace:\n  offline_grace_hours: 18446744073709551615\n",
            "marketplace.offline_grace_hours",
        ),
        (
            "auth:\n  jwt:\n    expiry_hours: 9223372036854775807\n",
            "auth.jwt.expiry_hours",
        ),
        (
            "database:\n  tenant:\n    acquire_timeout_ms: 18446744073709551615\n",
            "database.tenant.acquire_timeout_ms",
        ),
        (
            "logging:\n  outbox:\n    keep_delivered_seconds: 18446744073709551615\n",
            "logging.outbox.keep_delivered_seconds",
        ),
    ] {
        let (found, message) = single_problem(yaml, &[]);
        assert_eq!(found, key, "{yaml}");
        assert!(message.contains("out of range"), "{message}");
    }
}

/// A migrations directory that is not there is an error naming the key (the default,
/// `migrations`, beside a config kept elsewhere, most of all); `null` says "no tables".
#[test]
fn a_missing_migrations_directory_is_named() {
    let (key, message) = single_problem("database:\n  tenant:\n    migrations: nowhere\n", &[]);
    assert_eq!(key, "database.tenant.migrations");
    assert!(
        message.contains("nowhere") && message.contains("null"),
        "{message}"
    );
    // The default, with no directory beside the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt_paas_config.yaml");
    std::fs::write(&path, "service:\n  id: courses\n").unwrap();
    let err = problems(loader(&path, &[]).load());
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "database.tenant.migrations");
    let path = write(
        dir.path(),
        "c.yaml",
        "database:\n  tenant:\n    migrations: null\n",
    );
    let config = loader(&path, &[]).load().unwrap();
    assert_eq!(config.database.tenant.migrations, None);
}
