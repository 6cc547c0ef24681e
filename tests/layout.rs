//! ARCHITECTURE.md's rules about the source, checked on the source: the
//! library's modules import only modules listed before them in its table,
//! and the encoders and `rows` spell no measurement's name.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The library modules in the order of ARCHITECTURE.md's first table (a row
/// may name several, `kept` or `` `args`, `values` ``).
fn listed() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let table = text
        .split("| module | owns |")
        .nth(1)
        .expect("the library's table");
    let mut out = Vec::new();
    for line in table.lines().skip(2) {
        let Some(first) = line.strip_prefix("| ").and_then(|l| l.split(" |").next()) else {
            break;
        };
        for name in first.split(", ") {
            out.push(name.split('`').nth(1).unwrap().to_string());
        }
    }
    out
}

/// A file's text without its unit tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file of module `name` (a file or a directory, walked
/// down), but test-only helper modules.
fn files(name: &str) -> Vec<std::path::PathBuf> {
    let src = Path::new(ROOT).join("src");
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("testing.rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn library_modules_import_only_those_listed_before_them() {
    let order = listed();
    assert!(order.len() > 15, "{order:?}");
    for (i, name) in order.iter().enumerate() {
        let before: BTreeSet<&str> = order[..i].iter().map(String::as_str).collect();
        for file in files(name) {
            let text = code(&file);
            for used in text.split("crate::").skip(1) {
                let used: String = used
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    used == *name || before.contains(used.as_str()),
                    "{} imports crate::{used}, listed after it (or not at all)",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn encoders_and_rows_spell_no_measurement() {
    let mut checked = 0;
    for name in ["output", "rows", "metric"] {
        for file in files(name) {
            let text = code(&file);
            assert!(
                !text.contains("\"netstat"),
                "{} spells a measurement's name",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}
