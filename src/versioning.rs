//! API versions: which exist, how a request's version is resolved (path, then
//! `API-Version`/`Accept-Version` header, then `version` query parameter, then
//! the configured default), and the deprecation lifecycle operators manage
//! from the CLI (RFC 9745 `Deprecation`, RFC 8594 `Sunset`, 410 after it).
//!
//! Resolution is pure; lifecycle state lives in SQLite and, on a running
//! daemon, in the in-memory directory (reloaded within a second of a change).

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::params;
use serde::Serialize;

use crate::app::App;
use crate::audit::{self, Action, Actor};
use crate::error::{Error, FieldError, Result};
use crate::store;

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

/// One row of `mlapi version list`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: u8,
    /// `current`, `deprecated` or `sunset`.
    pub status: &'static str,
    pub default: bool,
    #[serde(serialize_with = "opt_time")]
    pub deprecated_at: Option<i64>,
    #[serde(serialize_with = "opt_time")]
    pub sunset: Option<i64>,
    pub successor: Option<u8>,
    pub link: Option<String>,
}

fn opt_time<S: serde::Serializer>(t: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::keys::format_time(*t)),
        None => s.serialize_none(),
    }
}

/// Every version-lifecycle row (there are at most a handful).
pub fn load_all(
    c: &rusqlite::Connection,
) -> std::result::Result<Vec<Lifecycle>, store::StoreError> {
    let mut stmt =
        c.prepare("SELECT version, deprecated_at, sunset_at, successor, link FROM api_versions")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Lifecycle {
                version: r.get(0)?,
                deprecated_at: r.get(1)?,
                sunset_at: r.get(2)?,
                successor: r.get(3)?,
                link: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Marks `version` deprecated with a sunset instant. A sunset in the past
/// retires the version at once (410). Deprecation never postdates the sunset
/// (RFC 9745 §4).
pub async fn deprecate(
    app: &Arc<App>,
    version: u8,
    sunset_at: i64,
    successor: Option<u8>,
    link: Option<String>,
    actor: &Actor,
) -> Result<Lifecycle> {
    let mut errors = Vec::new();
    if !SUPPORTED.contains(&version) {
        errors.push(FieldError::new(
            "version",
            format!("supported versions: {}", supported_list()),
        ));
    }
    if let Some(s) = successor {
        if !SUPPORTED.contains(&s) || s == version {
            errors.push(FieldError::new(
                "successor",
                format!("must be another supported version ({})", supported_list()),
            ));
        }
    }
    if let Some(l) = &link {
        if !(l.starts_with("https://") || l.starts_with("http://"))
            || l.contains(char::is_whitespace)
            || l.contains(['<', '>'])
        {
            errors.push(FieldError::new("link", "must be an http(s) URL"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let lifecycle = Lifecycle {
        version,
        deprecated_at: store::now().min(sunset_at),
        sunset_at,
        successor,
        link,
    };
    let (row, actor) = (lifecycle.clone(), actor.clone());
    app.blocking(move |app| {
        app.store.write(|tx| {
            let rev = store::bump_version(tx)?;
            tx.execute(
                "INSERT INTO api_versions (version, deprecated_at, sunset_at, successor, link, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (version) DO UPDATE SET
                   deprecated_at = min(api_versions.deprecated_at, excluded.sunset_at),
                   sunset_at = excluded.sunset_at, successor = excluded.successor, link = excluded.link, rev = excluded.rev",
                params![row.version, row.deprecated_at, row.sunset_at, row.successor, row.link, rev],
            )?;
            let detail = format!(
                "sunset {}, successor {}",
                crate::keys::format_time(row.sunset_at),
                row.successor.map_or("none".into(), |s| s.to_string())
            );
            audit::record(tx, &actor, Action::VersionDeprecate, Some(&format!("v{}", row.version)), true, Some(&detail))
        })
    })
    .await?;
    app.refresh_directory().await;
    Ok(lifecycle)
}

/// Makes `version` current again. Idempotent.
pub async fn undeprecate(app: &Arc<App>, version: u8, actor: &Actor) -> Result<()> {
    if !SUPPORTED.contains(&version) {
        return Err(Error::Invalid(vec![FieldError::new(
            "version",
            format!("supported versions: {}", supported_list()),
        )]));
    }
    let actor = actor.clone();
    app.blocking(move |app| {
        app.store.write(|tx| {
            if tx.execute("DELETE FROM api_versions WHERE version = ?1", [version])? > 0 {
                store::bump_version(tx)?;
                audit::record(
                    tx,
                    &actor,
                    Action::VersionUndeprecate,
                    Some(&format!("v{version}")),
                    true,
                    None,
                )?;
            }
            Ok(())
        })
    })
    .await?;
    app.refresh_directory().await;
    Ok(())
}

pub async fn list(app: &Arc<App>) -> Result<Vec<VersionInfo>> {
    let rows = app.blocking(|app| app.store.read(load_all)).await?;
    let now = store::now();
    let default = app.config.api.default_version();
    Ok(SUPPORTED
        .iter()
        .map(|v| {
            let row = rows.iter().find(|r| r.version == *v);
            VersionInfo {
                version: *v,
                status: status(row, now),
                default: *v == default,
                deprecated_at: row.map(|r| r.deprecated_at),
                sunset: row.map(|r| r.sunset_at),
                successor: row.and_then(|r| r.successor),
                link: row.and_then(|r| r.link.clone()),
            }
        })
        .collect())
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
