//! Endpoint groups: the parts of the API a tier may limit separately
//! (`[tiers.<tier>.endpoints.<group>]`), named once for the route table,
//! the rate limiter and config validation.

/// An endpoint group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    Predict,
    Jobs,
    Models,
    Auth,
    Admin,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Predict,
        Group::Jobs,
        Group::Models,
        Group::Auth,
        Group::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Predict => "predict",
            Group::Jobs => "jobs",
            Group::Models => "models",
            Group::Auth => "auth",
            Group::Admin => "admin",
        }
    }

    /// The group a config key names.
    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str() == name)
    }
}
