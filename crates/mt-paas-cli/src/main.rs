//! `mt-paas`: check a configuration and manage the tenants of a service.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mt_paas::{
    Features, IsolationMode, NewTenant, TenantId, TenantManager, TenantRecord,
    config::{Config, ConfigLoader},
    core::central::CentralDb,
    middleware::auth::JwtKeys,
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
    /// Register a tenant.
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
    let cli = Cli::parse();
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
        Command::Tenant(command) => tenant(&config, command).await,
        Command::Token(args) => {
            let keys = JwtKeys::from_config(&config.auth.jwt)
                .context("auth.jwt.secret is not set; tokens cannot be signed")?;
            let mut claims = serde_json::Map::new();
            claims.insert("tenant_id".into(), args.tenant.as_str().into());
            claims.insert("sub".into(), args.sub.into());
            println!("{}", keys.issue(claims)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn tenant(config: &Config, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let db = CentralDb::connect(&config.database.central)
        .await
        .context("cannot open the central DB")?;
    let manager = TenantManager::new(
        db.clone(),
        config.isolation.mode,
        Features::new(config.features.defaults.clone()),
    );
    let code = match command {
        TenantCommand::Create { id, name, mode } => {
            let mut new = NewTenant::new(id, name);
            if let Some(mode) = mode {
                new = new.isolation(mode);
            }
            let record = manager.create(new).await?;
            println!("created tenant {}", record.id);
            print_record(&record, config.isolation.mode);
            ExitCode::SUCCESS
        }
        TenantCommand::List { json } => {
            let tenants = manager.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                print_table(&tenants, config.isolation.mode);
            }
            ExitCode::SUCCESS
        }
        TenantCommand::Show { id, json } => match manager.get(&id).await? {
            Some(record) if json => {
                println!("{}", serde_json::to_string_pretty(&record)?);
                ExitCode::SUCCESS
            }
            Some(record) => {
                print_record(&record, config.isolation.mode);
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
    let width = |f: &dyn Fn(&TenantRecord) -> String, title: &str| {
        tenants
            .iter()
            .map(|t| f(t).chars().count())
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
        let pad = name_w - t.display_name.chars().count() + t.display_name.len();
        println!(
            "{:<id_w$}  {:<pad$}  {:<12}  {:<19}  {}",
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
