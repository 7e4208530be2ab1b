//! The daemon's lifecycle: bind, serve HTTP/1.1 through the middleware and the
//! warp routes, tell systemd we are ready, reload on SIGHUP, and on
//! SIGTERM/SIGINT stop accepting, drain in-flight requests within
//! `server.drain_secs`, and exit cleanly.
//!
//! No request logic lives here; see `http`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use warp::hyper::server::conn::AddrIncoming;
use warp::hyper::service::{make_service_fn, service_fn};

use crate::app::App;
use crate::audit::{self, Action, Actor};
use crate::http;
use crate::store::StoreError;

/// Largest request head (request line and headers) accepted; beyond it the
/// connection gets 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;

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
    #[error("server error: {0}")]
    Http(#[from] warp::hyper::Error),
}

/// Runs the daemon until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(app: Arc<App>) -> Result<(), ServeError> {
    let addr = app.config.server.bind;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|source| ServeError::Bind { addr, source })?;
    let incoming = AddrIncoming::from_listener(listener)?;
    let local = incoming.local_addr();
    // The slow-loris guard (`http::conn`), instead of hyper's per-request
    // header timer.
    let incoming = http::conn::Incoming::new(
        incoming,
        Duration::from_secs(app.config.server.head_timeout_secs),
    );

    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;

    let routes = http::routes(Arc::clone(&app));
    let make_service = {
        let app = Arc::clone(&app);
        make_service_fn(move |conn: &http::conn::Guarded| {
            // One per connection, so a prediction request clones a pointer
            // only its own connection touches, not one every worker shares
            // (BENCHMARKS.md); other routes go through warp's filter tree.
            let conn = Arc::new(http::middleware::Connection {
                app: Arc::clone(&app),
                routes: routes.clone(),
                peer: conn.remote_addr(),
                activity: conn.activity(),
            });
            async move {
                Ok::<_, Infallible>(service_fn(move |req| {
                    http::middleware::handle(Arc::clone(&conn), req)
                }))
            }
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = warp::hyper::Server::builder(incoming)
        .http1_only(true)
        // One contiguous buffer per response instead of a vectored write of
        // head and body: answers here are small, the copy is cheap, and the
        // cached-prediction path served 4–6 % more requests/s (BENCHMARKS.md).
        .http1_writev(false)
        .http1_max_buf_size(MAX_HEAD_BYTES)
        .serve(make_service);
    let server = server.with_graceful_shutdown(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new connections, draining in-flight requests"
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(());
    });

    app.blocking(|app| {
        app.store.write(|tx| {
            let version = Some(env!("CARGO_PKG_VERSION"));
            audit::record(
                tx,
                &Actor::system(),
                Action::SysStartup,
                None,
                true,
                version,
            )
        })
    })
    .await?;
    tokio::spawn(reload_on_hangup(Arc::clone(&app), hangup));
    tokio::spawn(watch_state(Arc::clone(&app)));
    tokio::spawn(flush_usage_periodically(Arc::clone(&app)));
    if let Some(remote) = app.remote.clone() {
        // One attempt before answering, so a healthy Redis is in use from
        // the first request; a dead one only delays startup by a second.
        if let Err(e) = remote.connect_now().await {
            tracing::warn!(error = %e, "redis unreachable at startup; serving with per-daemon limits and cache");
        } else {
            tracing::info!("redis connected");
        }
        tokio::spawn(async move { remote.keep_connected().await });
    }

    let control = crate::control::socket_path(&app.state_dir);
    {
        let (app, path) = (Arc::clone(&app), control.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::control::listen(app, path.clone()).await {
                tracing::warn!(error = %e, path = %path.display(), "control socket unavailable; `mlapi ratelimit show` cannot see this daemon");
            }
        });
    }

    tracing::info!(database = %app.store.path().display(), "mlapi {} listening on http://{local}", env!("CARGO_PKG_VERSION"));
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }

    let drain = Duration::from_secs(app.config.server.drain_secs);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = async { if stop_rx.await.is_ok() { tokio::time::sleep(drain).await } else { std::future::pending::<()>().await } } => {
            tracing::warn!(drain_secs = drain.as_secs(), "drain timeout reached; closing the remaining connections");
        }
    }

    // Nothing counted may be lost: write the last usage, then the audit row.
    // Failures here are logged, not fatal: the drain already succeeded.
    let closing = app
        .blocking(|app| {
            app.usage.flush(&app.store)?;
            app.store.write(|tx| {
                audit::record(tx, &Actor::system(), Action::SysShutdown, None, true, None)
            })
        })
        .await;
    if let Err(e) = closing {
        tracing::error!(error = %e, "could not record usage or the shutdown event");
    }
    let _ = std::fs::remove_file(&control);
    tracing::info!("stopped");
    Ok(())
}

/// How often the daemon looks for changes made by other processes (the CLI,
/// other daemons on the same database). Keeps "within 1 second" true.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Reloads the in-memory directory whenever the state version moves, and
/// applies operator cache flushes.
async fn watch_state(app: Arc<App>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.refresh_directory().await;
        if let Err(e) = app
            .blocking(|app| app.flushes.apply_new(&app.store, &app.cache))
            .await
        {
            tracing::warn!(error = %e, "could not read cache flushes; will retry");
        }
    }
}

/// Writes API-key usage counted in memory every `auth.key_usage_flush_secs`.
async fn flush_usage_periodically(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(app.config.auth.key_usage_flush_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.blocking(|app| app.usage.flush(&app.store)).await {
            tracing::warn!(error = %e, "could not write API-key usage; keeping it for the next try");
        }
    }
}

/// SIGHUP: re-read the config; keep the old settings if the new file is bad.
async fn reload_on_hangup(app: Arc<App>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        match app.blocking(|app| app.reload()).await {
            Ok(restart) if restart.is_empty() => tracing::info!("configuration reloaded"),
            Ok(restart) => tracing::warn!(
                sections = %restart.join(", "),
                "configuration reloaded; changes to these sections take effect after a restart"
            ),
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; keeping the running settings")
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }
}
