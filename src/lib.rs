//! mlapi: a machine-learning model behind a production HTTP API, and the
//! operator CLI that manages the same state.
//!
//! The library holds all logic; `src/bin/mlapi.rs` only parses arguments and
//! calls [`cli::main`]. See ARCHITECTURE.md for the map.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod flushes;
pub mod http;
pub mod keys;
pub mod logging;
pub mod models;
pub mod ratelimit;
pub mod remote;
pub mod secrets;
pub mod server;
pub mod store;
pub mod users;
pub mod versioning;

/// A hash map for the request path whose keys a client cannot choose in
/// bulk (server-made ids, digests keyed with the pepper, config names):
/// foldhash with a per-process random seed instead of SipHash, which cost
/// about 5 % of a cached prediction. Maps a client can fill with keys of its
/// choosing (the rate limiter's buckets, keyed partly by client address)
/// keep the standard library's SipHash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
