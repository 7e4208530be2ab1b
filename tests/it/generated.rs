//! The committed completions/ and man/ must match the CLI. After changing the
//! CLI, regenerate them with `UPDATE_GENERATED=1 cargo test --test it generated`.

use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn completions_and_man_pages_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        for dir in ["completions", "man"] {
            let _ = std::fs::remove_dir_all(root.join(dir));
        }
        mlapi::cli::write_generated_files(root).unwrap();
    }
    let fresh = tempfile::tempdir().unwrap();
    mlapi::cli::write_generated_files(fresh.path()).unwrap();
    for dir in ["completions", "man"] {
        let committed = files(&root.join(dir));
        let generated = files(&fresh.path().join(dir));
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&generated),
            "{dir}/ is out of date: run UPDATE_GENERATED=1 cargo test --test it generated"
        );
        for ((name, a), (_, b)) in committed.iter().zip(&generated) {
            assert!(
                a == b,
                "{dir}/{name} is out of date: run UPDATE_GENERATED=1 cargo test --test it generated"
            );
        }
    }
    assert!(root.join("man/mlapi-serve.1").exists());
    assert!(root.join("completions/_mlapi").exists());
}
