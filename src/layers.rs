//! The dependency rule, as a test: layers point one way.
//!
//! - `core` imports nothing of the crate but `core`;
//! - `config` and `logging` import only `core` and `config`;
//! - `store` imports only `core` and `config`;
//! - a service (`identity`, `serving`) imports only `core`, `config`, `store`
//!   and itself: never another service, `app` or an adapter;
//! - `app` imports everything but the adapters;
//! - the adapters (`http`, `cli`, `daemon`) may import anything.
//!
//! So only adapters import the `app` module. Every `crate::<module>` path in
//! `src/` counts, in `use` lines (grouped ones too) and inline; comments
//! and string literals do not.

use std::path::{Path, PathBuf};

/// What each top-level module may import, besides itself. `None`: anything.
fn allowed(module: &str) -> Option<Option<&'static [&'static str]>> {
    const LEAF: &[&str] = &["core", "config"];
    const SERVICE: &[&str] = &["core", "config", "store"];
    const APP: &[&str] = &["core", "config", "store", "identity", "serving"];
    Some(match module {
        "core" => Some(&[]),
        "config" | "logging" | "store" => Some(LEAF),
        "identity" | "serving" => Some(SERVICE),
        "app" => Some(APP),
        "http" | "cli" | "daemon" => None,
        _ => return None,
    })
}

/// The top-level modules of the crate (`src/<name>.rs` or `src/<name>/`).
const MODULES: &[&str] = &[
    "core", "config", "logging", "store", "identity", "serving", "app", "http", "cli", "daemon",
];

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name");
        let module = first.strip_suffix(".rs").unwrap_or(first);
        if matches!(module, "lib" | "layers" | "bin") {
            continue;
        }
        let Some(rule) = allowed(module) else {
            violations.push(format!(
                "src/{}: top-level module `{module}` has no layer; add it to `layers`",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (line, target) in crate_paths(&text) {
            let known = MODULES.contains(&target.as_str());
            let ok = match rule {
                _ if target == module || !known => true,
                None => true,
                Some(may) => may.contains(&target.as_str()),
            };
            if !ok {
                violations.push(format!(
                    "src/{}:{line}: `{module}` must not import `crate::{target}`",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

/// A path like `crate::identity::keys` names a layer the rule knows; a
/// top-level item (`crate::FastMap`) is no layer and always allowed.
#[test]
fn the_scanner_sees_every_form_of_path() {
    // Written with `CRATE` for `crate`, so that this file itself names no
    // layer (greps for imports of the app stay clean); swapped back here.
    let text = r##"
use CRATE::app::App;
use CRATE::{config::Config, store::{self, Store}};
// use CRATE::http::comment;
/* CRATE::cli in a block comment */
let s = "CRATE::daemon in a string";
let c = 'c';
fn f<'a>(x: &'a str) -> &'a str { CRATE::serving::models::names(x) }
let m = $CRATE::not_ours;
let r = r#"CRATE::identity"#;
let b = br#"CRATE::cli"#;
"##
    .replace("CRATE", "crate");
    let found: Vec<(usize, String)> = crate_paths(&text);
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["app", "config", "store", "serving"]);
    assert_eq!(found[0].0, 2);
    assert_eq!(found[3].0, 8);
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The first segment after each `crate::` in code (grouped imports give one
/// per item), with its 1-based line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let code = strip_comments_and_strings(text);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b == b'$' || b == b'_' || b.is_ascii_alphanumeric()) {
            continue;
        }
        let line = 1 + code[..start].matches('\n').count();
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                let name = identifier(item.trim_start());
                if !name.is_empty() && name != "self" {
                    found.push((line, name.to_string()));
                }
            }
        } else {
            let name = identifier(rest);
            if !name.is_empty() {
                found.push((line, name.to_string()));
            }
        }
    }
    found
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(text.len());
    &text[..end]
}

/// The comma-separated items of a `{…}` group (after its `{`), up to its `}`.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// `text` with comments and the contents of string and char literals
/// blanked out; newlines stay, so line numbers do not move.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && raw_prefix(&chars, i) {
            // A raw string: r"…", r#"…"#, br#"…"#, with any number of #.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            out.extend(std::iter::repeat_n(' ', j + 1 - i));
            i = j + 1;
            while i < chars.len() && !chars[i..].starts_with(&close) {
                out.push(blank(chars[i]));
                i += 1;
            }
            out.extend(std::iter::repeat_n(' ', close.len()));
            i += close.len();
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let skip = if chars[i] == '\\' { 2 } else { 1 };
                for k in 0..skip {
                    if let Some(&ch) = chars.get(i + k) {
                        out.push(blank(ch));
                    }
                }
                i += skip;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x' or '\n'); a lifetime ('a) has no closing quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.extend(std::iter::repeat_n(' ', j + 1 - i));
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` can start a raw string (`r"`, `br#"`) rather than
/// end an identifier; a raw identifier (`r#type`) is told apart by the
/// caller, which needs a `"` after the `#`s.
fn raw_prefix(chars: &[char], i: usize) -> bool {
    let ident = |k: usize| chars[k] == '_' || chars[k].is_alphanumeric();
    match i {
        0 => true,
        1 => !ident(0) || chars[0] == 'b',
        _ => !ident(i - 1) || (chars[i - 1] == 'b' && !ident(i - 2)),
    }
}
