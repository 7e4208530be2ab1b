//! `mlapi upstream status`: every upstream endpoint of every running daemon
//! (health, breaker, traffic, latency), read from each daemon's control
//! socket — the state lives in the daemons' memory, not in SQLite.

use std::sync::Arc;

use clap::Subcommand;
use serde::Serialize;

use super::output::{self, Output};
use super::CliError;
use crate::app::App;
use crate::daemon::control;
use crate::serving::upstream::{BreakerState, EndpointStatus};

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Each upstream endpoint of each running daemon: health, breaker state,
    /// requests in flight, requests, failures, p50/p99 latency.
    Status,
}

#[derive(Serialize)]
struct DaemonEndpoints {
    pid: u32,
    endpoints: Vec<EndpointStatus>,
}

pub async fn run(app: &Arc<App>, command: UpstreamCommand, out: &Output) -> Result<(), CliError> {
    let UpstreamCommand::Status = command;
    let answers = control::ask_all(app.state_dir.clone(), control::Request::UpstreamStatus).await;
    let daemons: Vec<DaemonEndpoints> = answers
        .into_iter()
        .map(|(pid, answer)| DaemonEndpoints {
            pid,
            endpoints: serde_json::from_value(answer["endpoints"].clone()).unwrap_or_default(),
        })
        .collect();
    out.emit(
        || {
            if daemons.is_empty() {
                return "no running daemon found on this machine".to_string();
            }
            if daemons.iter().all(|d| d.endpoints.is_empty()) {
                return "the running daemons serve no upstream model".to_string();
            }
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("≤ {v} ms"));
            let rows = daemons
                .iter()
                .flat_map(|d| {
                    d.endpoints.iter().map(move |e| {
                        vec![
                            d.pid.to_string(),
                            e.model.clone(),
                            e.endpoint.clone(),
                            match &e.health_error {
                                None if e.healthy => "ready".to_string(),
                                None => "unready".to_string(),
                                Some(why) => format!("unready: {why}"),
                            },
                            match e.breaker {
                                BreakerState::Closed => "closed",
                                BreakerState::Open => "open",
                                BreakerState::HalfOpen => "half-open",
                            }
                            .to_string(),
                            e.in_flight.to_string(),
                            e.requests.to_string(),
                            e.failures.to_string(),
                            ms(e.p50_ms),
                            ms(e.p99_ms),
                        ]
                    })
                })
                .collect();
            output::table(
                &[
                    "DAEMON",
                    "MODEL",
                    "ENDPOINT",
                    "HEALTH",
                    "BREAKER",
                    "IN FLIGHT",
                    "REQUESTS",
                    "FAILURES",
                    "P50",
                    "P99",
                ],
                rows,
            )
        },
        || serde_json::json!({ "daemons": daemons }),
    )
}
