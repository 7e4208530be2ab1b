//! Logging through `tracing` to stderr, as text or JSON lines.
//!
//! `RUST_LOG` wins over `log.level`. Nothing may log a password, token or key;
//! the access log (target `mlapi::access`) records paths without query strings.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber once; later calls are no-ops.
/// `default_level` applies when the config keeps the built-in level, so
/// operator commands stay quiet unless asked.
pub fn init(config: &LogConfig, default_level: &str) {
    let level = if config.level == LogConfig::default().level {
        default_level
    } else {
        config.level.as_str()
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
