//! [`ConfigLoader`]: defaults ⊕ base ⊕ overlay → `${VAR}` substitution → typed [`Config`] →
//! cross-key rules, with every problem collected into one [`ConfigError`].

use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::de::DeserializeOwned;
use yaml_serde::{Mapping, Value};

use super::{Config, DEFAULTS_YAML, IdentificationMethod, JwtAlgorithm, secret::DatabaseKind};
use crate::names::IsolationMode;

/// The environment variable that selects the overlay (`mt_paas_config.{env}.yaml`).
pub const ENV_VAR: &str = "MT_PAAS_ENV";

type VarSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Loads a [`Config`]: the base file, the overlay chosen by `MT_PAAS_ENV` (or
/// [`ConfigLoader::env`]), and the embedded defaults.
#[derive(Clone)]
pub struct ConfigLoader {
    path: PathBuf,
    env: Option<Option<String>>,
    vars: VarSource,
    /// Read no file: the embedded defaults alone.
    embedded: bool,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigLoader")
            .field("path", &self.path)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// The files a configuration was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The base file.
    pub base: PathBuf,
    /// The overlay, when an environment was chosen.
    pub overlay: Option<PathBuf>,
    /// The chosen environment (`dev`, `prod`, ...).
    pub env: Option<String>,
}

/// Everything wrong with a configuration, each problem naming its file and key path.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// One problem: `file: key.path: cause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the offending key is in, or the base file for a key to be added.
    pub file: String,
    /// The key path, e.g. `isolation.mode` or `tenant_identification.methods[1]`; empty
    /// when the problem concerns the whole file.
    pub key: String,
    /// What is wrong, and how to fix it where that is known.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl ConfigLoader {
    /// A loader for the base file at `path`; the overlay is chosen by `MT_PAAS_ENV` and
    /// `${VAR}` reads the process environment.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            env: None,
            vars: Arc::new(|name| std::env::var(name).ok()),
            embedded: false,
        }
    }

    /// A loader that reads no file: the embedded defaults alone (with `${VAR}` substituted).
    pub fn embedded() -> Self {
        Self {
            embedded: true,
            env: Some(None),
            ..Self::new("(embedded defaults)")
        }
    }

    /// Chooses the overlay explicitly (`Some("dev")` → `mt_paas_config.dev.yaml`), or none,
    /// instead of reading `MT_PAAS_ENV`.
    pub fn env(mut self, env: Option<&str>) -> Self {
        self.env = Some(env.map(str::to_owned));
        self
    }

    /// Reads `${VAR}` (and `MT_PAAS_ENV`) from `source` instead of the process environment.
    pub fn vars(mut self, source: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.vars = Arc::new(source);
        self
    }

    /// The overlay file for `env` beside the base file: `name.yaml` → `name.{env}.yaml`.
    pub fn overlay_path(&self, env: &str) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}.{env}.{}", ext.to_string_lossy()),
            None => format!("{stem}.{env}"),
        };
        self.path.with_file_name(name)
    }

    /// Loads, substitutes, types and checks the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let base = self.path.clone();
        let (mut config, sources) =
            self.load_with::<Config>(DEFAULTS_YAML, |config, sources, repaired, problems| {
                check_rules(config, sources, repaired, problems);
                check_files(&base, config, sources, repaired, problems);
            })?;
        config.tenant_app = self.tenant_app(&config, &sources.base)?;
        config.sources = sources;
        Ok(config)
    }

    /// The tenant app's settings (`MT_PAAS_TENANT_ID` and what it requires), when set.
    fn tenant_app(
        &self,
        config: &Config,
        base: &Path,
    ) -> Result<Option<super::TenantAppConfig>, ConfigError> {
        let var = |name: &str| (self.vars)(name).filter(|v| !v.trim().is_empty());
        let Some(tenant) = var("MT_PAAS_TENANT_ID") else {
            return Ok(None);
        };
        // A tenant's app stands behind its tenant router, which only a docker build has.
        if cfg!(not(feature = "docker")) {
            return Err(ConfigError {
                problems: vec![ConfigProblem {
                    file: base.display().to_string(),
                    key: "MT_PAAS_TENANT_ID".to_owned(),
                    message: "this build of mt-paas has no docker support (a tenant's own app): enable the mt-paas feature \"docker\" in Cargo.toml".to_owned(),
                }],
            });
        }
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(ConfigProblem {
                file: base.display().to_string(),
                key: key.to_owned(),
                message,
            });
        };
        let tenant = match tenant.parse::<crate::names::TenantId>() {
            Ok(tenant) => Some(tenant),
            Err(e) => {
                problem(
                    "MT_PAAS_TENANT_ID",
                    format!("{tenant:?} is not a tenant id: {e}"),
                );
                None
            }
        };
        let needed =
            "is required in a tenant's app (MT_PAAS_TENANT_ID is set): its stack's .env sets it";
        let router_key = var("MT_PAAS_ROUTER_KEY");
        if router_key.is_none() {
            problem("MT_PAAS_ROUTER_KEY", needed.to_owned());
        }
        let database_url = var("DATABASE_URL").map(super::DatabaseUrl::new);
        match &database_url {
            None => problem("DATABASE_URL", needed.to_owned()),
            Some(url) if url.kind().is_none() => problem(
                "DATABASE_URL",
                format!("{url} is neither a postgres:// nor a sqlite: URL"),
            ),
            Some(_) => {}
        }
        let vector_url = var("VECTOR_URL");
        if config.database.vector.is_some() && vector_url.is_none() {
            problem(
                "VECTOR_URL",
                "is required in a tenant's app when database.vector is configured".to_owned(),
            );
        }
        match (tenant, router_key, database_url) {
            (Some(tenant), Some(router_key), Some(database_url)) if problems.is_empty() => {
                Ok(Some(super::TenantAppConfig {
                    tenant,
                    router_key: super::Secret::new(router_key),
                    database_url,
                    vector_url,
                }))
            }
            _ => Err(ConfigError { problems }),
        }
    }

    /// Loads another program's configuration the same way (overlay, `${VAR}`, every problem
    /// at once with its key path), over `defaults_yaml`: the reference market reads its own
    /// file with this.
    pub fn load_as<T: DeserializeOwned>(
        &self,
        defaults_yaml: &str,
    ) -> Result<(T, ConfigSources), ConfigError> {
        self.load_with::<T>(defaults_yaml, |_, _, _, _| {})
    }

    fn load_with<T: DeserializeOwned>(
        &self,
        defaults_yaml: &str,
        rules: impl FnOnce(&T, &Sources, &HashSet<String>, &mut Vec<ConfigProblem>),
    ) -> Result<(T, ConfigSources), ConfigError> {
        let mut problems = Vec::new();
        let base_label = self.path.display().to_string();

        let env = match &self.env {
            Some(env) => env.clone(),
            None => (self.vars)(ENV_VAR).filter(|e| !e.is_empty()),
        };
        if let Some(env) = &env
            && !env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(ConfigProblem {
                file: ENV_VAR.to_owned(),
                key: String::new(),
                message: format!(
                    "environment name {env:?} may only contain letters, digits, '-' and '_'"
                ),
            });
            return Err(ConfigError { problems });
        }

        let defaults = match yaml_serde::from_str::<Value>(defaults_yaml) {
            Ok(defaults) => defaults,
            Err(e) => {
                problems.push(ConfigProblem {
                    file: "(embedded defaults)".to_owned(),
                    key: String::new(),
                    message: format!("invalid YAML: {e}"),
                });
                return Err(ConfigError { problems });
            }
        };
        let base = if self.embedded {
            None
        } else {
            read_yaml_file(&self.path, &mut problems)
        };
        let overlay_path = env.as_deref().map(|e| self.overlay_path(e));
        let overlay = match &overlay_path {
            Some(path) if !path.exists() => {
                problems.push(ConfigProblem {
                    file: path.display().to_string(),
                    key: String::new(),
                    message: format!(
                        "{ENV_VAR}={} selects this overlay, but the file does not exist",
                        env.as_deref().unwrap_or_default()
                    ),
                });
                None
            }
            Some(path) => read_yaml_file(path, &mut problems),
            None => None,
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }

        let sources = Sources {
            base: base.clone().unwrap_or(Value::Mapping(Mapping::new())),
            base_label,
            overlay: overlay.clone(),
            overlay_label: overlay_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };

        let mut tree = defaults.clone();
        if let Some(base) = base {
            merge(&mut tree, base);
        }
        if let Some(overlay) = overlay {
            merge(&mut tree, overlay);
        }

        let mut repaired = HashSet::new();
        let substituted = substitute_tree(
            &mut tree,
            &*self.vars,
            &sources,
            &mut problems,
            &mut repaired,
        );

        let value = deserialize_collecting::<T>(
            tree,
            &defaults,
            &substituted,
            &sources,
            &mut problems,
            &mut repaired,
        );
        if let Some(value) = value {
            rules(&value, &sources, &repaired, &mut problems);
            if problems.is_empty() {
                let sources = ConfigSources {
                    base: self.path.clone(),
                    overlay: overlay_path,
                    env,
                };
                return Ok((value, sources));
            }
        }
        Err(ConfigError { problems })
    }
}

/// The embedded defaults as a YAML tree.
#[cfg(test)]
fn defaults_tree() -> Value {
    yaml_serde::from_str(DEFAULTS_YAML).expect("the embedded defaults are valid YAML")
}

fn read_yaml_file(path: &Path, problems: &mut Vec<ConfigProblem>) -> Option<Value> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(ConfigProblem {
                file,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            });
            return None;
        }
    };
    match yaml_serde::from_str::<Value>(&text) {
        Ok(Value::Null) => Some(Value::Mapping(Mapping::new())),
        Ok(value @ Value::Mapping(_)) => Some(value),
        Ok(_) => {
            problems.push(ConfigProblem {
                file,
                key: String::new(),
                message: "the top level must be a mapping of sections (service:, database:, ...)"
                    .to_owned(),
            });
            None
        }
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            // The parser's message can quote the offending text; cut it at the first
            // "at line" so a secret on a broken line is not echoed whole.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            problems.push(ConfigProblem {
                file,
                key: String::new(),
                message: format!("{at}invalid YAML: {message}"),
            });
            None
        }
    }
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else replaces.
pub(crate) fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// A step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn node<'a>(mut value: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    for seg in path {
        value = match (seg, value) {
            (Seg::Key(k), Value::Mapping(m)) => m.get(k.as_str())?,
            (Seg::Index(i), Value::Sequence(s)) => s.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn node_mut<'a>(mut value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    for seg in path {
        value = match (seg, value) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn remove_node(tree: &mut Value, path: &[Seg]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    match (last, node_mut(tree, parent)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => {
            m.remove(k.as_str());
        }
        (Seg::Index(i), Some(Value::Sequence(s))) if *i < s.len() => {
            s.remove(*i);
        }
        _ => {}
    }
}

/// The user's files, to say which one a key path came from.
struct Sources {
    base: Value,
    base_label: String,
    overlay: Option<Value>,
    overlay_label: String,
}

impl Sources {
    fn file_of(&self, path: &[Seg]) -> String {
        // The longest prefix of the path that a file holds decides: an unknown key deep in
        // a section still names the file that wrote the section.
        for len in (1..=path.len()).rev() {
            let prefix = &path[..len];
            if let Some(overlay) = &self.overlay
                && node(overlay, prefix).is_some()
            {
                return self.overlay_label.clone();
            }
            if node(&self.base, prefix).is_some() {
                return self.base_label.clone();
            }
        }
        // A key no file holds (a rule asks for it): it belongs in the base file.
        self.base_label.clone()
    }

    fn problem(&self, path: &[Seg], message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            file: self.file_of(path),
            key: path_string(path),
            message: message.into(),
        }
    }
}

/// Substitutes `${VAR}` / `${VAR:-default}` in every string scalar; returns the paths that
/// held a substitution (their values may be coerced to numbers or booleans later).
fn substitute_tree(
    tree: &mut Value,
    vars: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    sources: &Sources,
    problems: &mut Vec<ConfigProblem>,
    repaired: &mut HashSet<String>,
) -> HashSet<String> {
    let mut substituted = HashSet::new();
    let mut path = Vec::new();
    walk_strings(tree, &mut path, &mut |path, s| {
        if !s.contains('$') {
            return;
        }
        match substitute(s, vars) {
            Ok(Some(out)) => {
                *s = out;
                substituted.insert(path_string(path));
            }
            Ok(None) => {}
            Err(messages) => {
                for message in messages {
                    problems.push(sources.problem(path, message));
                }
                repaired.insert(path_string(path));
                s.clear();
            }
        }
    });
    substituted
}

fn walk_strings(value: &mut Value, path: &mut Vec<Seg>, f: &mut dyn FnMut(&[Seg], &mut String)) {
    match value {
        Value::String(s) => f(path, s),
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                path.push(Seg::Key(key_name(k)));
                walk_strings(v, path, f);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                walk_strings(v, path, f);
                path.pop();
            }
        }
        Value::Tagged(tagged) => walk_strings(&mut tagged.value, path, f),
        _ => {}
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| "?".to_owned()),
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`. `Ok(None)` when the
/// string holds no expression.
fn substitute(
    input: &str,
    vars: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<Option<String>, Vec<String>> {
    let mut out = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut changed = false;
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            changed = true;
            continue;
        }
        let Some(expr) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        // The matching brace: a default may hold braces of its own, like `{tenant_id}`.
        let mut depth = 0usize;
        let end = expr.char_indices().find_map(|(i, c)| match c {
            '{' => {
                depth += 1;
                None
            }
            '}' if depth == 0 => Some(i),
            '}' => {
                depth -= 1;
                None
            }
            _ => None,
        });
        let Some(end) = end else {
            errors.push(
                "unterminated `${`: write `${NAME}` or `${NAME:-default}` (or `$${` for a literal)"
                    .to_owned(),
            );
            break;
        };
        let body = &expr[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            errors.push(format!(
                "`${{{body}}}` is not a variable reference: a name is letters, digits and '_'"
            ));
        } else {
            match (vars(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => errors.push(format!(
                    "environment variable {name} is not set (write `${{{name}:-default}}` to give a default)"
                )),
            }
        }
        changed = true;
        rest = &expr[end + 1..];
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(changed.then_some(out))
}

/// Reads the tree into `T`, collecting every problem: after each error the offending node is
/// repaired (from the defaults, or removed) and reading starts again, so one run reports all.
fn deserialize_collecting<T: DeserializeOwned>(
    mut tree: Value,
    defaults: &Value,
    substituted: &HashSet<String>,
    sources: &Sources,
    problems: &mut Vec<ConfigProblem>,
    repaired: &mut HashSet<String>,
) -> Option<T> {
    let mut seen = HashSet::new();
    for _ in 0..256 {
        let error = match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        let path: Vec<Seg> = error
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                _ => None,
            })
            .collect();
        let message = error.inner().to_string();

        if try_coerce(&mut tree, &path, &message, substituted) {
            continue;
        }
        if !seen.insert((path.clone(), message.clone())) {
            // The repair did not help; what was found is reported.
            return None;
        }

        let names = backticked(&message);
        if message.starts_with("unknown field") {
            let Some(unknown) = names.first() else {
                problems.push(sources.problem(&path, message));
                return None;
            };
            // serde_path_to_error already ends the path with the unknown key.
            let mut key_path = path.clone();
            if key_path.last() != Some(&Seg::Key(unknown.clone())) {
                key_path.push(Seg::Key(unknown.clone()));
            }
            let hint = did_you_mean(unknown, &names[1..]);
            problems.push(sources.problem(&key_path, format!("unknown key{hint}")));
            remove_node(&mut tree, &key_path);
            continue;
        }
        if message.starts_with("missing field") {
            let mut key_path = path.clone();
            if let Some(name) = names.first() {
                key_path.push(Seg::Key(name.clone()));
            }
            if !repaired.contains(&path_string(&key_path)) {
                problems.push(sources.problem(&key_path, "required key is missing"));
            }
            return None;
        }

        let text = if message.starts_with("unknown variant") {
            let value = names.first().cloned().unwrap_or_default();
            let hint = did_you_mean(&value, names.get(1..).unwrap_or_default());
            let allowed = names.get(1..).unwrap_or_default().join(", ");
            format!("invalid value `{value}`{hint} (allowed: {allowed})")
        } else {
            humanize(&message)
        };
        if !repaired.contains(&path_string(&path)) {
            problems.push(sources.problem(&path, text));
        }
        repaired.insert(path_string(&path));
        match (node(defaults, &path), node_mut(&mut tree, &path)) {
            (Some(default), Some(slot)) if slot != default => *slot = default.clone(),
            _ => remove_node(&mut tree, &path),
        }
    }
    None
}

/// Environment values are strings; YAML authors write `version: 1.0`. Where the target type
/// disagrees only in that way, the scalar is converted and reading resumes.
fn try_coerce(
    tree: &mut Value,
    path: &[Seg],
    message: &str,
    substituted: &HashSet<String>,
) -> bool {
    let Some(slot) = node_mut(tree, path) else {
        return false;
    };
    if message.starts_with("invalid type: string")
        && substituted.contains(&path_string(path))
        && let Value::String(s) = slot
    {
        let s = s.trim();
        let coerced = if let Ok(n) = s.parse::<u64>() {
            Value::Number(n.into())
        } else if let Ok(n) = s.parse::<i64>() {
            Value::Number(n.into())
        } else if let Ok(f) = s.parse::<f64>() {
            Value::Number(f.into())
        } else if let Ok(b) = s.parse::<bool>() {
            Value::Bool(b)
        } else {
            return false;
        };
        *slot = coerced;
        return true;
    }
    let scalar_for_string = message.starts_with("invalid type: integer")
        || message.starts_with("invalid type: floating point")
        || message.starts_with("invalid type: boolean");
    if scalar_for_string && message.contains("expected a string") {
        let text = match slot {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return false,
        };
        *slot = Value::String(text);
        return true;
    }
    false
}

/// serde names Rust types; say what to write instead.
fn humanize(message: &str) -> String {
    let replacements = [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number up to 4294967295"),
        ("expected u16", "expected a whole number up to 65535"),
        ("expected i64", "expected an integer"),
        (
            "expected socket address",
            "expected an address such as \"127.0.0.1:8000\"",
        ),
        ("expected a boolean", "expected true or false"),
    ];
    let mut out = message.to_owned();
    for (from, to) in replacements {
        if out.ends_with(from) {
            out.replace_range(out.len() - from.len().., to);
        }
    }
    out
}

/// The names between backticks in a serde message: ``unknown field `x`, expected `y` ``.
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn did_you_mean(name: &str, candidates: &[String]) -> String {
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                strsim::normalized_damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// `a.b[1].c` as segments.
fn key(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            segs.push(Seg::Key(name.to_owned()));
        }
        for index in pieces {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segs.push(Seg::Index(i));
            }
        }
    }
    segs
}

/// `database.vector`: a supported store, its URL, and valid collections.
fn check_vector(
    config: &Config,
    vector: &super::VectorConfig,
    report: &mut impl FnMut(&str, String),
) {
    use super::VectorStoreKind;
    match vector.kind {
        VectorStoreKind::Milvus => report(
            "database.vector.type",
            "milvus is not supported yet; use qdrant, chroma or pgvector".to_owned(),
        ),
        VectorStoreKind::Qdrant | VectorStoreKind::Chroma => {
            let url = vector
                .url
                .replace("{vector_port}", "1")
                .replace("{tenant_id}", "t");
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(&url).is_err()
            {
                report(
                    "database.vector.url",
                    format!("{:?} is not an http(s) URL", vector.url),
                );
            } else if vector.url.contains("{vector_port}")
                && config.isolation.mode != crate::names::IsolationMode::DockerPerTenant
            {
                report(
                    "database.vector.url",
                    "{vector_port} is a DOCKER_PER_TENANT port; isolation.mode is not DOCKER_PER_TENANT"
                        .to_owned(),
                );
            }
        }
        VectorStoreKind::Pgvector => {
            let sqlite = config.database.tenant.url_template.kind() == Some(DatabaseKind::Sqlite);
            if sqlite && config.isolation.mode == crate::names::IsolationMode::DatabasePerTenant {
                report(
                    "database.vector.type",
                    "pgvector keeps vectors in the tenant's Postgres database, and database.tenant.url_template is SQLite"
                        .to_owned(),
                );
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, spec) in vector.collections.iter().enumerate() {
        if let Err(reason) = crate::names::check_collection_name(&spec.name) {
            report(&format!("database.vector.collections[{i}].name"), reason);
        } else if !seen.insert(spec.name.as_str()) {
            report(
                &format!("database.vector.collections[{i}].name"),
                format!("{:?} is listed twice", spec.name),
            );
        }
        if !(1..=16_000).contains(&spec.dimension) {
            report(
                &format!("database.vector.collections[{i}].dimension"),
                "must be 1-16000".to_owned(),
            );
        }
    }
}

/// The settings that need an optional part of the SDK, with the Cargo feature it is behind
/// and whether the configuration asks for it; only the features this build lacks are listed.
fn compiled_without(config: &Config) -> Vec<(&'static str, &'static str, bool)> {
    let _ = config; // nothing is missing when every feature is compiled in
    [
        #[cfg(not(feature = "redis"))]
        (
            "security.rate_limit.redis_url",
            "redis",
            config.security.rate_limit.enabled && config.security.rate_limit.redis_url.is_some(),
        ),
        #[cfg(not(feature = "vectors"))]
        (
            "database.vector",
            "vectors",
            config.database.vector.is_some(),
        ),
        #[cfg(not(feature = "docker"))]
        (
            "isolation.mode",
            "docker",
            config.isolation.mode == crate::names::IsolationMode::DockerPerTenant,
        ),
        #[cfg(not(feature = "sso"))]
        (
            "auth.marketplace_sso.enabled",
            "sso",
            config.auth.marketplace_sso.enabled,
        ),
    ]
    .into_iter()
    .collect()
}

/// Rules that span keys. A rule is skipped when a key it reads was already reported (and
/// replaced by its default), so one mistake is never reported twice.
fn check_rules(
    config: &Config,
    sources: &Sources,
    repaired: &HashSet<String>,
    problems: &mut Vec<ConfigProblem>,
) {
    let ok = |paths: &[&str]| paths.iter().all(|p| !repaired.contains(*p));
    let mut report =
        |path: &str, message: String| problems.push(sources.problem(&key(path), message));

    if ok(&["service.id"]) {
        let id = &config.service.id;
        let valid = id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            && id.len() <= 63;
        if !valid {
            report(
                "service.id",
                format!("{id:?} is not a service id: use 1-63 of a-z, 0-9, '_', '-'"),
            );
        }
    }

    // What this build of the SDK was compiled without is an error, never a silent default.
    for (path, feature, asked) in compiled_without(config) {
        if asked && ok(&[path]) {
            report(
                path,
                format!(
                    "this build of mt-paas has no {feature} support: enable the mt-paas feature \"{feature}\" in Cargo.toml"
                ),
            );
        }
    }

    // Durations end up in clock arithmetic (`now + grace`, deadlines): a value past these
    // would overflow it. Each bound is far beyond any sensible setting.
    const HOUR: u64 = 3600;
    const YEAR_HOURS: u64 = 24 * 366;
    let market = &config.marketplace;
    let tenant_db = &config.database.tenant;
    let bounds: [(&str, u64, u64); 12] = [
        (
            "marketplace.grace_period_hours",
            market.grace_period_hours,
            10 * YEAR_HOURS,
        ),
        (
            "marketplace.offline_grace_hours",
            market.offline_grace_hours,
            10 * YEAR_HOURS,
        ),
        (
            "marketplace.request_timeout_ms",
            market.request_timeout_ms,
            600_000,
        ),
        (
            "marketplace.entitlement_ttl_seconds",
            market.entitlement_ttl_seconds,
            YEAR_HOURS * HOUR,
        ),
        (
            "marketplace.sync_interval_seconds",
            market.sync_interval_seconds,
            YEAR_HOURS * HOUR,
        ),
        (
            "marketplace.heartbeat_interval",
            market.heartbeat_interval,
            24 * HOUR,
        ),
        (
            "auth.jwt.expiry_hours",
            config.auth.jwt.expiry_hours,
            10 * YEAR_HOURS,
        ),
        (
            "auth.jwt.leeway_seconds",
            config.auth.jwt.leeway_seconds,
            24 * HOUR,
        ),
        (
            "database.tenant.idle_timeout_seconds",
            tenant_db.idle_timeout_seconds,
            YEAR_HOURS * HOUR,
        ),
        (
            "database.tenant.acquire_timeout_ms",
            tenant_db.acquire_timeout_ms,
            HOUR * 1000,
        ),
        (
            "logging.outbox.keep_delivered_seconds",
            config.logging.outbox.keep_delivered_seconds,
            10 * YEAR_HOURS * HOUR,
        ),
        (
            "logging.usage_report.interval_minutes",
            config.logging.usage_report.interval_minutes,
            31 * 24 * 60,
        ),
    ];
    for (path, value, max) in bounds {
        if ok(&[path]) && value > max {
            report(path, format!("{value} is out of range: at most {max}"));
        }
    }

    let api_url = &config.marketplace.api_url;
    if ok(&["marketplace.api_url"])
        && !(api_url.starts_with("http://") || api_url.starts_with("https://"))
    {
        report(
            "marketplace.api_url",
            format!("{api_url:?} is not an http:// or https:// URL"),
        );
    }
    let market = &config.marketplace;
    if ok(&["marketplace.webhook_secret"])
        && let Some(secrets) = &market.webhook_secret
        && secrets.expose().split_ascii_whitespace().any(|s| {
            s.parse::<mt_paas_protocol::webhook::WebhookSecret>()
                .is_err()
        })
    {
        // The value itself is never echoed.
        report(
            "marketplace.webhook_secret",
            "each secret is `whsec_` followed by base64 of at least 24 bytes (Standard Webhooks)"
                .to_owned(),
        );
    }
    if ok(&["marketplace.api_key", "marketplace.subscription_check"])
        && market.subscription_check
        && market.api_key.is_none()
    {
        report(
            "marketplace.api_key",
            "marketplace.subscription_check is true, so the service's API key at the market is required (e.g. api_key: \"${MARKETPLACE_API_KEY}\")".to_owned(),
        );
    }
    for (key, value) in [
        ("marketplace.request_timeout_ms", market.request_timeout_ms),
        (
            "marketplace.entitlement_ttl_seconds",
            market.entitlement_ttl_seconds,
        ),
        (
            "marketplace.sync_interval_seconds",
            market.sync_interval_seconds,
        ),
    ] {
        if ok(&[key]) && value == 0 {
            report(key, "must be at least 1".to_owned());
        }
    }
    if ok(&["marketplace.heartbeat_interval"]) && config.marketplace.heartbeat_interval == 0 {
        report(
            "marketplace.heartbeat_interval",
            "must be at least 1 second".to_owned(),
        );
    }

    let central = &config.database.central.url;
    if ok(&["database.central.url"]) && central.kind().is_none() {
        report(
            "database.central.url",
            format!("{central} is not a sqlite: or postgresql: URL"),
        );
    }
    if ok(&["database.central.pool_size"]) && config.database.central.pool_size == 0 {
        report(
            "database.central.pool_size",
            "must be at least 1".to_owned(),
        );
    }
    if ok(&["database.tenant.pool_size_per_tenant"])
        && config.database.tenant.pool_size_per_tenant == 0
    {
        report(
            "database.tenant.pool_size_per_tenant",
            "must be at least 1".to_owned(),
        );
    }

    let tenant_db = &config.database.tenant;
    let template = &tenant_db.url_template;
    if ok(&[
        "database.tenant.url_template",
        "isolation.mode",
        "database.tenant.schema_url",
    ]) {
        let has_placeholder = template.expose().contains("{tenant_id}");
        match (config.isolation.mode, template.kind()) {
            (_, None) => report(
                "database.tenant.url_template",
                format!("{template} is not a sqlite: or postgresql: URL"),
            ),
            (IsolationMode::SchemaPerTenant, Some(DatabaseKind::Sqlite))
                if tenant_db.schema_url.is_none() => report(
                "database.tenant.url_template",
                "isolation.mode SCHEMA_PER_TENANT needs a Postgres database; SQLite has no schemas (use DATABASE_PER_TENANT for SQLite)".to_owned(),
            ),
            (IsolationMode::SchemaPerTenant, Some(_))
                if tenant_db.schema_url.is_none() && has_placeholder => report(
                "database.tenant.url_template",
                "isolation.mode SCHEMA_PER_TENANT keeps every tenant in one database: the URL must not contain {tenant_id} (or set database.tenant.schema_url to the shared database)".to_owned(),
            ),
            (IsolationMode::DatabasePerTenant, Some(_)) if !has_placeholder => report(
                "database.tenant.url_template",
                "isolation.mode DATABASE_PER_TENANT needs {tenant_id} in the URL (e.g. postgresql://host/tenant_{tenant_id})".to_owned(),
            ),
            _ => {}
        }
    }
    if let Some(shared) = &tenant_db.schema_url
        && ok(&["database.tenant.schema_url"])
    {
        if shared.kind() != Some(DatabaseKind::Postgres) {
            report(
                "database.tenant.schema_url",
                format!("{shared} is not a postgresql: URL; schemas need Postgres"),
            );
        } else if shared.expose().contains("{tenant_id}") {
            report(
                "database.tenant.schema_url",
                "the shared database's URL must not contain {tenant_id}".to_owned(),
            );
        }
    }
    for (key, value) in [
        (
            "database.tenant.max_connections",
            u64::from(tenant_db.max_connections),
        ),
        (
            "database.tenant.idle_timeout_seconds",
            tenant_db.idle_timeout_seconds,
        ),
        (
            "database.tenant.acquire_timeout_ms",
            tenant_db.acquire_timeout_ms,
        ),
    ] {
        if ok(&[key]) && value == 0 {
            report(key, "must be at least 1".to_owned());
        }
    }
    if ok(&[
        "database.tenant.max_connections",
        "database.tenant.pool_size_per_tenant",
    ]) && tenant_db.pool_size_per_tenant > tenant_db.max_connections
        && tenant_db.max_connections > 0
    {
        report(
            "database.tenant.pool_size_per_tenant",
            format!(
                "{} is more than database.tenant.max_connections ({}), the budget of all tenants together",
                tenant_db.pool_size_per_tenant, tenant_db.max_connections
            ),
        );
    }
    let docker_url = &config.isolation.docker.database_url;
    if ok(&["isolation.docker.database_url"]) {
        if docker_url.kind() != Some(DatabaseKind::Postgres) {
            report(
                "isolation.docker.database_url",
                format!("{docker_url} is not a postgresql: URL"),
            );
        } else if !docker_url.expose().contains("{db_port}") {
            report(
                "isolation.docker.database_url",
                "needs {db_port}, the database port of the tenant's block (e.g. postgresql://app:pw@127.0.0.1:{db_port}/app)".to_owned(),
            );
        }
    }

    let docker = &config.isolation.docker;
    if ok(&["isolation.docker.port_range_size"]) && docker.port_range_size == 0 {
        report(
            "isolation.docker.port_range_size",
            "must be at least 1".to_owned(),
        );
    }
    if ok(&[
        "isolation.docker.password_secret",
        "isolation.docker.database_url",
    ]) && docker_url.expose().contains("{tenant_password}")
        && docker.password_secret.expose().len() < 16
    {
        report(
            "isolation.docker.password_secret",
            "needs at least 16 characters: isolation.docker.database_url derives each tenant's password from it ({tenant_password})".to_owned(),
        );
    }
    if ok(&[
        "isolation.docker.password_secret",
        "isolation.docker.images.app",
    ]) && docker.images.app.is_some()
        && docker.password_secret.expose().len() < 16
    {
        report(
            "isolation.docker.password_secret",
            "needs at least 16 characters: with isolation.docker.images.app, each tenant's router key (MT_PAAS_ROUTER_KEY) is derived from it".to_owned(),
        );
    }
    if ok(&["isolation.docker.app_read_timeout_seconds"])
        && !(1..=3600).contains(&docker.app_read_timeout_seconds)
    {
        report(
            "isolation.docker.app_read_timeout_seconds",
            "must be 1 to 3600".to_owned(),
        );
    }
    if ok(&["isolation.docker.start_timeout_seconds"])
        && !(1..=3600).contains(&docker.start_timeout_seconds)
    {
        report(
            "isolation.docker.start_timeout_seconds",
            "must be 1 to 3600".to_owned(),
        );
    }
    for (key, image) in [
        ("isolation.docker.images.db", Some(&docker.images.db)),
        ("isolation.docker.images.app", docker.images.app.as_ref()),
        (
            "isolation.docker.images.vector",
            docker.images.vector.as_ref(),
        ),
    ] {
        let valid = |i: &str| {
            !i.is_empty()
                && i.len() <= 255
                && i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        };
        if ok(&[key]) && image.is_some_and(|i| !valid(i)) {
            report(
                key,
                "an image reference: 1-255 of letters, digits, '.', '_', '-', '/', ':', '@'"
                    .to_owned(),
            );
        }
    }

    let methods = &config.tenant_identification.methods;
    if ok(&["tenant_identification.methods"]) && methods.is_empty() {
        report(
            "tenant_identification.methods",
            "at least one method is needed (header, subdomain, jwt_claim, query_param)".to_owned(),
        );
    }
    for (i, method) in methods.iter().enumerate() {
        let path = format!("tenant_identification.methods[{i}]");
        match method {
            IdentificationMethod::Header { name } => {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    report(
                        &format!("{path}.name"),
                        format!("{name:?} is not a valid HTTP header name"),
                    );
                }
            }
            IdentificationMethod::JwtClaim { .. } => {
                if ok(&["auth.jwt.secret", "auth.jwt.algorithm"])
                    && config.auth.jwt.algorithm == JwtAlgorithm::HS256
                    && config.auth.jwt.secret.is_none()
                {
                    report(
                        "auth.jwt.secret",
                        format!(
                            "{path} (jwt_claim) verifies HS256 tokens, so a secret is required (e.g. secret: \"${{JWT_SECRET}}\")"
                        ),
                    );
                }
            }
            IdentificationMethod::Subdomain { .. } | IdentificationMethod::QueryParam { .. } => {}
        }
    }

    let sso = &config.auth.marketplace_sso;
    if sso.enabled {
        for (key, path) in [
            ("auth.marketplace_sso.callback_url", &sso.callback_url),
            ("auth.marketplace_sso.login_url", &sso.login_url),
        ] {
            if ok(&[key]) && !path.starts_with('/') {
                report(
                    key,
                    format!("{path:?} is a path on this service and starts with '/'"),
                );
            }
        }
        if ok(&["auth.jwt.secret"]) && config.auth.jwt.secret.is_none() {
            report(
                "auth.jwt.secret",
                "auth.marketplace_sso.enabled is true: the service signs its own tokens after sign-in, so a secret is required".to_owned(),
            );
        }
        if ok(&["marketplace.api_key"]) && config.marketplace.api_key.is_none() {
            report(
                "marketplace.api_key",
                "auth.marketplace_sso.enabled is true: exchanging codes with the market needs the API key".to_owned(),
            );
        }
    }
    if let Some(url) = &config.auth.jwt.jwks_url
        && ok(&["auth.jwt.jwks_url"])
    {
        if config.auth.jwt.algorithm != JwtAlgorithm::RS256 {
            report(
                "auth.jwt.jwks_url",
                "only RS256 uses the market's keys; set algorithm: \"RS256\" or remove jwks_url"
                    .to_owned(),
            );
        } else if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(url).is_err()
        {
            report(
                "auth.jwt.jwks_url",
                format!("{url:?} is not an http(s) URL"),
            );
        }
    }
    if let Some(vector) = &config.database.vector
        && ok(&["database.vector.type", "database.vector.url"])
    {
        check_vector(config, vector, &mut report);
    }
    if ok(&["auth.jwt.expiry_hours"]) && config.auth.jwt.expiry_hours == 0 {
        report("auth.jwt.expiry_hours", "must be at least 1".to_owned());
    }
    if ok(&["security.encryption.key"])
        && config.security.encryption.enabled
        && config.security.encryption.key.is_none()
    {
        report(
            "security.encryption.key",
            "security.encryption.enabled is true, so a key is required (e.g. key: \"${AES_SECRET_KEY}\")".to_owned(),
        );
    }
    let encryption = &config.security.encryption;
    if ok(&[
        "security.encryption.key",
        "security.encryption.previous_keys",
    ]) && encryption.enabled
        && let Some(key) = &encryption.key
    {
        let previous: Vec<&str> = encryption
            .previous_keys
            .iter()
            .map(super::Secret::expose)
            .collect();
        if let Err(e) = crate::encryption::FieldCipher::new(key.expose(), &previous) {
            let (path, message) = match e {
                crate::encryption::EncryptionError::InvalidKey(which) => (
                    format!("security.encryption.{which}"),
                    "a key is base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)"
                        .to_owned(),
                ),
                other => ("security.encryption.key".to_owned(), other.to_string()),
            };
            report(&path, message);
        }
    }
    if ok(&["security.rate_limit.default_rpm"])
        && config.security.rate_limit.enabled
        && config.security.rate_limit.default_rpm == 0
    {
        report(
            "security.rate_limit.default_rpm",
            "must be at least 1".to_owned(),
        );
    }
    if ok(&["security.rate_limit.anonymous_rpm"])
        && config.security.rate_limit.enabled
        && config.security.rate_limit.anonymous_rpm == 0
    {
        report(
            "security.rate_limit.anonymous_rpm",
            "must be at least 1".to_owned(),
        );
    }
    if let Some(name) = &config.security.trusted_proxy_header
        && http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        report(
            "security.trusted_proxy_header",
            format!("{name:?} is not a valid HTTP header name"),
        );
    }
    let activity = &config.logging.activity_log;
    if activity.enabled && activity.endpoint.as_deref().is_none_or(str::is_empty) {
        report(
            "logging.activity_log.endpoint",
            "logging.activity_log.enabled is true, so the LRS endpoint is required".to_owned(),
        );
    }
    if ok(&["logging.usage_report.interval_minutes"])
        && config.logging.usage_report.interval_minutes == 0
    {
        report(
            "logging.usage_report.interval_minutes",
            "must be at least 1".to_owned(),
        );
    }
}

/// The service's own files the configuration names, relative to the file `base`.
fn check_files(
    base: &Path,
    config: &Config,
    sources: &Sources,
    repaired: &HashSet<String>,
    problems: &mut Vec<ConfigProblem>,
) {
    let key_path = "database.tenant.migrations";
    let Some(dir) = &config.database.tenant.migrations else {
        return;
    };
    if repaired.contains(key_path) {
        return;
    }
    let dir = match base.parent() {
        Some(parent) if dir.is_relative() && !parent.as_os_str().is_empty() => parent.join(dir),
        _ => dir.clone(),
    };
    if !dir.is_dir() {
        problems.push(sources.problem(
            &key(key_path),
            format!(
                "{} is not a directory (a relative path is taken from the config file's directory); create it, point to it, or set `migrations: null` for tenant databases without tables",
                dir.display()
            ),
        ));
    }
}

/// `custom.{key}` as `T`, with problems named by their full key path.
pub(super) fn read_custom<T: DeserializeOwned>(
    config: &Config,
    key: &str,
) -> Result<T, ConfigError> {
    let file = config.sources.base.display().to_string();
    let Some(value) = config.custom.get(key) else {
        return Err(ConfigError {
            problems: vec![ConfigProblem {
                file,
                key: format!("custom.{key}"),
                message: "the key is missing".to_owned(),
            }],
        });
    };
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            format!("custom.{key}")
        } else {
            format!("custom.{key}.{inner}")
        };
        ConfigError {
            problems: vec![ConfigProblem {
                file,
                key: path,
                message: e.inner().to_string(),
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// A setting that needs a feature this build lacks is refused, naming the key and the
    /// feature; with the feature, the same file loads.
    #[test]
    fn a_setting_this_build_cannot_serve_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mt_paas_config.yaml");
        std::fs::write(
            &path,
            "service:\n  id: svc\ndatabase:\n  tenant:\n    migrations: null\nsecurity:\n  rate_limit:\n    redis_url: redis://127.0.0.1:6379\n",
        )
        .unwrap();
        let loaded = ConfigLoader::new(&path).vars(vars(&[])).load();
        if cfg!(feature = "redis") {
            loaded.unwrap();
        } else {
            let error = loaded.unwrap_err().to_string();
            assert!(
                error.contains("security.rate_limit.redis_url") && error.contains("\"redis\""),
                "{error}"
            );
        }
    }

    #[test]
    fn docker_per_tenant_needs_the_docker_feature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mt_paas_config.yaml");
        std::fs::write(
            &path,
            "service:\n  id: svc\ndatabase:\n  tenant:\n    migrations: null\nisolation:\n  mode: DOCKER_PER_TENANT\n",
        )
        .unwrap();
        let refused = |error: &ConfigError, key: &str| {
            error
                .problems
                .iter()
                .any(|p| p.key == key && p.message.contains("feature \"docker\""))
        };
        let mode = ConfigLoader::new(&path).vars(vars(&[])).load();
        // A tenant's app, on a configuration of any mode.
        let plain = dir.path().join("plain.yaml");
        std::fs::write(
            &plain,
            "service:\n  id: svc\ndatabase:\n  tenant:\n    migrations: null\n",
        )
        .unwrap();
        let app = ConfigLoader::new(&plain)
            .vars(vars(&[("MT_PAAS_TENANT_ID", "korea")]))
            .load();
        if cfg!(feature = "docker") {
            mode.unwrap();
            // A tenant's app is refused only for what it lacks, never for the feature.
            let error = app.unwrap_err();
            assert!(!refused(&error, "MT_PAAS_TENANT_ID"), "{error}");
            assert!(error.problems.iter().any(|p| p.key == "MT_PAAS_ROUTER_KEY"));
        } else {
            let error = mode.unwrap_err();
            assert!(refused(&error, "isolation.mode"), "{error}");
            let error = app.unwrap_err();
            assert!(refused(&error, "MT_PAAS_TENANT_ID"), "{error}");
        }
    }

    #[test]
    fn defaults_alone_make_a_valid_config() {
        let tree = defaults_tree();
        let config: Config = yaml_serde::from_value(tree).unwrap();
        assert_eq!(config.service.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(
            config.database.central.url.expose(),
            "sqlite://./data/central.db"
        );
    }

    #[test]
    fn substitution_forms() {
        let v = vars(&[("A", "x"), ("EMPTY", "")]);
        assert_eq!(substitute("${A}", &v).unwrap().as_deref(), Some("x"));
        assert_eq!(
            substitute("p-${A}-s", &v).unwrap().as_deref(),
            Some("p-x-s")
        );
        assert_eq!(
            substitute("${B:-dflt}", &v).unwrap().as_deref(),
            Some("dflt")
        );
        assert_eq!(
            substitute("${EMPTY:-dflt}", &v).unwrap().as_deref(),
            Some("")
        );
        assert_eq!(substitute("${B:-}", &v).unwrap().as_deref(), Some(""));
        assert_eq!(substitute("$${A}", &v).unwrap().as_deref(), Some("${A}"));
        assert_eq!(substitute("cost $5", &v).unwrap(), None);
        assert_eq!(
            substitute("${B:-sqlite://./t/{tenant_id}.db}", &v)
                .unwrap()
                .as_deref(),
            Some("sqlite://./t/{tenant_id}.db")
        );
        assert!(substitute("${B}", &v).unwrap_err()[0].contains("B is not set"));
        assert!(substitute("${A", &v).unwrap_err()[0].contains("unterminated"));
        assert!(substitute("${1A}", &v).unwrap_err()[0].contains("not a variable"));
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_the_rest() {
        let mut base: Value = yaml_serde::from_str("a: {b: 1, c: [1, 2]}\nd: x").unwrap();
        let overlay: Value = yaml_serde::from_str("a: {c: [3]}\ne: y").unwrap();
        merge(&mut base, overlay);
        let want: Value = yaml_serde::from_str("a: {b: 1, c: [3]}\nd: x\ne: y").unwrap();
        assert_eq!(base, want);
    }

    #[test]
    fn did_you_mean_finds_close_names() {
        let c = vec!["extract_pattern".to_owned(), "type".to_owned()];
        assert_eq!(
            did_you_mean("extract_patern", &c),
            "; did you mean `extract_pattern`?"
        );
        assert_eq!(did_you_mean("zzz", &c), "");
    }
}
