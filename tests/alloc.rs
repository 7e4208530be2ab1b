//! Counting on the request path allocates nothing: the metrics a request
//! records (HTTP traffic, a rate-limit decision, a histogram) are counted
//! under an allocator that counts this thread's allocations. Its own test
//! binary, so the counting allocator is this file's alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use http::{Method, StatusCode};
use mlapi::config::Config;
use mlapi::core::groups::Group;
use mlapi::core::metrics::Histogram;
use mlapi::http::metrics::HttpMetrics;
use mlapi::serving::ratelimit::{decide, Decision, Limiter, Source, Window};

struct Counting;

thread_local! {
    // `const`: initialising it must not allocate inside the allocator.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn recording_a_request_allocates_nothing() {
    let traffic = HttpMetrics::new(vec!["/health", "/api/v1/predict", "/api/v1/keys/{id}"]);
    let limiter = Limiter::new(&Config::default(), None);
    let windows = [Window {
        name: "free-minute".into(),
        limit: 10,
        period: Duration::from_secs(60),
        burst: 10,
        shadow: false,
    }];
    let (allowed, _, states) = decide(&windows, &[0], 1_000_000);
    let decision = Decision {
        allowed,
        windows: states,
        source: Source::Local,
        at: Duration::ZERO,
    };
    let histogram = Histogram::default();
    let n = allocations_in(|| {
        for i in 0..1_000u64 {
            traffic.record(
                Some(1),
                &Method::POST,
                StatusCode::OK,
                1,
                Duration::from_micros(i),
            );
            traffic.record(
                None,
                &Method::GET,
                StatusCode::NOT_FOUND,
                0,
                Duration::from_micros(i),
            );
            limiter.count("free", Group::Predict, &decision);
            limiter.count("no-such-tier", Group::Auth, &decision);
            histogram.observe(Duration::from_nanos(i * 997));
        }
    });
    assert_eq!(n, 0, "counting allocated {n} times");
    // The counter itself works: rendering does allocate.
    assert!(
        allocations_in(|| {
            let mut out = String::new();
            traffic.render(&mut out);
            assert!(out.contains("/api/v1/predict"));
        }) > 0
    );
}
