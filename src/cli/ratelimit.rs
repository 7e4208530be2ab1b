//! `mlapi ratelimit …`: tiers from the config, a user's tier (through
//! `Identity::update_user`, so daemons apply it within a second), and a
//! user's current usage from Redis or from each running daemon
//! (`daemon::control`).

use std::sync::Arc;

use clap::Subcommand;
use serde::Serialize;

use super::output::{self, Output};
use super::CliError;
use crate::app::App;
use crate::config::Config;
use crate::daemon::control::{self, WindowUsage};
use crate::identity::accounts::Change;
use crate::serving::ratelimit::Source;
use crate::store::audit::Actor;

#[derive(Debug, Subcommand)]
pub enum RatelimitCommand {
    /// Put a user on a tier; running daemons apply it within a second.
    SetTier {
        /// Username or id.
        user: String,
        /// A tier from the config (see `mlapi ratelimit tiers`).
        tier: String,
    },
    /// List the tiers and their limits.
    Tiers,
    /// A user's current usage per window: from Redis when configured, else
    /// from each running daemon on this machine (each keeps its own).
    Show {
        /// Username or id.
        user: String,
    },
}

#[derive(Serialize)]
struct TierRow<'a> {
    name: &'a str,
    per_minute: Option<u32>,
    per_hour: Option<u32>,
    per_day: Option<u32>,
    burst: Option<u32>,
    endpoints: &'a std::collections::BTreeMap<String, crate::config::EndpointLimits>,
    default: bool,
    /// The tier's own windows count but never refuse.
    shadow: bool,
}

#[derive(Serialize)]
struct Usage {
    /// `redis`, or `daemon` (one entry per running daemon).
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    windows: Vec<WindowUsage>,
}

pub async fn run(app: &Arc<App>, command: RatelimitCommand, out: &Output) -> Result<(), CliError> {
    match command {
        RatelimitCommand::SetTier { user, tier } => {
            let user = app
                .identity
                .update_user(&user, Change::Tier(tier), &Actor::cli())
                .await?;
            if out.quiet && out.format == output::Format::Table {
                return Ok(());
            }
            out.emit(
                || format!("{} is now on tier {}", user.username, user.tier),
                || &user,
            )
        }
        RatelimitCommand::Tiers => tiers(&app.config, out),
        RatelimitCommand::Show { user } => {
            let user = app.identity.show_user(&user).await?;
            let subject = format!("u:{}", user.id);
            let usage = usage(app, &subject, &user.tier).await;
            out.emit(
                || {
                    if usage.is_empty() {
                        return format!(
                            "{} (tier {}): no running daemon found on this machine and no Redis configured; in-process limits start full when a daemon starts",
                            user.username, user.tier
                        );
                    }
                    let mut rows = Vec::new();
                    for u in &usage {
                        let source = match u.pid {
                            Some(pid) => format!("daemon {pid}"),
                            None => u.source.to_string(),
                        };
                        for w in &u.windows {
                            rows.push(vec![
                                source.clone(),
                                w.policy.clone(),
                                format!("{}/{}s", w.limit, w.window_secs),
                                w.used.to_string(),
                                w.remaining.to_string(),
                                format!("{}s", w.full_in_secs),
                                match (w.shadow, w.remaining) {
                                    (false, _) => "enforced".into(),
                                    (true, 0) => "shadow (would refuse)".into(),
                                    (true, _) => "shadow".into(),
                                },
                            ]);
                        }
                    }
                    format!(
                        "{} (tier {})\n{}",
                        user.username,
                        user.tier,
                        output::table(
                            &["SOURCE", "POLICY", "LIMIT", "USED", "REMAINING", "FULL IN", "MODE"],
                            rows
                        )
                    )
                },
                || serde_json::json!({"user": user.username, "tier": user.tier, "usage": usage}),
            )
        }
    }
}

pub fn tiers(config: &Config, out: &Output) -> Result<(), CliError> {
    let rows: Vec<TierRow> = config
        .tier_names()
        .into_iter()
        .map(|name| {
            let t = &config.tiers[name];
            TierRow {
                name,
                per_minute: t.per_minute,
                per_hour: t.per_hour,
                per_day: t.per_day,
                burst: t.per_minute.map(|m| t.burst.unwrap_or(m)),
                endpoints: &t.endpoints,
                default: name == config.auth.default_tier,
                shadow: t.shadow,
            }
        })
        .collect();
    out.emit(
        || {
            let n = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
            let table_rows = rows
                .iter()
                .map(|r| {
                    let endpoints = r
                        .endpoints
                        .iter()
                        .map(|(group, l)| {
                            let parts: Vec<String> = [
                                ("min", l.per_minute),
                                ("hour", l.per_hour),
                                ("day", l.per_day),
                            ]
                            .iter()
                            .filter_map(|(u, v)| v.map(|v| format!("{v}/{u}")))
                            .collect();
                            let shadow = if l.shadow { " (shadow)" } else { "" };
                            format!("{group}: {}{shadow}", parts.join(" "))
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    vec![
                        match (r.default, r.shadow) {
                            (true, true) => format!("{} (default, shadow)", r.name),
                            (true, false) => format!("{} (default)", r.name),
                            (false, true) => format!("{} (shadow)", r.name),
                            (false, false) => r.name.to_string(),
                        },
                        n(r.per_minute),
                        n(r.per_hour),
                        n(r.per_day),
                        n(r.burst),
                        endpoints,
                    ]
                })
                .collect();
            output::table(
                &[
                    "TIER",
                    "PER MINUTE",
                    "PER HOUR",
                    "PER DAY",
                    "BURST",
                    "ENDPOINT LIMITS",
                ],
                table_rows,
            )
        },
        || &rows,
    )
}

/// From Redis when it is configured and answers; otherwise ask the daemons.
async fn usage(app: &Arc<App>, subject: &str, tier: &str) -> Vec<Usage> {
    let windows = app.limiter.policies.all_windows(tier);
    if let Some(remote) = &app.remote {
        match remote.connect_now().await {
            Ok(()) => {
                let (source, states) = app.limiter.peek(subject, &windows).await;
                if source == Source::Redis {
                    return vec![Usage {
                        source: "redis",
                        pid: None,
                        windows: states.iter().map(WindowUsage::from_state).collect(),
                    }];
                }
            }
            Err(e) => eprintln!("mlapi: warning: {e}; asking the daemons on this machine instead"),
        }
    }
    let request = control::Request::RatelimitShow {
        subject: subject.to_string(),
        tier: tier.to_string(),
    };
    let answers = control::ask_all(app.state_dir.clone(), request).await;
    answers
        .into_iter()
        .filter_map(|(pid, answer)| {
            let windows = serde_json::from_value(answer.get("windows")?.clone()).ok()?;
            Some(Usage {
                source: "daemon",
                pid: Some(pid),
                windows,
            })
        })
        .collect()
}
