//! One client connection's transport and its slow-loris guard.
//!
//! A connection must make progress in every period of
//! `server.head_timeout_secs`: complete a request head, have a request in
//! flight, or take response bytes. Otherwise its next read fails and hyper
//! closes it. So a client that trickles a head, or opens a connection and
//! sends nothing, holds it for one to two periods at most; an idle
//! keep-alive connection is closed as well, and so is one whose client
//! stops reading a large answer.
//!
//! The guard costs one timer per connection, re-armed once per period, a
//! relaxed atomic load per read and three uncontended atomic updates per
//! request. hyper's own guard (`header_read_timeout`) re-arms a timer
//! twice on every request, which measured slower on the hot path.
//!
//! This module reads no bytes and knows nothing of HTTP: the pipeline
//! tells it when a request starts and ends ([`Activity::begin`]). The
//! daemon's accept loop wraps every accepted socket in [`Guarded`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What the requests on one connection report to its guard.
#[derive(Debug, Default)]
pub struct Activity {
    /// Request heads completed so far.
    heads: AtomicU64,
    in_flight: AtomicU64,
    /// The connection became a WebSocket, which keeps itself alive with
    /// pings: the guard stands down.
    upgraded: AtomicBool,
}

impl Activity {
    /// A request head is complete and its request is now in flight, until
    /// the returned value is dropped.
    pub fn begin(&self) -> InFlight<'_> {
        self.heads.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// The connection was upgraded (to a WebSocket): no more request heads.
    pub fn upgrade(&self) {
        self.upgraded.store(true, Relaxed);
    }
}

/// A request in flight; see [`Activity::begin`].
pub struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A client connection under the guard.
pub struct Guarded {
    io: TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
    period: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer has been polled once, so it can wake this task.
    armed: bool,
    heads_seen: u64,
    /// Response bytes went out since the last check: a long answer being
    /// read, or one that just finished after a long request.
    wrote: bool,
}

impl Guarded {
    pub fn new(io: TcpStream, peer: SocketAddr, period: Duration) -> Self {
        Self {
            io,
            peer,
            activity: Arc::default(),
            period,
            timer: Box::pin(tokio::time::sleep(period)),
            armed: false,
            heads_seen: 0,
            wrote: false,
        }
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// Runs before every read: fails the read when a whole period went by
    /// with no request head completed, none in flight and nothing written.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.activity.upgraded.load(Relaxed) {
            return Ok(());
        }
        loop {
            if self.armed {
                if !self.timer.is_elapsed() {
                    return Ok(());
                }
                let heads = self.activity.heads.load(Relaxed);
                if heads == self.heads_seen
                    && !self.wrote
                    && self.activity.in_flight.load(Relaxed) == 0
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete request head within server.head_timeout_secs",
                    ));
                }
                self.heads_seen = heads;
                self.wrote = false;
                self.timer.as_mut().reset(Instant::now() + self.period);
            }
            self.armed = true;
            // Registers this task with the timer, so a client that sends
            // nothing is still looked at when the period ends. Unconstrained:
            // out of cooperative budget, the timer would answer Pending
            // without registering, and a silent client would never be seen.
            let mut timer = tokio::task::unconstrained(self.timer.as_mut());
            if Pin::new(&mut timer).poll(cx).is_pending() {
                return Ok(());
            }
            // The period ended before the first read: judge it now.
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote |= matches!(written, Poll::Ready(Ok(n)) if n > 0);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote |= matches!(written, Poll::Ready(Ok(n)) if n > 0);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
