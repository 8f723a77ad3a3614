//! The vendor's tenant migrations: one set per engine, run on each tenant database.

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;

use crate::config::DatabaseKind;

/// The vendor's migrations for tenant databases (`database.tenant.migrations`): the
/// `sqlite/` and `postgres/` subdirectories when the dialects differ, else the directory
/// itself for both.
#[derive(Debug)]
pub struct TenantMigrations {
    sqlite: Migrator,
    postgres: Migrator,
    source: Option<PathBuf>,
}

/// Why the migrations could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationsError {
    /// The directory does not exist: a tenant made without its tables would answer every
    /// request with an error.
    #[error(
        "database.tenant.migrations: {0} is not a directory; create it, or set `migrations: null` for tenant databases without tables"
    )]
    Missing(String),
    /// A migration file could not be read.
    #[error("database.tenant.migrations: cannot read {path}: {source}")]
    Unreadable {
        /// The directory.
        path: String,
        /// sqlx's error.
        source: sqlx::migrate::MigrateError,
    },
}

impl TenantMigrations {
    /// No migrations (a service without tables of its own).
    pub fn none() -> Self {
        Self {
            sqlite: Migrator::with_migrations(Vec::new()),
            postgres: Migrator::with_migrations(Vec::new()),
            source: None,
        }
    }

    /// Reads the migrations under `dir`, which must exist.
    pub async fn load(dir: &Path) -> Result<Self, MigrationsError> {
        if !dir.is_dir() {
            return Err(MigrationsError::Missing(dir.display().to_string()));
        }
        let sqlite_dir = dir.join("sqlite");
        let postgres_dir = dir.join("postgres");
        let (sqlite, postgres) = if sqlite_dir.is_dir() || postgres_dir.is_dir() {
            (read(&sqlite_dir).await?, read(&postgres_dir).await?)
        } else {
            (read(dir).await?, read(dir).await?)
        };
        Ok(Self {
            sqlite,
            postgres,
            source: Some(dir.to_path_buf()),
        })
    }

    /// The migrator for `kind`, with sqlx's database-wide lock off: tenants sharing one
    /// Postgres database (schemas) are locked one by one instead.
    pub(crate) fn for_kind(&self, kind: DatabaseKind) -> &Migrator {
        match kind {
            DatabaseKind::Sqlite => &self.sqlite,
            DatabaseKind::Postgres => &self.postgres,
        }
    }

    /// The newest version for `kind`, if any.
    pub fn latest(&self, kind: DatabaseKind) -> Option<i64> {
        self.for_kind(kind)
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .max()
    }

    /// Where they were read from.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}

async fn read(dir: &Path) -> Result<Migrator, MigrationsError> {
    if !dir.is_dir() {
        return Ok(Migrator::with_migrations(Vec::new()));
    }
    let mut migrator = Migrator::new(dir)
        .await
        .map_err(|source| MigrationsError::Unreadable {
            path: dir.display().to_string(),
            source,
        })?;
    migrator.set_locking(false);
    Ok(migrator)
}
