//! Integration tests: the real `mlapi` binary, real HTTP over loopback, a real
//! SQLite file and a throwaway redis-server. One test binary, so the daemon
//! binary is built once and shared.

mod harness;

mod cache;
mod cli;
mod contract;
mod docs;
mod generated;
mod http;
mod identity;
mod jobs;
mod keys;
mod lifecycle;
mod metrics;
mod oip;
mod pipeline;
mod predict;
mod ratelimit;
mod store;
mod upstream;
mod versioning;
mod ws;
