//! Archives of tenant databases: SQLite `VACUUM INTO` copies and `pg_dump` custom-format
//! dumps, each with a JSON manifest beside it, and their restoration.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use serde::{Deserialize, Serialize};
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use time::{OffsetDateTime, macros::format_description};
use tokio::process::Command;

use super::{
    ProvisionError,
    docker::{self, RenderedStack},
};
use crate::{
    config::{DatabaseUrl, DockerConfig},
    core::{
        database::{Target, quote_ident},
        models::{IsolationMode, TenantId, TenantRecord},
    },
};

/// What an archive holds, written beside it as `{archive}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its display name.
    pub display_name: String,
    /// Its isolation mode when archived.
    pub isolation: IsolationMode,
    /// `sqlite` (a database file) or `postgres` (a `pg_dump -Fc` dump).
    pub format: String,
    /// When the archive was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn manifest_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The file beside `archive` holding the tenant's vector collections (Qdrant, Chroma).
pub(crate) fn vectors_path(archive: &Path) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(".vectors.json");
    archive.with_file_name(name)
}

/// Reads the manifest beside `archive`, if there is one.
pub fn read_manifest(archive: &Path) -> Option<ArchiveManifest> {
    let text = std::fs::read_to_string(manifest_path(archive)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes an archive of `target` into `dir` and returns its path.
pub(crate) async fn archive(
    target: &Target,
    record: &TenantRecord,
    isolation: IsolationMode,
    dir: &Path,
    client: PgClient<'_>,
) -> Result<PathBuf, ProvisionError> {
    let io = |what: String, e: std::io::Error| ProvisionError::Archive(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io(dir.display().to_string(), e))?;
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    // Two archives of one tenant within a millisecond get distinct names too.
    let unused = |ext: &str| {
        (0..1000)
            .map(|n| match n {
                0 => dir.join(format!("{}-{stamp}.{ext}", record.id)),
                n => dir.join(format!("{}-{stamp}-{n}.{ext}", record.id)),
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| dir.join(format!("{}-{stamp}.{ext}", record.id)))
    };
    let (path, format) = match target {
        Target::SqliteFile { path: source } => {
            let dest = unused("db");
            let options = SqliteConnectOptions::new()
                .filename(source)
                .create_if_missing(false);
            let mut conn = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| {
                    ProvisionError::Archive(format!("cannot open {}: {e}", source.display()))
                })?;
            let sql = format!(
                "VACUUM INTO '{}'",
                dest.display().to_string().replace('\'', "''")
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(|e| {
                    ProvisionError::Archive(format!("VACUUM INTO {}: {e}", dest.display()))
                })?;
            let _ = conn.close().await;
            (dest, "sqlite")
        }
        Target::PgDatabase { url, .. } => {
            let dest = unused("dump");
            pg_tool(
                "pg_dump",
                url,
                &["--format=custom", "--no-owner"],
                &dest,
                None,
                client,
            )
            .await?;
            (dest, "postgres")
        }
        Target::PgSchema { url, schema } => {
            let dest = unused("dump");
            let only = format!("--schema={}", quote_ident(schema));
            pg_tool(
                "pg_dump",
                url,
                &["--format=custom", "--no-owner", &only],
                &dest,
                None,
                client,
            )
            .await?;
            (dest, "postgres")
        }
    };
    let manifest = ArchiveManifest {
        tenant_id: record.id.clone(),
        display_name: record.display_name.clone(),
        isolation,
        format: format.to_owned(),
        created_at: now,
    };
    let json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(manifest_path(&path), json).map_err(|e| io(path.display().to_string(), e))?;
    Ok(path)
}

/// Loads `archive` into `target`, which provisioning has just created empty (a database, or
/// nothing yet for a schema or a SQLite file).
pub(crate) async fn restore(
    target: &Target,
    archive: &Path,
    client: PgClient<'_>,
) -> Result<(), ProvisionError> {
    let format = read_manifest(archive).map(|m| m.format).unwrap_or_else(|| {
        if archive.extension().is_some_and(|e| e == "db") {
            "sqlite".to_owned()
        } else {
            "postgres".to_owned()
        }
    });
    match (target, format.as_str()) {
        (Target::SqliteFile { path }, "sqlite") => {
            let io =
                |e: std::io::Error| ProvisionError::Archive(format!("{}: {e}", path.display()));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let staging = path.with_extension("restoring");
            std::fs::copy(archive, &staging).map_err(io)?;
            for suffix in ["-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
            std::fs::rename(&staging, path).map_err(io)?;
            Ok(())
        }
        (Target::PgDatabase { url, .. } | Target::PgSchema { url, .. }, "postgres") => {
            pg_tool(
                "pg_restore",
                url,
                &["--no-owner", "--exit-on-error"],
                archive,
                Some(()),
                client,
            )
            .await
        }
        (target, format) => Err(ProvisionError::Archive(format!(
            "a {format} archive cannot be restored into {}",
            target.describe()
        ))),
    }
}

/// Where `pg_dump` and `pg_restore` run.
#[derive(Clone, Copy)]
pub(crate) enum PgClient<'a> {
    /// On this host, against the database's URL.
    Host,
    /// Inside the `db` container of a tenant's stack (`compose exec`), so that the tools are
    /// the server's own version whatever this host has.
    Stack(&'a DockerConfig, &'a RenderedStack),
}

/// Runs `pg_dump` (writing `file`) or `pg_restore` (reading `file`) against `url`, with the
/// password in `PGPASSWORD` rather than on the command line; or, for a stack, in its `db`
/// container over the container's own socket, the file streamed through compose.
async fn pg_tool(
    tool: &str,
    url: &DatabaseUrl,
    args: &[&str],
    file: &Path,
    reading: Option<()>,
    client: PgClient<'_>,
) -> Result<(), ProvisionError> {
    let mut command = match client {
        PgClient::Host => {
            // libpq does not know the `postgresql+...` variants, but does know both scheme
            // spellings.
            let dbname = url.without_password();
            let file_arg = if reading.is_some() {
                file.display().to_string()
            } else {
                format!("--file={}", file.display())
            };
            let mut command = Command::new(tool);
            command
                .args(args)
                .arg(format!("--dbname={dbname}"))
                .arg(file_arg)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            if let Some(password) = url.password() {
                command.env("PGPASSWORD", password);
            }
            command
        }
        PgClient::Stack(config, stack) => {
            let options = pg_options(url)?;
            let user = format!("--username={}", options.get_username());
            let database = format!("--dbname={}", options.get_database().unwrap_or("postgres"));
            let mut exec = vec!["exec", "-T", "db", tool];
            exec.extend_from_slice(args);
            exec.push(&user);
            exec.push(&database);
            let mut command = docker::compose_command(config, stack, &exec).await;
            let io =
                |e: std::io::Error| ProvisionError::Archive(format!("{}: {e}", file.display()));
            if reading.is_some() {
                command
                    .stdin(std::fs::File::open(file).map_err(io)?)
                    .stdout(Stdio::null());
            } else {
                command
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(file).map_err(io)?);
            }
            command
        }
    };
    // Not `output()`: it would take standard output from the dump file.
    if matches!(client, PgClient::Host) {
        command.stdout(Stdio::piped());
    }
    let cannot = |e: std::io::Error| {
        ProvisionError::Archive(format!(
            "cannot run {tool} (is the PostgreSQL client installed?): {e}"
        ))
    };
    let output = command
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot)?
        .wait_with_output()
        .await
        .map_err(cannot)?;
    if !output.status.success() {
        return Err(ProvisionError::Archive(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // A dump that is not one (empty, or cut short) must never count as an archive: the
    // storage is dropped after it.
    if reading.is_none() {
        let mut magic = [0u8; 5];
        let whole = std::fs::File::open(file)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok();
        if !whole || &magic != b"PGDMP" {
            return Err(ProvisionError::Archive(format!(
                "{tool} wrote no custom-format dump to {}",
                file.display()
            )));
        }
    }
    Ok(())
}

/// `PgConnectOptions` for `url` (used to reach the server's maintenance database).
pub(crate) fn pg_options(
    url: &DatabaseUrl,
) -> Result<sqlx::postgres::PgConnectOptions, ProvisionError> {
    url.pg_options()
        .map_err(|e| ProvisionError::Storage(format!("{url}: {e}")))
}
