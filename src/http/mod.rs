//! The HTTP adapter. Every request goes through one pipeline
//! (`pipeline::handle`) and one route table (`routes::ROUTES`); handlers in
//! `handlers` are thin: they decode the request, call a library service,
//! and encode the answer. Business rules live in the service modules.

pub mod body;
pub mod conn;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod problem;
pub mod routes;
