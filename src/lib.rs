//! mlapi: a machine-learning model behind a production HTTP API, and the
//! operator CLI that manages the same state.
//!
//! The library holds all logic; `src/bin/mlapi.rs` only parses arguments and
//! calls [`cli::main`]. The modules form layers that point one way (see
//! ARCHITECTURE.md; `layers` tests the rule):
//!
//! - leaves: `core` (errors, scopes, API versions, endpoint groups, time),
//!   `config`, `logging`;
//! - `store`: SQLite, the audit log, generated secret files;
//! - services: `identity`, `serving`;
//! - `app`: assembles the services from the config;
//! - adapters: `http`, `cli`, `daemon`.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod http;
pub mod identity;
pub mod logging;
pub mod serving;
pub mod store;

#[cfg(test)]
mod layers;

/// A hash map for the request path whose keys a client cannot choose in
/// bulk (server-made ids, digests keyed with the pepper, config names):
/// foldhash with a per-process random seed instead of SipHash, which is
/// measurably slower on the hot path. Maps a client can fill with keys of its
/// choosing (the rate limiter's buckets, keyed partly by client address)
/// keep the standard library's SipHash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
