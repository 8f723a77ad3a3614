//! DOCKER_PER_TENANT (DESIGN §5.6): each tenant a compose project rendered from
//! `templates/docker-compose.template.yml` and `templates/.env.template`, with a block of
//! `port_range_size` ports at `port_range_start + index × port_range_size`.
//!
//! Rendering needs the `docker` feature; a build without it refuses the mode
//! ([`compiled`]): the configuration names `isolation.mode`, provisioning the tenant.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

#[cfg(feature = "docker")]
use minijinja::{Environment, UndefinedBehavior, context};
use tokio::process::Command;

use super::ProvisionError;
#[cfg(feature = "docker")]
use crate::{
    config::DockerNetwork,
    core::database::{db_port, docker_database_url, router_key},
};
use crate::{
    config::{ComposeCli, Config, DockerConfig},
    core::models::TenantRecord,
};

/// Offsets of the services inside a port block.
pub const APP_PORT_OFFSET: u16 = 0;
/// The vector store's offset in a block.
#[cfg(feature = "docker")]
pub(crate) const VECTOR_PORT_OFFSET: u16 = 3;

/// The port of the app container of port block `block` (where the tenant router sends the
/// tenant's requests).
#[cfg(feature = "docker")]
pub(crate) fn app_port(config: &Config, block: u32) -> Option<u16> {
    let db = db_port(config, block)?;
    Some(db - config.isolation.docker.db_port_offset + APP_PORT_OFFSET)
}

/// A tenant's rendered stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStack {
    /// The compose project name ([`project_name`]).
    pub project: String,
    /// The directory the files go to: `{tenants_dir}/{tenant_id}`.
    pub dir: PathBuf,
    /// `docker-compose.yml`.
    pub compose: String,
    /// `.env`.
    pub env: String,
    /// The block's first port.
    pub port_base: u16,
    /// The tenant database's port.
    pub db_port: u16,
}

/// The compose project of `tenant` in `service`: `{len(service)}-{service}-{tenant}`. Ids
/// may hold `-` and `_`, so a plain join is ambiguous (`a-b` + `c` and `a` + `b-c`), and
/// compose would share one project — and `down -v` its volumes — between two tenants; the
/// length of the service id makes the split, and the name, unique.
pub fn project_name(service: &str, tenant: &str) -> String {
    format!("{}-{service}-{tenant}", service.len())
}

/// Whether this build runs DOCKER_PER_TENANT stacks: the error names the feature to enable.
pub(crate) fn compiled() -> Result<(), ProvisionError> {
    if cfg!(feature = "docker") {
        Ok(())
    } else {
        Err(not_compiled())
    }
}

fn not_compiled() -> ProvisionError {
    ProvisionError::Docker(
        "this build of mt-paas has no docker support (DOCKER_PER_TENANT): enable the mt-paas feature \"docker\" in Cargo.toml".to_owned(),
    )
}

/// A value as it may appear in a compose file: escaped for a YAML double-quoted scalar, with
/// `$` doubled (no compose interpolation). Templates quote every string value.
#[cfg(feature = "docker")]
fn yaml_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `value` may appear in `.env` as is, meaning the same in compose v1 and v2: no
/// quote, `$` (interpolation), `#` (a comment), backslash or backtick, no control character,
/// no white space at either end.
#[cfg(feature = "docker")]
fn env_safe(value: &str) -> bool {
    value.trim() == value
        && !value
            .chars()
            .any(|c| c.is_control() || matches!(c, '$' | '#' | '"' | '\'' | '\\' | '`'))
}

/// Renders the templates for `record` (which must hold a port block). Every string value is
/// escaped for the compose file and checked for `.env`: a display name or a password cannot
/// add keys, comments or `${VAR}` expansions to either.
///
/// Without the `docker` feature, the error of [`compiled`].
#[cfg(not(feature = "docker"))]
pub fn render(_: &Config, _: &TenantRecord) -> Result<RenderedStack, ProvisionError> {
    Err(not_compiled())
}

/// Renders the templates for `record` (which must hold a port block). Every string value is
/// escaped for the compose file and checked for `.env`: a display name or a password cannot
/// add keys, comments or `${VAR}` expansions to either.
#[cfg(feature = "docker")]
pub fn render(config: &Config, record: &TenantRecord) -> Result<RenderedStack, ProvisionError> {
    let docker = &config.isolation.docker;
    let id = &record.id;
    let block = record
        .port_block
        .ok_or_else(|| ProvisionError::Docker(format!("tenant {id} has no port block")))?;
    let db_port = db_port(config, block).ok_or_else(|| {
        ProvisionError::Docker(format!(
            "port block {block} of tenant {id} lies beyond port 65535"
        ))
    })?;
    let port_base = db_port - docker.db_port_offset;
    let url = docker_database_url(config, id, db_port);
    let options = url
        .pg_options()
        .map_err(|e| ProvisionError::Docker(format!("isolation.docker.database_url: {e}")))?;
    let project = project_name(&config.service.id, id.as_str());
    let db_user = options.get_username().to_owned();
    let db_password = url.password().unwrap_or_default();
    let db_name = options.get_database().unwrap_or("app").to_owned();
    for (key, value) in [
        ("isolation.docker.database_url (user)", db_user.as_str()),
        (
            "isolation.docker.database_url (password)",
            db_password.as_str(),
        ),
        ("isolation.docker.database_url (database)", db_name.as_str()),
        ("service.version", config.service.version.as_str()),
    ] {
        if !env_safe(value) {
            return Err(ProvisionError::Docker(format!(
                "{key}: may not hold quotes, `$`, `#`, backslashes or control characters (it is written to the stack's .env)"
            )));
        }
    }
    let ctx = context! {
        service_id => config.service.id.clone(),
        service_name => config.service.name.clone(),
        service_version => config.service.version.clone(),
        tenant_id => id.to_string(),
        tenant_name => record.display_name.clone(),
        project => project.clone(),
        port_base => port_base,
        port_end => port_base + docker.port_range_size - 1,
        app_port => port_base + APP_PORT_OFFSET,
        db_port => db_port,
        vector_port => port_base + VECTOR_PORT_OFFSET,
        db_user => db_user,
        db_password => db_password,
        db_name => db_name,
        host_network => docker.network == DockerNetwork::Host,
        db_image => docker.images.db.clone(),
        app_image => docker.images.app.clone(),
        router_key => router_key(config, id),
        vector_image => docker.images.vector.clone(),
    };
    let environment = |formatter: fn(&str) -> Result<String, minijinja::Error>| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_formatter(move |out, state, value| match value.as_str() {
            Some(text) => out
                .write_str(&formatter(text)?)
                .map_err(minijinja::Error::from),
            None => minijinja::escape_formatter(out, state, value),
        });
        env
    };
    let yaml_env = environment(|text| Ok(yaml_value(text)));
    let dotenv = environment(|text| {
        if env_safe(text) {
            Ok(text.to_owned())
        } else {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "a value cannot be written to .env: it holds a quote, `$`, `#`, a backslash or a control character (the tenant's display name?)",
            ))
        }
    });
    let read = |path: &Path| {
        let path = config.source_path(path);
        std::fs::read_to_string(&path).map_err(|e| {
            ProvisionError::Docker(format!("cannot read the template {}: {e}", path.display()))
        })
    };
    let render = |env: &Environment<'_>, name: &str, source: &str| {
        env.render_str(source, ctx.clone())
            .map(|mut s| {
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            })
            .map_err(|e| ProvisionError::Docker(format!("{name}: {e}")))
    };
    let compose = render(
        &yaml_env,
        "compose_template",
        &read(&docker.compose_template)?,
    )?;
    // What was rendered must still be one YAML document of the template's shape.
    if let Err(e) = yaml_serde::from_str::<yaml_serde::Value>(&compose) {
        return Err(ProvisionError::Docker(format!(
            "compose_template: the rendered file is not valid YAML: {e}"
        )));
    }
    let env_file = render(&dotenv, "env_template", &read(&docker.env_template)?)?;
    Ok(RenderedStack {
        project,
        dir: docker.tenants_dir.join(id.as_str()),
        compose,
        env: env_file,
        port_base,
        db_port,
    })
}

/// Writes the stack's files (`.env` readable by its owner only).
pub(crate) fn write(stack: &RenderedStack) -> Result<(), ProvisionError> {
    let io = |what: &str, e: std::io::Error| ProvisionError::Docker(format!("{what}: {e}"));
    std::fs::create_dir_all(&stack.dir).map_err(|e| io(&stack.dir.display().to_string(), e))?;
    let compose = stack.dir.join("docker-compose.yml");
    std::fs::write(&compose, &stack.compose).map_err(|e| io(&compose.display().to_string(), e))?;
    let env = stack.dir.join(".env");
    std::fs::write(&env, &stack.env).map_err(|e| io(&env.display().to_string(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(&env.display().to_string(), e))?;
    }
    Ok(())
}

/// Whether a Docker engine answers (`docker info` within five seconds).
pub(crate) async fn engine_available() -> bool {
    let probe = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(Duration::from_secs(5), probe).await, Ok(Ok(status)) if status.success())
}

/// The compose program and its leading arguments (`docker compose` or `docker-compose`).
async fn compose_program(cli: ComposeCli) -> (&'static str, &'static [&'static str]) {
    static V2: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let v2 = match cli {
        ComposeCli::V2 => true,
        ComposeCli::V1 => false,
        ComposeCli::Auto => {
            *V2.get_or_init(|| async {
                let probe = Command::new("docker")
                    .args(["compose", "version"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status();
                matches!(tokio::time::timeout(Duration::from_secs(10), probe).await, Ok(Ok(s)) if s.success())
            })
            .await
        }
    };
    if v2 {
        ("docker", &["compose"])
    } else {
        ("docker-compose", &[])
    }
}

/// A compose command for the stack (`docker compose -p PROJECT -f docker-compose.yml ARGS`
/// in its directory), to run as the caller needs (its standard input and output).
pub(crate) async fn compose_command(
    config: &DockerConfig,
    stack: &RenderedStack,
    args: &[&str],
) -> Command {
    let (program, lead) = compose_program(config.compose).await;
    let mut command = Command::new(program);
    command
        .args(lead)
        .args(["-p", &stack.project, "-f", "docker-compose.yml"])
        .args(args)
        .current_dir(&stack.dir)
        .kill_on_drop(true);
    command
}

/// Runs compose for the stack in `stack_dir` (project `project`, its `docker-compose.yml`)
/// with `args`, for at most `timeout`; returns its standard output.
pub(crate) async fn compose(
    cli: ComposeCli,
    stack_dir: &Path,
    project: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, ProvisionError> {
    let (program, lead) = compose_program(cli).await;
    let run = Command::new(program)
        .args(lead)
        .args(["-p", project, "-f", "docker-compose.yml"])
        .args(args)
        .current_dir(stack_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let what = format!("{program} {} {}", lead.join(" "), args.join(" "));
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(ProvisionError::Docker(format!("cannot run {what}: {e}"))),
        Err(_) => {
            return Err(ProvisionError::Docker(format!(
                "{what} did not finish within {} s",
                timeout.as_secs()
            )));
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ProvisionError::Docker(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Brings the stack up and waits until its health checks pass (compose v2 `--wait`; with v1
/// the provisioner then waits for the database itself).
pub(crate) async fn up(config: &DockerConfig, stack: &RenderedStack) -> Result<(), ProvisionError> {
    let timeout = Duration::from_secs(config.start_timeout_seconds.max(1));
    let wait = timeout.as_secs().to_string();
    let (program, _) = compose_program(config.compose).await;
    let args: Vec<&str> = if program == "docker" {
        vec![
            "up",
            "-d",
            "--remove-orphans",
            "--wait",
            "--wait-timeout",
            &wait,
        ]
    } else {
        vec!["up", "-d", "--remove-orphans"]
    };
    // The wait is compose's own; the margin covers creating the containers.
    let started = compose(
        config.compose,
        &stack.dir,
        &stack.project,
        &args,
        timeout + Duration::from_secs(60),
    )
    .await;
    match started {
        Ok(_) => Ok(()),
        // Why a container did not start is in its own log: the operator sees it here, before
        // the failed stack is taken down with it.
        Err(ProvisionError::Docker(message)) => {
            let logs = compose(
                config.compose,
                &stack.dir,
                &stack.project,
                &["logs", "--no-color", "--tail=20"],
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_default();
            let logs = logs.trim();
            Err(ProvisionError::Docker(if logs.is_empty() {
                message
            } else {
                format!("{message}\nthe stack's last log lines:\n{logs}")
            }))
        }
        Err(other) => Err(other),
    }
}

/// Stops and removes the stack's containers, networks and volumes.
pub(crate) async fn down(
    config: &DockerConfig,
    stack: &RenderedStack,
) -> Result<(), ProvisionError> {
    compose(
        config.compose,
        &stack.dir,
        &stack.project,
        &["down", "-v", "--remove-orphans", "--timeout", "10"],
        Duration::from_secs(120),
    )
    .await
    .map(drop)
}
