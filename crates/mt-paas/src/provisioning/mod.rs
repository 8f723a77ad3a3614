//! Tenant provisioning (DESIGN §5.5 `create_tenant` / `destroy_tenant`): a resumable saga.
//!
//! `create`: register (status `provisioning`) → port block and stack (DOCKER_PER_TENANT) →
//! database, schema or file → the vendor's migrations → seed → `active`. The registry row is
//! written first, so a crash at any point leaves a record that the same command resumes;
//! every step is idempotent. A failure undoes everything the tenant had, and the row too.
//!
//! `destroy`: archive (`pg_dump`, or a SQLite copy, into `provisioning.archive_dir`) unless
//! told not to → `archived` (requests get 410) → close connections → drop the storage.
//! `restore` brings an archive back; `migrate` / `migrate_all` bring tenants to the newest
//! migration, skipping those already there.

mod archive;
pub mod docker;
pub mod kubernetes;
mod migrations;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use sqlx::{Connection, PgConnection, SqliteConnection, sqlite::SqliteConnectOptions};
use tokio::task::JoinSet;

pub use self::{
    archive::{ArchiveManifest, read_manifest},
    migrations::{MigrationsError, TenantMigrations},
};
use crate::{
    config::{Config, DatabaseKind},
    core::slots::TenantSlots,
    core::{
        central::CentralDb,
        database::{AnyConn, DatabaseRouter, DbError, Target, TargetError, quote_ident},
        manager::{ManagerError, NewTenant, TenantManager},
        models::{IsolationMode, TenantId, TenantRecord, TenantStatus},
    },
    vectors::{ExportedCollection, VectorStore},
};

/// Why provisioning failed. What the attempt created has been undone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The tenant is already registered and active (or suspended).
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    /// No such tenant.
    #[error("tenant {0} does not exist")]
    NotFound(TenantId),
    /// The request contradicts the tenant's record.
    #[error("tenant {tenant}: {message}")]
    Conflict {
        /// The tenant.
        tenant: TenantId,
        /// What contradicts what.
        message: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] ManagerError),
    /// The tenant's database cannot be derived.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Creating or dropping the database, schema or file failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A connection could not be had.
    #[error(transparent)]
    Connection(#[from] DbError),
    /// A migration failed.
    #[error("tenant {tenant}: migration failed: {source}")]
    Migrate {
        /// The tenant.
        tenant: TenantId,
        /// sqlx's error.
        source: sqlx::migrate::MigrateError,
    },
    /// The seed failed.
    #[error("tenant {tenant}: seed failed: {message}")]
    Seed {
        /// The tenant.
        tenant: TenantId,
        /// What failed.
        message: String,
    },
    /// An archive could not be written or restored.
    #[error("archive: {0}")]
    Archive(String),
    /// Rendering or running the tenant's Docker stack failed.
    #[error("docker: {0}")]
    Docker(String),
    /// Making or dropping the tenant's vector collections failed.
    #[error("vector collections: {0}")]
    Vectors(String),
    /// The migrations could not be read.
    #[error(transparent)]
    Migrations(#[from] MigrationsError),
}

/// A step of provisioning, reported as it starts (for progress output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// The registry row is written (or found, when resuming).
    Register {
        /// Whether an earlier attempt's row was found.
        resumed: bool,
    },
    /// A port block is allocated.
    PortBlock {
        /// Its index.
        block: u32,
        /// Its first port.
        port_base: u16,
    },
    /// The stack's files are written.
    Stack {
        /// Their directory.
        dir: PathBuf,
    },
    /// The storage is created.
    Storage {
        /// What it is.
        target: String,
    },
    /// Migrations run.
    Migrate,
    /// The seed runs.
    Seed,
    /// The tenant's vector collections are made (`database.vector.collections`).
    Vectors {
        /// How many.
        collections: usize,
    },
    /// The tenant's vector collections are dropped.
    DropVectors,
    /// The tenant is active.
    Active,
    /// An archive is written.
    Archive,
    /// The storage is dropped.
    Drop,
    /// An attempt failed and is undone.
    Undo,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Register { resumed: false } => f.write_str("registered (status provisioning)"),
            Self::Register { resumed: true } => f.write_str("resuming an unfinished provisioning"),
            Self::PortBlock { block, port_base } => {
                write!(f, "port block {block} (ports from {port_base})")
            }
            Self::Stack { dir } => write!(f, "stack files in {}", dir.display()),
            Self::Storage { target } => write!(f, "storage: {target}"),
            Self::Migrate => f.write_str("migrations"),
            Self::Seed => f.write_str("seed"),
            Self::Vectors { collections } => write!(f, "{collections} vector collection(s)"),
            Self::DropVectors => f.write_str("dropping the vector collections"),
            Self::Active => f.write_str("active"),
            Self::Archive => f.write_str("archiving"),
            Self::Drop => f.write_str("dropping the storage"),
            Self::Undo => f.write_str("failed; undoing"),
        }
    }
}

/// The result of [`Provisioner::create`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Provisioned {
    /// The tenant is active.
    Ready(TenantRecord),
    /// DOCKER_PER_TENANT without a Docker engine: the stack's files are written and the
    /// tenant stays `provisioning`; start the stack, then run the same command again.
    AwaitingDocker {
        /// The record.
        record: TenantRecord,
        /// Where the stack's files are.
        dir: PathBuf,
    },
}

/// What [`Provisioner::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationOutcome {
    /// Every migration was applied already.
    UpToDate,
    /// Migrations ran; the tenant is at the newest.
    Migrated,
}

type Observer = Arc<dyn Fn(&TenantId, &Step) + Send + Sync>;

/// Held while one lifecycle operation of a tenant runs (see `Provisioner::exclusive`).
struct Exclusive {
    _local: tokio::sync::OwnedMutexGuard<()>,
    _shared: Option<PgConnection>,
}

/// The advisory-lock key of a tenant: the first 8 bytes of SHA-256 over a namespaced id, so
/// keys of other applications sharing the database are unlikely to meet ours.
fn advisory_key(id: &TenantId) -> i64 {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("mt-paas:tenant-lifecycle:{id}").as_bytes(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(bytes)
}

/// Creates, destroys, restores and migrates tenants.
#[derive(Clone)]
pub struct Provisioner {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    tenants: TenantManager,
    databases: DatabaseRouter,
    migrations: Arc<TenantMigrations>,
    vectors: Option<VectorStore>,
    observer: Option<Observer>,
    /// One lifecycle operation per tenant at a time in this process: a provision command
    /// pushed by the market and the same command pulled by a heartbeat must not build the
    /// tenant twice (the loser's undo would remove the winner's work).
    busy: Arc<TenantSlots<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("migrations", &self.inner.migrations.source())
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// A provisioner with the migrations of `database.tenant.migrations`.
    pub async fn new(
        config: Arc<Config>,
        tenants: TenantManager,
        databases: DatabaseRouter,
    ) -> Result<Self, ProvisionError> {
        let migrations = match &config.database.tenant.migrations {
            Some(dir) => TenantMigrations::load(&config.source_path(dir)).await?,
            None => TenantMigrations::none(),
        };
        Ok(Self::with_migrations(
            config, tenants, databases, migrations,
        ))
    }

    /// A provisioner with the given migrations.
    pub fn with_migrations(
        config: Arc<Config>,
        tenants: TenantManager,
        databases: DatabaseRouter,
        migrations: TenantMigrations,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                vectors: VectorStore::from_config(config.clone(), databases.clone()),
                config,
                tenants,
                databases,
                migrations: Arc::new(migrations),
                observer: None,
                busy: Arc::new(TenantSlots::new(|m| m.try_lock().is_ok())),
            }),
        }
    }

    /// Reports each step to `observer` as it starts.
    pub fn observe(&self, observer: impl Fn(&TenantId, &Step) + Send + Sync + 'static) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                config: inner.config.clone(),
                tenants: inner.tenants.clone(),
                databases: inner.databases.clone(),
                migrations: inner.migrations.clone(),
                vectors: inner.vectors.clone(),
                observer: Some(Arc::new(observer)),
                busy: inner.busy.clone(),
            }),
        }
    }

    /// The migrations.
    pub fn migrations(&self) -> &TenantMigrations {
        &self.inner.migrations
    }

    /// Waits until no other create, destroy, restore or migration of `id` runs in this
    /// process; with `across_replicas`, on a Postgres central DB (which several replicas
    /// share), also in any other process, by a session advisory lock. The lock is held on a
    /// connection of its own, outside the pool (holding pooled connections could starve the
    /// operation itself); dropping the guard drops the connection and so ends the lock, also
    /// when the operation fails or panics, and a crashed process's session frees it too.
    async fn exclusive(
        &self,
        id: &TenantId,
        across_replicas: bool,
    ) -> Result<Exclusive, ProvisionError> {
        let local = self
            .inner
            .busy
            .get_or_insert_with(id, || tokio::sync::Mutex::new(()))
            .lock_owned()
            .await;
        let shared = match self.inner.tenants.db() {
            CentralDb::Postgres(pool) if across_replicas => {
                let mut conn = PgConnection::connect_with(&pool.connect_options())
                    .await
                    .map_err(ManagerError::from)?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(advisory_key(id))
                    .execute(&mut conn)
                    .await
                    .map_err(ManagerError::from)?;
                Some(conn)
            }
            _ => None,
        };
        Ok(Exclusive {
            _local: local,
            _shared: shared,
        })
    }

    fn step(&self, id: &TenantId, step: Step) {
        tracing::info!(tenant = %id, step = %step, "provisioning");
        if let Some(observer) = &self.inner.observer {
            observer(id, &step);
        }
    }

    /// Creates a tenant: registry row, storage, migrations, seed, `active`. Resumes an
    /// earlier attempt that did not finish; undoes everything on failure.
    pub async fn create(
        &self,
        id: TenantId,
        display_name: &str,
        mode: Option<IsolationMode>,
    ) -> Result<Provisioned, ProvisionError> {
        let _exclusive = self.exclusive(&id, true).await?;
        let tenants = &self.inner.tenants;
        let config = &self.inner.config;
        let record = match tenants.get(&id).await? {
            None => {
                let mut new =
                    NewTenant::new(id.clone(), display_name).status(TenantStatus::Provisioning);
                if let Some(mode) = mode.filter(|m| *m != config.isolation.mode) {
                    new = new.isolation(mode);
                }
                // A name Postgres cannot hold, a mode without a database, or a stack this
                // build cannot run fails here, before anything is made.
                if new.isolation.unwrap_or(config.isolation.mode) == IsolationMode::DockerPerTenant
                {
                    docker::compiled()?;
                } else {
                    Target::of(config, &TenantRecord::probe(&new))?;
                }
                self.step(&id, Step::Register { resumed: false });
                match tenants.create(new).await {
                    Ok(record) => record,
                    // Another process registered it meanwhile: let that one finish.
                    Err(ManagerError::AlreadyExists(id)) => {
                        return Err(ProvisionError::AlreadyExists(id));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(record) => match record.status {
                TenantStatus::Provisioning | TenantStatus::Archived => {
                    let current = record.isolation_or(config.isolation.mode);
                    if let Some(mode) = mode
                        && mode != current
                        && record.status == TenantStatus::Provisioning
                    {
                        return Err(ProvisionError::Conflict {
                            tenant: id,
                            message: format!(
                                "an unfinished provisioning in {current} exists; finish it with the same mode or destroy it"
                            ),
                        });
                    }
                    if record.status == TenantStatus::Archived {
                        tenants.set_status(&id, TenantStatus::Provisioning).await?;
                    }
                    self.step(&id, Step::Register { resumed: true });
                    tenants
                        .get(&id)
                        .await?
                        .ok_or_else(|| ProvisionError::NotFound(id.clone()))?
                }
                TenantStatus::Active | TenantStatus::Suspended => {
                    return Err(ProvisionError::AlreadyExists(id));
                }
            },
        };
        match self.build(&record, None).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                self.step(&id, Step::Undo);
                if let Err(undo) = self.undo(&record).await {
                    tracing::error!(tenant = %id, error = %undo, "undoing a failed provisioning failed; run `tenant destroy --no-archive` to clean up");
                }
                Err(error)
            }
        }
    }

    /// Storage → (archive restore) → migrations → seed → active.
    async fn build(
        &self,
        record: &TenantRecord,
        restore_from: Option<&Path>,
    ) -> Result<Provisioned, ProvisionError> {
        let config = &self.inner.config;
        let tenants = &self.inner.tenants;
        let id = &record.id;
        let mut record = record.clone();
        let mut in_stack = None;
        if record.isolation_or(config.isolation.mode) == IsolationMode::DockerPerTenant {
            docker::compiled()?;
            let block = tenants.allocate_port_block(id).await?;
            record.port_block = Some(block);
            let stack = docker::render(config, &record)?;
            self.step(
                id,
                Step::PortBlock {
                    block,
                    port_base: stack.port_base,
                },
            );
            self.step(
                id,
                Step::Stack {
                    dir: stack.dir.clone(),
                },
            );
            docker::write(&stack)?;
            if !config.isolation.docker.start || !docker::engine_available().await {
                return Ok(Provisioned::AwaitingDocker {
                    record,
                    dir: stack.dir,
                });
            }
            docker::up(&config.isolation.docker, &stack).await?;
            in_stack = Some(stack);
        }
        let client = match &in_stack {
            Some(stack) => archive::PgClient::Stack(&config.isolation.docker, stack),
            None => archive::PgClient::Host,
        };
        let target = Target::of(config, &record)?;
        self.step(
            id,
            Step::Storage {
                target: target.describe(),
            },
        );
        match (restore_from, &target) {
            (None, _) => self.create_storage(id, &target).await?,
            (Some(archive), Target::PgSchema { url, .. }) => {
                // A restore starts from nothing, whatever an earlier attempt left; the dump
                // creates the schema itself.
                self.drop_storage(id, &target).await?;
                if let Some(database) = archive::pg_options(url)?.get_database() {
                    ensure_database(url, database).await.map_err(|e| {
                        ProvisionError::Storage(format!("{}: {e}", target.describe()))
                    })?;
                }
                archive::restore(&target, archive, client).await?;
            }
            (Some(archive), _) => {
                self.drop_storage(id, &target).await?;
                self.create_storage(id, &target).await?;
                archive::restore(&target, archive, client).await?;
            }
        }
        self.step(id, Step::Migrate);
        self.migrate_target(id, &target).await?;
        if self.inner.config.database.tenant.seed.is_some() {
            self.step(id, Step::Seed);
            self.seed(id, &target).await?;
        }
        if let Some(store) = &self.inner.vectors
            && !store.provisioned_collections().is_empty()
        {
            let specs = store.provisioned_collections();
            self.step(
                id,
                Step::Vectors {
                    collections: specs.len(),
                },
            );
            let vectors = store.for_record(&record, Some(target.clone()));
            for spec in specs {
                vectors
                    .create_collection(&spec.name, spec.dimension as usize)
                    .await
                    .map_err(|e| ProvisionError::Vectors(e.to_string()))?;
            }
        }
        if let (Some(store), Some(archive)) = (&self.inner.vectors, restore_from) {
            let file = archive::vectors_path(archive);
            if file.is_file() {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| ProvisionError::Archive(format!("{}: {e}", file.display())))?;
                let collections: Vec<ExportedCollection> = serde_json::from_str(&text)
                    .map_err(|e| ProvisionError::Archive(format!("{}: {e}", file.display())))?;
                store
                    .for_record(&record, Some(target.clone()))
                    .import(&collections)
                    .await
                    .map_err(|e| ProvisionError::Vectors(e.to_string()))?;
            }
        }
        tenants.set_status(id, TenantStatus::Active).await?;
        self.step(id, Step::Active);
        let record = tenants
            .get(id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(id.clone()))?;
        Ok(Provisioned::Ready(record))
    }

    /// Removes whatever `record` has: stack, storage, port block, registry row.
    async fn undo(&self, record: &TenantRecord) -> Result<(), ProvisionError> {
        let id = &record.id;
        let fresh = self
            .inner
            .tenants
            .get(id)
            .await?
            .unwrap_or_else(|| record.clone());
        if let Err(e) = self.drop_vectors(&fresh).await {
            tracing::error!(tenant = %id, error = %e, "dropping the vector collections of a failed provisioning failed");
        }
        match self.teardown(&fresh).await {
            // Without a target nothing was made.
            Ok(()) | Err(ProvisionError::Target(_)) => {}
            Err(e) => return Err(e),
        }
        match self.inner.tenants.remove(id).await {
            Ok(()) | Err(ManagerError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the tenant's collections in a vector store of its own kind (Qdrant, Chroma)
    /// beside its archive, so that a restore brings them back.
    async fn archive_vectors(
        &self,
        record: &TenantRecord,
        archive: &Path,
    ) -> Result<(), ProvisionError> {
        let Some(store) = &self.inner.vectors else {
            return Ok(());
        };
        if !store.keeps_vectors_outside_the_database() {
            return Ok(());
        }
        let collections = store
            .for_record(record, None)
            .export()
            .await
            .map_err(|e| ProvisionError::Vectors(e.to_string()))?;
        let file = archive::vectors_path(archive);
        let partial = file.with_extension("partial");
        let json =
            serde_json::to_vec(&collections).map_err(|e| ProvisionError::Archive(e.to_string()))?;
        std::fs::write(&partial, json)
            .and_then(|()| std::fs::rename(&partial, &file))
            .map_err(|e| ProvisionError::Archive(format!("{}: {e}", file.display())))
    }

    /// Drops the tenant's collections in a vector store of its own kind (Qdrant, Chroma);
    /// pgvector tables go with the tenant's database or schema.
    async fn drop_vectors(&self, record: &TenantRecord) -> Result<(), ProvisionError> {
        let Some(store) = &self.inner.vectors else {
            return Ok(());
        };
        if !store.keeps_vectors_outside_the_database() {
            return Ok(());
        }
        self.step(&record.id, Step::DropVectors);
        store
            .for_record(record, None)
            .drop_all()
            .await
            .map(drop)
            .map_err(|e| ProvisionError::Vectors(e.to_string()))
    }

    /// Drops storage and stack and frees the port block.
    async fn teardown(&self, record: &TenantRecord) -> Result<(), ProvisionError> {
        let config = &self.inner.config;
        let id = &record.id;
        if record.isolation_or(config.isolation.mode) == IsolationMode::DockerPerTenant {
            if record.port_block.is_some() {
                if let Ok(stack) = docker::render(config, record) {
                    if stack.dir.join("docker-compose.yml").exists() {
                        if docker::engine_available().await {
                            docker::down(&config.isolation.docker, &stack).await?;
                        } else if record.status != TenantStatus::Provisioning {
                            // Its containers and volumes may still be there: forgetting them
                            // would leave an orphan stack holding the port block.
                            return Err(ProvisionError::Docker(format!(
                                "no Docker engine answers, and the stack of tenant {id} in {} may still run; start the engine and run this again",
                                stack.dir.display()
                            )));
                        }
                    }
                    match std::fs::remove_dir_all(&stack.dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ProvisionError::Docker(format!(
                                "{}: {e}",
                                stack.dir.display()
                            )));
                        }
                    }
                }
                self.inner.tenants.release_port_block(id).await?;
            }
            return Ok(());
        }
        let target = Target::of(config, record)?;
        self.drop_storage(id, &target).await
    }

    /// Destroys a tenant: archive (unless `archive` is false) → `archived` → connections
    /// closed → storage dropped. Returns the archive's path. Safe to run again after a crash.
    pub async fn destroy(
        &self,
        id: &TenantId,
        archive: bool,
    ) -> Result<Option<PathBuf>, ProvisionError> {
        let _exclusive = self.exclusive(id, true).await?;
        let config = &self.inner.config;
        let record = self
            .inner
            .tenants
            .get(id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(id.clone()))?;
        let mode = record.isolation_or(config.isolation.mode);
        // A stack this build cannot take down is not forgotten.
        if mode == IsolationMode::DockerPerTenant {
            docker::compiled()?;
        }
        let target = match Target::of(config, &record) {
            Ok(target) => Some(target),
            // A docker tenant whose block is gone has no storage left to archive.
            Err(TargetError::NoPortBlock(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if archive
            && let Some(target) = &target
            && !self.storage_exists(id, target).await?
            && record.status != TenantStatus::Archived
        {
            return Err(ProvisionError::Archive(format!(
                "tenant {id} has no storage to archive ({}); use --no-archive to remove it anyway",
                target.describe()
            )));
        }
        // First the tenant stops being served, here and in every other process on this
        // central DB (they see the change within a poll and close their connections), so no
        // request writes into what is archived and dropped next.
        self.inner
            .tenants
            .set_status(id, TenantStatus::Archived)
            .await?;
        tokio::time::sleep(crate::core::central::CHANGE_POLL * 3).await;
        if let Some(target) = &target {
            self.inner.databases.close_target(target).await;
        }
        let mut archived = None;
        if archive
            && let Some(target) = &target
            && self.storage_exists(id, target).await?
        {
            self.step(id, Step::Archive);
            let dir = &config.provisioning.archive_dir;
            // A stack's database is dumped by its own container's pg_dump (the server's
            // version, whatever this host has).
            let stack = (mode == IsolationMode::DockerPerTenant)
                .then(|| docker::render(config, &record).ok())
                .flatten();
            let client = match &stack {
                Some(stack) => archive::PgClient::Stack(&config.isolation.docker, stack),
                None => archive::PgClient::Host,
            };
            let made = match archive::archive(target, &record, mode, dir, client).await {
                Ok(path) => self.archive_vectors(&record, &path).await.map(|()| path),
                Err(e) => Err(e),
            };
            match made {
                Ok(path) => archived = Some(path),
                Err(e) => {
                    // Nothing is dropped: the tenant goes back to how it was, and the same
                    // destroy can run again.
                    self.inner.tenants.set_status(id, record.status).await?;
                    return Err(e);
                }
            }
        }
        self.drop_vectors(&record).await?;
        self.step(id, Step::Drop);
        self.teardown(&record).await?;
        Ok(archived)
    }

    /// Brings a tenant back from an archive: the registry row (from the archive's manifest
    /// when the tenant is unknown), fresh storage, the archive's data, migrations, `active`.
    ///
    /// The archive's manifest must name `id`: an archive without one, or another tenant's,
    /// is refused (one tenant's data never lands in another by a typo). [`restore_unchecked`]
    /// is the explicit way round, for an archive made by hand.
    ///
    /// [`restore_unchecked`]: Self::restore_unchecked
    pub async fn restore(
        &self,
        id: &TenantId,
        archive: &Path,
    ) -> Result<TenantRecord, ProvisionError> {
        self.restore_checked(id, archive, true).await
    }

    /// [`restore`](Self::restore) without the manifest check: the archive is taken as `id`'s
    /// whatever its manifest says, or without one (`mt-paas tenant restore --unchecked`).
    pub async fn restore_unchecked(
        &self,
        id: &TenantId,
        archive: &Path,
    ) -> Result<TenantRecord, ProvisionError> {
        self.restore_checked(id, archive, false).await
    }

    async fn restore_checked(
        &self,
        id: &TenantId,
        archive: &Path,
        checked: bool,
    ) -> Result<TenantRecord, ProvisionError> {
        let _exclusive = self.exclusive(id, true).await?;
        if !archive.is_file() {
            return Err(ProvisionError::Archive(format!(
                "{} is not a file",
                archive.display()
            )));
        }
        let manifest = read_manifest(archive);
        if checked {
            match &manifest {
                None => {
                    return Err(ProvisionError::Archive(format!(
                        "{} has no manifest ({}.json) to say whose it is; restore it with --unchecked if it is {id}'s",
                        archive.display(),
                        archive.display()
                    )));
                }
                Some(m) if &m.tenant_id != id => {
                    return Err(ProvisionError::Conflict {
                        tenant: id.clone(),
                        message: format!(
                            "{} is an archive of tenant {}",
                            archive.display(),
                            m.tenant_id
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if manifest
            .as_ref()
            .is_some_and(|m| m.isolation == IsolationMode::DockerPerTenant)
        {
            docker::compiled()?;
        }
        let tenants = &self.inner.tenants;
        let record = match tenants.get(id).await? {
            Some(record)
                if matches!(
                    record.status,
                    TenantStatus::Active | TenantStatus::Suspended
                ) =>
            {
                return Err(ProvisionError::Conflict {
                    tenant: id.clone(),
                    message: "the tenant is live; destroy it before restoring over it".to_owned(),
                });
            }
            Some(_) => {
                tenants.set_status(id, TenantStatus::Provisioning).await?;
                tenants
                    .get(id)
                    .await?
                    .ok_or_else(|| ProvisionError::NotFound(id.clone()))?
            }
            None => {
                let name = manifest
                    .as_ref()
                    .map_or_else(|| id.to_string(), |m| m.display_name.clone());
                let mut new = NewTenant::new(id.clone(), name).status(TenantStatus::Provisioning);
                if let Some(m) = &manifest
                    && m.isolation != self.inner.config.isolation.mode
                {
                    new = new.isolation(m.isolation);
                }
                tenants.create(new).await?
            }
        };
        self.step(id, Step::Register { resumed: false });
        match self.build(&record, Some(archive)).await {
            Ok(Provisioned::Ready(record)) => Ok(record),
            Ok(Provisioned::AwaitingDocker { dir, .. }) => Err(ProvisionError::Docker(format!(
                "no Docker engine answers; start the stack in {} and restore again",
                dir.display()
            ))),
            Err(error) => {
                self.step(id, Step::Undo);
                let _ = tenants.set_status(id, TenantStatus::Archived).await;
                if let Ok(target) = Target::of(&self.inner.config, &record) {
                    let _ = self.drop_storage(id, &target).await;
                }
                Err(error)
            }
        }
    }

    /// Brings one tenant to the newest migration.
    pub async fn migrate(&self, id: &TenantId) -> Result<MigrationOutcome, ProvisionError> {
        // Migrations are idempotent and sqlx's migrator locks the database it migrates.
        let _exclusive = self.exclusive(id, false).await?;
        let record = self
            .inner
            .tenants
            .get(id)
            .await?
            .ok_or_else(|| ProvisionError::NotFound(id.clone()))?;
        let target = Target::of(&self.inner.config, &record)?;
        self.migrate_target(id, &target).await
    }

    /// Migrates every active or suspended tenant, `concurrency` at a time, calling
    /// `on_done` as each finishes. Tenants already at the newest migration are skipped.
    pub async fn migrate_all(
        &self,
        concurrency: usize,
        on_done: impl Fn(&TenantId, &Result<MigrationOutcome, ProvisionError>),
    ) -> Result<Vec<(TenantId, Result<MigrationOutcome, ProvisionError>)>, ProvisionError> {
        let ids: Vec<TenantId> = self
            .inner
            .tenants
            .list()
            .await?
            .into_iter()
            .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
            .map(|t| t.id)
            .collect();
        let mut pending = ids.into_iter();
        let mut running = JoinSet::new();
        let mut results = Vec::new();
        loop {
            while running.len() < concurrency.max(1) {
                let Some(id) = pending.next() else { break };
                let this = self.clone();
                running.spawn(async move {
                    let result = this.migrate(&id).await;
                    (id, result)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok((id, result)) => {
                    on_done(&id, &result);
                    results.push((id, result));
                }
                Err(e) => tracing::error!(error = %e, "a migration task panicked"),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(results)
    }

    async fn migrate_target(
        &self,
        id: &TenantId,
        target: &Target,
    ) -> Result<MigrationOutcome, ProvisionError> {
        let migrator = self.inner.migrations.for_kind(target.kind());
        let wanted: Vec<i64> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        let mut db = self.inner.databases.acquire_target(id, target).await?;
        let migrate_error = |source| ProvisionError::Migrate {
            tenant: id.clone(),
            source,
        };
        match db.any_conn() {
            AnyConn::Sqlite(conn) => {
                if up_to_date!(conn, &wanted) {
                    return Ok(MigrationOutcome::UpToDate);
                }
                migrator
                    .run_direct(None, &mut *conn, false)
                    .await
                    .map_err(migrate_error)?;
            }
            AnyConn::Postgres(conn) => {
                if up_to_date!(conn, &wanted) {
                    return Ok(MigrationOutcome::UpToDate);
                }
                // One lock per tenant (sqlx's own lock is per database and would serialize
                // every schema of a shared database).
                let key = format!("mt-paas migrate {}", target.pool_key());
                let lock = sqlx::query("SELECT pg_advisory_lock(hashtext($1)::bigint)")
                    .bind(&key)
                    .execute(&mut *conn)
                    .await;
                if let Err(e) = lock {
                    db.discard();
                    return Err(migrate_error(sqlx::migrate::MigrateError::Execute(e)));
                }
                let result = migrator.run_direct(None, &mut *conn, false).await;
                let unlock = sqlx::query("SELECT pg_advisory_unlock(hashtext($1)::bigint)")
                    .bind(&key)
                    .execute(&mut *conn)
                    .await;
                result.map_err(migrate_error)?;
                if unlock.is_err() {
                    db.discard();
                }
            }
        }
        Ok(MigrationOutcome::Migrated)
    }

    async fn seed(&self, id: &TenantId, target: &Target) -> Result<(), ProvisionError> {
        let Some(path) = &self.inner.config.database.tenant.seed else {
            return Ok(());
        };
        let path = self.inner.config.source_path(path);
        let seed_error = |message: String| ProvisionError::Seed {
            tenant: id.clone(),
            message,
        };
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| seed_error(format!("{}: {e}", path.display())))?;
        let mut db = self.inner.databases.acquire_target(id, target).await?;
        let result = match db.any_conn() {
            AnyConn::Sqlite(conn) => seed_once!(conn, &sql),
            AnyConn::Postgres(conn) => seed_once!(conn, &sql),
        };
        result.map_err(|e| seed_error(e.to_string()))
    }

    async fn create_storage(&self, id: &TenantId, target: &Target) -> Result<(), ProvisionError> {
        let storage = |e: String| ProvisionError::Storage(format!("{}: {e}", target.describe()));
        match target {
            Target::SqliteFile { path } => {
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| storage(e.to_string()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true);
                let conn = SqliteConnection::connect_with(&options)
                    .await
                    .map_err(|e| storage(e.to_string()))?;
                let _ = conn.close().await;
                Ok(())
            }
            Target::PgDatabase { url, database } => {
                if !self.wait_for_server(id, target).await {
                    return Err(storage("the server does not answer".to_owned()));
                }
                ensure_database(url, database).await.map_err(storage)
            }
            Target::PgSchema { url, schema } => {
                // The shared database itself is made on first use, like the central DB.
                let shared = archive::pg_options(url)?;
                if let Some(database) = shared.get_database() {
                    ensure_shared_database(url, database)
                        .await
                        .map_err(storage)?;
                }
                let mut db = self.inner.databases.acquire_target(id, target).await?;
                let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
                let AnyConn::Postgres(conn) = db.any_conn() else {
                    return Err(storage("a schema needs Postgres".to_owned()));
                };
                match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Two replicas creating it at once.
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(()),
                    Err(e) => Err(storage(e.to_string())),
                }
            }
        }
    }

    async fn storage_exists(&self, id: &TenantId, target: &Target) -> Result<bool, ProvisionError> {
        let storage =
            |e: sqlx::Error| ProvisionError::Storage(format!("{}: {e}", target.describe()));
        match target {
            Target::SqliteFile { path } => Ok(path.is_file()),
            Target::PgDatabase { url, database } => {
                let admin = archive::pg_options(url)?.database("postgres");
                let Ok(mut conn) = PgConnection::connect_with(&admin).await else {
                    return Ok(false);
                };
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                        .bind(database)
                        .fetch_optional(&mut conn)
                        .await
                        .map_err(storage)?;
                let _ = conn.close().await;
                Ok(exists.is_some())
            }
            Target::PgSchema { schema, .. } => {
                let mut db = self.inner.databases.acquire_target(id, target).await?;
                let AnyConn::Postgres(conn) = db.any_conn() else {
                    return Ok(false);
                };
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                        .bind(schema)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(storage)?;
                Ok(exists.is_some())
            }
        }
    }

    async fn drop_storage(&self, id: &TenantId, target: &Target) -> Result<(), ProvisionError> {
        self.inner.databases.close_target(target).await;
        let storage = |e: String| ProvisionError::Storage(format!("{}: {e}", target.describe()));
        match target {
            Target::SqliteFile { path } => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    match std::fs::remove_file(PathBuf::from(file)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(storage(e.to_string())),
                    }
                }
                Ok(())
            }
            Target::PgDatabase { url, database } => {
                let admin = archive::pg_options(url)?.database("postgres");
                let mut conn = match PgConnection::connect_with(&admin).await {
                    Ok(conn) => conn,
                    // A Docker stack that is gone took its database with it.
                    Err(_)
                        if self.inner.config.isolation.mode == IsolationMode::DockerPerTenant =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(storage(e.to_string())),
                };
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(database)
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| storage(e.to_string()))?;
                let _ = conn.close().await;
                Ok(())
            }
            Target::PgSchema { schema, .. } => {
                let mut db = self.inner.databases.acquire_target(id, target).await?;
                let AnyConn::Postgres(conn) = db.any_conn() else {
                    return Ok(());
                };
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema));
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| storage(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// Waits for a Docker stack's database server to accept connections; other servers are
    /// expected to be up.
    async fn wait_for_server(&self, id: &TenantId, target: &Target) -> bool {
        let Target::PgDatabase { url, .. } = target else {
            return true;
        };
        let docker = self
            .inner
            .tenants
            .get(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| {
                r.isolation_or(self.inner.config.isolation.mode) == IsolationMode::DockerPerTenant
            });
        if !docker {
            // Other servers are expected up; connecting fails clearly if one is not.
            return true;
        }
        let Ok(options) = archive::pg_options(url) else {
            return false;
        };
        let admin = options.database("postgres");
        let timeout = self
            .inner
            .config
            .isolation
            .docker
            .start_timeout_seconds
            .max(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            if let Ok(conn) = PgConnection::connect_with(&admin).await {
                let _ = conn.close().await;
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// [`ensure_database`] for the shared database of schema tenants, checked once per process
/// (a maintenance connection costs tens of milliseconds; the shared database is never dropped
/// by mt-paas).
async fn ensure_shared_database(
    url: &crate::config::DatabaseUrl,
    name: &str,
) -> Result<(), String> {
    static ENSURED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let ensured = ENSURED.get_or_init(Default::default);
    let key = format!("{}/{name}", url.expose());
    if ensured.lock().is_ok_and(|set| set.contains(&key)) {
        return Ok(());
    }
    ensure_database(url, name).await?;
    if let Ok(mut set) = ensured.lock() {
        set.insert(key);
    }
    Ok(())
}

/// Creates the database `name` on `url`'s server unless it exists.
async fn ensure_database(url: &crate::config::DatabaseUrl, name: &str) -> Result<(), String> {
    let admin = archive::pg_options(url)
        .map_err(|e| e.to_string())?
        .database("postgres");
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .map_err(|e| e.to_string())?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if exists.is_none() {
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            Ok(_) => {}
            // Created meanwhile by another process.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Whether every wanted migration version is recorded as applied (`$conn`: either engine).
macro_rules! up_to_date {
    ($conn:expr, $wanted:expr) => {{
        let wanted: &[i64] = $wanted;
        if wanted.is_empty() {
            true
        } else {
            let applied: Result<Vec<i64>, sqlx::Error> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(&mut *$conn)
                    .await;
            applied.is_ok_and(|applied| wanted.iter().all(|v| applied.contains(v)))
        }
    }};
}
use up_to_date;

/// Runs the seed once: the SQL and a marker row commit together (`$conn`: either engine).
macro_rules! seed_once {
    ($conn:expr, $sql:expr) => {{
        async {
            sqlx::raw_sql("CREATE TABLE IF NOT EXISTS _mt_paas_seed (seeded INTEGER NOT NULL)")
                .execute(&mut *$conn)
                .await?;
            let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _mt_paas_seed")
                .fetch_one(&mut *$conn)
                .await?;
            if done > 0 {
                return Ok::<(), sqlx::Error>(());
            }
            let mut tx = $conn.begin().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe($sql.to_owned()))
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql("INSERT INTO _mt_paas_seed (seeded) VALUES (1)")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await
    }};
}
use seed_once;

impl DatabaseKind {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}
