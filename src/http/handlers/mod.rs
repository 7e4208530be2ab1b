//! The handlers the route table (`http::routes`) points at. Each decodes
//! its request (body, query, path parameters), calls a library service and
//! encodes the answer; credential, scope and rate limit were checked by the
//! pipeline before it runs.

pub mod debug;
pub mod docs;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod models;
pub mod oip;
pub mod ops;
pub mod ws;

use http::StatusCode;

use super::problem::Response;

pub(super) fn no_content() -> Response {
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
