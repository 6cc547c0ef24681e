//! The documentation against the program it documents (issue 34). Every
//! `telegraf-netstat` command line in README.md and docs/*.md (the lines of
//! `sh` and `console` blocks, the lines after a `$ ` prompt in other blocks,
//! and inline code that calls the program) is parsed by the binary's own
//! parser (stopped by `--version` before anything runs), and **run as
//! written** with `bash`, `telegraf-netstat` being the binary under test, in
//! a private network, PID and mount namespace (its own /proc, an empty
//! /run/netns, `/etc` an overlay whose writes go to a tmpfs), so
//! `--all-netns` and every count see nothing of the machine:
//!
//! - a one-shot command that only prints must exit 0, and every measurement
//!   of the output shown under it must be among the measurements it prints;
//!   `--execd` fed by `echo |` is one-shot too, and must print one gather;
//! - a long-running one runs until it shows it is up, then gets SIGTERM and
//!   must exit 0: `--listen`/`--web.listen-address` until a scrape of
//!   `/metrics` answers with the counts (over TLS with basic auth when it
//!   names a `--web.config.file`: docs/tls.md's complete setup, run as
//!   written first, makes the file and its certificates in
//!   /etc/telegraf-netstat, where the command runs), `--output FILE` until
//!   FILE holds the counts (its directory made on an overlay of its nearest
//!   existing ancestor), `--interval` and an unfed `--execd` until they print.
//!   The log lines shown under it must be the ones it writes, but for their
//!   time.
//!
//! Commands that walk with BPF (`--source bpf`, docs/bpf.md) run the same
//! way in a test of their own, which needs what the walk needs (root, BTF,
//! a build with the program) and is ignored elsewhere.
//!
//! Parsed only: `--web.systemd-socket`, which serves descriptors only
//! systemd hands over (tests/tls.rs runs the shipped socket unit's
//! command through `systemd-socket-activate`), and a command naming an
//! absolute path that does not exist here (`--netns /run/netns/blue`), which
//! names the reader's machine.
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

/// How a documented call is run (see the module's doc).
enum Run {
    /// It prints and ends.
    Once,
    /// It runs until stopped: run until it shows it is up, then SIGTERM.
    Until(Up),
    /// Parsed only, for this reason.
    Parsed(&'static str),
}

/// What shows a long-running call is up.
enum Up {
    /// A scrape of `/metrics` on this port answers (`tls`: over TLS with
    /// docs/tls.md's credentials).
    Served { port: String, tls: bool },
    /// The file it writes holds the counts.
    Written(String),
    /// It prints.
    Printed,
}

/// The value of `flag` in `words` (`--flag VALUE` or `--flag=VALUE`).
fn value_of<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .enumerate()
        .find_map(|(i, w)| match w.strip_prefix(flag) {
            Some("") => words.get(i + 1).copied(),
            Some(v) => v.strip_prefix('='),
            None => None,
        })
}

fn how_to_run(call: &str, fed: bool) -> Run {
    let words: Vec<&str> = call.split_whitespace().collect();
    let given = |flag| value_of(&words, flag).is_some() || words.contains(&flag);
    if given("--web.systemd-socket") {
        return Run::Parsed("it serves what systemd hands over (tests/tls.rs runs it)");
    }
    // Files the run makes are not the reader's machine.
    let made = [
        value_of(&words, "--output"),
        value_of(&words, "--web.config.file"),
    ];
    let absent = |w: &&str| {
        let path = w.split_once('=').map_or(*w, |(_, v)| v);
        path.starts_with('/') && !made.contains(&Some(path)) && !Path::new(path).exists()
    };
    if words.iter().any(absent) {
        return Run::Parsed("it names a path of the reader's machine");
    }
    let tls = given("--web.config.file");
    match ["--listen", "--web.listen-address"]
        .iter()
        .find_map(|f| value_of(&words, f))
    {
        Some(address) => Run::Until(Up::Served {
            port: address.rsplit(':').next().unwrap().to_string(),
            tls,
        }),
        None => match value_of(&words, "--output") {
            Some(file) => Run::Until(Up::Written(file.to_string())),
            None if given("--interval") || (given("--execd") && !fed) => Run::Until(Up::Printed),
            None => Run::Once,
        },
    }
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

/// The start of every run's script (`$1` the binary, `$2` a scratch
/// directory): /run/netns an empty tmpfs, /etc an overlay whose writes go
/// to a tmpfs on `$2`, `over DIR` makes another, and `telegraf-netstat` is
/// the binary under test (bounded to 60 s).
const PRELUDE: &str = r#"set -eu
if [ -d /run/netns ]; then mount -t tmpfs tmpfs /run/netns; fi
bin=$1 t=$2
mount -t tmpfs tmpfs "$t"
over() {
    mkdir -p "$t/o$1/up" "$t/o$1/work"
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$t/o$1/up,workdir=$t/o$1/work" "$1"
}
over /etc
telegraf-netstat() { exec timeout 60 "$bin" "$@"; }
"#;

/// What a long-running call's script does after the prelude (`$3` the call,
/// `$4` what shows it is up: `served PORT`, `tls PORT` (docs/tls.md's setup
/// run first, until the exporter it starts and kills no longer answers),
/// `written FILE`,
/// `printed`; `$5` docs/tls.md's complete setup, `$6` the nearest existing
/// ancestor of a written file's directory): starts the call, polls every
/// 0.1 s for 60 s, sends SIGTERM, and prints its exit code, its stdout,
/// its stderr and what showed it was up, each after a `--- ` line.
const UNTIL_UP: &str = r#"call=$3 kind=${4%% *} what=${4#* } setup=$5 base=$6
if [ -n "$base" ]; then over "$base"; mkdir -p "$(dirname "$what")"; fi
if [ "$kind" = tls ]; then
    (PATH=$(dirname "$bin"):$PATH bash -euo pipefail -c "$setup") >/dev/null
    for _ in $(seq 600); do
        curl -sk -o /dev/null "https://localhost:$what/" || break
        sleep 0.1
    done
    cd /etc/telegraf-netstat
fi
( eval "$call" ) >"$t/stdout" 2>"$t/stderr" </dev/null &
pid=$!
up() {
    case $kind in
    served) curl -sf "http://localhost:$what/metrics" -o "$t/up" ;;
    tls) curl -sf --cacert /etc/telegraf-netstat/ca.crt -u prometheus:change-me \
        "https://localhost:$what/metrics" -o "$t/up" ;;
    written) [ -s "$what" ] && cp "$what" "$t/up" ;;
    printed) [ -s "$t/stdout" ] && cp "$t/stdout" "$t/up" ;;
    esac
}
for _ in $(seq 600); do
    if up || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
done
kill -TERM "$pid" 2>/dev/null || true
rc=0; wait "$pid" || rc=$?
printf -- '--- rc\n%s\n--- stdout\n' "$rc"; cat "$t/stdout"
printf -- '--- stderr\n'; cat "$t/stderr"
printf -- '--- up\n'; cat "$t/up" 2>/dev/null || true
"#;

/// Runs `script` after the prelude in a private network, PID and mount
/// namespace with its own /proc, the binary, a scratch directory and
/// `args` its arguments.
fn run_isolated(script: String, args: Vec<String>) -> std::process::Output {
    in_netns(move || {
        let scratch = Scratch::new("docs-run");
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
            ])
            .args(["bash", "-c", &format!("{PRELUDE}{script}"), "_", BIN])
            .arg(&scratch.0)
            .args(args)
            .env_remove("HOST_PROC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
}

/// Runs a one-shot `call` as written (`echo |` feeding it when the page
/// does).
fn run_once(call: &str, fed: bool) -> std::process::Output {
    let call = match fed {
        true => format!("echo | {call}"),
        false => call.to_string(),
    };
    run_isolated(r#"eval "$3""#.into(), vec![call])
}

/// The sections of [`UNTIL_UP`]'s output: exit code, stdout, stderr, what
/// showed it was up.
fn run_until_up(call: &str, up: &Up) -> [String; 4] {
    let (what, base) = match up {
        Up::Served { port, tls } => (format!("{} {port}", ["served", "tls"][*tls as usize]), None),
        Up::Written(file) => {
            let mut base = Path::new(file).parent().unwrap();
            while !base.exists() {
                base = base.parent().unwrap();
            }
            (format!("written {file}"), Some(base.display().to_string()))
        }
        Up::Printed => ("printed -".into(), None),
    };
    let setup = documented_block("docs/tls.md", "**A complete setup**", "sh");
    let out = run_isolated(
        UNTIL_UP.into(),
        vec![call.into(), what, setup, base.unwrap_or_default()],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parts: Vec<String> = text
        .splitn(5, "--- ")
        .skip(1)
        .map(|p| p.split_once('\n').map_or("", |(_, rest)| rest).to_string())
        .collect();
    let said = format!(
        "`{call}`: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    parts.try_into().unwrap_or_else(|_| panic!("{said}"))
}

/// `line` without its time: logfmt's `time=…` word or JSON's `"time":"…"`
/// value.
fn untimed(line: &str) -> String {
    for (start, end) in [("time=", ' '), ("\"time\":\"", '"')] {
        if let Some(at) = line.find(start) {
            let rest = &line[at + start.len()..];
            let cut = rest.find(end).unwrap_or(rest.len());
            return format!("{}{start}TIME{}", &line[..at], &rest[cut..]);
        }
    }
    line.to_string()
}

/// Runs a one-shot call (see the module's doc).
fn check_once(page: &Path, call: &str, fed: bool, shown: &[String]) {
    let out = run_once(call, fed);
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
    // `echo | telegraf-netstat --execd` prints one gather (the pages say
    // so).
    let gathers = printed.iter().filter(|m| *m == "netstat").count();
    assert!(!fed || gathers == 1, "{gathers} gathers: {said}");
}

/// Runs a long-running call until it is up, then stops it (see the
/// module's doc).
fn check_until_up(page: &Path, call: &str, up: &Up, shown: &[String]) {
    let [rc, stdout, stderr, seen] = run_until_up(call, up);
    let said = format!(
        "{}: `{call}`: exit {rc}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- up\n{seen}",
        page.display()
    );
    assert_eq!(rc.trim(), "0", "{said}");
    let counted = match up {
        Up::Printed => measurements(&seen.lines().collect::<Vec<_>>()).contains(&"netstat".into()),
        _ => seen.lines().any(|l| l.starts_with("netstat_tcp_")),
    };
    assert!(counted, "no counts: {said}");
    let logged: Vec<String> = stderr.lines().map(untimed).collect();
    for line in shown {
        assert!(
            logged.contains(&untimed(line)),
            "{line:?} shown, not logged: {said}"
        );
    }
}

/// Whether `call` walks with BPF (`--source bpf`): it runs only where the
/// walk can (see `main`).
fn walks_with_bpf(call: &str) -> bool {
    let words: Vec<&str> = call.split_whitespace().collect();
    value_of(&words, "--source") == Some("bpf")
}

fn every_documented_command_runs() {
    let (once, until) = run_documented(false);
    // --by-cgroup, --all-netns, --all-netns --counters --only counters,
    // --version, echo | --execd; the exporter plain, with native names, in
    // logfmt, in JSON over TLS; the textfile loop.
    assert!(
        once >= 5 && until >= 5,
        "only {once} one-shot and {until} long-running commands run"
    );
}

/// docs/bpf.md's commands: `echo | … --execd`, `--interval`, `--listen`.
fn every_documented_bpf_command_runs() {
    let (once, until) = run_documented(true);
    assert!(
        once >= 1 && until >= 2,
        "only {once} one-shot and {until} long-running commands run"
    );
}

/// Runs every documented command that walks with BPF (`bpf`) or every
/// other one; how many ran one-shot and how many until up.
fn run_documented(bpf: bool) -> (usize, usize) {
    let (mut once, mut until) = (0, 0);
    for Documented {
        page,
        call,
        fed,
        shown,
    } in documented()
        .into_iter()
        .filter(|d| walks_with_bpf(&d.call) == bpf)
    {
        match how_to_run(&call, fed) {
            Run::Parsed(why) => {
                eprintln!("parsed only, {why}: {call}");
                continue;
            }
            Run::Once => {
                check_once(&page, &call, fed, &shown);
                once += 1;
            }
            Run::Until(up) => {
                check_until_up(&page, &call, &up, &shown);
                until += 1;
            }
        }
        eprintln!("run as written: {}{call}", if fed { "echo | " } else { "" });
    }
    (once, until)
}

/// docs/metrics.md's table of every Prometheus family against the program:
/// a gather with every measurement flag and native names, in a private
/// namespace with a listener, a connection to it and a connected UDP socket
/// (so that every measurement has a row), must print only families that are
/// rows of the table, each with its type, its labels and its HELP text.
fn the_metrics_reference_lists_every_family() {
    let out = in_netns(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(to).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(to).unwrap();
        let port = to.port().to_string();
        run_ok(&[
            "--format",
            "prometheus",
            "--prometheus-names",
            "native",
            "--local-port",
            &port,
            "--remote-port",
            &port,
            "--listen-queues",
            "--ephemeral-ports",
            "--destinations",
            "10",
            "--by-cgroup",
            "--counters",
            "--health",
            "--tcp-info",
        ])
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let mut families = 0;
    for pair in lines.windows(2) {
        let (Some(help), Some(kind)) = (
            pair[0].strip_prefix("# HELP "),
            pair[1].strip_prefix("# TYPE "),
        ) else {
            continue;
        };
        let (name, text) = help.split_once(' ').unwrap();
        let kind = kind.strip_prefix(name).unwrap().trim();
        let row = format!("| `{name}` | {kind} | {} |", label_keys(&out, name));
        let listed = reference.lines().find(|l| l.starts_with(&row));
        let Some(listed) = listed else {
            panic!("{row} is printed but not a row of docs/metrics.md");
        };
        let help = format!("| {} |", text.replace('|', "\\|"));
        assert!(
            listed.ends_with(&help),
            "{name}: HELP {text:?}, documented {listed:?}"
        );
        families += 1;
    }
    assert!(families >= 70, "only {families} families:\n{out}");
}

/// The label names of the samples of `family` in an exposition (a
/// histogram's `_bucket`, `_sum` and `_count` included), sorted and joined
/// by `, `.
fn label_keys(exposition: &str, family: &str) -> String {
    let mut keys = std::collections::BTreeSet::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        let rest = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| rest.strip_prefix(s))
            .unwrap_or(rest);
        let Some(mut rest) = rest.strip_prefix('{') else {
            continue;
        };
        // key="value" pairs; a value escapes `"` and `\` with a backslash.
        while let Some((key, value)) = rest.split_once("=\"") {
            keys.insert(key.trim_start_matches(',').to_string());
            let mut chars = value.char_indices();
            let mut end = value.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            rest = &value[end..];
        }
    }
    keys.into_iter().collect::<Vec<_>>().join(", ")
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
    let namespaces = namespace_setup();
    let isolated = namespaces.clone().and_then(|()| {
        tools_on_path(&[
            ("unshare", "util-linux"),
            ("timeout", "coreutils"),
            ("bash", "bash"),
            ("curl", "curl"),
            ("openssl", "openssl"),
            ("htpasswd", "apache2-utils"),
        ])
    });
    // BPF walks need root, BTF and a build with the program: a one-shot
    // walk says what is missing.
    let bpf = isolated.clone().and_then(|()| bpf_available());
    let tests = tests![
        every_documented_command_line_parses,
        every_documented_command_runs,
        every_documented_bpf_command_runs,
        every_relative_link_leads_to_a_file,
        the_metrics_reference_lists_every_family,
        the_readme_fits_on_a_few_screens,
    ];
    run_trials_needing(
        args,
        Ok(()),
        named("docs", &tests),
        &[
            ("every_documented_command_runs", isolated),
            ("every_documented_bpf_command_runs", bpf),
            ("the_metrics_reference_lists_every_family", namespaces),
        ],
    );
}
