//! Roles and scopes: what each role may do, and the subset a credential carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Manager,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// Every scope the role grants.
    pub fn scopes(self) -> Scopes {
        use Scope::*;
        let base = [PredictRead, ModelsRead, JobsRead, JobsWrite, KeysWrite];
        let mut set = Scopes::from_iter(base);
        if self >= Role::Manager {
            set.insert(UsersRead);
            set.insert(MetricsRead);
        }
        if self == Role::Admin {
            set.insert(Admin);
        }
        set
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(Role::User),
            "manager" => Ok(Role::Manager),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role {s:?}; roles are admin, manager, user"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    PredictRead,
    ModelsRead,
    JobsRead,
    JobsWrite,
    KeysWrite,
    UsersRead,
    Admin,
    MetricsRead,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::PredictRead,
        Scope::ModelsRead,
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::KeysWrite,
        Scope::UsersRead,
        Scope::MetricsRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PredictRead => "predict:read",
            Scope::ModelsRead => "models:read",
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::KeysWrite => "keys:write",
            Scope::UsersRead => "users:read",
            Scope::MetricsRead => "metrics:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}"))
    }
}

/// A set of scopes (a bit set: checking one is a single AND on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// OAuth2's space-separated form.
    pub fn to_oauth(self) -> String {
        self.names().join(" ")
    }

    /// Parses space- or comma-separated scope names; every name must be known.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        text.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(Scope::from_str)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = Scopes::default();
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest() {
        assert!(Role::User.scopes().is_subset_of(Role::Manager.scopes()));
        assert!(Role::Manager.scopes().is_subset_of(Role::Admin.scopes()));
        assert!(!Role::User.scopes().contains(Scope::UsersRead));
        assert!(!Role::Manager.scopes().contains(Scope::Admin));
        assert!(Role::User.scopes().contains(Scope::PredictRead));
    }

    #[test]
    fn parse_and_print() {
        let s = Scopes::parse("predict:read models:read").unwrap();
        assert_eq!(s.to_oauth(), "predict:read models:read");
        assert_eq!(
            Scopes::parse("predict:read,admin").unwrap().names(),
            ["predict:read", "admin"]
        );
        assert!(Scopes::parse("predict:write").is_err());
        assert!(Scopes::parse("").unwrap().is_empty());
    }
}
