//! Log output at `logging.level`; `RUST_LOG` overrides. Colours only on a terminal.

use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Installs a `tracing` subscriber at `logging.level`, unless one is installed already.
pub(crate) fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.logging.level.as_directive()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
}
