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
    assert_eq!(names, BTreeSet::from(["docker", "market", "quickstart"]));
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
        ("TENANT_DB_SECRET", "a tenant database secret".to_owned()),
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
        "GATEWAY_TIMEOUT" => 504,
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

// ---------------------------------------------------------------- translations and links

const README: &str = "README.md";
const README_KO: &str = "README.ko.md";
const QUICKSTART_KO: &str = "docs/QUICKSTART.ko.md";
const DESIGN: &str = "docs/DESIGN.md";
const DESIGN_KO: &str = "docs/DESIGN.ko.md";

/// What a translation keeps of a code block: its info string, its text and the markers above it.
type Kept = (String, String, Vec<(String, Option<String>)>);

fn kept(block: &Block) -> Kept {
    (
        block.info.clone(),
        block.content.clone(),
        block.markers.clone(),
    )
}

/// `translation`'s code blocks are `original`'s, byte for byte and in order.
fn assert_same_blocks(original: &str, english: &[Block], translation: &str, korean: &[Block]) {
    for (i, (en, ko)) in english.iter().zip(korean).enumerate() {
        assert_eq!(
            kept(ko),
            kept(en),
            "{translation} line {}: code block {} is not {original}'s (line {}); copy the block and \
             the markers above it byte for byte",
            ko.line,
            i + 1,
            en.line
        );
    }
    assert_eq!(
        korean.len(),
        english.len(),
        "{translation} has {} code blocks, {original} {}: the same blocks, in the same order",
        korean.len(),
        english.len()
    );
}

#[test]
fn the_korean_readme_shows_the_readmes_code_blocks() {
    let english = markdown::blocks(&read(README));
    assert!(english.len() >= 5, "{README} lost its code blocks?");
    assert_same_blocks(
        README,
        &english,
        README_KO,
        &markdown::blocks(&read(README_KO)),
    );
}

#[test]
fn the_korean_quickstart_shows_the_guides_quickstart_blocks_and_markers() {
    let guide = read(GUIDE);
    let english: Vec<Block> = markdown::blocks(&guide)
        .into_iter()
        .filter(|b| b.section.starts_with("1. "))
        .collect();
    assert!(
        english.len() > 10,
        "{GUIDE} has no section `## 1. ` with its blocks?"
    );
    let korean = read(QUICKSTART_KO);
    assert_same_blocks(GUIDE, &english, QUICKSTART_KO, &markdown::blocks(&korean));
    // Every marker, also one that would sit away from a block: the section's, in order.
    let start = guide.find("\n## 1. ").unwrap();
    let end = guide[start + 1..]
        .find("\n## ")
        .map_or(guide.len(), |at| start + 1 + at);
    assert_eq!(
        markdown::markers(&korean),
        markdown::markers(&guide[start..end]),
        "{QUICKSTART_KO}: the `<!-- -->` markers are those of {GUIDE}'s section 1, in order"
    );
}

#[test]
fn the_readmes_link_each_other_and_the_korean_documents() {
    let top = |path: &str| read(path).lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        top(README).contains("](README.ko.md)"),
        "{README} links {README_KO} at its top"
    );
    assert!(
        top(README_KO).contains("](README.md)"),
        "{README_KO} links {README} at its top"
    );
    let korean = read(README_KO);
    for document in [QUICKSTART_KO, "docs/GLOSSARY.md", DESIGN_KO] {
        assert!(
            korean.contains(&format!("]({document})")),
            "{README_KO} links {document}"
        );
    }
}

/// Files of the repository whose names end in one of `extensions`, as paths relative to its
/// root, leaving out build output, data and hidden directories.
fn repository_files(extensions: &[&str]) -> Vec<String> {
    let root = workspace().canonicalize().unwrap();
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || ["target", "data", "tenants"].contains(&name.as_str()) {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if extensions
                .iter()
                .any(|ext| name.ends_with(&format!(".{ext}")))
            {
                let relative = path.strip_prefix(&root).unwrap();
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}

/// `target` (relative to the directory of `from`) as a path relative to the repository's
/// root, or `None` when it leaves the repository.
fn resolve(from: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[test]
fn no_markdown_file_points_outside_the_repository() {
    let files = repository_files(&["md"]);
    for expected in [README, README_KO, GUIDE, QUICKSTART_KO, DESIGN, DESIGN_KO] {
        assert!(files.iter().any(|f| f == expected), "{expected} is missing");
    }
    let root = workspace();
    let mut problems = Vec::new();
    for file in &files {
        let text = read(file);
        // Paths of the machine this was written on, and the notes beside the repository.
        for outside in ["../shared", "/work/", "seed §"] {
            if text.contains(outside) {
                problems.push(format!(
                    "{file}: `{outside}` is not in a clone; cite docs/DESIGN.md instead"
                ));
            }
        }
        for link in markdown::links(&text) {
            let at = format!("{file} line {}: ({})", link.line, link.target);
            let target = link.target.as_str();
            // Another site (http:, https:, mailto:).
            if target.split_once(':').is_some_and(|(scheme, _)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            }) {
                continue;
            }
            if target.starts_with('/') {
                problems.push(format!(
                    "{at}: an absolute path; write it relative to {file}"
                ));
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                match resolve(file, path) {
                    Some(resolved) => resolved,
                    None => {
                        problems.push(format!("{at}: leaves the repository"));
                        continue;
                    }
                }
            };
            // What `cargo doc` writes (API_REFERENCE.md's links into the rustdoc).
            if resolved.starts_with("target/doc/") {
                continue;
            }
            if !root.join(&resolved).exists() {
                problems.push(format!("{at}: no such file or directory `{resolved}`"));
                continue;
            }
            if anchor.is_empty() || !resolved.ends_with(".md") {
                continue;
            }
            let anchor = markdown::percent_decoded(anchor);
            if !markdown::anchors(&read(&resolved)).contains(&anchor) {
                problems.push(format!(
                    "{at}: {resolved} has no heading whose anchor is #{anchor}"
                ));
                continue;
            }
            // `[DESIGN §6.2](DESIGN.md#62-heartbeat)`: the number is the heading's.
            if [DESIGN, DESIGN_KO].contains(&resolved.as_str())
                && let Some((_, after)) = link.text.split_once('§')
            {
                let number: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let prefix = format!("{}-", number.trim_end_matches('.').replace('.', ""));
                if !anchor.starts_with(&prefix) {
                    problems.push(format!(
                        "{at}: the text says §{number}, the anchor is another section"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The numbers of DESIGN's `##` and `###` headings, in order: `(level, "6.2")`.
fn section_numbers(path: &str) -> Vec<(usize, String)> {
    markdown::headings(&read(path))
        .into_iter()
        .filter(|h| h.level >= 2)
        .map(|h| {
            let number: String = h
                .text
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.').to_owned();
            assert!(
                !number.is_empty() && h.text[number.len()..].starts_with(['.', ' ']),
                "{path} line {}: the heading `{}` has no section number",
                h.line,
                h.text
            );
            (h.level, number)
        })
        .collect()
}

#[test]
fn both_designs_have_the_same_numbered_sections() {
    let english = section_numbers(DESIGN);
    // 1, 2, ... and under 6: 6.1, 6.2, ...; nothing deeper.
    let (mut section, mut subsection) = (0, 0);
    for (level, number) in &english {
        let expected = match level {
            2 => {
                section += 1;
                subsection = 0;
                section.to_string()
            }
            3 => {
                subsection += 1;
                format!("{section}.{subsection}")
            }
            _ => panic!("{DESIGN}: section {number} is deeper than `###`"),
        };
        assert_eq!(
            number, &expected,
            "{DESIGN}: the sections are numbered in order"
        );
    }
    assert!(section >= 12, "{DESIGN} lost its sections?");
    assert_eq!(
        section_numbers(DESIGN_KO),
        english,
        "{DESIGN_KO} has the sections of {DESIGN}, with the same numbers, in the same order"
    );
}

/// What `DESIGN §n` may cite: every numbered section, and the items of a numbered list in a
/// section without subsections (§10.6 is the sixth invariant).
fn citable_sections() -> BTreeSet<String> {
    let design = read(DESIGN);
    let headings = markdown::headings(&design);
    let mut citable: BTreeSet<String> = section_numbers(DESIGN)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let prose = markdown::prose(&design);
    for (i, heading) in headings.iter().enumerate() {
        let next = headings.get(i + 1);
        if heading.level != 2 || next.is_some_and(|n| n.level > 2) {
            continue;
        }
        let number: String = heading
            .text
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let end = next.map_or(usize::MAX, |n| n.line);
        for (_, line) in prose
            .iter()
            .filter(|(at, _)| *at > heading.line && *at < end)
        {
            if let Some((item, _)) = line.split_once(". ")
                && !item.is_empty()
                && item.chars().all(|c| c.is_ascii_digit())
            {
                citable.insert(format!("{number}.{item}"));
            }
        }
    }
    citable
}

#[test]
fn every_design_section_cited_exists() {
    let citable = citable_sections();
    assert!(
        citable.contains("10.6") && citable.contains("6.2"),
        "{citable:?}"
    );
    let mut problems = Vec::new();
    for file in repository_files(&["rs", "md", "sql", "sh", "toml", "yaml", "yml", "json"]) {
        let text = read(&file);
        for (at, _) in text.match_indices('§') {
            let before = text[..at].trim_end();
            if !["DESIGN", "DESIGN.md", "DESIGN.ko.md"]
                .iter()
                .any(|name| before.ends_with(name))
            {
                continue;
            }
            let number: String = text[at + '§'.len_utf8()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            // `DESIGN §n` in prose about citations is no citation.
            if !number.is_empty() && !citable.contains(number) {
                let line = text[..at].lines().count();
                problems.push(format!(
                    "{file} line {line}: DESIGN §{number} does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
