//! Prometheus primitives: a lock-free histogram and the text exposition
//! format (0.0.4). Each service owns its own counters (plain atomics, fixed
//! at start, so counting takes no lock and allocates nothing) and writes
//! them with `Exposition`; `/metrics` concatenates what they write.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration buckets, in µs: 50 µs to 10 s.
pub const BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A duration histogram with `BUCKETS_US` bounds. Each observation is two
/// relaxed atomic adds and a bucket search over 17 constants.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        // In ns, so 50.9 µs is not counted as 50 µs.
        let ns = elapsed.as_nanos() as u64;
        let slot = BUCKETS_US.partition_point(|&bound| bound * 1_000 < ns);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (the last
    /// finite bound for the +Inf bucket); `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let slot = counts
            .iter()
            .position(|c| {
                seen += c;
                seen >= rank
            })
            .unwrap_or(counts.len() - 1);
        let us = BUCKETS_US[slot.min(BUCKETS_US.len() - 1)];
        Some(Duration::from_micros(us))
    }
}

/// One metric family being written: `# HELP`, `# TYPE`, then samples.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    /// Starts a family. `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Exposition { out }
    }

    /// One sample: `name{k="v",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        write_labels(self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's `_bucket` (cumulative, `le` in seconds), `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match BUCKETS_US.get(i) {
                Some(&us) => format_seconds(us),
                None => "+Inf".to_string(),
            };
            let _ = write!(self.out, "{name}_bucket");
            write_labels(self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = write!(self.out, "{name}_sum");
        write_labels(self.out, labels, None);
        let _ = writeln!(self.out, " {sum}");
        let _ = write!(self.out, "{name}_count");
        write_labels(self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }
}

/// `0.00005`, `0.25`, `10`: a bound in seconds without float noise.
fn format_seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let le = le.map(|v| ("le", v));
    for (key, value) in labels.iter().copied().chain(le) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        // The format's three escapes: backslash, quote, newline.
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_bounds_print_exactly() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_nanos(50_900));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(11));
        let mut out = String::new();
        let mut family = Exposition::family(&mut out, "t_seconds", "histogram", "Test.");
        family.histogram("t_seconds", &[("route", "/a\"b")], &h);
        assert!(out.contains("t_seconds_bucket{route=\"/a\\\"b\",le=\"0.00005\"} 2\n"));
        assert!(out.contains("le=\"0.0001\"} 3\n"));
        assert!(out.contains("le=\"0.0005\"} 3\n"));
        assert!(out.contains("le=\"0.001\"} 4\n"));
        assert!(out.contains("le=\"10\"} 4\n"));
        assert!(out.contains("le=\"+Inf\"} 5\n"));
        assert!(out.contains("t_seconds_count{route=\"/a\\\"b\"} 5\n"));
        assert_eq!(h.count(), 5);
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(100)));
        assert_eq!(h.quantile(0.8), Some(Duration::from_micros(1_000)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_micros(10_000_000)));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(format_seconds(2_500_000), "2.5");
    }
}
