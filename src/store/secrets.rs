//! Generated secrets (JWT signing keys, the API-key pepper): created on
//! first use next to the database with mode 0600, read back afterwards, and
//! refused when other users could read them.
//!
//! Never logs or prints a secret's value.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret file {path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("secret file {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Reads the secret at `path`, creating it from `generate` if it does not
/// exist. Creation is atomic (write a private temp file, then hard-link it
/// into place), so a daemon and a CLI starting together agree on one secret.
pub fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, SecretError> {
    let io = |e: std::io::Error| SecretError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !path.exists() {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&generate())
            .and_then(|_| file.sync_all())
            .map_err(io)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read(path).map_err(io)
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_reused_and_refused_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.key");
        let a = load_or_create(&path, || b"first".to_vec()).unwrap();
        let b = load_or_create(&path, || b"second".to_vec()).unwrap();
        assert_eq!(a, b"first");
        assert_eq!(b, b"first");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path, Vec::new).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
