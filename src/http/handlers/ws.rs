//! WebSockets: live events of the caller's jobs (`GET /api/v1/ws`) and the
//! single-use tickets browsers open them with (`POST /api/v1/ws/tickets`).
//!
//! The pipeline authenticates the upgrade like any request (header
//! credential, or `?ticket=`), so a refused one is a 401 before any
//! upgrade. A socket then gets every event of its user's jobs from the
//! process's hub (`serving::events`); `{"type":"subscribe","jobs":[…]}`
//! narrows that to those jobs (another user's job closes it with 1008).
//! Writes go through a bounded queue to a writer task: a client that does
//! not read fills the queue and is dropped, never buffered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::app::App;
use crate::core::scopes::Scope;
use crate::core::time;
use crate::http::pipeline::{origin_is_allowed, Call};
use crate::http::problem::{json_response, ApiError, Response, JSON};
use crate::identity::tickets::TICKET_SECS;
use crate::identity::Principal;
use crate::serving::events::{Event, SocketGuard};
use crate::store;

/// Messages waiting for a slow client before it is dropped.
const QUEUE: usize = 64;
/// Jobs one `subscribe` may name.
const MAX_SUBSCRIBE: usize = 1000;
/// Largest message or frame a client may send.
const MAX_INCOMING: usize = 64 * 1024;
/// How long a closing socket waits for the client's close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub async fn ticket(call: Call) -> Result<Response, ApiError> {
    let app = Arc::clone(call.app());
    let principal = call.caller().clone();
    let ticket = store::blocking(move || app.identity.issue_ticket(&principal)).await?;
    Ok(json_response(
        StatusCode::CREATED,
        JSON,
        &json!({"ticket": ticket, "expires_in": TICKET_SECS}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketQuery {
    #[serde(default)]
    #[allow(dead_code)]
    ticket: Option<String>,
}

fn has_token(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

pub async fn socket(mut call: Call) -> Result<Response, ApiError> {
    let _: SocketQuery = call.query()?;
    let app = Arc::clone(call.app());
    let headers = &call.parts.headers;
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin_is_allowed(&app, origin) {
            return Err(ApiError::Forbidden {
                detail: "this Origin may not open WebSockets here (cors.allowed_origins)".into(),
                scope: None,
            });
        }
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(ApiError::UpgradeRequired(
            "this route speaks WebSocket: send Upgrade: websocket and Connection: Upgrade".into(),
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::UpgradeRequired(
            "only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)".into(),
        ));
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24)
    else {
        return Err(ApiError::BadRequest(
            "Sec-WebSocket-Key must be 16 random bytes in base64".into(),
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let max = app.config.websocket.max_connections as usize;
    // Watched from before the check, so no change falls in between.
    let credentials = app.identity.credential_changes();
    let standing = app.identity.recheck(call.caller())?;
    let Some(guard) = app.jobs.events().socket_opened(max) else {
        return Err(ApiError::Unavailable {
            detail: format!("this daemon holds its most WebSockets ({max}); retry shortly"),
            retry_after_secs: 5,
            extra: serde_json::Map::new(),
        });
    };
    let Some(on_upgrade) = call.upgrade() else {
        return Err(ApiError::UpgradeRequired(
            "this connection cannot be upgraded".into(),
        ));
    };
    // Subscribed before the 101: an event the client causes once it has
    // the answer (submitting a job) cannot fall before the subscription.
    let ring = app.jobs.events().subscribe();
    let socket = Socket {
        app: Arc::clone(&app),
        principal: standing.principal,
        expires_at: standing.expires_at,
        filter: None,
    };
    tokio::spawn(async move {
        // The client went away before the upgrade finished: nothing to do.
        if let Ok(upgraded) = on_upgrade.await {
            socket
                .run(TokioIo::new(upgraded), ring, credentials, guard)
                .await;
        }
    });
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    Ok(response)
}

/// One open socket.
struct Socket {
    app: Arc<App>,
    principal: Principal,
    /// When the credential stops working by itself (unix seconds).
    expires_at: Option<i64>,
    /// `None`: all the user's jobs.
    filter: Option<HashSet<String>>,
}

/// Why a socket ends.
enum End {
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
    /// The client closed, went away, or cannot keep up: just drop it.
    Drop,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum ClientMessage {
    #[serde(rename = "subscribe")]
    Subscribe { jobs: Vec<String> },
}

impl Socket {
    async fn run<S>(
        mut self,
        io: S,
        ring: broadcast::Receiver<Arc<Event>>,
        credentials: tokio::sync::watch::Receiver<i64>,
        _guard: SocketGuard,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024)
            .max_message_size(Some(MAX_INCOMING))
            .max_frame_size(Some(MAX_INCOMING));
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let (mut sink, mut stream) = ws.split();
        let (out, mut queue) = mpsc::channel::<Message>(QUEUE);
        let mut writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let end = self.serve(&out, &mut stream, ring, credentials).await;
        match end {
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                if out.try_send(Message::Close(Some(frame))).is_ok() {
                    drop(out);
                    // The close goes out, then the client's answer comes in.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        let _ = (&mut writer).await;
                        while let Some(Ok(_)) = stream.next().await {}
                    })
                    .await;
                }
            }
            End::Drop => {}
        }
        writer.abort();
    }

    /// Forwards events and answers the client until the socket must end.
    async fn serve<R>(
        &mut self,
        out: &mpsc::Sender<Message>,
        stream: &mut R,
        mut ring: broadcast::Receiver<Arc<Event>>,
        mut credentials: tokio::sync::watch::Receiver<i64>,
    ) -> End
    where
        R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        let app = Arc::clone(&self.app);
        let events = app.jobs.events();
        let mut stopping = app.stopping();
        let ping_every = Duration::from_secs(app.config.websocket.ping_secs);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut heard = tokio::time::Instant::now();
        loop {
            let expiry = self.expires_at.map(|at| {
                let left = (at - time::now()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_secs(left)
            });
            tokio::select! {
                () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                    return End::Close(CloseCode::Away, "the server is shutting down");
                }
                changed = credentials.changed() => {
                    if changed.is_err() {
                        return End::Close(CloseCode::Away, "the server is shutting down");
                    }
                    if let Some(end) = self.recheck() {
                        return end;
                    }
                }
                () = sleep_until(expiry) => {
                    if let Some(end) = self.recheck() {
                        return end;
                    }
                    // Still good a moment early: look again in a second.
                    self.expires_at = Some(time::now() + 1);
                }
                _ = ping.tick() => {
                    if heard.elapsed() > ping_every * 2 {
                        return End::Drop;
                    }
                    if out.try_send(Message::Ping(bytes::Bytes::new())).is_err() {
                        events.socket_dropped();
                        return End::Drop;
                    }
                }
                event = ring.recv() => match event {
                    Ok(event) => {
                        let mine = event.user_id.as_deref() == Some(self.principal.user.id.as_str());
                        let wanted = self.filter.as_ref().is_none_or(|f| f.contains(&event.job_id));
                        if mine && wanted {
                            let text = Utf8Bytes::try_from(event.text.clone())
                                .expect("events are JSON text");
                            if out.try_send(Message::Text(text)).is_err() {
                                events.socket_dropped();
                                return End::Drop;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        events.socket_dropped();
                        return End::Close(CloseCode::Again, "events were lost; reconnect");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return End::Close(CloseCode::Away, "the server is shutting down");
                    }
                },
                message = stream.next() => {
                    heard = tokio::time::Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.answer(out, &mut ring, text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return End::Close(CloseCode::Unsupported, "send text messages (JSON)");
                        }
                        Some(Ok(_)) => {} // ping, pong: tungstenite answers pings
                        Some(Err(_)) | None => return End::Drop,
                    }
                }
            }
        }
    }

    /// Re-checks the credential: `Some` ends the socket with 1008.
    fn recheck(&mut self) -> Option<End> {
        match self.app.identity.recheck(&self.principal) {
            Ok(standing) if standing.principal.scopes.contains(Scope::JobsRead) => {
                self.principal = standing.principal;
                self.expires_at = standing.expires_at;
                None
            }
            Ok(_) => Some(End::Close(
                CloseCode::Policy,
                "the credential lost the jobs:read scope",
            )),
            Err(_) => Some(End::Close(
                CloseCode::Policy,
                "the credential was revoked, disabled or expired",
            )),
        }
    }

    /// Answers one client message; `Some` ends the socket.
    async fn answer(
        &mut self,
        out: &mpsc::Sender<Message>,
        ring: &mut broadcast::Receiver<Arc<Event>>,
        text: &str,
    ) -> Option<End> {
        let reply = match serde_json::from_str::<ClientMessage>(text) {
            Err(e) => json!({"type": "error", "detail": format!(
                "expected {{\"type\":\"subscribe\",\"jobs\":[job ids]}}: {e}")}),
            Ok(ClientMessage::Subscribe { jobs })
                if jobs.is_empty() || jobs.len() > MAX_SUBSCRIBE =>
            {
                json!({"type": "error", "detail": format!(
                    "subscribe names 1 to {MAX_SUBSCRIBE} job ids")})
            }
            Ok(ClientMessage::Subscribe { jobs }) => {
                // Events waiting now are older than the states read below,
                // which supersede them (and the rest are filtered out).
                while ring.try_recv().is_ok() {}
                let app = Arc::clone(&self.app);
                let owner = self.principal.user.id.clone();
                let ids = jobs.clone();
                let found = store::blocking(move || {
                    ids.iter()
                        .map(|id| app.jobs.get(Some(&owner), id))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await;
                match found {
                    Ok(found) => {
                        self.filter = Some(jobs.into_iter().collect());
                        json!({"type": "subscribed", "jobs": found})
                    }
                    // Another user's job, or none: no frames about it.
                    Err(crate::core::error::Error::NotFound(_)) => {
                        return Some(End::Close(CloseCode::Policy, "no such job of yours"));
                    }
                    Err(_) => json!({"type": "error", "detail": "the store is unavailable; retry"}),
                }
            }
        };
        let message = Message::Text(reply.to_string().into());
        if out.try_send(message).is_err() {
            self.app.jobs.events().socket_dropped();
            return Some(End::Drop);
        }
        None
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
