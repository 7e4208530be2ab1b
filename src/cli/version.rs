//! `mlapi version …`: thin adapters over `serving::versions` (and the pure
//! `core::versions` for parsing).

use std::sync::Arc;

use clap::Subcommand;

use super::output::{self, Output};
use super::CliError;
use crate::app::App;
use crate::core::time::rfc3339;
use crate::core::versions;
use crate::store::audit::Actor;

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// Deprecate an API version: its responses get Deprecation, Sunset and Link
    /// headers; after the sunset it answers 410.
    Deprecate {
        /// 1 or 2 (v1, 1.0, … accepted).
        #[arg(value_name = "VERSION")]
        api_version: String,
        /// The sunset: a date (2027-06-30, midnight UTC) or an RFC 3339 instant.
        #[arg(long, value_name = "DATE|INSTANT")]
        sunset: String,
        /// The version clients should move to.
        #[arg(long, value_name = "VERSION")]
        successor: Option<String>,
        /// A page explaining the deprecation (sent as Link rel="deprecation").
        #[arg(long, value_name = "URL")]
        link: Option<String>,
    },
    /// Make a deprecated (or retired) version current again.
    Undeprecate {
        /// 1 or 2.
        #[arg(value_name = "VERSION")]
        api_version: String,
    },
    /// List versions: status, deprecated at, sunset, successor.
    List,
}

fn parse_version(text: &str) -> Result<u8, CliError> {
    versions::parse(text).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown API version {text:?}; supported versions: {}",
            versions::supported_list()
        ))
    })
}

/// `2027-06-30` (midnight UTC) or an RFC 3339 instant → unix seconds.
fn parse_sunset(text: &str) -> Result<i64, CliError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            CliError::Usage(format!(
                "invalid --sunset {text:?}: use a date (2027-06-30) or an RFC 3339 instant (2027-06-30T12:00:00Z)"
            ))
        })
}

pub async fn run(app: &Arc<App>, command: VersionCommand, out: &Output) -> Result<(), CliError> {
    let actor = Actor::cli();
    match command {
        VersionCommand::Deprecate {
            api_version: version,
            sunset,
            successor,
            link,
        } => {
            let version = parse_version(&version)?;
            let sunset_at = parse_sunset(&sunset)?;
            let successor = successor.as_deref().map(parse_version).transpose()?;
            if successor.is_none() {
                eprintln!("mlapi: warning: no --successor: clients get no replacement to move to");
            }
            if version == app.config.api.default_version() {
                eprintln!(
                    "mlapi: warning: version {version} is the default (api.default_version) for unversioned paths"
                );
            }
            if sunset_at <= crate::core::time::now() {
                eprintln!("mlapi: warning: the sunset is in the past: version {version} now answers 410 Gone");
            }
            let l = app
                .versions
                .deprecate(version, sunset_at, successor, link, &actor)
                .await?;
            out.emit(
                || {
                    format!(
                        "version {} deprecated; sunset {}{}",
                        l.version,
                        rfc3339(l.sunset_at),
                        l.successor
                            .map_or(String::new(), |s| format!("; successor {s}"))
                    )
                },
                || &l,
            )
        }
        VersionCommand::Undeprecate {
            api_version: version,
        } => {
            let version = parse_version(&version)?;
            app.versions.undeprecate(version, &actor).await?;
            out.emit(
                || format!("version {version} is current"),
                || serde_json::json!({"version": version, "status": "current"}),
            )
        }
        VersionCommand::List => {
            let list = app.versions.list().await?;
            out.emit(
                || {
                    let when = |t: Option<i64>| t.map_or_else(|| "-".to_string(), rfc3339);
                    let rows = list
                        .iter()
                        .map(|v| {
                            vec![
                                v.version.to_string(),
                                v.status.to_string(),
                                if v.default { "yes" } else { "" }.to_string(),
                                when(v.deprecated_at),
                                when(v.sunset),
                                v.successor.map_or("-".into(), |s| s.to_string()),
                                v.link.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "VERSION",
                            "STATUS",
                            "DEFAULT",
                            "DEPRECATED",
                            "SUNSET",
                            "SUCCESSOR",
                            "LINK",
                        ],
                        rows,
                    )
                },
                || &list,
            )
        }
    }
}
