//! The callers' requests in flight in this process, so background work (a
//! job's chunks) can step aside while somebody waits for an answer.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

/// Counts the requests being answered and wakes who waits for none.
#[derive(Default)]
pub struct Traffic {
    in_flight: AtomicUsize,
    /// Tasks inside `quiet`: the last request out wakes them only then, so
    /// a request alone costs two atomic additions and a load.
    waiting: AtomicUsize,
    quiet: Notify,
}

impl Traffic {
    /// A request starts; it counts until the guard drops.
    pub fn begin(&self) -> Request<'_> {
        self.in_flight.fetch_add(1, SeqCst);
        Request(self)
    }

    /// Whether a request is being answered now.
    pub fn busy(&self) -> bool {
        self.in_flight.load(SeqCst) > 0
    }

    /// Resolves at once when no request is in flight, or else when the
    /// last one ends. Cancel-safe; callers bound it with a timeout.
    pub async fn quiet(&self) {
        loop {
            let notified = self.quiet.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.busy() {
                return;
            }
            let _waiting = Waiting::new(self);
            // Announced before this second look, so a request ending now
            // either is seen here or sees the waiter and wakes it.
            if !self.busy() {
                return;
            }
            notified.await;
        }
    }
}

/// One request in flight; see [`Traffic::begin`].
pub struct Request<'a>(&'a Traffic);

impl Drop for Request<'_> {
    fn drop(&mut self) {
        let traffic = self.0;
        if traffic.in_flight.fetch_sub(1, SeqCst) == 1 && traffic.waiting.load(SeqCst) > 0 {
            traffic.quiet.notify_waiters();
        }
    }
}

struct Waiting<'a>(&'a Traffic);

impl<'a> Waiting<'a> {
    fn new(traffic: &'a Traffic) -> Self {
        traffic.waiting.fetch_add(1, SeqCst);
        Waiting(traffic)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn quiet_waits_for_the_last_request() {
        let traffic = Arc::new(Traffic::default());
        assert!(!traffic.busy());
        tokio::time::timeout(Duration::from_secs(1), traffic.quiet())
            .await
            .expect("quiet at once with nothing in flight");

        let (started, release) = (
            Arc::new(tokio::sync::Barrier::new(2)),
            Arc::new(Notify::new()),
        );
        let holder = {
            let (traffic, started, release) = (
                Arc::clone(&traffic),
                Arc::clone(&started),
                Arc::clone(&release),
            );
            tokio::spawn(async move {
                let _one = traffic.begin();
                let _two = traffic.begin();
                started.wait().await;
                release.notified().await;
            })
        };
        started.wait().await;
        assert!(traffic.busy());
        let waiter = {
            let traffic = Arc::clone(&traffic);
            tokio::spawn(async move { traffic.quiet().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "quiet while requests are in flight");
        release.notify_one();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken when the last request ends")
            .expect("waiter task");
        holder.await.expect("holder task");
        assert!(!traffic.busy());
        assert_eq!(traffic.waiting.load(SeqCst), 0, "the waiter deregistered");
    }
}
