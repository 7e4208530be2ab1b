//! Serving: what the daemon answers with and how much of it each caller
//! gets. The model registry and inference (`models`), the prediction cache
//! (`cache`) and operator flushes of it (`flushes`), rate limits
//! (`ratelimit`), the one Redis link both share (`remote`), and the API
//! versions' deprecation lifecycle (`versions`), the client side of
//! upstream model servers (`upstream`), batch jobs (`jobs`) and their live
//! events (`events`).
//!
//! Must not know HTTP, the CLI, `App` or accounts (identity); it builds on
//! `core`, `config` and `store` only.

pub mod cache;
pub mod events;
pub mod flushes;
pub mod jobs;
pub mod models;
pub mod ratelimit;
pub mod remote;
pub mod upstream;
pub mod versions;
