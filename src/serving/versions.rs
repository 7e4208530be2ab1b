//! The deprecation lifecycle of API versions as operators manage it
//! (`mlapi version …`): the `api_versions` rows with their audit rows, and
//! each process's in-memory copy that the request path reads, reloaded
//! whenever the state version moves (within a second of a change, like the
//! identity directory).
//!
//! What a version is and how a request's version resolves are pure and live
//! in `core::versions`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::params;
use serde::Serialize;

use crate::core::error::{Error, FieldError, Result};
use crate::core::time::{self, serde::rfc3339_opt};
use crate::core::versions::{status, supported_list, Lifecycle, SUPPORTED};
use crate::store::audit::{self, Action, Actor, Outcome};
use crate::store::{self, Store, StoreError};

/// One row of `mlapi version list`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: u8,
    /// `current`, `deprecated` or `sunset`.
    pub status: &'static str,
    pub default: bool,
    #[serde(serialize_with = "rfc3339_opt")]
    pub deprecated_at: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub sunset: Option<i64>,
    pub successor: Option<u8>,
    pub link: Option<String>,
}

/// The deprecated versions as of one state version.
struct Snapshot {
    /// The state version they were loaded at; `None` before the first load.
    version: Option<i64>,
    /// At most a few, so reloaded whole.
    lifecycles: Vec<Lifecycle>,
}

/// The lifecycle service: API-version deprecations in SQLite and in memory.
pub struct Versions {
    store: Store,
    /// The version unversioned paths get (`api.default_version`).
    default: u8,
    snapshot: RwLock<Snapshot>,
    refreshing: Mutex<()>,
    /// Whether any API version is deprecated: asked on every request, and
    /// almost always `false`, so that answer takes no lock.
    any_deprecated: AtomicBool,
}

impl Versions {
    /// Loads the lifecycles from `store`. Blocking.
    pub fn open(store: Store, default: u8) -> std::result::Result<Self, StoreError> {
        let versions = Versions {
            store,
            default,
            snapshot: RwLock::new(Snapshot {
                version: None,
                lifecycles: Vec::new(),
            }),
            refreshing: Mutex::new(()),
            any_deprecated: AtomicBool::new(false),
        };
        versions.refresh_blocking()?;
        Ok(versions)
    }

    /// The lifecycle of a deprecated API version; `None`: current.
    pub fn lifecycle(&self, version: u8) -> Option<Lifecycle> {
        if !self.any_deprecated.load(Ordering::Acquire) {
            return None;
        }
        let s = self.snapshot.read().expect("versions lock");
        s.lifecycles.iter().find(|l| l.version == version).cloned()
    }

    /// Reloads the lifecycles when the state version moved. Blocking (SQLite).
    pub fn refresh_blocking(&self) -> std::result::Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().expect("versions refresh lock");
        let since = self.snapshot.read().expect("versions lock").version;
        let changed = self.store.read(|c| -> std::result::Result<_, StoreError> {
            let version = store::current_version(c)?;
            if Some(version) == since {
                return Ok(None);
            }
            Ok(Some((version, load_all(c)?)))
        })?;
        if let Some((version, lifecycles)) = changed {
            let mut s = self.snapshot.write().expect("versions lock");
            self.any_deprecated
                .store(!lifecycles.is_empty(), Ordering::Release);
            *s = Snapshot {
                version: Some(version),
                lifecycles,
            };
        }
        Ok(())
    }

    /// [`Versions::refresh_blocking`] on the blocking pool. A failure is
    /// logged and retried by the next refresh; the old lifecycles stay.
    pub async fn refresh(self: &Arc<Self>) {
        let this = Arc::clone(self);
        if let Err(e) = store::blocking(move || this.refresh_blocking()).await {
            tracing::warn!(error = %e, "API version refresh failed; will retry");
        }
    }

    /// Marks `version` deprecated with a sunset instant. A sunset in the past
    /// retires the version at once (410). Deprecation never postdates the sunset
    /// (RFC 9745 §4).
    pub async fn deprecate(
        self: &Arc<Self>,
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
            deprecated_at: time::now().min(sunset_at),
            sunset_at,
            successor,
            link,
        };
        let (row, actor) = (lifecycle.clone(), actor.clone());
        self.store.run_blocking(move |store| {
            store.write(|tx| -> Result<_> {
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
                    time::rfc3339(row.sunset_at),
                    row.successor.map_or("none".into(), |s| s.to_string())
                );
                audit::record(tx, &actor, Action::VersionDeprecate, Some(&format!("v{}", row.version)), Outcome::Success, Some(&detail))?;
                Ok(())
            })
        })
        .await?;
        self.refresh().await;
        Ok(lifecycle)
    }

    /// Makes `version` current again. Idempotent.
    pub async fn undeprecate(self: &Arc<Self>, version: u8, actor: &Actor) -> Result<()> {
        if !SUPPORTED.contains(&version) {
            return Err(Error::Invalid(vec![FieldError::new(
                "version",
                format!("supported versions: {}", supported_list()),
            )]));
        }
        let actor = actor.clone();
        self.store
            .run_blocking(move |store| {
                store.write(|tx| -> Result<_> {
                    if tx.execute("DELETE FROM api_versions WHERE version = ?1", [version])? > 0 {
                        store::bump_version(tx)?;
                        audit::record(
                            tx,
                            &actor,
                            Action::VersionUndeprecate,
                            Some(&format!("v{version}")),
                            Outcome::Success,
                            None,
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// Every supported version with its lifecycle, read from SQLite (not the
    /// in-memory copy: the CLI wants what is stored).
    pub async fn list(&self) -> Result<Vec<VersionInfo>> {
        let rows = self
            .store
            .run_blocking(|store| store.read(load_all))
            .await?;
        let now = time::now();
        let default = self.default;
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
}

/// Every version-lifecycle row (there are at most a handful).
fn load_all(c: &rusqlite::Connection) -> std::result::Result<Vec<Lifecycle>, StoreError> {
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
