//! The daemon's link to Redis, shared by the rate limiter and the prediction
//! cache: one multiplexed connection, a deadline on every command, and a
//! breaker so a dead or stalled Redis costs requests no time.
//!
//! Requests never connect. A background task (`keep_connected`) opens the
//! connection, checks it with PING, and reopens it after a failure; while it
//! is down, `connection()` answers `None` at once and callers fall back. It
//! owns no keys and no policy: the limiter and cache decide what a fallback is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// Pause between reconnection attempts while Redis is down.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for a TCP/unix connect and the PING that proves it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Remote {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    /// `None` while down: the breaker is open. Each connection has a
    /// generation, so a late failure of an old connection cannot close a
    /// newer one.
    conn: Mutex<Link>,
    /// Set by a failed command; the keeper reconnects.
    broken: tokio::sync::Notify,
    /// When a server-side error was last logged (rate-limits the warning).
    warned_at: AtomicU64,
}

#[derive(Default)]
struct Link {
    conn: Option<MultiplexedConnection>,
    generation: u64,
}

/// Why a Redis call was not answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("Redis is unreachable")]
    Down,
    #[error("Redis did not answer within {0} ms")]
    Timeout(u128),
    #[error("Redis error: {0}")]
    Command(String),
}

impl Remote {
    pub fn new(client: redis::Client, prefix: &str, timeout: Duration) -> Self {
        Remote {
            client,
            prefix: prefix.to_string(),
            timeout,
            conn: Mutex::new(Link::default()),
            broken: tokio::sync::Notify::new(),
            warned_at: AtomicU64::new(0),
        }
    }

    /// `prefix` + `rest`: every key mlapi writes lives under the prefix.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_up(&self) -> bool {
        self.link().conn.is_some()
    }

    /// One PING within `timeout`: whether Redis answers now, not when the
    /// last command ran.
    pub async fn ping(&self, timeout: Duration) -> Result<(), RemoteError> {
        self.run_with_timeout(timeout, |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// Runs `f` on the shared connection within the command deadline. A
    /// timeout or I/O failure opens the breaker; server-side errors (a bad
    /// script, say) do not, since the link itself is fine.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RemoteError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run_with_timeout(self.timeout, f).await
    }

    /// `run` with another deadline, for maintenance off the request path
    /// (`mlapi cache flush` scanning a large keyspace) where the request
    /// deadline would be too short. Failures trip the breaker all the same.
    pub async fn run_with_timeout<T, F, Fut>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<T, RemoteError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (conn, generation) = {
            let link = self.link();
            (link.conn.clone().ok_or(RemoteError::Down)?, link.generation)
        };
        match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if unusable(&e) => {
                self.trip(generation, &describe(&e));
                Err(RemoteError::Down)
            }
            Ok(Err(e)) => {
                // A bad reply to one command; the link is fine. At most one
                // warning a minute, so a persistent fault cannot flood the log.
                let now = crate::core::time::now().max(0) as u64;
                if self.warned_at.swap(now, Ordering::Relaxed) + 60 <= now {
                    tracing::warn!(error = %describe(&e), "redis command failed");
                }
                Err(RemoteError::Command(describe(&e)))
            }
            Err(_) => {
                self.trip(generation, "no answer in time");
                Err(RemoteError::Timeout(timeout.as_millis()))
            }
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.conn.lock().expect("redis connection lock")
    }

    /// Opens the breaker, unless the failed connection was already replaced.
    fn trip(&self, generation: u64, why: &str) {
        let closed = {
            let mut link = self.link();
            link.generation == generation && link.conn.take().is_some()
        };
        if closed {
            tracing::warn!(
                reason = why,
                "redis unreachable; falling back until it answers again"
            );
            self.broken.notify_one();
        }
    }

    /// Connects now, within a second: the CLI's only attempt, and the
    /// daemon's first before it reports ready.
    pub async fn connect_now(&self) -> Result<(), RemoteError> {
        let attempt = async {
            // No response timeout on the connection: every command gets its
            // own deadline from `run`/`run_with_timeout` (and the PING below
            // from `CONNECT_TIMEOUT`); a connection-wide one would silently
            // cap them all.
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(None);
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| RemoteError::Timeout(CONNECT_TIMEOUT.as_millis()))?
            .map_err(|e| RemoteError::Command(describe(&e)))?;
        let mut link = self.link();
        link.generation += 1;
        link.conn = Some(conn);
        Ok(())
    }

    /// Keeps the connection open for the daemon's lifetime: connects, and
    /// after every failure reconnects every `RETRY_EVERY`.
    pub async fn keep_connected(&self) {
        let mut logged_down = false;
        loop {
            if self.is_up() {
                self.broken.notified().await;
                continue;
            }
            match self.connect_now().await {
                Ok(()) => {
                    tracing::info!("redis connected");
                    logged_down = false;
                    continue;
                }
                Err(e) if !logged_down => {
                    tracing::warn!(error = %e, "redis unreachable; retrying every 500 ms");
                    logged_down = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}

/// Errors after which this connection (or this server) cannot serve us:
/// I/O, timeouts, and a server that cannot take writes (a replica after a
/// failover, a loading or cluster-down node). Reconnecting is the remedy.
fn unusable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                S::ReadOnly | S::MasterDown | S::ClusterDown | S::TryAgain | S::BusyLoading
            )
        )
}

/// A Redis error without the URL, which may carry a password.
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", e.kind())
    }
}
