//! The vocabulary every layer shares, with no I/O: errors a service can
//! refuse with, roles and scopes, API versions, endpoint groups, time, and
//! the count of requests in flight.
//!
//! Must not import anything of the crate outside `core` (the dependency-rule
//! test in `layers` checks it), open files or sockets, or read the clock for
//! anything but `time::now`.

pub mod error;
pub mod groups;
pub mod metrics;
pub mod scopes;
pub mod time;
pub mod traffic;
pub mod versions;
