//! Keeps docs/DEVELOPER_GUIDE.md and docs/API_REFERENCE.md true: every code block of the guide
//! is checked by something (here, or as a doctest of mt-paas), the files it shows are the
//! quickstart's files byte for byte, its configurations load, its configuration reference
//! matches the embedded defaults, and the API reference names every problem code. The
//! walkthroughs themselves are replayed in `guide/e2e.rs`.

#![allow(clippy::unwrap_used)]

#[path = "guide/e2e.rs"]
mod e2e;
#[path = "guide/markdown.rs"]
mod markdown;
#[path = "guide/replay.rs"]
mod replay;

/// The quickstart's `src/main.rs`, compiled into this test so that the end-to-end tests serve
/// exactly its routes.
#[path = "../src/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod quickstart;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

use markdown::{Block, read, workspace};
use mt_paas::config::{ConfigLoader, DEFAULTS_YAML, IdentificationMethod};
use yaml_serde::Value;

const GUIDE: &str = "docs/DEVELOPER_GUIDE.md";
const API_REFERENCE: &str = "docs/API_REFERENCE.md";
/// Another section's blocks are checked by whoever writes that section.
const TESTING_SECTION: &str = "Testing a service";

fn guide_blocks() -> Vec<Block> {
    markdown::blocks(&read(GUIDE))
        .into_iter()
        .filter(|b| b.section != TESTING_SECTION)
        .collect()
}

#[test]
fn every_code_block_of_the_guide_is_checked() {
    let blocks = guide_blocks();
    assert!(blocks.len() > 20, "the guide lost its code blocks?");
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("{GUIDE} line {}", block.line);
        let previous_is_replay = i > 0 && blocks[i - 1].has("replay");
        match block.lang() {
            // Doctests of mt-paas (crates/mt-paas/src/lib.rs includes the guide).
            "rust" => assert!(
                !block.info.contains("ignore"),
                "{at}: a rust block that is not compiled"
            ),
            "yaml" => assert!(
                block.has("config") || block.has("file"),
                "{at}: a yaml block is a `<!-- config -->` (loaded) or a `<!-- file: -->` (compared)"
            ),
            "sql" => assert!(block.has("file"), "{at}: a sql block is a quickstart file"),
            "toml" => assert!(block.has("deps"), "{at}: a toml block is `<!-- deps: -->`"),
            "sh" => assert!(
                block.marker("replay").is_some(),
                "{at}: a shell block is `<!-- replay: NAME -->`, replayed by guide/e2e.rs"
            ),
            "json" | "http" | "text" => assert!(
                block.has("output") && previous_is_replay,
                "{at}: a {} block is the `<!-- output -->` of the replay block before it",
                block.lang()
            ),
            other => panic!("{at}: a ```{other} block is checked by nothing"),
        }
    }
    // Every walkthrough is replayed by a test in guide/e2e.rs.
    let names: BTreeSet<&str> = blocks.iter().filter_map(|b| b.marker("replay")).collect();
    assert_eq!(names, BTreeSet::from(["market", "quickstart"]));
}

#[test]
fn the_guide_shows_the_quickstart_files_as_they_are() {
    let mut shown = BTreeSet::new();
    for block in guide_blocks() {
        let Some(path) = block.marker("file") else {
            continue;
        };
        let file = std::fs::read_to_string(workspace().join(path))
            .unwrap_or_else(|e| panic!("{GUIDE} line {}: cannot read {path}: {e}", block.line));
        if block.content != file {
            panic!(
                "{GUIDE} line {}: the block differs from {path}; copy the file into the guide",
                block.line
            );
        }
        shown.insert(path.to_owned());
    }
    // Every file of the project the guide builds is in the guide (Cargo.toml as its
    // dependencies, below); the tests are this repository's, not the reader's.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ["tests", "target", "data", "Cargo.toml"].contains(&relative.as_str()) {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.insert(format!("examples/quickstart/{relative}"));
            }
        }
    }
    assert_eq!(shown, files, "the guide shows every quickstart file, once");
}

/// Values for the `${VAR}`s of the guide's configurations that have no default.
fn guide_vars() -> HashMap<&'static str, String> {
    HashMap::from([
        ("MARKETPLACE_API_KEY", "mk_live_0123456789".to_owned()),
        (
            "MARKETPLACE_WEBHOOK_SECRET",
            "whsec_cXVpY2tzdGFydC1kZXYtd2ViaG9vay1zZWNyZXQtMzI=".to_owned(),
        ),
        ("JWT_SECRET", "a-long-random-jwt-secret".to_owned()),
        (
            "AES_SECRET_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ),
        (
            "DATABASE_URL",
            "postgresql://quickstart:pw@db.internal:5432/quickstart".to_owned(),
        ),
        ("REDIS_URL", "redis://redis.internal:6379".to_owned()),
        ("TENANT_DB_PASSWORD", "tenant-db-password".to_owned()),
    ])
}

#[test]
fn every_configuration_of_the_guide_loads() {
    let dir = tempfile::tempdir().unwrap();
    // The guide's configurations sit in a service's directory, beside its migrations.
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let mut loaded = 0;
    for block in guide_blocks().iter().filter(|b| b.has("config")) {
        assert_eq!(block.lang(), "yaml", "{GUIDE} line {}", block.line);
        let path = dir.path().join("mt_paas_config.yaml");
        std::fs::write(&path, &block.content).unwrap();
        let vars = guide_vars();
        if let Err(e) = ConfigLoader::new(&path)
            .env(None)
            .vars(move |name| vars.get(name).cloned())
            .load()
        {
            panic!(
                "{GUIDE} line {}: the configuration does not load:\n{e}",
                block.line
            );
        }
        loaded += 1;
    }
    assert!(loaded >= 8, "the guide lost its configurations?");
    // The dev overlay is shown as a file; it loads over the quickstart's configuration.
    let config =
        ConfigLoader::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("mt_paas_config.yaml"))
            .env(Some("dev"))
            .vars(|_| None)
            .load()
            .unwrap_or_else(|e| panic!("the quickstart's dev overlay does not load:\n{e}"));
    assert!(config.marketplace.subscription_check);
}

/// `name = "1"` or `name = { version = "1", ... }` → (version or path, features).
fn toml_dependencies(text: &str, section: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut deps = BTreeMap::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == section;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').unwrap();
        let (name, value) = (name.trim(), value.trim());
        let quoted = |key: &str| -> Option<String> {
            let start = value.find(&format!("{key} = \""))? + key.len() + 4;
            Some(value[start..].split('"').next()?.to_owned())
        };
        let source = if value.starts_with('"') {
            value.trim_matches('"').to_owned()
        } else {
            quoted("version")
                .or_else(|| quoted("path"))
                .unwrap_or_default()
        };
        let features = value
            .split_once("features = [")
            .map(|(_, rest)| {
                rest.split(']')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // `axum.workspace = true`
        let name = name.trim_end_matches(".workspace").to_owned();
        deps.insert(name, (source, features));
    }
    deps
}

#[test]
fn the_guides_dependencies_are_the_quickstarts() {
    let block = guide_blocks()
        .into_iter()
        .find(|b| b.marker("deps") == Some("examples/quickstart/Cargo.toml"))
        .expect("the guide shows the quickstart's dependencies");
    let shown = toml_dependencies(&block.content, "[dependencies]");
    let quickstart = toml_dependencies(&read("examples/quickstart/Cargo.toml"), "[dependencies]");
    assert_eq!(
        shown.keys().collect::<Vec<_>>(),
        quickstart.keys().collect::<Vec<_>>(),
        "the guide's [dependencies] name the quickstart's"
    );
    let workspace = toml_dependencies(&read("Cargo.toml"), "[workspace.dependencies]");
    for (name, (source, features)) in &shown {
        let (ws_source, ws_features) = &workspace[name];
        if name == "mt-paas" {
            assert!(
                source.ends_with("/crates/mt-paas"),
                "mt-paas by path: {source}"
            );
            continue;
        }
        assert_eq!(
            source, ws_source,
            "{name}: the workspace's version requirement"
        );
        for feature in features {
            assert!(
                ws_features.contains(feature) || feature == "derive" && ws_features.is_empty(),
                "{name}: feature {feature} is not one the workspace builds with ({ws_features:?})"
            );
        }
    }
}

/// The rows of the configuration reference: key → default cell.
fn reference_rows() -> BTreeMap<String, String> {
    let guide = read(GUIDE);
    let start = guide
        .find("## 10. Configuration reference")
        .expect("the guide has a configuration reference");
    let end = start + guide[start..].find("\n## 11.").expect("a section after it");
    let mut rows = BTreeMap::new();
    for line in guide[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `key` | default | meaning |
        if cells.len() >= 4
            && let Some(key) = cells[1].strip_prefix('`').and_then(|k| k.strip_suffix('`'))
        {
            rows.insert(key.to_owned(), cells[2].to_owned());
        }
    }
    rows
}

/// Every leaf of the embedded defaults: `a.b.c` → value (an empty mapping is a leaf).
fn default_leaves() -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    let k = k.as_str().unwrap();
                    let path = if prefix.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", &yaml_serde::from_str(DEFAULTS_YAML).unwrap(), &mut out);
    out
}

/// Keys without an embedded default (optional, or with a serde default), as the reference
/// names them.
const OPTIONAL_KEYS: &[&str] = &[
    "service.public_url",
    "database.tenant.schema_url",
    "database.tenant.seed",
    "database.vector",
    "database.vector.type",
    "database.vector.url",
    "database.vector.collection_prefix",
    "database.vector.collections",
    "database.vector.api_key",
    "auth.jwt.jwks_url",
    "auth.jwt.issuer",
    "security.trusted_proxy_header",
    "security.encryption.previous_keys",
    "security.rate_limit.redis_url",
    "logging.activity_log.endpoint",
    "logging.activity_log.username",
    "logging.activity_log.password",
];

/// A default as the reference writes it: in backticks, `""` for an empty string.
fn shown(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(s) if s.is_empty() => "`\"\"`".to_owned(),
        Value::String(s) => format!("`{s}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Mapping(m) if m.is_empty() => "`{}`".to_owned(),
        _ => return None,
    })
}

#[test]
fn the_configuration_reference_has_every_key_with_its_default() {
    let rows = reference_rows();
    let defaults = default_leaves();
    assert!(defaults.len() > 50, "the defaults lost their keys?");
    for (key, value) in &defaults {
        let cell = rows.get(key).unwrap_or_else(|| {
            panic!("{GUIDE}: the configuration reference has no row for `{key}`")
        });
        if let Some(expected) = shown(value) {
            assert_eq!(cell, &expected, "{GUIDE}: the default of `{key}`");
        }
    }
    for key in OPTIONAL_KEYS {
        assert!(
            rows.contains_key(*key),
            "{GUIDE}: no row for the optional key `{key}`"
        );
    }
    for key in rows.keys() {
        assert!(
            defaults.contains_key(key)
                || OPTIONAL_KEYS.contains(&key.as_str())
                || !key.contains('.'),
            "{GUIDE}: the reference documents `{key}`, which is not a configuration key"
        );
    }
    // Defaults that live in serde attributes, not in defaults.yaml.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "database:\n  vector:\n    type: chroma\n    url: \"http://127.0.0.1:8100\"\n\
         tenant_identification:\n  methods:\n    - type: header\n    - type: subdomain\n    - type: jwt_claim\n    - type: query_param\n\
         auth:\n  jwt:\n    secret: s\n",
    )
    .unwrap();
    let config = ConfigLoader::new(&path)
        .env(None)
        .vars(|_| None)
        .load()
        .unwrap();
    let vector = config.database.vector.unwrap();
    assert_eq!(
        rows["database.vector.collection_prefix"],
        format!("`{}`", vector.collection_prefix)
    );
    let guide = read(GUIDE);
    for method in &config.tenant_identification.methods {
        let (kind, key, value) = match method {
            IdentificationMethod::Header { name } => ("header", "name", name.clone()),
            IdentificationMethod::Subdomain { extract_pattern } => (
                "subdomain",
                "extract_pattern",
                extract_pattern.0.as_str().to_owned(),
            ),
            IdentificationMethod::JwtClaim { claim_name } => {
                ("jwt_claim", "claim_name", claim_name.clone())
            }
            IdentificationMethod::QueryParam { name } => ("query_param", "name", name.clone()),
            other => panic!("a method the reference does not know: {other:?}"),
        };
        let row = format!("| `{kind}` | `{key}` | `{value}` |");
        assert!(
            guide.contains(&row),
            "{GUIDE}: the methods table has no row {row}"
        );
    }
}

/// The problem codes of crates/mt-paas/src/http/problem.rs, with their HTTP status.
fn problem_codes() -> BTreeMap<String, u16> {
    let source = read("crates/mt-paas/src/http/problem.rs");
    let mut code_of = HashMap::new();
    let mut status_of = HashMap::new();
    let mut lines = source.lines().map(str::trim).peekable();
    let mut section = "";
    while let Some(line) = lines.next() {
        if line.starts_with("pub fn as_str") {
            section = "as_str";
        } else if line.starts_with("fn text") {
            section = "text";
        } else if line.starts_with("impl fmt::Display for ProblemCode") {
            break;
        }
        let Some(rest) = line.strip_prefix("Self::") else {
            continue;
        };
        let (variant, rhs) = rest.split_once(" => ").unwrap_or_default();
        match section {
            "as_str" => {
                code_of.insert(
                    variant.to_owned(),
                    rhs.trim_end_matches(',').trim_matches('"').to_owned(),
                );
            }
            "text" if rhs == "t(" => {
                let status = lines.next().unwrap_or_default();
                let status = status
                    .trim_start_matches("StatusCode::")
                    .trim_end_matches(',');
                status_of.insert(variant.to_owned(), status.to_owned());
            }
            _ => {}
        }
    }
    let number = |name: &str| match name {
        "BAD_REQUEST" => 400,
        "UNAUTHORIZED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "CONFLICT" => 409,
        "GONE" => 410,
        "PAYLOAD_TOO_LARGE" => 413,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "UNPROCESSABLE_ENTITY" => 422,
        "TOO_MANY_REQUESTS" => 429,
        "INTERNAL_SERVER_ERROR" => 500,
        "SERVICE_UNAVAILABLE" => 503,
        other => panic!("problem.rs uses StatusCode::{other}; add it to this test"),
    };
    assert_eq!(
        code_of.len(),
        status_of.len(),
        "every code has a status in problem.rs"
    );
    code_of
        .into_iter()
        .map(|(variant, code)| {
            let status = status_of
                .get(&variant)
                .unwrap_or_else(|| panic!("no status for {variant}"));
            (code, number(status))
        })
        .collect()
}

#[test]
fn the_api_reference_lists_every_problem_code_with_its_status() {
    let codes = problem_codes();
    assert!(codes.len() >= 30, "problem.rs could not be read: {codes:?}");
    let reference = read(API_REFERENCE);
    for (code, status) in &codes {
        let row = format!("| `{code}` | {status} |");
        assert!(
            reference.contains(&row),
            "{API_REFERENCE} has no row `{row}` for the problem code {code} (crates/mt-paas/src/http/problem.rs)"
        );
    }
}

#[test]
fn the_readme_links_both_documents_and_the_guide_keeps_its_testing_section() {
    let readme = read("README.md");
    for document in [GUIDE, API_REFERENCE] {
        assert!(
            readme.contains(&format!("]({document})")),
            "README.md links {document}"
        );
    }
    let guide = read(GUIDE);
    assert_eq!(guide.matches("\n## Testing a service\n").count(), 1);
}
