//! Rate limiting against the real daemon: tiers, headers that tell the truth,
//! exactness under concurrency in process and across daemons sharing a
//! throwaway Redis, operator tier changes, and Redis outages under each
//! `on_redis_error` policy. Catalog group R.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::harness::{send, send_body, stderr, stdout, Daemon, Redis, Resp, Setup};
use crate::identity::{eventually, login, user_with_tokens, SECRET};

const PASSWORD: &str = "SecurePass123!";
const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// Real default tiers; cheap hashing; `extra` appended (whole sections).
fn config(auth_extra: &str, extra: &str) -> String {
    format!(
        "[auth]\njwt_secret = \"{SECRET}\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n{auth_extra}\n\n{extra}\n"
    )
}

/// `config` for users on one tier of `per_hour` requests, limited in
/// `redis`; `redis_extra` adds lines to the `[redis]` section.
fn redis_config(redis: &Redis, tier: &str, per_hour: u32, redis_extra: &str) -> String {
    config(
        &format!("default_tier = \"{tier}\""),
        &format!(
            "[redis]\nurl = \"{}\"\n{redis_extra}\n\n[tiers.{tier}]\nper_hour = {per_hour}\n",
            redis.url()
        ),
    )
}

fn token(d: &Daemon, name: &str) -> String {
    user_with_tokens(d, name).0
}

fn predict(d: &Daemon, token: &str) -> Resp {
    send_body(
        d.request("POST", "/api/v1/predict")
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json"),
        r#"{"features": [1.0, 2.0, 3.0, 4.0, 5.0]}"#,
    )
}

fn models(d: &Daemon, token: &str) -> Resp {
    send(
        d.request("GET", "/api/v1/models")
            .set("Authorization", &format!("Bearer {token}")),
    )
}

fn num(r: &Resp, header: &str) -> u64 {
    r.header(header)
        .unwrap_or_else(|| panic!("no {header} on a {} answer", r.status))
        .parse()
        .unwrap_or_else(|_| panic!("{header} is not a number"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Parses an RFC 8941 list of strings with integer parameters, as
/// `RateLimit` and `RateLimit-Policy` are: `"name";q=10;w=60, "other";…`.
fn structured_list(value: &str) -> Vec<(String, Vec<(String, u64)>)> {
    value
        .split(',')
        .map(|item| {
            let mut parts = item.trim().split(';');
            let name = parts.next().unwrap();
            assert!(
                name.len() >= 2 && name.starts_with('"') && name.ends_with('"'),
                "item is an sf-string: {item}"
            );
            let params = parts
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("key=value parameter");
                    assert!(k.chars().all(|c| c.is_ascii_lowercase()), "sf-key: {k}");
                    (k.to_string(), v.parse().expect("sf-integer"))
                })
                .collect();
            (name.trim_matches('"').to_string(), params)
        })
        .collect()
}

fn param(item: &(String, Vec<(String, u64)>), key: &str) -> u64 {
    item.1.iter().find(|(k, _)| k == key).unwrap().1
}

/// Sends `total` requests from 20 threads at once; returns the statuses.
fn concurrently(total: usize, send_one: impl Fn(usize) -> u16 + Sync) -> Vec<u16> {
    let statuses = std::sync::Mutex::new(Vec::new());
    let barrier = std::sync::Barrier::new(20);
    std::thread::scope(|s| {
        for t in 0..20 {
            let (statuses, barrier, send_one) = (&statuses, &barrier, &send_one);
            s.spawn(move || {
                barrier.wait();
                for i in (t..total).step_by(20) {
                    let status = send_one(i);
                    statuses.lock().unwrap().push(status);
                }
            });
        }
    });
    statuses.into_inner().unwrap()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[test]
fn the_seeds_free_user_is_refused_with_truthful_headers() {
    let d = Setup::new(&config("", "")).start();
    let t = token(&d, "alice");
    let mut last = None;
    for i in 0..101u64 {
        let r = predict(&d, &t);
        if i < 10 {
            assert_eq!(r.status, 200, "request {i}: {}", r.body);
            assert_eq!(num(&r, "x-ratelimit-limit"), 10);
            assert_eq!(num(&r, "x-ratelimit-remaining"), 9 - i, "counts down");
            let reset = num(&r, "x-ratelimit-reset");
            assert!((unix_now()..=unix_now() + 61).contains(&reset), "{reset}");
        } else {
            assert_eq!(r.status, 429, "request {i}");
        }
        last = Some(r);
    }
    let r = last.unwrap();
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let retry = num(&r, "retry-after");
    assert!(
        (1..=6).contains(&retry),
        "one request frees up every 6 s: {retry}"
    );
    let body = r.problem(429);
    assert_eq!(body["type"], QUOTA_EXCEEDED);
    assert_eq!(body["violated-policies"], json!(["free-minute"]));

    let policies = structured_list(r.header("ratelimit-policy").unwrap());
    assert_eq!(policies.len(), 2);
    assert_eq!(policies[0].0, "free-minute");
    assert_eq!(
        (param(&policies[0], "q"), param(&policies[0], "w")),
        (10, 60)
    );
    assert_eq!(policies[1].0, "free-day");
    assert_eq!(
        (param(&policies[1], "q"), param(&policies[1], "w")),
        (1000, 86_400)
    );
    let limit = structured_list(r.header("ratelimit").unwrap());
    assert_eq!(limit.len(), 1, "the tightest window is reported");
    assert_eq!(limit[0].0, "free-minute");
    assert_eq!(param(&limit[0], "r"), 0);

    // Routes outside the API are never limited.
    for _ in 0..20 {
        assert_eq!(d.get("/health").status, 200);
    }
    assert!(d.get("/health").header("x-ratelimit-limit").is_none());
}

#[test]
fn after_reset_and_retry_after_the_next_request_passes() {
    let d = Setup::new(&config(
        "default_tier = \"steady\"",
        "[tiers.steady]\nper_minute = 60\nburst = 2\n",
    ))
    .start();
    let t = token(&d, "bob");
    let first = models(&d, &t);
    assert_eq!(num(&first, "x-ratelimit-remaining"), 1);
    let second = models(&d, &t);
    assert_eq!(num(&second, "x-ratelimit-remaining"), 0);
    let refused = models(&d, &t);
    assert_eq!(refused.status, 429);
    let retry = num(&refused, "retry-after");
    assert_eq!(retry, 1, "one request per second refills");

    std::thread::sleep(Duration::from_secs(retry));
    let after_retry = models(&d, &t);
    assert_eq!(after_retry.status, 200, "after Retry-After");
    assert_eq!(num(&after_retry, "x-ratelimit-remaining"), 0);

    let reset = num(&after_retry, "x-ratelimit-reset");
    while unix_now() < reset {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_reset = models(&d, &t);
    assert_eq!(after_reset.status, 200, "after X-RateLimit-Reset");
    assert_eq!(
        num(&after_reset, "x-ratelimit-remaining"),
        1,
        "the bucket was full again"
    );
}

/// Catalog R2: 200 concurrent requests at a limit of 50 → exactly 50 pass.
fn exactly_fifty_of_two_hundred(redis: Option<&Redis>) {
    let redis_section = redis.map_or(String::new(), |r| {
        format!("[redis]\nurl = \"{}\"\n", r.url())
    });
    let d = Setup::new(&config(
        "default_tier = \"fifty\"",
        &format!("{redis_section}\n[tiers.fifty]\nper_hour = 50\n"),
    ))
    .start();
    for round in 0..3 {
        let t = token(&d, &format!("user{round}"));
        let statuses = concurrently(200, |_| models(&d, &t).status);
        assert_eq!(count(&statuses, 200), 50, "round {round}: {statuses:?}");
        assert_eq!(count(&statuses, 429), 150, "round {round}");
    }
    if let Some(redis) = redis {
        let keys = redis.cli(&["--scan", "--pattern", "mlapi:rl:{u:*"]);
        assert_eq!(keys.lines().count(), 3, "one bucket per user: {keys}");
        let ttl: i64 = redis
            .cli(&["PTTL", keys.lines().next().unwrap()])
            .trim()
            .parse()
            .unwrap();
        assert!(ttl > 0, "buckets expire: {ttl}");
    }
}

#[test]
fn exactly_the_limit_passes_under_concurrency_in_process() {
    exactly_fifty_of_two_hundred(None);
}

#[test]
fn exactly_the_limit_passes_under_concurrency_with_redis() {
    let redis = Redis::start();
    exactly_fifty_of_two_hundred(Some(&redis));
}

#[test]
fn daemons_sharing_redis_share_the_limit() {
    let redis = Redis::start();
    let setup = Setup::new(&redis_config(&redis, "fifty", 50, ""));
    let daemons = [setup.start(), setup.start_process(), setup.start_process()];
    let t = token(&daemons[0], "shared");
    // Every daemon sees a new account within a second (its directory poll).
    std::thread::sleep(Duration::from_secs(1));
    let statuses = concurrently(60, |i| models(&daemons[i % 3], &t).status);
    assert_eq!(count(&statuses, 200), 50, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 10);

    // `ratelimit show` reads the shared buckets from Redis.
    let out = setup.cli(&["--output", "json", "ratelimit", "show", "shared"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["usage"][0]["source"], "redis");
    assert_eq!(shown["usage"][0]["windows"][0]["policy"], "fifty-hour");
    assert_eq!(shown["usage"][0]["windows"][0]["remaining"], 0);
    assert_eq!(shown["usage"][0]["windows"][0]["used"], 50);
}

#[test]
fn set_tier_applies_to_a_running_daemon_within_a_second() {
    let setup = Setup::new(&config("", ""));
    let d = setup.start();
    let t = token(&d, "carol");
    for _ in 0..10 {
        assert_eq!(models(&d, &t).status, 200);
    }
    assert_eq!(models(&d, &t).status, 429, "free: 10 a minute");

    let out = setup.cli(&["ratelimit", "set-tier", "carol", "gold"]);
    assert_eq!(out.status.code(), Some(2), "unknown tier is a usage error");
    assert!(
        stderr(&out).contains("free, pro, enterprise"),
        "the tiers are listed, strictest first: {}",
        stderr(&out)
    );

    let out = setup.cli(&["ratelimit", "set-tier", "carol", "pro"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eventually(Duration::from_secs(1), || models(&d, &t).status == 200);
    let r = models(&d, &t);
    assert_eq!(num(&r, "x-ratelimit-limit"), 100);

    // The daemon's own buckets, through its control socket.
    let out = setup.cli(&["--output", "json", "ratelimit", "show", "carol"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["tier"], "pro");
    assert_eq!(shown["usage"][0]["source"], "daemon");
    assert_eq!(shown["usage"][0]["pid"], d.pid());
    let minute = &shown["usage"][0]["windows"][0];
    assert_eq!(minute["policy"], "pro-minute");
    assert!(minute["used"].as_u64().unwrap() >= 2, "{minute}");

    let out = setup.cli(&["--output", "json", "ratelimit", "tiers"]);
    let tiers: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = tiers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["free", "pro", "enterprise"]);
    assert_eq!(tiers[0]["per_minute"], 10);
    assert_eq!(tiers[0]["per_day"], 1000);
    assert_eq!(tiers[0]["default"], true);
    assert_eq!(tiers[2]["per_day"], 1_000_000);

    let out = setup.cli(&["ratelimit", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn endpoint_limits_login_limits_and_refused_credentials_are_separate() {
    let setup = Setup::new(&config(
        "",
        "[ratelimit]\nanonymous_per_minute = 4\n\n[tiers.free.endpoints.predict]\nper_minute = 2\n",
    ));
    let d = setup.start();
    let t = token(&d, "dave"); // register + login: 2 of 4 anonymous requests

    // Catalog R7: refused credentials never reach the user's buckets.
    let last = if t.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &t[..t.len() - 1]);
    for _ in 0..15 {
        assert_eq!(predict(&d, &forged).status, 401);
    }
    assert_eq!(predict(&d, &t).status, 200);
    assert_eq!(predict(&d, &t).status, 200);
    let r = predict(&d, &t);
    assert_eq!(r.status, 429, "the predict group's own limit");
    assert_eq!(
        r.problem(429)["violated-policies"],
        json!(["free-predict-minute"])
    );
    let other = models(&d, &t);
    assert_eq!(
        other.status, 200,
        "other groups only count the tier's limits"
    );
    assert_eq!(num(&other, "x-ratelimit-limit"), 10);

    // Catalog R5: the login limiter is separate, both ways.
    assert_eq!(
        login(&d, "dave", PASSWORD).status,
        200,
        "predict refused, login not"
    );
    assert_eq!(login(&d, "dave", PASSWORD).status, 200);
    let r = login(&d, "dave", PASSWORD);
    assert_eq!(r.status, 429, "4 anonymous requests a minute per IP");
    assert_eq!(
        r.problem(429)["violated-policies"],
        json!(["anonymous-minute"])
    );
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(models(&d, &t).status, 200, "login refused, the API not");

    // Catalog R6: X-Forwarded-For from an untrusted peer is ignored.
    let spoofed = send_body(
        d.request("POST", "/api/v1/auth/login")
            .set("X-Forwarded-For", "203.0.113.9")
            .set("Content-Type", "application/json"),
        &json!({"username": "dave", "password": PASSWORD}).to_string(),
    );
    assert_eq!(
        spoofed.status, 429,
        "a spoofed address does not reset the bucket"
    );
    let token_endpoint = send_body(
        d.request("POST", "/api/v1/auth/token")
            .set("Content-Type", "application/x-www-form-urlencoded"),
        &format!("grant_type=password&username=dave&password={PASSWORD}"),
    );
    assert_eq!(token_endpoint.status, 429);
    assert_eq!(
        token_endpoint.json()["error"],
        "invalid_request",
        "RFC 6749 shape"
    );
    assert!(token_endpoint.header("retry-after").is_some());
}

/// Catalog R9: Redis stops mid-test; every request is still answered
/// within 100 ms under each policy; Redis back → shared counting resumes.
#[test]
fn redis_outages_follow_the_configured_policy() {
    for policy in ["local", "allow", "deny"] {
        let mut redis = Redis::start();
        let d = Setup::new(&config(
            "default_tier = \"five\"",
            &format!(
                "[redis]\nurl = \"{}\"\n\n[ratelimit]\non_redis_error = \"{policy}\"\n\n[tiers.five]\nper_hour = 5\n",
                redis.url()
            ),
        ))
        .start();
        let t = token(&d, "erin");
        for _ in 0..2 {
            assert_eq!(models(&d, &t).status, 200, "{policy}");
        }
        assert_eq!(
            redis
                .cli(&["--scan", "--pattern", "mlapi:rl:{u:*"])
                .lines()
                .count(),
            1,
            "{policy}: counted in Redis"
        );

        redis.stop();
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            let r = models(&d, &t);
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(100),
                "{policy}: answered in {took:?}"
            );
            assert_ne!(r.status, 500, "{policy}: {}", r.body);
            if policy == "allow" {
                assert!(
                    r.header("x-ratelimit-limit").is_none(),
                    "nothing was counted"
                );
            }
            if r.status == 503 {
                assert!(r.header("retry-after").is_some());
            }
            statuses.push(r.status);
        }
        match policy {
            // A fresh in-process bucket: five more, then refusals.
            "local" => assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]),
            "allow" => {
                assert_eq!(statuses, [200; 8]);
                // The login limiter stays on, in process (a fresh bucket:
                // 20 a minute per IP).
                let logins: Vec<u16> = (0..21)
                    .map(|_| login(&d, "erin", PASSWORD).status)
                    .collect();
                assert_eq!(logins[..20], [200; 20]);
                assert_eq!(logins[20], 429, "{logins:?}");
            }
            _ => assert_eq!(statuses, [503; 8]),
        }

        redis.restart();
        eventually(Duration::from_secs(10), || {
            models(&d, &t);
            redis
                .cli(&["--scan", "--pattern", "mlapi:rl:{u:*"])
                .lines()
                .count()
                == 1
        });
    }
}

/// Catalog R10: a Redis that stops answering (connections open, no replies)
/// costs a request at most `redis.timeout_ms`, then the breaker keeps it off
/// the request path until Redis answers again.
#[test]
fn a_stalled_redis_costs_at_most_the_command_timeout() {
    let redis = Redis::start();
    let d = Setup::new(&redis_config(&redis, "five", 5, "timeout_ms = 50")).start_process();
    let t = token(&d, "frank");
    assert_eq!(
        num(&models(&d, &t), "x-ratelimit-remaining"),
        4,
        "counted in Redis"
    );

    redis.signal("STOP");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        statuses.push(models(&d, &t).status);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100), "answered in {took:?}");
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "limited in process meanwhile"
    );

    redis.signal("CONT");
    // Redis still holds one request of five: passing again proves it decides.
    eventually(Duration::from_secs(10), || models(&d, &t).status == 200);
}

/// Concurrent checks share script calls (one atomic call decides up to 64
/// in the order they queued) and stay exact, per user, inside one call and
/// across the calls of one turn: while a `CLIENT PAUSE` holds the first
/// call, the rest queue up and go together.
#[test]
fn concurrent_checks_share_a_script_call_and_stay_exact() {
    let redis = Redis::start();
    let d = Setup::new(&redis_config(&redis, "ten", 10, "timeout_ms = 5000")).start();
    let (a, b) = (token(&d, "ada"), token(&d, "bob"));
    assert_eq!(models(&d, &b).status, 200, "warm: the script is loaded");
    redis.cli(&["CONFIG", "RESETSTAT"]);

    // Long enough for every request to reach the limiter on a busy machine,
    // short of the 5 s command deadline.
    redis.cli(&["CLIENT", "PAUSE", "1500", "ALL"]);
    // 70 requests by ada, who has 10 left, and 70 by bob, who has 9, all at
    // once (one thread each): more than one call's 64 checks queue up.
    // Bob's statuses are told apart by adding 1000.
    let barrier = std::sync::Barrier::new(140);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..140)
            .map(|i| {
                let (d, barrier, token) = (&d, &barrier, if i % 2 == 0 { &a } else { &b });
                s.spawn(move || {
                    barrier.wait();
                    models(d, token).status + if i % 2 == 0 { 0 } else { 1000 }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(count(&statuses, 200), 10, "ada: {statuses:?}");
    assert_eq!(count(&statuses, 429), 60, "ada: {statuses:?}");
    assert_eq!(count(&statuses, 1200), 9, "bob: {statuses:?}");
    assert_eq!(count(&statuses, 1429), 61, "bob: {statuses:?}");

    let stats = redis.cli(&["INFO", "commandstats"]);
    let calls: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no EVALSHA in {stats}"));
    // The first call (one check, held by the pause), then the other 139 in
    // calls of at most 64: at least 3 more, whether they queued in one turn
    // or a late thread made a turn of its own.
    assert!(
        (4..=6).contains(&calls),
        "140 checks in {calls} script calls"
    );
}

/// A bucket key holding another type (never written by mlapi) counts as an
/// empty bucket and is overwritten; it cannot fail the call it shares.
#[test]
fn a_bucket_of_the_wrong_type_counts_as_empty() {
    let redis = Redis::start();
    let d = Setup::new(&redis_config(&redis, "ten", 10, "")).start();
    let t = token(&d, "cyrus");
    assert_eq!(num(&models(&d, &t), "x-ratelimit-remaining"), 9);
    assert_eq!(num(&models(&d, &t), "x-ratelimit-remaining"), 8);
    let key = redis.cli(&["--scan", "--pattern", "mlapi:rl:{u:*"]);
    let key = key.trim();
    redis.cli(&["DEL", key]);
    redis.cli(&["RPUSH", key, "junk"]);

    let r = models(&d, &t);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(num(&r, "x-ratelimit-remaining"), 9, "a fresh bucket");
    assert_eq!(redis.cli(&["TYPE", key]).trim(), "string");
}
