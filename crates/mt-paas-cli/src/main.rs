//! `mt-paas`: check a configuration, manage the tenants of a service, run the dev stack.

mod dev;
mod lrs;
mod text;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mt_paas::{
    CentralDb, DatabaseRouter, Features, IsolationMode, JwtKeys, TenantId, TenantManager,
    TenantRecord, TenantStatus,
    config::{Config, ConfigLoader},
    outbox::{Outbox, Sinks},
    provisioning::{MigrationOutcome, ProvisionError, Provisioned, Provisioner},
};

#[derive(Debug, Parser)]
#[command(
    name = "mt-paas",
    version,
    about = "mt-paas: configuration and tenant lifecycle"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "MT_PAAS_CONFIG",
        default_value = "mt_paas_config.yaml"
    )]
    config: PathBuf,
    /// The environment overlay to apply (mt_paas_config.{env}.yaml); default: $MT_PAAS_ENV.
    #[arg(long, short, global = true)]
    env: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage tenants in the central DB named by the configuration.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Mint a JWT signed with auth.jwt.secret (for development and tests).
    Token(TokenArgs),
    /// Inspect and repair the outbox (audit alerts, usage, xAPI statements).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Run the whole loop on this machine: the reference market on 127.0.0.1:8505 and the
    /// service with MT_PAAS_ENV=dev, until Ctrl-C.
    Dev(DevArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// The market's configuration (embedded defaults when the file is absent).
    #[arg(long, default_value = "market.yaml")]
    market_config: PathBuf,
    /// Where the service answers, to wait for it and print the curl lines.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    service_url: String,
    /// The command that runs the service (default: basic_service from this repository).
    #[arg(last = true)]
    service: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted. Exit 1, one line per
    /// problem, when it is invalid.
    Check {
        /// Print only the problems (or "ok"), not the effective configuration.
        #[arg(long, short)]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Provision a tenant: registry, database (or schema, or Docker stack), migrations, seed.
    /// Run it again to resume one that was interrupted.
    Create {
        /// The tenant id: 1-63 of a-z, 0-9, '_', '-'.
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// The display name.
        #[arg(long, short)]
        name: String,
        /// An isolation mode overriding isolation.mode: database, schema or docker.
        #[arg(long, value_parser = parse_mode)]
        mode: Option<IsolationMode>,
    },
    /// Destroy a tenant: archive its data into provisioning.archive_dir, then drop it.
    Destroy {
        /// The tenant id.
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// Drop the data without archiving it first.
        #[arg(long)]
        no_archive: bool,
    },
    /// Bring a destroyed tenant back from an archive made by `destroy`.
    Restore {
        /// The tenant id.
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// The archive (`.db` or `.dump`).
        #[arg(long)]
        from: PathBuf,
        /// Restore even when the archive's manifest is missing or names another tenant.
        #[arg(long)]
        unchecked: bool,
    },
    /// Bring tenants to the newest migration; those already there are skipped.
    Migrate {
        /// One tenant.
        #[arg(value_parser = parse_tenant_id, required_unless_present = "all", conflicts_with = "all")]
        id: Option<TenantId>,
        /// Every active or suspended tenant.
        #[arg(long)]
        all: bool,
        /// Tenants migrated at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
    },
    /// List the tenants.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant.
    Show {
        /// The tenant id.
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a tenant's stack from isolation.docker's settings: Kubernetes manifests (a
    /// namespace, its database, network policy, quota, secret), or the compose file of a
    /// registered docker tenant.
    Render {
        /// The tenant id.
        #[arg(value_parser = parse_tenant_id)]
        id: TenantId,
        /// What to render.
        #[arg(long, value_parser = ["kubernetes", "compose"], default_value = "kubernetes")]
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Counts per status, then the newest items.
    List {
        /// Only items with this status.
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        status: Option<String>,
        /// How many items.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered items back in the queue (one, or all).
    Retry {
        /// The item's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead item.
        #[arg(long)]
        all: bool,
    },
    /// Delete delivered or dead items older than an age.
    Purge {
        /// Which items.
        #[arg(long, value_parser = ["delivered", "dead"])]
        status: String,
        /// Only items older than this many seconds.
        #[arg(long, default_value_t = 0)]
        older_than: u64,
    },
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The tenant_id claim.
    #[arg(long, short, value_parser = parse_tenant_id)]
    tenant: TenantId,
    /// The sub claim (user id).
    #[arg(long, default_value = "dev-user")]
    sub: String,
}

fn parse_tenant_id(value: &str) -> Result<TenantId, String> {
    TenantId::parse(value).map_err(|e| e.to_string())
}

fn parse_mode(value: &str) -> Result<IsolationMode, String> {
    value
        .parse()
        .map_err(|_| "expected database, schema or docker".to_owned())
}

fn main() -> ExitCode {
    let lang = text::Lang::from_env();
    let matches = text::localize(<Cli as clap::CommandFactory>::command(), lang).get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(global: &Global) -> Result<Config, ExitCode> {
    let mut loader = ConfigLoader::new(&global.config);
    if let Some(env) = &global.env {
        loader = loader.env(Some(env));
    }
    loader.load().map_err(|e| {
        for problem in &e.problems {
            eprintln!("{problem}");
        }
        eprintln!(
            "{} problem{} in the configuration",
            e.problems.len(),
            if e.problems.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Dev(args) = &cli.command {
        let service = if args.service.is_empty() {
            ["cargo", "run", "-q", "-p", "basic_service"]
                .map(str::to_owned)
                .to_vec()
        } else {
            args.service.clone()
        };
        return dev::run(&args.market_config, &service, &args.service_url).await;
    }
    let config = match load(&cli.global) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    match cli.command {
        Command::Config(ConfigCommand::Check { quiet }) => {
            if !quiet {
                print!("{}", config.to_redacted_yaml());
            }
            let sources = &config.sources;
            match &sources.overlay {
                Some(overlay) => eprintln!(
                    "ok: {} with overlay {}",
                    sources.base.display(),
                    overlay.display()
                ),
                None => eprintln!("ok: {}", sources.base.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant(command) => tenant(config, command).await,
        Command::Token(args) => {
            let keys = JwtKeys::from_config(&config.auth.jwt)
                .context("auth.jwt.secret is not set; tokens cannot be signed")?;
            let mut claims = serde_json::Map::new();
            claims.insert("tenant_id".into(), args.tenant.as_str().into());
            claims.insert("sub".into(), args.sub.into());
            println!("{}", keys.issue(claims)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox(command) => outbox(&config, command).await,
        Command::Dev(_) => Ok(ExitCode::SUCCESS),
    }
}

async fn tenant(config: Config, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let config = Arc::new(config);
    let db = CentralDb::connect(&config.database.central)
        .await
        .context("cannot open the central DB")?;
    let manager = TenantManager::new(
        db.clone(),
        config.isolation.mode,
        Features::new(config.features.defaults.clone()),
    );
    let default_mode = config.isolation.mode;
    let provisioner = || async {
        let databases = DatabaseRouter::new(config.clone());
        Provisioner::new(config.clone(), manager.clone(), databases)
            .await
            .context("cannot read the tenant migrations")
    };
    let code = match command {
        TenantCommand::Create { id, name, mode } => {
            let spinner = spinner();
            let provisioner = provisioner().await?.observe({
                let spinner = spinner.clone();
                move |_, step| spinner.println(format!("  {step}"))
            });
            spinner.set_message(format!("provisioning {id}"));
            let result = provisioner.create(id.clone(), &name, mode).await;
            spinner.finish_and_clear();
            match result? {
                Provisioned::Ready(record) => {
                    println!("created tenant {}", record.id);
                    print_record(&record, default_mode);
                    ExitCode::SUCCESS
                }
                Provisioned::AwaitingDocker { record, dir, .. } => {
                    println!(
                        "wrote the stack of tenant {} to {}",
                        record.id,
                        dir.display()
                    );
                    println!("no Docker engine answers, so it was not started. Start it with");
                    println!(
                        "  docker compose -f {}/docker-compose.yml up -d",
                        dir.display()
                    );
                    println!("then run this command again to finish (migrations, seed).");
                    ExitCode::SUCCESS
                }
                _ => ExitCode::FAILURE,
            }
        }
        TenantCommand::Destroy { id, no_archive } => {
            let spinner = spinner();
            let provisioner = provisioner().await?.observe({
                let spinner = spinner.clone();
                move |_, step| spinner.println(format!("  {step}"))
            });
            spinner.set_message(format!("destroying {id}"));
            let result = provisioner.destroy(&id, !no_archive).await;
            spinner.finish_and_clear();
            match result? {
                Some(archive) => println!("destroyed tenant {id}; archive: {}", archive.display()),
                None => println!("destroyed tenant {id} (not archived)"),
            }
            ExitCode::SUCCESS
        }
        TenantCommand::Restore {
            id,
            from,
            unchecked,
        } => {
            let spinner = spinner();
            let provisioner = provisioner().await?.observe({
                let spinner = spinner.clone();
                move |_, step| spinner.println(format!("  {step}"))
            });
            spinner.set_message(format!("restoring {id}"));
            let result = if unchecked {
                provisioner.restore_unchecked(&id, &from).await
            } else {
                provisioner.restore(&id, &from).await
            };
            spinner.finish_and_clear();
            let record = result?;
            println!("restored tenant {} from {}", record.id, from.display());
            print_record(&record, default_mode);
            ExitCode::SUCCESS
        }
        TenantCommand::Migrate { id: Some(id), .. } => {
            let outcome = provisioner().await?.migrate(&id).await?;
            println!("{id}: {}", outcome_text(&Ok(outcome)));
            ExitCode::SUCCESS
        }
        TenantCommand::Migrate {
            id: None,
            concurrency,
            ..
        } => migrate_all(&provisioner().await?, &manager, concurrency).await?,
        TenantCommand::List { json } => {
            let tenants = manager.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                print_table(&tenants, default_mode);
            }
            ExitCode::SUCCESS
        }
        TenantCommand::Render { id, target } => {
            let record = manager.get(&id).await?;
            if target == "kubernetes" {
                let name = record
                    .as_ref()
                    .map_or(id.as_str(), |r| r.display_name.as_str());
                print!(
                    "{}",
                    mt_paas::provisioning::kubernetes::render(&config, &id, name)?
                );
                ExitCode::SUCCESS
            } else if let Some(record) = record.filter(|r| r.port_block.is_some()) {
                print!(
                    "{}",
                    mt_paas::provisioning::docker::render(&config, &record)?.compose
                );
                ExitCode::SUCCESS
            } else {
                eprintln!("error: tenant {id} has no Docker stack (create it with --mode docker)");
                ExitCode::FAILURE
            }
        }
        TenantCommand::Show { id, json } => match manager.get(&id).await? {
            Some(record) if json => {
                println!("{}", serde_json::to_string_pretty(&record)?);
                ExitCode::SUCCESS
            }
            Some(record) => {
                print_record(&record, default_mode);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: tenant {id} does not exist");
                ExitCode::FAILURE
            }
        },
    };
    db.close().await;
    Ok(code)
}

async fn outbox(config: &Config, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let db = CentralDb::connect(&config.database.central)
        .await
        .context("cannot open the central DB")?;
    let outbox = Outbox::new(db.clone(), config.logging.outbox.clone(), Sinks::default());
    match command {
        OutboxCommand::List {
            status,
            limit,
            json,
        } => {
            let counts = outbox.counts(None).await?;
            let items = outbox.list(status.as_deref(), limit).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "counts": counts, "items": items })
                    )?
                );
            } else {
                println!(
                    "pending {}  delivered {}  dead {}",
                    counts.pending, counts.delivered, counts.dead
                );
                for item in items {
                    println!(
                        "{:<9} {:<8} {:>3} tries  {}  {}",
                        item.status,
                        item.kind,
                        item.attempts,
                        item.id,
                        item.last_error.unwrap_or_default()
                    );
                }
            }
        }
        OutboxCommand::Retry { id, .. } => {
            let n = outbox.retry(id.as_deref()).await?;
            println!("{n} item(s) back in the queue");
        }
        OutboxCommand::Purge { status, older_than } => {
            let n = outbox
                .purge(&status, Duration::from_secs(older_than))
                .await?;
            println!("{n} {status} item(s) deleted");
        }
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

fn spinner() -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

fn outcome_text(result: &Result<MigrationOutcome, ProvisionError>) -> String {
    match result {
        Ok(MigrationOutcome::UpToDate) => "up to date (skipped)".to_owned(),
        Ok(_) => "migrated".to_owned(),
        Err(e) => format!("FAILED: {e}"),
    }
}

async fn migrate_all(
    provisioner: &Provisioner,
    manager: &TenantManager,
    concurrency: u16,
) -> anyhow::Result<ExitCode> {
    let total = manager
        .list()
        .await?
        .iter()
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
        .count();
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or_default());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} migrating [{bar:40}] {pos}/{len} tenants ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let results = provisioner
        .migrate_all(usize::from(concurrency), |id, result| {
            if result.is_err() {
                bar.println(format!("  {id}: {}", outcome_text(result)));
            }
            bar.set_message(id.to_string());
            bar.inc(1);
        })
        .await?;
    bar.finish_and_clear();
    let width = results
        .iter()
        .map(|(id, _)| id.as_str().len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$}  RESULT", "TENANT");
    for (id, result) in &results {
        println!("{:<width$}  {}", id.as_str(), outcome_text(result));
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let skipped = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(MigrationOutcome::UpToDate)))
        .count();
    println!(
        "{} tenants: {} migrated, {} up to date, {} failed in {:.1}s",
        results.len(),
        results.len() - failed - skipped,
        skipped,
        failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_record(record: &TenantRecord, default_mode: IsolationMode) {
    println!("id:         {}", record.id);
    println!("name:       {}", record.display_name);
    println!("status:     {}", record.status);
    let mode = record.isolation_or(default_mode);
    let origin = if record.isolation.is_some() {
        "tenant override"
    } else {
        "isolation.mode"
    };
    println!("isolation:  {mode} ({origin})");
    if let Some(block) = record.port_block {
        println!("port block: {block}");
    }
    if !record.placement.is_empty() {
        println!(
            "placement:  {}",
            serde_json::to_string(&record.placement).unwrap_or_default()
        );
    }
    println!("created_at: {}", rfc3339(record.created_at));
}

fn print_table(tenants: &[TenantRecord], default_mode: IsolationMode) {
    if tenants.is_empty() {
        println!("no tenants");
        return;
    }
    // Columns by display width: a Hangul syllable takes two cells of a terminal.
    let cells = |text: &str| unicode_width::UnicodeWidthStr::width(text);
    let width = |f: &dyn Fn(&TenantRecord) -> String, title: &str| {
        tenants
            .iter()
            .map(|t| cells(&f(t)))
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let id_w = width(&|t| t.id.to_string(), "ID");
    let name_w = width(&|t| t.display_name.clone(), "NAME");
    println!(
        "{:<id_w$}  {:<name_w$}  {:<12}  {:<19}  CREATED",
        "ID", "NAME", "STATUS", "ISOLATION"
    );
    for t in tenants {
        let pad = " ".repeat(name_w.saturating_sub(cells(&t.display_name)));
        println!(
            "{:<id_w$}  {}{pad}  {:<12}  {:<19}  {}",
            t.id.as_str(),
            t.display_name,
            t.status.as_str(),
            t.isolation_or(default_mode).as_str(),
            rfc3339(t.created_at)
        );
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
