//! The binary's interface: flags, exit codes, stderr format, broken pipes,
//! and the /proc source on prepared proc roots.

mod support;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use support::{parse_line, BIN};

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

fn tcp_line(i: usize, state: u8) -> String {
    format!("{i:4}: 0100007F:1388 0100007F:9C40 {state:02X} 00000000:00000000 00:00000000 00000000 0 0 1 1\n")
}

/// A proc root with only IPv4 tables (as with IPv6 disabled): listen, two
/// established, a request socket, one unknown state 0x0E; two UDP sockets.
/// Removed when dropped, also when the test fails.
fn fake_proc_root(name: &str) -> support::Scratch {
    let root = support::Scratch::new(&format!("cli-{name}"));
    std::fs::create_dir_all(root.join("net")).unwrap();
    let mut tcp = String::from(TCP_HEADER);
    for (i, s) in [0x0A, 0x01, 0x01, 0x03, 0x0E].into_iter().enumerate() {
        tcp.push_str(&tcp_line(i, s));
    }
    std::fs::write(root.join("net/tcp"), tcp).unwrap();
    let mut udp = String::from(TCP_HEADER);
    udp.push_str(&tcp_line(0, 0x07));
    udp.push_str(&tcp_line(1, 0x01));
    std::fs::write(root.join("net/udp"), udp).unwrap();
    root
}

/// A FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("HOST_PROC");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn proc_source_reads_the_given_root_and_missing_ipv6_tables_count_zero() {
    let root = fake_proc_root("root");
    let out = run(
        &["--source", "proc", "--proc-root", root.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields = parse_line(std::str::from_utf8(&out.stdout).unwrap());
    let get = |k: &str| fields.iter().find(|f| f.0 == k).unwrap().1;
    assert_eq!(get("tcp_listen"), 1);
    assert_eq!(get("tcp_established"), 2);
    assert_eq!(get("tcp_syn_recv"), 1);
    assert_eq!(get("udp_socket"), 2);
    assert_eq!(
        fields.iter().map(|f| f.1).sum::<u64>(),
        6,
        "state 0x0E counted somewhere"
    );
}

#[test]
fn host_proc_is_honoured_and_the_flag_wins() {
    let root = fake_proc_root("hostproc");
    let out = run(
        &["--source", "proc"],
        &[("HOST_PROC", root.to_str().unwrap())],
    );
    assert!(out.status.success());
    let with_env = out.stdout;
    assert!(String::from_utf8_lossy(&with_env).contains("tcp_established=2i"));
    let out = run(
        &["--source", "proc", "--proc-root", "/nonexistent"],
        &[("HOST_PROC", root.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn verbose_logs_unknown_states_at_debug_level() {
    let root = fake_proc_root("verbose");
    let r = root.to_str().unwrap();
    let quiet = run(&["--source", "proc", "--proc-root", r], &[]);
    assert!(quiet.stderr.is_empty());
    let loud = run(&["--source", "proc", "--proc-root", r, "-v"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&loud.stderr),
        "D! ignored 1 tcp sockets in unknown state 14\n"
    );
    assert_eq!(quiet.stdout, loud.stdout);
}

/// `--log.level` filters, `--log.format` shapes: the same debug line as
/// logfmt and JSON, stamped with the time it was written, parsed back.
#[test]
fn log_level_and_format() {
    let root = fake_proc_root("logformat");
    let r = root.to_str().unwrap();
    let base = ["--source", "proc", "--proc-root", r];
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(&args, &[]);
        assert!(out.status.success(), "{extra:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let msg = "ignored 1 tcp sockets in unknown state 14";
    assert_eq!(with(&["--log.level", "debug"]), format!("D! {msg}\n"));
    assert_eq!(with(&["--log.level", "warn", "-v"]), format!("D! {msg}\n"));
    assert_eq!(with(&["--log.level", "info"]), "");
    let before = SystemTime::now();
    let logfmt = with(&["-v", "--log.format", "logfmt"]);
    let json = with(&["-v", "--log.format", "json"]);
    let after = SystemTime::now();
    let stamp = |s: &str| {
        let date = Command::new("date")
            .args(["-u", "-d", s, "+%s%3N"])
            .output()
            .unwrap();
        let ms: u128 = String::from_utf8(date.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let ms_of = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert!((ms_of(before)..=ms_of(after)).contains(&ms), "{s}");
        assert!(
            s.ends_with('Z') && s.len() == "2026-01-02T03:04:05.678Z".len(),
            "{s}"
        );
    };
    let rest = logfmt.strip_prefix("time=").unwrap();
    let (time, rest) = rest.split_once(' ').unwrap();
    stamp(time);
    assert_eq!(rest, format!("level=DEBUG msg=\"{msg}\"\n"));
    assert!(json.ends_with("}\n") && json.lines().count() == 1, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    stamp(v["time"].as_str().unwrap());
    assert_eq!(
        (v["level"].as_str(), v["msg"].as_str()),
        (Some("DEBUG"), Some(msg))
    );
    assert_eq!(v.as_object().unwrap().len(), 3);
    let bad = run(&["--log.format", "xml"], &[]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn malformed_proc_files_fail_with_the_line_number() {
    let root = fake_proc_root("malformed");
    std::fs::write(
        root.join("net/tcp"),
        format!("{TCP_HEADER}   0: 0100007F:1388 00000000:0000 XY 0\n"),
    )
    .unwrap();
    let out = run(
        &["--source", "proc", "--proc-root", root.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "E! gather failed: malformed line 2 of {}: bad state \"XY\"\n",
            root.join("net/tcp").display()
        )
    );
}

#[test]
fn timestamp_is_the_gather_time_in_nanoseconds() {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out = run(&["--timestamp"], &[]);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let (metric, ts) = line.trim_end().rsplit_once(' ').unwrap();
    let ts: u128 = ts.parse().unwrap();
    assert!(before <= ts && ts <= after, "{before} <= {ts} <= {after}");
    parse_line(&format!("{metric}\n"));
}

#[test]
fn usage_errors_exit_2_with_nothing_on_stdout() {
    for args in [
        &["--bogus"][..],
        &["--source", "ss"],
        &["--source"],
        &["stray"],
        &["--proc-root="],
    ] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Usage: telegraf-netstat") || stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn help_and_version() {
    let out = run(&["--help"], &[("COLUMNS", "1000")]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--source",
        "--proc-root",
        "--timestamp",
        "--verbose",
        "Example: --source proc",
        "[[inputs.exec]]",
        "Exit status",
    ] {
        assert!(help.contains(needle), "{needle} missing:\n{help}");
    }
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "telegraf-netstat {} ({}-unknown-linux-{})\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            if cfg!(target_env = "musl") {
                "musl"
            } else {
                "gnu"
            }
        )
    );
    // A mistyped flag gets a suggestion.
    let out = run(&["--exec"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a similar argument exists: '--execd'"),
        "{stderr}"
    );
    // The exec snippet is the array form of Telegraf 1.39+, with the old one named.
    assert!(
        help.contains("commands = [[\"/usr/bin/telegraf-netstat\"]]"),
        "{help}"
    );
}

#[test]
fn a_closed_stdout_exits_quietly() {
    support::expect_quiet_exit_on_closed_stdout(&[]);
}

#[test]
fn output_writes_the_same_bytes_as_stdout_and_bad_directories_are_usage_errors() {
    let root = fake_proc_root("output");
    let r = root.to_str().unwrap();
    let file = root.join("out.txt");
    let stdout = run(&["--source", "proc", "--proc-root", r], &[]).stdout;
    let out = run(
        &[
            "--source",
            "proc",
            "--proc-root",
            r,
            "--output",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(std::fs::read(&file).unwrap(), stdout);

    let out = run(&["--output", "/nonexistent/dir/netstat.prom"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: invalid value '/nonexistent/dir/netstat.prom' for '--output <FILE>': cannot open its directory: "
        ),
        "{stderr}"
    );
}

/// Another user who can write to the output directory plants symlinks to a
/// file of root's and a FIFO at names of the program's temporary-file pattern
/// (`.NAME.<16 hex>.tmp`), swaps each temporary file the program creates for
/// a symlink to that file the moment it appears (inotify), and puts a symlink
/// at the final name: nothing planted is followed, opened, removed or written
/// through, and the loop still exits at once on SIGTERM.
#[test]
fn output_never_follows_what_others_plant() {
    use rustix::fs::inotify;
    use std::os::unix::fs::FileTypeExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let root = fake_proc_root("planted");
    let r = root.to_str().unwrap();
    let dir = root.join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let victim = root.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let out = dir.join("out.prom");
    // Planted before startup, at names of the pattern.
    let planted_link = dir.join(".out.prom.0000000000000000.tmp");
    std::os::unix::fs::symlink(&victim, &planted_link).unwrap();
    let planted_fifo = dir.join(".out.prom.ffffffffffffffff.tmp");
    mkfifo(&planted_fifo);

    // The swapper: each temporary file the program creates is unlinked and
    // replaced by a symlink to the victim, racing the program's write and
    // rename. `swapped` counts the times it got there first.
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&ino, &dir, inotify::WatchFlags::CREATE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapped = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (dir, victim, stop, swapped) =
            (dir.clone(), victim.clone(), stop.clone(), swapped.clone());
        std::thread::spawn(move || {
            let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
            let mut events = inotify::Reader::new(&ino, &mut buf);
            while !stop.load(Ordering::Relaxed) {
                let Ok(event) = events.next() else { break };
                let Some(name) = event.file_name() else {
                    continue;
                };
                let name = name.to_str().unwrap().to_string();
                if !(name.starts_with(".out.prom.") && name.ends_with(".tmp")) {
                    continue;
                }
                let path = dir.join(&name);
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    continue; // one of ours
                }
                if std::fs::remove_file(&path).is_ok()
                    && std::os::unix::fs::symlink(&victim, &path).is_ok()
                {
                    swapped.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut child = Command::new(BIN)
        .args(["--source", "proc", "--proc-root", r, "--interval", "20ms"])
        .arg("--output")
        .arg(&out)
        .env_remove("HOST_PROC")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Polled, with bounds for a loaded machine: the swapper has won a race
    // at least once, and a gather has been published since.
    let deadline = Instant::now() + Duration::from_secs(30);
    while swapped.load(Ordering::Relaxed) < 3 {
        assert!(
            Instant::now() < deadline,
            "the swapper never beat the program's rename"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // After startup, the final name becomes a symlink to the victim, until
    // a gather replaces it with a regular file.
    let _ = std::fs::remove_file(&out);
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    while !std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_file()) {
        assert!(
            Instant::now() < deadline,
            "the symlink at the final name stayed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let start = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // What was planted at the pattern's names is where it was.
    assert_eq!(std::fs::read_link(&planted_link).unwrap(), victim);
    assert!(std::fs::symlink_metadata(&planted_fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    let stdout = run(&["--source", "proc", "--proc-root", r], &[]).stdout;
    assert_eq!(std::fs::read(&out).unwrap(), stdout);
    // A gather that lost its temporary file to the swapper either published
    // the swapper's symlink (replaced by the next gather) or failed and said
    // so; nothing else is left behind but the swapper's own symlinks.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let t = entry.file_type().unwrap();
        assert!(
            entry.path() == out || t.is_symlink() || entry.path() == planted_fifo,
            "left behind: {:?}",
            entry.path()
        );
    }
    // Removing the watched directory wakes the swapper to see `stop`.
    drop(root);
    swapper.join().unwrap();
}

/// Targets that are not regular files are usage errors at startup, before
/// anything is written: device nodes, symlinks, FIFOs, directories.
#[test]
fn output_targets_that_are_not_regular_files_are_usage_errors() {
    let root = fake_proc_root("targets");
    let fifo = root.join("fifo");
    mkfifo(&fifo);
    for (target, why) in [
        ("/dev/null", "it exists and is not a regular file"),
        ("/dev/full", "it exists and is not a regular file"),
        ("/dev/stdout", "it is a symbolic link"),
        (
            fifo.to_str().unwrap(),
            "it exists and is not a regular file",
        ),
        (root.to_str().unwrap(), "it is a directory"),
    ] {
        let out = run(&["--output", target, "--interval", "1s"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{target}' for '--output <FILE>': {why}"
            )),
            "{target}: {stderr}"
        );
    }
    let m = std::fs::metadata("/dev/null").unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_char_device());
}

/// `--netns` on something that is not a network namespace (a FIFO, which
/// a plain open would block on; a regular file; a directory; a mount
/// namespace) says so at once.
#[test]
fn netns_paths_that_are_not_network_namespaces_are_said_so() {
    let root = fake_proc_root("not-netns");
    let fifo = root.join("fifo");
    mkfifo(&fifo);
    let file = root.join("net/tcp");
    let dir = root.join("net");
    for path in [
        fifo.to_str().unwrap(),
        file.to_str().unwrap(),
        dir.to_str().unwrap(),
        "/proc/self/ns/mnt",
    ] {
        let t = std::time::Instant::now();
        let out = run(&["--netns", path], &[]);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{path} blocked"
        );
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "E! gather failed in network namespace {path}: {path} is not a network namespace\n"
            )
        );
    }
}

/// A 0-byte table (a broken mount, a fake proc root) is malformed, not a
/// host without sockets.
#[test]
fn an_empty_table_is_malformed_not_zero() {
    let root = fake_proc_root("empty");
    std::fs::write(root.join("net/tcp"), "").unwrap();
    let out = run(
        &["--source", "proc", "--proc-root", root.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "E! gather failed: malformed line 1 of {}: empty file: expected the \"sl\" header\n",
            root.join("net/tcp").display()
        )
    );
}

/// The Prometheus format says how the gather went: the build, every
/// namespace counted (1) or not (0; here a path that is none), and the
/// gather's time. Influx says it on stderr and in the exit code only.
#[test]
fn prometheus_self_metrics_say_what_failed() {
    let out = run(
        &[
            "--format",
            "prometheus",
            "--netns",
            "/proc/self/ns/net",
            "--netns",
            "/nonexistent/telegraf-netstat",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "\nnetstat_gather_success{netns=\"/proc/self/ns/net\"} 1\n",
        "\nnetstat_gather_success{netns=\"/nonexistent/telegraf-netstat\"} 0\n",
        "\n# TYPE netstat_gather_duration_seconds gauge\n",
        &format!(
            "\nnetstat_build_info{{target=\"{}-unknown-linux-",
            std::env::consts::ARCH
        ),
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // Not a scan: no unreadable count.
    assert!(
        !text.contains("netstat_scan_unreadable_processes"),
        "{text}"
    );
    let influx = run(
        &[
            "--netns",
            "/nonexistent/telegraf-netstat",
            "--netns",
            "/proc/self/ns/net",
        ],
        &[],
    );
    assert!(!String::from_utf8(influx.stdout)
        .unwrap()
        .contains("gather_success"));
}
