//! The command-line adapter: the clap definition of every command, and one
//! function per command that loads what it needs, calls library services and
//! prints the result as a table or one JSON document.
//!
//! Errors become `CliError`, whose one mapping to exit codes is `exit_code`.
//! Commands never prompt when stdin is not a terminal.

pub mod cache;
pub mod job;
pub mod key;
pub mod output;
pub mod ratelimit;
pub mod upstream;
pub mod user;
pub mod version;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::app::{App, Purpose};
use crate::config::{self, ConfigError, Overrides};
use crate::core::error::Error;
use crate::daemon::{self, ServeError};
use crate::logging;
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
    disable_help_subcommand = true,
    propagate_version = true
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
    /// Manage accounts.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Flush the prediction cache, or show its counters.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Rate-limit tiers and usage.
    #[command(subcommand)]
    Ratelimit(ratelimit::RatelimitCommand),
    /// Manage API version deprecation.
    #[command(subcommand)]
    Version(version::VersionCommand),
    /// Batch jobs: list, show, cancel, purge.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// The model servers behind upstream models, as each running daemon sees them.
    #[command(subcommand)]
    Upstream(upstream::UpstreamCommand),
    /// Show the security event log, newest first.
    Audit {
        /// Only events in this last period (30m, 24h, 7d) or since an RFC 3339 instant.
        #[arg(long, value_name = "PERIOD|INSTANT")]
        since: Option<String>,
        /// Only events where this username (or cli:<os user>) is the actor or the target.
        #[arg(long)]
        user: Option<String>,
        /// Only this action (e.g. authn_login_fail).
        #[arg(long)]
        action: Option<String>,
        /// At most this many events (newest first).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
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

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) => CliError::Usage(e.to_string()),
            Error::NotFound(m) => CliError::NotFound(m),
            Error::Conflict(m) => CliError::Conflict(m),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<crate::app::OpenError> for CliError {
    fn from(e: crate::app::OpenError) -> Self {
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
    let out = Output {
        format: cli.output,
        quiet: cli.quiet,
    };
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
        Command::User(command) => {
            // Only `user add` may create a fresh database (the first admin).
            let missing = match command {
                user::UserCommand::Add { .. } => MissingDatabase::Create,
                _ => MissingDatabase::Refuse,
            };
            let (app, runtime) = open_app(cli.config.as_deref(), overrides, missing)?;
            runtime.block_on(user::run(&app, command, &out))
        }
        Command::Version(command) => {
            // Deprecating before the first start is fine; reading is not.
            let missing = match command {
                version::VersionCommand::Deprecate { .. } => MissingDatabase::Create,
                _ => MissingDatabase::Refuse,
            };
            let (app, runtime) = open_app(cli.config.as_deref(), overrides, missing)?;
            runtime.block_on(version::run(&app, command, &out))
        }
        Command::Cache(command) => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(cache::run(&app, command, &out))
        }
        // Tiers live in the config: no database needed.
        Command::Ratelimit(ratelimit::RatelimitCommand::Tiers) => {
            let loaded = load_config(cli.config.as_deref(), &overrides)?;
            ratelimit::tiers(&loaded.config, &out)
        }
        Command::Ratelimit(command) => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(ratelimit::run(&app, command, &out))
        }
        Command::Job(command) => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(job::run(&app, command, &out))
        }
        Command::Upstream(command) => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(upstream::run(&app, command, &out))
        }
        Command::Key(command) => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(key::run(&app, command, &out))
        }
        Command::Audit {
            since,
            user,
            action,
            limit,
        } => {
            let (app, runtime) =
                open_app(cli.config.as_deref(), overrides, MissingDatabase::Refuse)?;
            runtime.block_on(user::audit_log(&app, since, user, action, limit, &out))
        }
        Command::Serve(_) => {
            let loaded = load_config(cli.config.as_deref(), &overrides)?;
            logging::init(&loaded.config.log, "info");
            let app = App::open(loaded, overrides, Purpose::Serve)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("mlapi-worker")
                .build()?;
            runtime.block_on(daemon::serve(app))?;
            Ok(())
        }
    }
}

fn load_config(flag: Option<&Path>, overrides: &Overrides) -> Result<config::Loaded, CliError> {
    let file = config::locate(flag)?;
    Ok(config::load(file.as_deref(), std::env::vars(), overrides)?)
}

/// What an operator command does when the database file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingDatabase {
    /// Create it (the first `user add`, or a deprecation before the first start).
    Create,
    /// Refuse: reading a database that is not there is a wrong path.
    Refuse,
}

/// Opens the shared state for an operator command, with a small runtime to
/// drive the same async services the daemon uses.
fn open_app(
    flag: Option<&Path>,
    overrides: Overrides,
    missing: MissingDatabase,
) -> Result<(Arc<App>, tokio::runtime::Runtime), CliError> {
    let loaded = load_config(flag, &overrides)?;
    let db = loaded.config.database_path();
    if missing == MissingDatabase::Refuse && !db.exists() {
        // Reading from a database that does not exist is almost always the
        // wrong --db, --config, user or $STATE_DIRECTORY; never create one here.
        return Err(CliError::Failed(format!(
            "no database at {}: check --db/--config (or run as the daemon's user); `mlapi user add` creates one",
            db.display()
        )));
    }
    logging::init(&loaded.config.log, "warn");
    let app = App::open(loaded, overrides, Purpose::Command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((app, runtime))
}

/// Asks on a terminal; without one, proceeds (scripts pass --yes anyway).
pub(crate) fn confirm(question: &str) -> Result<bool, CliError> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(true);
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .map_err(|e| CliError::Failed(format!("cannot ask for confirmation: {e}")))
}

/// `30m`, `24h`, `7d`, `90s` → seconds.
pub fn parse_duration(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "invalid duration {text:?}: use a number and s, m, h or d (e.g. 24h)"
        ))
    };
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_secs).ok_or_else(bad)
}

/// `--since`: a period back from now, or an RFC 3339 instant; returned in the
/// audit table's own format so it compares as text.
fn parse_since(text: &str) -> Result<String, CliError> {
    use time::format_description::well_known::Rfc3339;
    let instant = match parse_duration(text) {
        Ok(secs) => time::OffsetDateTime::now_utc() - time::Duration::seconds(secs as i64),
        Err(_) => time::OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            CliError::Usage(format!(
                "invalid --since {text:?}: use a period (30m, 24h, 7d) or an RFC 3339 instant"
            ))
        })?,
    };
    let utc = instant.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    Ok(utc.format(&format).expect("formatting a valid instant"))
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
