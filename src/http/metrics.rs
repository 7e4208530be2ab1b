//! HTTP traffic counters, by route template (never the raw path), method,
//! status and API version, and a duration histogram per route. Dense
//! arrays of atomics sized from the route table at start: recording a
//! request is index arithmetic and two or three relaxed adds — no lock,
//! no allocation, no map lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::core::metrics::{Exposition, Histogram};

/// The label of requests that matched no route (404, 405, preflights,
/// version errors): a fixed value, so a scan of random paths adds no series.
pub const UNMATCHED: &str = "unmatched";

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// The statuses the daemon answers with; anything else counts as `other`.
const STATUSES: [u16; 24] = [
    101, 200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 413, 415, 422, 429,
    431, 500, 502, 503, 504,
];
const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// API version labels: none (operations routes), `1`, `2`.
const VERSIONS: [&str; 3] = ["", "1", "2"];

pub struct HttpMetrics {
    /// Route templates by slot; the last slot is `UNMATCHED`.
    templates: Vec<&'static str>,
    requests: Box<[AtomicU64]>,
    durations: Box<[Histogram]>,
}

impl HttpMetrics {
    /// Slots for `templates` (the router's routes, in its order) and one
    /// for unmatched requests.
    pub fn new(mut templates: Vec<&'static str>) -> Self {
        templates.push(UNMATCHED);
        let slots = templates.len();
        HttpMetrics {
            requests: (0..slots * METHODS.len() * STATUS_SLOTS * VERSIONS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            durations: (0..slots).map(|_| Histogram::default()).collect(),
            templates,
        }
    }

    /// Counts one answered request. `route`: the router's index of the
    /// route it matched; `version`: 0 (none), 1 or 2.
    pub fn record(
        &self,
        route: Option<usize>,
        method: &Method,
        status: StatusCode,
        version: u8,
        elapsed: Duration,
    ) {
        let route = route.unwrap_or(self.templates.len() - 1);
        let method = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::PATCH => 4,
            Method::DELETE => 5,
            Method::OPTIONS => 6,
            _ => 7,
        };
        let status = STATUSES
            .iter()
            .position(|&s| s == status.as_u16())
            .unwrap_or(STATUSES.len());
        let version = usize::from(version).min(VERSIONS.len() - 1);
        let i =
            ((route * METHODS.len() + method) * STATUS_SLOTS + status) * VERSIONS.len() + version;
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.durations[route].observe(elapsed);
    }

    /// Writes both families; series that never counted are left out.
    pub fn render(&self, out: &mut String) {
        let mut family = Exposition::family(
            out,
            "mlapi_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method, status and API version.",
        );
        for (i, counter) in self.requests.iter().enumerate() {
            let n = counter.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let version = i % VERSIONS.len();
            let rest = i / VERSIONS.len();
            let status = rest % STATUS_SLOTS;
            let rest = rest / STATUS_SLOTS;
            let method = rest % METHODS.len();
            let route = rest / METHODS.len();
            let status = STATUSES
                .get(status)
                .map_or_else(|| "other".to_string(), u16::to_string);
            family.sample(
                "mlapi_http_requests_total",
                &[
                    ("route", self.templates[route]),
                    ("method", METHODS[method]),
                    ("status", &status),
                    ("version", VERSIONS[version]),
                ],
                n,
            );
        }
        let mut family = Exposition::family(
            out,
            "mlapi_http_request_duration_seconds",
            "histogram",
            "Time from the request head to the response head, by route template.",
        );
        for (template, h) in self.templates.iter().zip(self.durations.iter()) {
            if h.count() > 0 {
                family.histogram(
                    "mlapi_http_request_duration_seconds",
                    &[("route", template)],
                    h,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_combination_has_its_own_slot() {
        let m = HttpMetrics::new(vec!["/a", "/b/{id}"]);
        let ms = Duration::from_millis(1);
        m.record(Some(1), &Method::DELETE, StatusCode::NO_CONTENT, 1, ms);
        m.record(Some(1), &Method::DELETE, StatusCode::NO_CONTENT, 1, ms);
        m.record(Some(0), &Method::GET, StatusCode::OK, 0, ms);
        m.record(None, &Method::GET, StatusCode::NOT_FOUND, 2, ms);
        m.record(
            None,
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::IM_A_TEAPOT,
            0,
            ms,
        );
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "mlapi_http_requests_total{route=\"/b/{id}\",method=\"DELETE\",status=\"204\",version=\"1\"} 2\n",
            "mlapi_http_requests_total{route=\"/a\",method=\"GET\",status=\"200\",version=\"\"} 1\n",
            "mlapi_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\",version=\"2\"} 1\n",
            "mlapi_http_requests_total{route=\"unmatched\",method=\"other\",status=\"other\",version=\"\"} 1\n",
            "mlapi_http_request_duration_seconds_count{route=\"/b/{id}\"} 2\n",
            "mlapi_http_request_duration_seconds_count{route=\"unmatched\"} 2\n",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        assert_eq!(out.matches("mlapi_http_requests_total{").count(), 4);
    }
}
