//! `mlapi user …` and `mlapi audit`: thin adapters over `identity` (accounts)
//! and `store::audit`.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use clap::Subcommand;

use super::output::{self, Output};
use super::CliError;
use crate::app::App;
use crate::core::scopes::Role;
use crate::core::time;
use crate::identity::accounts::{Change, NewUser, User};
use crate::store::audit::{self, Action, Actor};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password comes from a hidden prompt on a
    /// terminal, or from stdin with --password-stdin.
    Add {
        /// 3 to 50 characters of A-Z, a-z, 0-9 and _; unique regardless of case.
        username: String,
        /// The account's email address (unique).
        #[arg(long)]
        email: String,
        /// admin, manager or user.
        #[arg(long, value_enum, default_value_t = Role::User)]
        role: Role,
        /// Rate-limit tier (default: auth.default_tier).
        #[arg(long)]
        tier: Option<String>,
        /// Read the password from stdin (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show one account.
    Show {
        /// Username or id.
        user: String,
    },
    /// Disable an account: its tokens and keys stop working within a second.
    Disable {
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Re-enable a disabled account.
    Enable { user: String },
    /// Change an account's role (its live tokens lose scopes the new role lacks).
    SetRole {
        user: String,
        #[arg(value_enum)]
        role: Role,
    },
    /// Set a new password; ends all of the account's sessions.
    Passwd {
        user: String,
        /// Read the password from stdin (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(app: &Arc<App>, command: UserCommand, out: &Output) -> Result<(), CliError> {
    let actor = Actor::cli();
    let identity = &app.identity;
    match command {
        UserCommand::Add {
            username,
            email,
            role,
            tier,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let new = NewUser {
                username,
                email,
                password,
                role,
                tier,
            };
            let user = identity.create_user(new, &actor).await?;
            print_user(&user, out, Quiet::Id)
        }
        UserCommand::List { limit, offset } => {
            let list = identity.list_users(limit, offset).await?;
            out.emit(
                || {
                    let rows = list.iter().map(row).collect();
                    output::table(
                        &[
                            "USERNAME", "EMAIL", "ROLE", "TIER", "STATUS", "CREATED", "ID",
                        ],
                        rows,
                    )
                },
                || &list,
            )
        }
        UserCommand::Show { user } => {
            print_user(&identity.show_user(&user).await?, out, Quiet::Nothing)
        }
        UserCommand::Disable { user, yes } => {
            let target = identity.show_user(&user).await?;
            if !yes
                && !super::confirm(&format!(
                    "Disable {}? Their tokens stop working at once.",
                    target.username
                ))?
            {
                return Err(CliError::Failed("not confirmed; nothing changed".into()));
            }
            let user = identity
                .update_user(&target.id, Change::Disabled(true), &actor)
                .await?;
            print_user(&user, out, Quiet::Nothing)
        }
        UserCommand::Enable { user } => print_user(
            &identity
                .update_user(&user, Change::Disabled(false), &actor)
                .await?,
            out,
            Quiet::Nothing,
        ),
        UserCommand::SetRole { user, role } => print_user(
            &identity
                .update_user(&user, Change::Role(role), &actor)
                .await?,
            out,
            Quiet::Nothing,
        ),
        UserCommand::Passwd {
            user,
            password_stdin,
        } => {
            let target = identity.show_user(&user).await?;
            let password = read_password(password_stdin)?;
            let user = identity.set_password(&target.id, password, &actor).await?;
            print_user(&user, out, Quiet::Nothing)
        }
    }
}

fn row(u: &User) -> Vec<String> {
    vec![
        u.username.clone(),
        u.email.clone(),
        u.role.to_string(),
        u.tier.clone(),
        if u.disabled { "disabled" } else { "active" }.into(),
        time::rfc3339(u.created_at),
        u.id.clone(),
    ]
}

/// What `--quiet` leaves of a printed user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Its id, for `ID=$(mlapi user add … -q)`.
    Id,
    Nothing,
}

/// Prints one user, or with `--quiet` what `quiet` says.
fn print_user(user: &User, out: &Output, quiet: Quiet) -> Result<(), CliError> {
    if out.quiet && out.format == output::Format::Table {
        if quiet == Quiet::Id {
            output::print_line(&user.id);
        }
        return Ok(());
    }
    out.emit(
        || {
            let fields = [
                "USERNAME", "EMAIL", "ROLE", "TIER", "STATUS", "CREATED", "ID",
            ];
            let rows = fields
                .iter()
                .zip(row(user))
                .map(|(k, v)| vec![k.to_lowercase(), v])
                .collect();
            output::table(&["FIELD", "VALUE"], rows)
        },
        || user,
    )
}

/// The new password: from stdin with `--password-stdin`, else a hidden
/// prompt with confirmation on a terminal. Never prompts without one.
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| CliError::Failed(format!("cannot read the password from stdin: {e}")))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(CliError::Usage("no password on stdin".into()));
        }
        return Ok(password.to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "stdin is not a terminal: pipe the password and pass --password-stdin".into(),
        ));
    }
    dialoguer::Password::new()
        .with_prompt("Password")
        .with_confirmation("Repeat password", "the passwords do not match")
        .interact()
        .map_err(|e| CliError::Failed(format!("cannot read the password: {e}")))
}

/// `mlapi audit`: the security event log, newest first.
pub async fn audit_log(
    app: &Arc<App>,
    since: Option<String>,
    user: Option<String>,
    action: Option<String>,
    limit: u32,
    out: &Output,
) -> Result<(), CliError> {
    if let Some(a) = &action {
        if !Action::ALL.iter().any(|x| x.as_str() == a) {
            let names: Vec<_> = Action::ALL.iter().map(|x| x.as_str()).collect();
            return Err(CliError::Usage(format!(
                "unknown action {a:?}; actions: {}",
                names.join(", ")
            )));
        }
    }
    let since = since.as_deref().map(super::parse_since).transpose()?;
    let query = audit::Query {
        since,
        user,
        action,
        limit,
    };
    let rows = app
        .store
        .run_blocking(move |store| store.read(|c| audit::query(c, &query)))
        .await?;
    out.emit(
        || {
            let table_rows = rows
                .iter()
                .map(|r| {
                    vec![
                        r.at.clone(),
                        r.actor.clone(),
                        r.action.clone(),
                        r.target.clone().unwrap_or_default(),
                        r.outcome.clone(),
                        r.client_ip.clone().unwrap_or_default(),
                        r.api_key_id.clone().unwrap_or_default(),
                        r.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "AT (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "CLIENT", "API KEY",
                    "DETAIL",
                ],
                table_rows,
            )
        },
        || &rows,
    )
}
