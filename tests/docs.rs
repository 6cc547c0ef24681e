//! The documentation against the program it documents (issue 34). Every
//! `telegraf-netstat` command line in README.md and docs/*.md (the lines of
//! `sh` and `console` blocks, the lines after a `$ ` prompt in other blocks,
//! and inline code that calls the program) is:
//!
//! - **run as written** when it is a one-shot command that only prints:
//!   with `bash`, `telegraf-netstat` being the binary under test, in a
//!   private network, PID and mount namespace (its own /proc, an empty
//!   /run/netns), so `--all-netns` and every count see nothing of the
//!   machine. It must exit 0, and every measurement of the output shown
//!   under it must be among the measurements it prints. `--execd` fed by
//!   `echo |` is one-shot too, and must print one gather;
//! - **parsed only** (the binary's own parser, stopped by `--version` before
//!   anything runs) when running it here would not end or would need what
//!   only the reader has: `--listen`/`--web.listen-address`/
//!   `--web.systemd-socket` serve until stopped, and `--execd` and
//!   `--interval` loop (tests/serve.rs and tests/execd.rs run those modes);
//!   `--output` writes a file the reader names; `--web.config.file` names a
//!   file with certificates and hashes that only the TLS recipe makes
//!   (tests/tls.rs runs that recipe, and the version 3 client certificate
//!   recipe, from docs/tls.md as written); an absolute path that does not
//!   exist here (`--netns /run/netns/blue`) names the reader's machine.
//!
//! Every relative link in those pages leads to a file of the source tree,
//! and the README stays at 300 lines or fewer.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::Arguments;
use support::*;

/// A documented invocation: its page, the call as written (up to the next
/// `|`, `&`, `;` or redirection), whether `echo |` feeds its stdin, and the
/// output lines shown under it.
struct Documented {
    page: PathBuf,
    call: String,
    fed: bool,
    shown: Vec<String>,
}

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

/// The lines of the page's `sh` and `console` blocks, the lines of other
/// blocks shown with a `$ ` prompt, and the inline code of the text that
/// calls the program (`echo | telegraf-netstat --execd`); continuation lines
/// joined, the prompt (`$ `, `# `) taken off. Each with the lines an output
/// block shows after it, up to the next prompt.
fn command_lines(text: &str) -> Vec<(String, Vec<String>)> {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_block: Option<bool> = None; // Some(is a command block)
    let mut pending = String::new();
    let mut after_prompt = false;
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            in_block = match in_block {
                Some(_) => None,
                None => Some(matches!(lang.trim(), "sh" | "console")),
            };
            after_prompt = false;
            continue;
        }
        let line = line.trim();
        let line = match in_block {
            None => {
                lines.extend(inline_calls(line).map(|c| (c, Vec::new())));
                continue;
            }
            // Output blocks: only the lines shown with a prompt, and what
            // follows them.
            Some(false) => match line.strip_prefix("$ ") {
                Some(command) => command,
                None => {
                    if let (true, Some(last)) = (after_prompt, lines.last_mut()) {
                        last.1.push(line.to_string());
                    }
                    continue;
                }
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
                lines.push((std::mem::take(&mut pending), Vec::new()));
                after_prompt = in_block == Some(false);
            }
        }
    }
    lines
}

/// The inline code spans of a line of text that call `telegraf-netstat`,
/// with a table's `\|` read as `|`.
fn inline_calls(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| !invocations(span).is_empty())
        .map(|span| span.replace("\\|", "|"))
}

/// The `telegraf-netstat` invocations of a shell line (the program as a
/// word of its own or as /usr/bin/telegraf-netstat, not a path or package
/// name holding the name), each up to the next `|`, `&`, `;` or redirection,
/// and whether `echo |` feeds it.
fn invocations(line: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("telegraf-netstat ") {
        let before = &line[..at];
        let before = before.strip_suffix("/usr/bin/").unwrap_or(before);
        if !(before.is_empty() || before.ends_with(' ')) {
            continue;
        }
        let call = &line[at..];
        let end = call.find(['|', '&', ';', '>', '<']).unwrap_or(call.len());
        let fed = before.trim_end().ends_with("echo |");
        found.push((call[..end].trim().to_string(), fed));
    }
    found
}

/// Every documented invocation of every page.
fn documented() -> Vec<Documented> {
    let mut all = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, shown) in command_lines(&text) {
            for (call, fed) in invocations(&line) {
                all.push(Documented {
                    page: page.clone(),
                    call,
                    fed,
                    shown: shown.clone(),
                });
            }
        }
    }
    all
}

/// Why `call` is parsed only, not run (see the module's doc); `None` for a
/// one-shot command that only prints, or `--execd` fed by `echo |`.
fn parsed_only(call: &str, fed: bool) -> Option<&'static str> {
    const NOT_RUN: [(&str, &str); 7] = [
        ("--listen", "it serves until stopped"),
        ("--web.listen-address", "it serves until stopped"),
        ("--web.systemd-socket", "it serves until stopped"),
        ("--execd", "it loops until stdin ends"),
        ("--interval", "it loops until stopped"),
        ("--output", "it writes a file the reader names"),
        (
            "--web.config.file",
            "its web config is made by the TLS recipe, which tests/tls.rs runs",
        ),
    ];
    let words: Vec<&str> = call.split_whitespace().collect();
    for (flag, why) in NOT_RUN {
        let given =
            |w: &&str| *w == flag || w.strip_prefix(flag).is_some_and(|r| r.starts_with('='));
        if words.iter().any(given) && !(flag == "--execd" && fed) {
            return Some(why);
        }
    }
    let absent = |w: &&str| {
        let path = w.split_once('=').map_or(*w, |(_, v)| v);
        path.starts_with('/') && !Path::new(path).exists()
    };
    words
        .iter()
        .any(absent)
        .then_some("it names a path of the reader's machine")
}

fn every_documented_command_line_parses() {
    let mut checked = 0;
    for Documented { page, call, .. } in documented() {
        // The parser checks flags and values, then --version stops it before
        // anything runs (no socket is opened, nothing served).
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
    assert!(checked >= 8, "only {checked} command lines found");
}

/// The measurements of line-protocol output (the text before the first
/// `,` or space of each line); log lines (`E! ` ...) left out.
fn measurements(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| {
            !["E! ", "W! ", "I! ", "D! "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| l.split([',', ' ']).next())
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs `call` as written in a private network, PID and mount namespace:
/// its own /proc (`unshare --mount-proc`), /run/netns an empty tmpfs.
/// `echo |` feeds it when the page does.
fn run_isolated(call: &str, fed: bool) -> std::process::Output {
    let call = match fed {
        true => format!("echo | {call}"),
        false => call.to_string(),
    };
    in_netns(move || {
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "bash", "-c"])
            .arg(
                r#"set -e
                   if [ -d /run/netns ]; then mount -t tmpfs tmpfs /run/netns; fi
                   bin=$1
                   telegraf-netstat() { timeout 60 "$bin" "$@"; }
                   eval "$2""#,
            )
            .args(["_", BIN, &call])
            .env_remove("HOST_PROC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
}

fn every_one_shot_documented_command_runs() {
    let mut ran = Vec::new();
    for Documented {
        page,
        call,
        fed,
        shown,
    } in documented()
    {
        if let Some(why) = parsed_only(&call, fed) {
            eprintln!("parsed only, {why}: {call}");
            continue;
        }
        let out = run_isolated(&call, fed);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = format!(
            "{}: `{call}`: {:?}\n{stdout}\n{}",
            page.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && !stdout.is_empty(), "{said}");
        let printed = measurements(&stdout.lines().collect::<Vec<_>>());
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        for m in measurements(&shown) {
            assert!(printed.contains(&m), "{m} shown, not printed: {said}");
        }
        // `echo | telegraf-netstat --execd` prints one gather (the pages
        // say so).
        let gathers = printed.iter().filter(|m| *m == "netstat").count();
        assert!(!fed || gathers == 1, "{gathers} gathers: {said}");
        eprintln!("run as written: {}{call}", if fed { "echo | " } else { "" });
        ran.push(call);
    }
    // --by-cgroup, --all-netns, --all-netns --counters --only counters,
    // --version, echo | --execd.
    assert!(ran.len() >= 5, "only {} commands run: {ran:?}", ran.len());
}

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

fn the_readme_fits_on_a_few_screens() {
    let readme = std::fs::read_to_string(&pages()[0]).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move detail to docs/"
    );
}

fn main() {
    let args = Arguments::from_args();
    // Only the run needs namespaces and the tools it runs through.
    let isolated = namespace_setup().and_then(|()| {
        tools_on_path(&[
            ("unshare", "util-linux"),
            ("timeout", "coreutils"),
            ("bash", "bash"),
        ])
    });
    let tests = tests![
        every_documented_command_line_parses,
        every_one_shot_documented_command_runs,
        every_relative_link_leads_to_a_file,
        the_readme_fits_on_a_few_screens,
    ];
    run_trials_needing(
        args,
        Ok(()),
        named("docs", &tests),
        &[("every_one_shot_documented_command_runs", isolated)],
    );
}
