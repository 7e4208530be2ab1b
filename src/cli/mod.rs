//! The command-line adapter: the clap definition of every command, and one
//! function per command that loads what it needs, calls library services and
//! prints the result as a table or one JSON document.
//!
//! Errors become `CliError`, whose one mapping to exit codes is `exit_code`.
//! Commands never prompt when stdin is not a terminal.

pub mod output;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::app::App;
use crate::config::{self, ConfigError, Overrides};
use crate::logging;
use crate::server::{self, ServeError};
use crate::store::StoreError;
use output::{Format, Output};

#[derive(Debug, Parser)]
#[command(
    name = "mlapi",
    version,
    about = "Serve a machine-learning model behind a production HTTP API, and manage it from the terminal.",
    long_about = "Serve a machine-learning model behind a production HTTP API, and manage it from the terminal.\n\n\
        `mlapi serve` runs the daemon. The other commands manage the same state (the SQLite file, \
        and Redis when configured) and reach a running daemon within a second.\n\n\
        Configuration: --config, else $MLAPI_CONFIG, else /etc/mlapi/mlapi.toml, else the user \
        config dir (mlapi/mlapi.toml); every key can be overridden with MLAPI_<SECTION>_<KEY>.\n\n\
        Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 not found, 4 conflict.",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Config file (default: $MLAPI_CONFIG, /etc/mlapi/mlapi.toml, or the user config dir).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// SQLite database file; overrides database.path.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<String>,
    /// Redis URL (redis://host:port, unix:///path.sock); overrides redis.url.
    #[arg(long, global = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Output for people (table) or scripts (json: one document on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Print only the essential value (or nothing) on success.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP daemon until SIGTERM or SIGINT (SIGHUP reloads the config).
    Serve(ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; overrides server.bind (default 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, environment and flags applied; secrets redacted).
    Show,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for Shell {
    fn from(s: CompletionShell) -> Shell {
        match s {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// The CLI error boundary. `exit_code` is the only place codes are chosen.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Conflict(_) => 4,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Usage(format!("configuration error: {e}"))
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<ServeError> for CliError {
    fn from(e: ServeError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Runs a parsed command line; the binary's whole `main`.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "mlapi: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.output, cli.quiet);
    let overrides = Overrides {
        db: cli.db.clone(),
        redis: cli.redis.clone(),
        bind: match &cli.command {
            Command::Serve(args) => args.bind.clone(),
            _ => None,
        },
    };
    match cli.command {
        Command::Completions { shell } => {
            write_completions(shell.into(), &mut std::io::stdout())?;
            Ok(())
        }
        Command::Config(ConfigCommand::Show) => {
            let loaded = load_config(cli.config.as_deref(), &overrides)?;
            config_show(&loaded, &out)
        }
        Command::Serve(_) => {
            let loaded = load_config(cli.config.as_deref(), &overrides)?;
            logging::init(&loaded.config.log, "info");
            let app = App::open(loaded, overrides, 16)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("mlapi-worker")
                .build()?;
            runtime.block_on(server::serve(app))?;
            Ok(())
        }
    }
}

fn load_config(flag: Option<&Path>, overrides: &Overrides) -> Result<config::Loaded, CliError> {
    let file = config::locate(flag)?;
    Ok(config::load(file.as_deref(), std::env::vars(), overrides)?)
}

fn config_show(loaded: &config::Loaded, out: &Output) -> Result<(), CliError> {
    let source = loaded.file.as_ref().map(|p| p.display().to_string());
    let database_file = loaded.config.database_path().display().to_string();
    let table = loaded.config.redacted();
    out.emit(
        || {
            let mut rows = vec![
                vec![
                    "(file)".to_string(),
                    source
                        .clone()
                        .unwrap_or_else(|| "none: built-in defaults".into()),
                ],
                vec!["(database file)".to_string(), database_file.clone()],
            ];
            flatten("", &toml::Value::Table(table.clone()), &mut rows);
            output::table(&["KEY", "VALUE"], rows)
        },
        || {
            serde_json::json!({
                "file": source,
                "database_file": database_file,
                "config": table,
            })
        },
    )
}

fn flatten(prefix: &str, value: &toml::Value, rows: &mut Vec<Vec<String>>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        toml::Value::String(s) => rows.push(vec![prefix.to_string(), s.clone()]),
        other => rows.push(vec![prefix.to_string(), other.to_string()]),
    }
}

/// The clap command tree, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn write_completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    clap_complete::generate(shell, &mut command(), "mlapi", out);
    Ok(())
}

/// Writes `completions/` and `man/` under `root`, exactly as committed.
pub fn write_generated_files(root: &Path) -> std::io::Result<()> {
    let completions = root.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command(), "mlapi", &completions)?;
    }
    let man = root.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(command(), &man)?;
    Ok(())
}
