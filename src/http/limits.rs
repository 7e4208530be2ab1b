//! Rate limits at the HTTP boundary: which subject and windows a request
//! counts against, and the headers that describe the decision.
//!
//! The decision is made by `serving::ratelimit::Limiter`; this module only maps a
//! request to it and the result to `X-RateLimit-*`, `RateLimit-Policy`,
//! `RateLimit` (draft-ietf-httpapi-ratelimit-headers) and 429s.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::app::App;
use crate::core::error::Error;
use crate::core::groups::Group;
use crate::identity::Principal;
use crate::serving::ratelimit::{Decision, Window, ANONYMOUS_TIER};

/// Counts a request by an authenticated caller: the subject is the user, so
/// all of a user's keys and tokens share one budget.
pub async fn user(app: &App, p: &Principal, group: Group) -> Result<Decision, Error> {
    let windows = app.limiter.policies.windows(&p.user.tier, group);
    let mut subject = String::with_capacity(2 + p.user.id.len());
    subject.push_str("u:");
    subject.push_str(&p.user.id);
    let decision = check(app, &subject, &windows).await?;
    app.limiter.count(&p.user.tier, group, &decision);
    Ok(decision)
}

/// Counts a request on an anonymous route (register, login, token, refresh)
/// by client IP (`X-Forwarded-For` only from trusted proxies).
pub async fn anonymous(app: &App, client_ip: IpAddr) -> Result<Decision, Error> {
    let windows = app.limiter.policies.anonymous();
    let decision = check(app, &anonymous_subject(client_ip), &windows).await?;
    // Every anonymous route signs in or registers.
    app.limiter.count(ANONYMOUS_TIER, Group::Auth, &decision);
    Ok(decision)
}

/// One bucket per IPv4 address, and per IPv6 /64: a client holding a /64
/// (the usual smallest allocation) cannot rotate addresses to escape it.
fn anonymous_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The decision, or why none could be made (the limiter's store is down and
/// `ratelimit.on_redis_error = "deny"`).
async fn check(app: &App, subject: &str, windows: &[Window]) -> Result<Decision, Error> {
    app.limiter
        .check(subject, windows)
        .await
        .map_err(|e| Error::Unavailable(format!("{e}; retry shortly")))
}

/// The 429 a refused decision becomes; `None` when it allowed the request.
pub fn refusal(decision: &Decision) -> Option<Error> {
    (!decision.allowed).then(|| Error::RateLimited {
        retry_after: decision.retry_after().as_secs_f64().ceil() as u64,
        violated: decision.violated().into_iter().map(String::from).collect(),
    })
}

/// The headers for a decision. `X-RateLimit-Reset` counts from when the
/// decision was made and is rounded up, so at that second the bucket is full.
pub fn add_headers(headers: &mut HeaderMap, decision: &Decision) {
    let Some(reported) = decision.reported() else {
        return;
    };
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

    let reset_secs = reported.reset_after.as_secs_f64().ceil() as u64;
    let reset_at = (decision.at + reported.reset_after).as_secs_f64().ceil() as u64;
    let mut n = itoa::Buffer::new();
    headers.insert(LIMIT, number(&mut n, reported.window.limit.into()));
    headers.insert(REMAINING, number(&mut n, reported.remaining.into()));
    headers.insert(RESET, number(&mut n, reset_at));
    // Policy names are a-z, 0-9, `_` and `-` (config validation), so the
    // values below are always valid header text. Built by hand: this runs
    // on every limited request, and `format!` costs several times more.
    let mut text = String::with_capacity(48 * decision.windows.len());
    for (i, w) in decision.windows.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push('"');
        text.push_str(&w.window.name);
        text.push_str("\";q=");
        text.push_str(n.format(w.window.limit));
        text.push_str(";w=");
        text.push_str(n.format(w.window.period.as_secs()));
    }
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert(POLICY, value);
    }
    text.clear();
    text.push('"');
    text.push_str(&reported.window.name);
    text.push_str("\";r=");
    text.push_str(n.format(reported.remaining));
    text.push_str(";t=");
    text.push_str(n.format(reset_secs));
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert(RATELIMIT, value);
    }
}

/// A number as a header value, in one exactly sized allocation.
fn number(buf: &mut itoa::Buffer, n: u64) -> HeaderValue {
    HeaderValue::from_str(buf.format(n)).expect("digits are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::ratelimit::{decide, Source};
    use std::time::Duration;

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a = anonymous_subject("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = anonymous_subject("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "ip:2001:db8:1:2::/64");
        assert_ne!(a, anonymous_subject("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            anonymous_subject("::ffff:192.0.2.7".parse().unwrap()),
            "ip:192.0.2.7"
        );
        assert_eq!(
            anonymous_subject("192.0.2.7".parse().unwrap()),
            "ip:192.0.2.7"
        );
    }

    #[test]
    fn headers_report_the_tightest_window() {
        let windows = [
            Window {
                name: "free-minute".into(),
                limit: 10,
                period: Duration::from_secs(60),
                burst: 10,
                shadow: false,
            },
            Window {
                name: "free-day".into(),
                limit: 1000,
                period: Duration::from_secs(86_400),
                burst: 1000,
                shadow: false,
            },
        ];
        let (allowed, _, states) = decide(&windows, &[0, 0], 1_000_000_000);
        let decision = Decision {
            allowed,
            windows: states,
            source: Source::Local,
            at: Duration::from_millis(1_000_500),
        };
        let mut h = HeaderMap::new();
        add_headers(&mut h, &decision);
        assert_eq!(h["x-ratelimit-limit"], "10");
        assert_eq!(h["x-ratelimit-remaining"], "9");
        assert_eq!(h["x-ratelimit-reset"], "1007", "rounded up");
        assert_eq!(
            h["ratelimit-policy"],
            "\"free-minute\";q=10;w=60, \"free-day\";q=1000;w=86400"
        );
        assert_eq!(h["ratelimit"], "\"free-minute\";r=9;t=6");
    }
}
