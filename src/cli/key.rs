//! `mlapi key …`: thin adapters over `identity` (API keys).

use std::sync::Arc;

use clap::Subcommand;

use super::output::{self, Format, Output};
use super::CliError;
use crate::app::App;
use crate::core::scopes::Scopes;
use crate::core::time::{self, rfc3339};
use crate::identity::keys::{CreatedKey, KeyInfo, NewKey};
use crate::store::audit::Actor;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user. The key is printed once; only a digest is stored.
    Create {
        /// Owner (username or id).
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (default: all of the owner's role scopes).
        #[arg(long, value_name = "SCOPE,…")]
        scopes: Option<String>,
        /// Lifetime, e.g. 90d or 12h (default: no expiry).
        #[arg(long, value_name = "PERIOD")]
        expires: Option<String>,
    },
    /// List keys (prefix, name, scopes, created, expires, last used, requests). Never the secret.
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
    },
    /// Replace a key with a new one (printed once); the old one works for the grace period.
    Rotate {
        /// Key id or display prefix (sk_live_XXXXXXXX).
        key: String,
        /// How long the old key keeps working, e.g. 24h (default 0: stops at once).
        #[arg(long, value_name = "PERIOD")]
        grace: Option<String>,
    },
    /// Revoke a key: refused by running daemons within a second.
    Revoke {
        /// Key id or display prefix (sk_live_XXXXXXXX).
        key: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(app: &Arc<App>, command: KeyCommand, out: &Output) -> Result<(), CliError> {
    let actor = Actor::cli();
    match command {
        KeyCommand::Create {
            user,
            name,
            scopes,
            expires,
        } => {
            let scopes = scopes
                .as_deref()
                .map(Scopes::parse)
                .transpose()
                .map_err(|e| CliError::Usage(format!("--scopes: {e}")))?;
            let expires_at = expires
                .as_deref()
                .map(super::parse_duration)
                .transpose()?
                .map(|secs| {
                    if secs > 100 * 365 * 86_400 {
                        Err(CliError::Usage(
                            "--expires: at most 100 years (36500d)".into(),
                        ))
                    } else {
                        Ok(time::now() + secs as i64)
                    }
                })
                .transpose()?;
            let new = NewKey {
                owner: user,
                name,
                scopes,
                expires_at,
            };
            let key = app.identity.create_key(new, None, &actor).await?;
            print_created(&key, out)
        }
        KeyCommand::List { user } => {
            let list = app.identity.list_keys(user.as_deref()).await?;
            out.emit(
                || {
                    let rows = list.iter().map(row).collect();
                    output::table(
                        &[
                            "PREFIX",
                            "NAME",
                            "USER",
                            "SCOPES",
                            "STATUS",
                            "CREATED",
                            "EXPIRES",
                            "LAST USED",
                            "REQUESTS",
                            "ID",
                        ],
                        rows,
                    )
                },
                || &list,
            )
        }
        KeyCommand::Rotate { key, grace } => {
            let grace = grace
                .as_deref()
                .map(super::parse_duration)
                .transpose()?
                .unwrap_or(0);
            let new = app
                .identity
                .rotate_key(&key, None, None, grace, &actor)
                .await?;
            print_created(&new, out)
        }
        KeyCommand::Revoke { key, yes } => {
            if !yes
                && !super::confirm(&format!(
                    "Revoke API key {key}? Clients using it are refused at once."
                ))?
            {
                return Err(CliError::Failed("not confirmed; nothing changed".into()));
            }
            let info = app.identity.revoke_key(&key, None, &actor).await?;
            if out.quiet && out.format == Format::Table {
                return Ok(());
            }
            out.emit(
                || format!("revoked {} ({}) of {}", info.prefix, info.name, info.user),
                || &info,
            )
        }
    }
}

fn row(k: &KeyInfo) -> Vec<String> {
    let when = |t: Option<i64>| t.map_or_else(|| "-".to_string(), rfc3339);
    vec![
        format!("{}…{}", k.prefix, k.last4),
        k.name.clone(),
        k.user.clone(),
        k.scopes.join(","),
        k.status.to_string(),
        rfc3339(k.created_at),
        when(k.expires_at),
        when(k.last_used_at),
        k.request_count.to_string(),
        k.id.clone(),
    ]
}

/// The one time a key is shown. `--quiet` prints only the key, for
/// `KEY=$(mlapi key create … -q)`.
fn print_created(key: &CreatedKey, out: &Output) -> Result<(), CliError> {
    if out.quiet && out.format == Format::Table {
        output::print_line(&key.api_key);
        return Ok(());
    }
    out.emit(
        || {
            let rows = vec![
                vec!["api_key".into(), key.api_key.clone()],
                vec!["id".into(), key.id.clone()],
                vec!["prefix".into(), key.prefix.clone()],
                vec!["name".into(), key.name.clone()],
                vec!["scopes".into(), key.scopes.join(",")],
                vec![
                    "expires".into(),
                    key.expires_at.map_or_else(|| "never".into(), rfc3339),
                ],
            ];
            format!(
                "{}\nStore this key now: it is not shown again.",
                output::table(&["FIELD", "VALUE"], rows)
            )
        },
        || key,
    )
}
