//! Time as mlapi stores and shows it: unix seconds inside, RFC 3339 UTC
//! instants outside (JSON, tables, audit details). The one home for both.

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

/// Now, in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as an RFC 3339 UTC instant, for people and JSON alike.
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A UTC day number (unix seconds / 86 400) as `YYYY-MM-DD`.
pub fn utc_date(day: i64) -> String {
    let date = OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date())
        .unwrap_or(::time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// `#[serde(serialize_with = …)]` helpers: unix seconds as RFC 3339.
pub mod serde {
    pub fn rfc3339<S: ::serde::Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*secs))
    }

    pub fn rfc3339_opt<S: ::serde::Serializer>(
        secs: &Option<i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match secs {
            Some(secs) => s.serialize_str(&super::rfc3339(*secs)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_763_769_600), "2025-11-22T00:00:00Z");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(20_414), "2025-11-22");
    }
}
