//! The documentation against the program it documents: every
//! `telegraf-netstat` command line in README.md and docs/*.md is accepted by
//! the binary's own parser (flags, values, combinations), and every relative
//! link in them leads to a file of the source tree. The TLS recipe of
//! docs/tls.md is run whole by tests/tls.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_telegraf-netstat");

fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of the page's `sh` and `console` blocks, and the lines of
/// other blocks shown with a `$ ` prompt; continuation lines joined, the
/// prompt (`$ `, `# `) taken off.
fn command_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block: Option<bool> = None; // Some(is a command block)
    let mut pending = String::new();
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            in_block = match in_block {
                Some(_) => None,
                None => Some(matches!(lang.trim(), "sh" | "console")),
            };
            continue;
        }
        let line = line.trim();
        let line = match in_block {
            None => continue,
            // Output blocks: only the lines shown with a prompt.
            Some(false) => match line.strip_prefix("$ ") {
                Some(command) => command,
                None => continue,
            },
            Some(true) => line
                .strip_prefix("$ ")
                .or_else(|| line.strip_prefix("# "))
                .unwrap_or(line),
        };
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// The `telegraf-netstat` invocations of a shell line (the program as a
/// word of its own or as /usr/bin/telegraf-netstat, not a path or package
/// name holding the name), each up to the next `|`, `&`, `;` or redirection.
fn invocations(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("telegraf-netstat ") {
        let before = &line[..at];
        let before = before.strip_suffix("/usr/bin/").unwrap_or(before);
        if !(before.is_empty() || before.ends_with(' ')) {
            continue;
        }
        let call = &line[at..];
        let end = call.find(['|', '&', ';', '>', '<']).unwrap_or(call.len());
        found.push(call[..end].trim().to_string());
    }
    found
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for line in command_lines(&text) {
            for call in invocations(&line) {
                // The parser checks flags and values, then --version stops it
                // before anything runs (no socket is opened, nothing served).
                let out = Command::new("bash")
                    .args([
                        "-c",
                        "telegraf-netstat() { \"$0\" \"$@\" --version; }; eval \"$1\"",
                    ])
                    .arg(BIN)
                    .arg(&call)
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success()
                        && String::from_utf8_lossy(&out.stdout).starts_with("telegraf-netstat "),
                    "{}: `{call}` is refused: {stderr}",
                    page.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} command lines found");
}

#[test]
fn every_relative_link_leads_to_a_file() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let target = &target[..target.find(')').unwrap()];
            let path = target.split('#').next().unwrap();
            if path.is_empty() || path.starts_with("http://") || path.starts_with("https://") {
                continue;
            }
            let resolved = page.parent().unwrap().join(path);
            assert!(
                resolved.exists(),
                "{} links to {target}, which does not exist",
                page.display()
            );
        }
    }
}

#[test]
fn the_readme_fits_on_a_few_screens() {
    let readme = std::fs::read_to_string(&pages()[0]).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move detail to docs/"
    );
}
