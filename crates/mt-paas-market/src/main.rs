//! `mt-paas-market serve --config market.yaml`: the reference marketplace.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use mt_paas_market::{Market, MarketConfig, store::Store};

#[derive(Debug, Parser)]
#[command(
    name = "mt-paas-market",
    version,
    about = "The reference marketplace of mt-paas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        env = "MT_PAAS_MARKET_CONFIG",
        default_value = "market.yaml"
    )]
    config: PathBuf,
    /// The overlay to apply (market.{env}.yaml); default: $MT_PAAS_ENV.
    #[arg(long, short)]
    env: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the market API.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Dev mode: the public demo credentials are accepted (never in production).
        #[arg(long)]
        dev: bool,
    },
    /// Console operators: `operator add NAME` creates one or sets its password (read from
    /// $MT_PAAS_OPERATOR_PASSWORD, else from the first line of standard input).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Check the configuration and exit (1 with one line per problem when invalid).
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Check as dev mode would run.
        #[arg(long)]
        dev: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorAction {
    /// Create operator NAME, or set its password (its sessions end).
    Add {
        /// The operator's name (a-z, 0-9, '.', '_', '-').
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// What a command does once its configuration is loaded.
enum Job {
    Serve,
    Check,
    AddOperator(String),
}

/// `operator add`: the password from the environment or standard input, never an argument
/// (arguments are visible to every user of the machine).
async fn add_operator(name: &str, config: &MarketConfig) -> ExitCode {
    let password = match std::env::var("MT_PAAS_OPERATOR_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprint!("password for {name}: ");
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("mt-paas-market: cannot read the password");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let store = match Store::open(&config.database.url, 1).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("mt-paas-market: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = mt_paas_market::put_operator(&store, name, &password).await;
    store.close().await;
    match result {
        Ok(true) => eprintln!("operator {name} created"),
        Ok(false) => eprintln!("operator {name}: password changed, its sessions ended"),
        Err(e) => {
            eprintln!("mt-paas-market: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let (args, dev, job) = match Cli::parse().command {
        Command::Serve { config, dev } => (config, dev, Job::Serve),
        Command::Check { config, dev } => (config, dev, Job::Check),
        Command::Operator {
            action: OperatorAction::Add { name, config },
        } => (config, false, Job::AddOperator(name)),
    };
    let config = match MarketConfig::load_as(&args.config, args.env.as_deref(), dev) {
        Ok(config) => config,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("{problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    match job {
        Job::AddOperator(name) => return add_operator(&name, &config).await,
        Job::Check => {
            eprintln!("ok: {}", args.config.display());
            return ExitCode::SUCCESS;
        }
        Job::Serve => {}
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        // Colour codes only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
    let market = match Market::start(config).await {
        Ok(market) => market,
        Err(e) => {
            eprintln!("mt-paas-market: {e}");
            return ExitCode::FAILURE;
        }
    };
    match market.serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mt-paas-market: {e}");
            ExitCode::FAILURE
        }
    }
}
