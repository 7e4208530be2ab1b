//! The daemon's background tasks. Each runs until the stop signal of
//! [`start`] turns true; `daemon::run` joins them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;
use crate::store;

/// How often the daemon looks for changes made by other processes (the CLI,
/// other daemons on the same database). Keeps "within 1 second" true.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How often the daemon looks for upstream health checks that are due
/// (each upstream model has its own `health_interval_secs`).
const HEALTH_TICK: Duration = Duration::from_millis(250);

/// Starts the state watcher, the usage flush, the Redis reconnect loop
/// (with Redis), the upstream health checks and the control socket.
pub(super) fn start(app: &Arc<App>, control: &Path, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(until_stopped(stop.clone(), watch_state(Arc::clone(app))));
    // Not cut off mid-write: a flush that started finishes before the
    // daemon's last one, so no count is put back after it.
    set.spawn(flush_usage_periodically(Arc::clone(app), stop.clone()));
    if let Some(remote) = app.remote.clone() {
        set.spawn(until_stopped(stop.clone(), async move {
            remote.keep_connected().await
        }));
    }
    let checking = Arc::clone(app);
    set.spawn(until_stopped(stop.clone(), async move {
        let mut tick = tokio::time::interval(HEALTH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Each model's checks on their own, so a hung endpoint of one model
        // never delays another's; aborted when the daemon stops.
        let mut checks = JoinSet::new();
        loop {
            tick.tick().await;
            while checks.try_join_next().is_some() {}
            for upstream in checking.models().due_health_checks() {
                checks.spawn(async move { upstream.check_health().await });
            }
        }
    }));
    // Jobs share the inference pool but never all of it.
    let job_slots = Arc::new(tokio::sync::Semaphore::new(
        app.config.inference.max_concurrent.saturating_sub(1).max(1) as usize,
    ));
    for _ in 0..app.config.jobs.workers {
        set.spawn(super::jobs::work(
            Arc::clone(app),
            Arc::clone(&job_slots),
            stop.clone(),
        ));
    }
    set.spawn(super::jobs::expire(Arc::clone(app), stop.clone()));
    set.spawn(until_stopped(
        stop.clone(),
        tell_job_events(Arc::clone(app)),
    ));
    let (app, path) = (Arc::clone(app), control.to_path_buf());
    set.spawn(until_stopped(stop, async move {
        if let Err(e) = super::control::listen(app, path.clone()).await {
            tracing::warn!(error = %e, path = %path.display(), "control socket unavailable; `mlapi ratelimit show` cannot see this daemon");
        }
    }));
    set
}

/// Runs `task` until it ends or `stop` turns true.
async fn until_stopped(
    mut stop: watch::Receiver<bool>,
    task: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = task => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}

/// Reloads the in-memory directory and API-version lifecycles whenever the
/// state version moves, and applies operator cache flushes.
async fn watch_state(app: Arc<App>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.identity.refresh_directory().await;
        app.versions.refresh().await;
        let flushing = Arc::clone(&app);
        if let Err(e) = store::blocking(move || flushing.flushes.apply_new(&flushing.cache)).await {
            tracing::warn!(error = %e, "could not read cache flushes; will retry");
        }
    }
}

/// Reads the job change feed every `WATCH_INTERVAL` (other processes'
/// changes) and sends held-back progress when its window ends.
async fn tell_job_events(app: Arc<App>) {
    let events = Arc::clone(app.jobs.events());
    let mut next_read = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_read {
            let reading = Arc::clone(&app);
            if let Err(e) = store::blocking(move || reading.jobs.read_changes()).await {
                tracing::warn!(error = %e, "could not read job changes; will retry");
            }
            next_read = tokio::time::Instant::now() + WATCH_INTERVAL;
        }
        let wake = events
            .flush_due()
            .map_or(next_read, |due| next_read.min(due.into()));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = events.held_back() => {}
        }
    }
}

/// Writes API-key usage counted in memory every `auth.key_usage_flush_secs`,
/// until `stop`; it only stops between flushes.
async fn flush_usage_periodically(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(app.config.auth.key_usage_flush_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        if let Err(e) = app.identity.flush_usage().await {
            tracing::warn!(error = %e, "could not write API-key usage; keeping it for the next try");
        }
    }
}

/// SIGHUP: re-read the config; keep the old settings if the new file is bad.
pub(super) async fn reload_on_hangup(app: Arc<App>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        let reloading = Arc::clone(&app);
        match store::blocking(move || reloading.reload()).await {
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
