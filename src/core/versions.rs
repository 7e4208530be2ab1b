//! API versions: which exist, how a request's version is resolved (path, then
//! `API-Version`/`Accept-Version` header, then `version` query parameter, then
//! the configured default), what a deprecated version's lifecycle is, and the
//! headers it adds (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).
//!
//! All pure. The lifecycle's SQLite rows and the operator's commands are
//! `serving::versions`.

use std::borrow::Cow;

use serde::Serialize;

/// The API's major versions.
pub const SUPPORTED: [u8; 2] = [1, 2];
/// Routes whose v2 differs from v1; every other v1 route is also served under /api/v2/.
const V2_ROUTES: [&str; 1] = ["predict"];

/// `1`, `1.0`, `v1`, `V2`, `2.0` → the major version, if supported.
pub fn parse(text: &str) -> Option<u8> {
    let t = text.trim();
    let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
    let t = t.strip_suffix(".0").unwrap_or(t);
    t.parse::<u8>().ok().filter(|v| SUPPORTED.contains(v))
}

pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request's version and the path the routes serve it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub version: u8,
    /// The path the route table serves (v2 reuses v1's unchanged routes);
    /// borrowed from the request path when that is already it, the usual case.
    pub route_path: Cow<'a, str>,
    /// The part after `/api/v<n>/`.
    pub rest: &'a str,
}

/// Resolves `path` (`/api/…` or `/predict`). `Ok(None)`: not an API path.
/// `Err(text)`: the version asked for is not supported (400).
pub fn resolve<'a>(
    path: &'a str,
    header: Option<&str>,
    query_version: Option<&str>,
    default: u8,
) -> std::result::Result<Option<Resolved<'a>>, String> {
    let unknown = |v: &str| {
        format!(
            "unsupported API version {v:?}; supported versions: {}",
            supported_list()
        )
    };
    // `spelled`: the path names the version exactly as the route table does.
    let (explicit, rest, spelled) = if path == "/predict" {
        (None, "predict", false)
    } else if let Some(rest) = path.strip_prefix("/api/") {
        let (first, tail, slash) = match rest.split_once('/') {
            Some((first, tail)) => (first, tail, true),
            None => (rest, "", false),
        };
        let is_version = first.len() >= 2
            && first.starts_with(['v', 'V'])
            && first[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if is_version {
            let v = parse(first).ok_or_else(|| unknown(first))?;
            (Some(v), tail, slash && first.as_bytes() == [b'v', b'0' + v])
        } else {
            (None, rest, false)
        }
    } else {
        return Ok(None);
    };
    let version = match explicit {
        Some(v) => v,
        None => match (header, query_version) {
            (Some(h), _) => parse(h).ok_or_else(|| unknown(h))?,
            (None, Some(q)) => parse(q).ok_or_else(|| unknown(q))?,
            (None, None) => default,
        },
    };
    let route_version = if version == 2 && !V2_ROUTES.contains(&rest) {
        1
    } else {
        version
    };
    let route_path = if spelled && version == route_version {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/api/v{route_version}/{rest}"))
    };
    Ok(Some(Resolved {
        version,
        route_path,
        rest,
    }))
}

/// A deprecated version's lifecycle.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lifecycle {
    pub version: u8,
    pub deprecated_at: i64,
    pub sunset_at: i64,
    pub successor: Option<u8>,
    pub link: Option<String>,
}

pub fn status(row: Option<&Lifecycle>, now: i64) -> &'static str {
    match row {
        None => "current",
        Some(r) if r.sunset_at <= now => "sunset",
        Some(_) => "deprecated",
    }
}

/// Headers for a response of a deprecated (not yet sunset) version.
pub fn deprecation_headers(l: &Lifecycle, resolved: &Resolved<'_>) -> Vec<(&'static str, String)> {
    let sunset = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(l.sunset_at.max(0) as u64),
    );
    let mut headers = vec![
        ("deprecation", format!("@{}", l.deprecated_at)),
        ("sunset", sunset.clone()),
        ("x-api-deprecation", "true".to_string()),
        ("x-api-sunset", sunset),
    ];
    let mut links = Vec::new();
    if let Some(s) = l.successor {
        let replacement = format!("/api/v{s}/{}", resolved.rest);
        links.push(format!("<{replacement}>; rel=\"successor-version\""));
        headers.push(("x-api-replacement", replacement));
    }
    if let Some(link) = &l.link {
        links.push(format!("<{link}>; rel=\"deprecation\"; type=\"text/html\""));
    }
    if !links.is_empty() {
        headers.push(("link", links.join(", ")));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        for (text, v) in [
            ("1", 1),
            ("1.0", 1),
            ("v1", 1),
            ("V2", 2),
            ("2.0", 2),
            (" 2 ", 2),
        ] {
            assert_eq!(parse(text), Some(v), "{text}");
        }
        for bad in ["3", "v3", "1.1", "one", "", "v"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolution_order() {
        let r = |path, h, q| resolve(path, h, q, 1).unwrap().unwrap();
        assert_eq!(
            r("/api/v2/predict", Some("1"), None).version,
            2,
            "the path wins"
        );
        assert_eq!(
            r("/api/predict", Some("2.0"), Some("1")).version,
            2,
            "header before query"
        );
        assert_eq!(r("/api/predict", None, Some("v2")).version, 2);
        assert_eq!(r("/api/predict", None, None).version, 1, "the default");
        assert_eq!(r("/predict", Some("2"), None).route_path, "/api/v2/predict");
        let me = r("/api/users/me", Some("2"), None);
        assert_eq!(
            (me.route_path.as_ref(), me.version, me.rest),
            ("/api/v1/users/me", 2, "users/me")
        );
        assert!(matches!(
            r("/api/v1/predict", None, None).route_path,
            Cow::Borrowed("/api/v1/predict")
        ));
        assert_eq!(
            r("/api/V1/predict", None, None).route_path,
            "/api/v1/predict"
        );
        assert_eq!(
            r("/api/v1.0/predict", None, None).route_path,
            "/api/v1/predict"
        );
        assert_eq!(
            r("/api/v2/users/me", None, None).route_path,
            "/api/v1/users/me"
        );
        assert_eq!(r("/api/v1", None, None).route_path, "/api/v1/");
        assert!(resolve("/api/v3/predict", None, None, 1).is_err());
        assert!(resolve("/api/predict", Some("7"), None, 1)
            .unwrap_err()
            .contains("1, 2"));
        assert_eq!(resolve("/health", Some("7"), None, 1).unwrap(), None);
    }
}
