//! The daemon: [`serve`] binds the configured address and installs the
//! signals (SIGTERM/SIGINT drain, SIGHUP reload); [`run`] serves a bound
//! listener until a shutdown future resolves. `run` owns every background
//! task it starts (state watcher, usage flush, Redis reconnect, control
//! socket) and joins them before it returns, so tests can start a daemon
//! in-process on port 0 and stop it cleanly.
//!
//! No request logic lives here; see `http::pipeline`. An adapter, like `http`
//! and `cli`: it drives `App` and the services, and holds no rules.

pub mod control;
mod jobs;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;
use crate::http::conn::Guarded;
use crate::http::pipeline::{self, Conn};
use crate::http::routes::{DebugRoutes, MetricsAccess, Router};
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::StoreError;

/// Largest request head (request line and headers) accepted; beyond it the
/// connection gets 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How long background tasks get to notice the stop before they are aborted.
const TASK_STOP: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the daemon on `server.bind` until SIGTERM or SIGINT, then drains
/// and returns. SIGHUP reloads the config meanwhile.
pub async fn serve(app: Arc<App>) -> Result<(), ServeError> {
    let addr = app.config.server.bind;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let reload = tokio::spawn(tasks::reload_on_hangup(Arc::clone(&app), hangup));
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new connections, draining in-flight requests"
        );
    };
    let result = run(app, listener, shutdown).await;
    reload.abort();
    result
}

/// Serves `listener` until `shutdown` resolves, then stops accepting,
/// drains in-flight requests within `server.drain_secs`, stops the
/// background tasks, writes the last API-key usage and the shutdown audit
/// row, and returns.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: app.config.server.bind,
        source,
    })?;
    app.store
        .run_blocking(|store| system_event(store, Action::SysStartup))
        .await?;

    if let Some(remote) = &app.remote {
        // One attempt before answering, so a healthy Redis is in use from
        // the first request; a dead one only delays startup by a second.
        match remote.connect_now().await {
            Ok(()) => tracing::info!("redis connected"),
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable at startup; serving with per-daemon limits and cache")
            }
        }
    }
    let (stop_tasks, stopped) = watch::channel(false);
    let control = control::socket_path(&app.state_dir);
    let mut background = tasks::start(&app, &control, stopped);

    tracing::info!(database = %app.store.path().display(), "mlapi {} listening on http://{local}", env!("CARGO_PKG_VERSION"));
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }

    let debug_routes = if app.config.debug.test_routes {
        DebugRoutes::Mounted
    } else {
        DebugRoutes::Absent
    };
    let metrics = if app.config.metrics.public {
        MetricsAccess::Public
    } else {
        MetricsAccess::Protected
    };
    let router = Arc::new(Router::new(debug_routes, metrics));
    if app.config.debug.test_routes {
        tracing::warn!(
            "debug.test_routes is on: /debug/* routes are mounted; never do this in production"
        );
    }
    let head_timeout = Duration::from_secs(app.config.server.head_timeout_secs);
    // Turns true when the daemon drains: each connection finishes its
    // request in flight, then closes (hyper's graceful shutdown).
    let (draining, drain_signal) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait and keep listening.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let guarded = Guarded::new(stream, peer, head_timeout);
        let conn = Arc::new(Conn {
            app: Arc::clone(&app),
            router: Arc::clone(&router),
            peer,
            activity: guarded.activity(),
        });
        let service =
            hyper::service::service_fn(move |req| pipeline::handle(Arc::clone(&conn), req));
        let connection = hyper::server::conn::http1::Builder::new()
            // One contiguous buffer per response instead of a vectored
            // write of head and body: answers here are small.
            .writev(false)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(guarded), service)
            // WebSockets (`GET /api/v1/ws`) take the connection over.
            .with_upgrades();
        let mut drain_signal = drain_signal.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // Resets and slow-loris closes end here; nothing to tell. An
            // upgraded connection ends here too: its socket runs on its own.
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = drain_signal.wait_for(|d| *d) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    app.begin_stopping();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);

    let drain = Duration::from_secs(app.config.server.drain_secs);
    // WebSockets close themselves (1001) once the daemon is stopping.
    let sockets = Arc::clone(app.jobs.events());
    let _ = draining.send(true);
    if tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
        sockets.all_closed().await;
    })
    .await
    .is_err()
    {
        tracing::warn!(
            drain_secs = drain.as_secs(),
            "drain timeout reached; closing the remaining connections"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}

    let _ = stop_tasks.send(true);
    if tokio::time::timeout(TASK_STOP, async {
        while background.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("background tasks did not stop in time; aborting them");
        background.abort_all();
        while background.join_next().await.is_some() {}
    }

    // Nothing counted may be lost: write the last usage, then the audit row.
    // Failures here are logged, not fatal: the drain already succeeded.
    let closing = async {
        app.identity.flush_usage().await?;
        app.store
            .run_blocking(|store| system_event(store, Action::SysShutdown))
            .await
    }
    .await;
    if let Err(e) = closing {
        tracing::error!(error = %e, "could not record usage or the shutdown event");
    }
    let _ = std::fs::remove_file(&control);
    tracing::info!("stopped");
    Ok(())
}

/// The startup or shutdown audit row (the startup row names the version).
fn system_event(store: &crate::store::Store, action: Action) -> Result<(), StoreError> {
    let version = (action == Action::SysStartup).then_some(env!("CARGO_PKG_VERSION"));
    store.write(|tx| {
        audit::record(
            tx,
            &Actor::system(),
            action,
            None,
            Outcome::Success,
            version,
        )
    })
}
