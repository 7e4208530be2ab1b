//! `mlapi job …`: batch jobs in the store, whichever daemon runs them —
//! list, show, cancel (a running job stops at its next chunk), purge.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::{json, Value};

use super::output::{self, Output};
use super::{confirm, CliError};
use crate::app::App;
use crate::core::time::{self, rfc3339};
use crate::serving::jobs::{Job, Status};
use crate::store;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, newest first.
    List {
        /// Only this user's jobs (username or id).
        #[arg(long)]
        user: Option<String>,
        /// Only jobs in this status: queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One job: status, progress, times, error.
    Show {
        /// Job id.
        id: String,
    },
    /// Cancel a queued or running job (a running one stops at its next chunk).
    Cancel {
        /// Job id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Delete finished jobs (and their results) older than a period.
    Purge {
        /// e.g. 7d or 12h: jobs that finished longer ago than this.
        #[arg(long, value_name = "PERIOD")]
        older_than: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

fn row(job: &Job) -> Vec<String> {
    vec![
        job.id.clone(),
        job.status.as_str().to_string(),
        job.model.clone(),
        format!("{}/{}", job.done, job.total),
        rfc3339(job.created_at),
        job.finished_at.map_or("-".into(), rfc3339),
        job.error.clone().unwrap_or_default(),
    ]
}

const HEADERS: [&str; 7] = [
    "ID", "STATUS", "MODEL", "DONE", "CREATED", "FINISHED", "ERROR",
];

pub async fn run(app: &Arc<App>, command: JobCommand, out: &Output) -> Result<(), CliError> {
    match command {
        JobCommand::List {
            user,
            status,
            limit,
        } => {
            let status = status
                .as_deref()
                .map(|s| {
                    Status::parse(s).ok_or_else(|| {
                        CliError::Usage(format!(
                            "--status: one of queued, running, succeeded, failed, cancelled; got {s:?}"
                        ))
                    })
                })
                .transpose()?;
            let owner = match user {
                Some(who) => Some(app.identity.show_user(&who).await?.id),
                None => None,
            };
            let listing = Arc::clone(app);
            let jobs = store::blocking(move || {
                listing.jobs.list(owner.as_deref(), status, limit.max(1), 0)
            })
            .await?;
            out.emit(
                || {
                    if jobs.is_empty() {
                        return "no jobs".to_string();
                    }
                    output::table(&HEADERS, jobs.iter().map(row).collect())
                },
                || &jobs,
            )
        }
        JobCommand::Show { id } => {
            let showing = Arc::clone(app);
            let job = store::blocking(move || showing.jobs.get(None, &id)).await?;
            out.emit(|| output::table(&HEADERS, vec![row(&job)]), || &job)
        }
        JobCommand::Cancel { id, yes } => {
            if !yes && !confirm(&format!("Cancel job {id}?"))? {
                return Err(CliError::Failed("not confirmed; nothing changed".into()));
            }
            let cancelling = Arc::clone(app);
            let job = store::blocking(move || cancelling.jobs.cancel(None, &id)).await?;
            out.emit(
                || format!("Cancelled job {} at {}/{}.", job.id, job.done, job.total),
                || &job,
            )
        }
        JobCommand::Purge { older_than, yes } => {
            let secs = super::parse_duration(&older_than)?;
            if !yes
                && !confirm(&format!(
                    "Delete every finished job older than {older_than}, with its results?"
                ))?
            {
                return Err(CliError::Failed("not confirmed; nothing changed".into()));
            }
            let before = time::now() - secs as i64;
            let purging = Arc::clone(app);
            let deleted = store::blocking(move || purging.jobs.purge(before)).await?;
            out.emit(
                || format!("Deleted {deleted} finished jobs."),
                || -> Value { json!({ "deleted": deleted }) },
            )
        }
    }
}
