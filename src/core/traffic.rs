//! The callers' requests in flight in this process, so background work (a
//! job's chunks) can step aside while somebody waits for an answer.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts the requests being answered.
#[derive(Default)]
pub struct Traffic {
    in_flight: AtomicUsize,
}

impl Traffic {
    /// A request starts; it counts until the guard drops.
    pub fn begin(&self) -> Request<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        Request(self)
    }

    /// Whether a request is being answered now. A hint: the job thread
    /// that asks polls it, so no ordering with other memory is needed.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
    }
}

/// One request in flight; see [`Traffic::begin`].
pub struct Request<'a>(&'a Traffic);

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_until_the_last_request_ends() {
        let traffic = Traffic::default();
        assert!(!traffic.busy());
        let one = traffic.begin();
        let two = traffic.begin();
        assert!(traffic.busy());
        drop(one);
        assert!(traffic.busy(), "one request is still in flight");
        drop(two);
        assert!(!traffic.busy());
    }
}
