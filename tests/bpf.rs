//! `--source bpf` against `--source netlink` on the same private namespaces:
//! exact in every TCP state over IPv4 and IPv6, a namespace with a TCP hash
//! table of its own counted by netlink in the same gather, the self-test's
//! fall back on a walk wrong on purpose (the program built with
//! `-DMISCOUNT`), descriptors flat over many gathers, and the refusals.
//! Ignored where the kernel or this build cannot run the walk (failed
//! under CI).

mod support;

use std::process::Command;
use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;

const CHILD_EHASH: &str = "/proc/sys/net/ipv4/tcp_child_ehash_entries";

/// Runs when this build, kernel and process can walk: a one-shot
/// `--source bpf` succeeds.
fn setup() -> Result<(), String> {
    namespace_setup()?;
    needs_root("CAP_BPF and CAP_PERFMON")?;
    bpf_available()
}

/// The `netstat` rows of one gather, by namespace and family, as text.
fn rows(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("netstat,"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// `--netns` arguments for `namespaces`.
fn netns_args(namespaces: &[&Netns]) -> Vec<String> {
    namespaces
        .iter()
        .flat_map(|n| ["--netns".to_string(), n.path()])
        .collect()
}

/// The binary with `args`, run inside `ns` (`nsenter`): its own namespace
/// is then one the test made, which a first self-test may compare, not the
/// machine's.
fn inside(ns: &Netns, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.path()))
        .arg(BIN)
        .args(args)
        .env_remove("HOST_PROC");
    c
}

/// Held while this binary's tests make namespaces: the setting that gives
/// one a table of its own is the host's.
static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A namespace sharing the host's TCP hash table (made while no test of
/// this binary has set `tcp_child_ehash_entries`).
fn shared(build: impl FnOnce() -> Population + Send + 'static) -> Netns {
    let _one = SETTING.lock().unwrap_or_else(|p| p.into_inner());
    Netns::new(build, 1)
}

/// A namespace made while `tcp_child_ehash_entries` is 128: a TCP hash
/// table of its own, which the walk of the host's does not cover.
fn own_table_namespace() -> Netns {
    let _one = SETTING.lock().unwrap_or_else(|p| p.into_inner());
    let old = std::fs::read_to_string(CHILD_EHASH).unwrap();
    std::fs::write(CHILD_EHASH, "128").unwrap();
    let ns = Netns::new(|| established(2, 1), 1);
    std::fs::write(CHILD_EHASH, old.trim()).unwrap();
    ns
}

/// Gathers with the walk equal netlink's before and after it, namespace by
/// namespace, in every state, IPv4 and IPv6; the namespace with its own
/// table is among them. The first gather's self-test compares the smallest
/// namespace holding a listener and another socket (both tables: no
/// thorough one follows), and no other self-test comes before the 360th.
fn the_walk_equals_netlink_in_every_state() {
    let a = shared(everything);
    let b = shared(everything);
    let c = shared(|| established(5, 4));
    let empty = shared(Population::default);
    let own = own_table_namespace();
    let home = shared(Population::default);
    let ns = netns_args(&[&a, &b, &c, &empty, &own]);
    let mut args: Vec<&str> = ns.iter().map(String::as_str).collect();
    args.push("--by-family");
    let netlink = |args: &[&str]| {
        let mut v = vec!["--source", "netlink"];
        v.extend_from_slice(args);
        rows(&run_ok(&v))
    };
    let mut bpf_args = vec!["--source", "bpf", "--execd", "-v"];
    bpf_args.extend_from_slice(&args);
    let mut p = Plugin::spawn(inside(&home, &bpf_args));
    let gather = |p: &mut Plugin| {
        p.tick("\n");
        let mut out = String::new();
        while out.lines().filter(|l| l.starts_with("netstat,")).count() < 10 {
            out.push_str(&p.line(Duration::from_secs(20)));
        }
        rows(&out)
    };
    // The namespace the first self-test compares: netlink's counts.
    let c_rows = |rows: Vec<String>| -> Vec<String> {
        let tag = format!("netns={}", c.tag());
        let of_c = |l: &String| l.split([',', ' ']).any(|t| t == tag);
        rows.into_iter().filter(of_c).collect()
    };
    let first = c_rows(gather(&mut p));
    assert_eq!(first, c_rows(netlink(&args)), "the self-test's namespace");
    // Sockets settle (a namespace's population is fixed): poll until one
    // walk gather is framed by two equal netlink ones, within 50 gathers
    // (no self-test before the 360th: they are the walk's).
    let mut walked = Vec::new();
    let equal = (0..50).any(|_| {
        let before = netlink(&args);
        walked = gather(&mut p);
        before == walked && walked == netlink(&args)
    });
    assert!(equal, "walk {walked:#?}\nnetlink {:#?}", netlink(&args));
    assert!(
        walked.iter().any(|l| l.contains("tcp_time_wait=5i")),
        "{walked:#?}"
    );
    p.eof_kept_promise();
    let said: Vec<String> = p.stderr.iter().collect();
    assert!(!complained(&said), "{said:?}");
    // The walk served the four sharing namespaces; the own-table one was dumped.
    assert!(
        said.iter()
            .any(|l| l.contains("4 namespaces took their TCP counts from it")),
        "{said:?}"
    );
    // One self-test, of the smallest namespace with a listener and more.
    assert_eq!(compared(&said), [format!("{} the same", c.tag())]);
}

/// Bytes queued both ways over IPv4 (a client whose peer neither reads nor
/// opens its window: the server's receive queue and the client's send
/// queue fill) and received over IPv6, next to their listeners.
fn queued() -> Population {
    let mut p = Population::default();
    let l = listener(V4, 8, |_| {});
    let (mut client, server) = connect_pair(&l, big_sndbuf);
    fill(&mut client);
    p.keep((l, client, server));
    let l = listener(V6, 8, |_| {});
    let (mut client, server) = connect_pair(&l, |_| {});
    std::io::Write::write_all(&mut client, &[7; 3000]).unwrap();
    p.keep((l, client, server));
    p.expected.tcp_listen = 2;
    p.expected.tcp_established = 4;
    p
}

/// `--prometheus-names native`: the bytes queued the walk reads equal
/// netlink's, per namespace and family, in a gather framed by two equal
/// netlink ones (a window update can still move bytes until the queues
/// settle), and so do the states. The self-tests, whose namespaces print
/// netlink's numbers, compare `small` at the first gather and no other
/// before the 360th, so the 50 gathers polled are the walk's.
fn the_bytes_queued_equal_netlinks() {
    let q = shared(queued);
    let all = shared(everything);
    let small = shared(|| established(1, 0));
    let home = shared(Population::default);
    let ns = netns_args(&[&q, &all, &small]);
    let mut args: Vec<&str> = ns.iter().map(String::as_str).collect();
    args.extend([
        "--by-family",
        "--format",
        "prometheus",
        "--prometheus-names",
        "native",
    ]);
    let metrics = |out: &str| -> Vec<String> {
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("netstat_tcp_") && !l.starts_with("netstat_tcp_info"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let netlink = || metrics(&run_ok(&[&["--source", "netlink"], &args[..]].concat()));
    let mut bpf_args = vec!["--source", "bpf", "--execd"];
    bpf_args.extend_from_slice(&args);
    let mut p = Plugin::spawn(inside(&home, &bpf_args));
    let gather = |p: &mut Plugin| {
        p.tick("\n");
        let mut out = String::new();
        loop {
            let line = p.line(Duration::from_secs(20));
            out.push_str(&line);
            if line.starts_with("netstat_gather_duration_seconds ") {
                break out;
            }
        }
    };
    let mut walked = Vec::new();
    let equal = (0..50).any(|_| {
        let before = netlink();
        walked = metrics(&gather(&mut p));
        before == walked && walked == netlink()
    });
    assert!(equal, "walk {walked:#?}\nnetlink {:#?}", netlink());
    let bytes = |name: &str, family: &str| {
        let tag = format!("netns=\"{}\"", q.tag());
        walked
            .iter()
            .find(|l| l.starts_with(name) && l.contains(&tag) && l.contains(family))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        bytes("netstat_tcp_receive_queue_bytes", "ipv4") > 0,
        "{walked:#?}"
    );
    assert!(
        bytes("netstat_tcp_send_queue_bytes", "ipv4") > 0,
        "{walked:#?}"
    );
    assert_eq!(
        bytes("netstat_tcp_receive_queue_bytes", "ipv6"),
        3000,
        "{walked:#?}"
    );
    p.eof_kept_promise();
    let said: Vec<String> = p.stderr.iter().collect();
    assert!(!complained(&said), "{said:?}");
}

/// The namespaces the self-tests compared, in order, from `-v`'s lines:
/// `pid:42 the same`, `of this process a difference`.
/// Whether the program warned or failed (`W!`, `E!`).
fn complained(said: &[String]) -> bool {
    said.iter()
        .any(|l| l.starts_with("W!") || l.starts_with("E!"))
}

fn compared(said: &[String]) -> Vec<String> {
    let p = "D! --source bpf: the self-test compared network namespace ";
    said.iter()
        .filter_map(|l| l.strip_prefix(p))
        .map(|l| l.trim_end().replace(" with netlink:", ""))
        .collect()
}

/// A lone listener on 127.0.0.1 (the listening hash only), with loopback
/// left up or brought down afterwards.
fn lone_listener(loopback_up: bool) -> Population {
    let mut p = Population::default();
    p.keep(listener(V4, 8, |_| {}));
    p.expected.tcp_listen = 1;
    if !loopback_up {
        succeeded(Command::new("ip").args(["link", "set", "lo", "down"]));
    }
    p
}

/// The `-v` line of a first self-test that opened the loopback pair.
const PAIRED: &str = "D! --source bpf: a TCP pair on 127.0.0.1 port ";

/// A first self-test whose namespace holds sockets of one table only (this
/// process's, a lone listener: the namespace counted is the busiest)
/// compares this process's namespace holding a loopback pair, which proves
/// both tables: no thorough self-test follows at the next gather. Where
/// loopback is down there is no pair, and a thorough one follows, of the
/// busiest.
fn a_one_table_self_test_takes_a_pair_or_is_followed_by_a_thorough_one() {
    let c = shared(|| established(5, 4));
    let path = c.path();
    for up in [true, false] {
        let home = shared(move || lone_listener(up));
        let mut p = Plugin::spawn(inside(
            &home,
            &["--source", "bpf", "--execd", "-v", "--netns", &path],
        ));
        for _ in 0..3 {
            p.tick("\n");
            let line = p.line(Duration::from_secs(20));
            assert!(line.contains("tcp_established=18i,"), "{line}");
        }
        // The pair was closed after the first self-test: the process runs
        // on, and its namespace holds the lone listener alone.
        poll_until(Duration::from_secs(5), || {
            ss_counts_where(Some(&home.path()), &[]) == home.expected
        });
        p.eof_kept_promise();
        let said: Vec<String> = p.stderr.iter().collect();
        let mut expected = vec!["of this process the same".to_string()];
        if up {
            assert_eq!(
                said.iter().filter(|l| l.starts_with(PAIRED)).count(),
                1,
                "{said:?}"
            );
        } else {
            let none = "D! --source bpf: no TCP pair on loopback for the self-test (";
            assert!(said.iter().any(|l| l.starts_with(none)), "{said:?}");
            expected.push(format!("{} the same", c.tag()));
        }
        assert_eq!(compared(&said), expected, "{said:?}");
    }
}

/// `bpf/tcpwalk.bpf.c` built with `-D{define}`, a walk wrong on purpose,
/// in a directory of its own (removed by the caller).
fn wrong_build(define: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bpf-{define}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let object = dir.join("wrong.o");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/tcpwalk.bpf.c");
    succeeded(
        Command::new("clang")
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                &format!("-D{define}"),
                "-c",
                src,
                "-o",
            ])
            .arg(&object),
    );
    (dir, object)
}

/// The benchmark's shape, one-shot: this process's namespace and one
/// counted hold a lone listener each, another nothing, the busiest
/// connections. Without the pair the first self-test would compare a lone
/// listener: the listening hash only. A walk that counts ESTABLISHED (which
/// only the established hash holds) as CLOSE_WAIT (`-DMISCOUNT_ESTABLISHED`)
/// is caught by that one-shot run: one `W!`, and netlink's counts printed
/// for every namespace, the busiest included; the right build agrees. The
/// pair is gone after the run.
fn a_one_shot_run_proves_both_tables() {
    let (dir, object) = wrong_build("MISCOUNT_ESTABLISHED");
    let home = shared(|| lone_listener(true));
    let quiet = shared(|| lone_listener(true));
    let empty = shared(Population::default);
    let big = shared(|| established(30, 0));
    let ns = netns_args(&[&quiet, &empty, &big]);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let expected = rows(&run_ok(&[&["--source", "netlink"], &ns[..]].concat()));
    for wrong in [false, true] {
        let mut c = inside(&home, &[&["--source", "bpf", "-v"], &ns[..]].concat());
        if wrong {
            c.env("TELEGRAF_NETSTAT_BPF_OBJECT", &object);
        }
        let out = c.output().unwrap();
        let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(out.status.success(), "{said:?}");
        assert_eq!(
            rows(&String::from_utf8_lossy(&out.stdout)),
            expected,
            "{said:?}"
        );
        assert_eq!(
            said.iter().filter(|l| l.starts_with(PAIRED)).count(),
            1,
            "{said:?}"
        );
        let warned: Vec<&String> = said.iter().filter(|l| l.starts_with("W!")).collect();
        if wrong {
            assert_eq!(
                compared(&said),
                ["of this process a difference"],
                "{said:?}"
            );
            assert_eq!(warned.len(), 1, "{said:?}");
            assert!(
                warned[0].contains("network namespace of this process: the walk counted ipv4 tcp_close_wait=2 tcp_listen=2, ipv6 none, netlink ipv4 tcp_established=2 tcp_listen=2, ipv6 none;"),
                "{}",
                warned[0]
            );
        } else {
            assert_eq!(compared(&said), ["of this process the same"], "{said:?}");
            assert!(warned.is_empty(), "{said:?}");
        }
        // The pair is gone: the lone listener is all `ss` shows.
        poll_until(Duration::from_secs(5), || {
            ss_counts_where(Some(&home.path()), &[]) == home.expected
        });
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sixty namespaces sharing the host's table, which the walk counts: no
/// `I!` line says that every TCP dump in them walks all of it (with netlink
/// one does: tests/tcphash.rs), though a one-shot run's load alone passes
/// the 50 ms of CPU that line waits for.
fn sharing_namespaces_are_not_said_while_the_walk_counts_them() {
    let many: Vec<Netns> = (0..60).map(|_| shared(Population::default)).collect();
    let home = shared(Population::default);
    let ns = netns_args(&many.iter().collect::<Vec<_>>());
    let mut args = vec!["--source", "bpf"];
    args.extend(ns.iter().map(String::as_str));
    // Inside a namespace of the test's: the first self-test compares this
    // process's, holding the loopback pair, not the machine's.
    let out = inside(&home, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 60);
}

/// A walk that counts TIME_WAIT as CLOSE (the program built with
/// `-DMISCOUNT`, loaded through TELEGRAF_NETSTAT_BPF_OBJECT) fails the
/// first gather's self-test: one `W!` naming the namespace and both
/// counts, and netlink's counts then and afterwards; from a self-test of
/// a namespace the program counts and of its own, which it does not.
fn a_wrong_walk_falls_back_to_netlink() {
    let (dir, object) = wrong_build("MISCOUNT");
    // The first self-test compares `small`, not the busiest, `big` (whose
    // counts the wrong walk gets right: it holds no TIME_WAIT); then the
    // same with `small` the process's own namespace, which it does not
    // count, and which then holds the self-test's loopback pair too.
    let small = shared(|| time_wait(3));
    let big = shared(|| established(30, 0));
    let home = shared(Population::default);
    let (small_path, big_path) = (small.path(), big.path());
    let runs = [
        (
            &home,
            vec!["--netns", &small_path, "--netns", &big_path],
            small.tag(),
            "the walk counted ipv4 tcp_close=3 tcp_listen=1, ipv6 none, netlink ipv4 tcp_listen=1 tcp_time_wait=3, ipv6 none;",
        ),
        (
            &small,
            vec!["--netns", &big_path],
            "of this process".to_string(),
            "the walk counted ipv4 tcp_close=3 tcp_established=2 tcp_listen=2, ipv6 none, netlink ipv4 tcp_established=2 tcp_listen=2 tcp_time_wait=3, ipv6 none;",
        ),
    ];
    for (inside_of, netns, named, counted) in runs {
        let mut args = vec!["--source", "bpf", "--execd"];
        args.extend_from_slice(&netns);
        let mut c = inside(inside_of, &args);
        c.env("TELEGRAF_NETSTAT_BPF_OBJECT", &object);
        let mut p = Plugin::spawn(c);
        for _ in 0..3 {
            p.tick("\n");
            if netns.len() == 4 {
                let line = p.line(Duration::from_secs(20));
                assert!(
                    line.contains("tcp_time_wait=3i,") && line.contains("tcp_close=0i,"),
                    "{line}"
                );
            }
            let line = p.line(Duration::from_secs(20));
            assert!(line.contains("tcp_established=60i,"), "{line}");
        }
        p.eof_kept_promise();
        let said: Vec<String> = p.stderr.iter().collect();
        let warned: Vec<&String> = said.iter().filter(|l| l.starts_with("W!")).collect();
        assert_eq!(warned.len(), 1, "{said:?}");
        let w = warned[0];
        assert!(
            w.contains(&format!("network namespace {named}:"))
                && w.contains(counted)
                && w.contains("counting TCP over netlink from now on"),
            "{w}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Python program run inside the namespace at `netns`, killed when
/// dropped (a failed assertion included), once it printed `ready`.
struct Inside(std::process::Child);

impl Inside {
    fn run(netns: &str, program: &str) -> Inside {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["python3", "-c", program])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut ready).unwrap();
        let inside = Inside(child);
        assert_eq!(ready.trim(), "ready");
        inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connections opened and closed in a loop (each client closing first, so
/// TIME_WAIT grows), as fast as Python goes.
const CHURN: &str = r#"
import socket, sys
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(64)
print("ready", flush=True)
while True:
    c = socket.create_connection(l.getsockname())
    a, _ = l.accept()
    c.close()
    a.close()
"#;

/// With connections churning in one namespace during every gather, the
/// self-test gives no false verdict (no `W!`: the churning namespace, the
/// busiest, gives none, the quiet one agrees), and the quiet namespace's
/// counts by the walk stay netlink's, gather after gather.
fn churn_elsewhere_neither_fails_the_self_test_nor_disturbs_counts() {
    let quiet = shared(everything);
    let churning = shared(Population::default);
    let churn = Inside::run(&churning.path(), CHURN);
    let quiet_path = quiet.path();
    let expected = rows(&run_ok(&[
        "--source",
        "netlink",
        "--by-family",
        "--netns",
        &quiet_path,
    ]));
    let churning_path = churning.path();
    let args = [
        "--source",
        "bpf",
        "--execd",
        "-v",
        "--by-family",
        "--netns",
        &quiet_path,
    ];
    let mut p = Plugin::start(&[&args[..], &["--netns", &churning_path]].concat());
    for _ in 0..10 {
        p.tick("\n");
        let mut out = String::new();
        for _ in 0..4 {
            out.push_str(&p.line(Duration::from_secs(20)));
        }
        let tag = format!("netns={}", quiet.tag());
        let mine: Vec<String> = rows(&out)
            .into_iter()
            .filter(|l| l.contains(&tag))
            .collect();
        assert_eq!(mine, expected);
    }
    p.eof_kept_promise();
    drop(churn);
    let said: Vec<String> = p.stderr.iter().collect();
    assert!(!complained(&said), "{said:?}");
    let walked = said
        .iter()
        .filter(|l| l.contains("2 namespaces took"))
        .count();
    assert!(walked >= 9, "{said:?}");
}

/// A listener closed and opened again all the time, which a walk and a
/// netlink dump see in turn.
const FLAP: &str = r#"
import socket, sys, time
print("ready", flush=True)
while True:
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 7000))
    l.listen(8)
    time.sleep(0.0003)
    l.close()
    time.sleep(0.0003)
"#;

/// The self-test's confirmation rounds: a namespace whose listener flaps
/// never fails it, tested at every one-shot run that sees it: counted, the
/// only one holding sockets (this process's, where loopback is down: no
/// pair); or this process's, holding the loopback pair beside it.
fn a_flapping_listener_fails_no_self_test() {
    let ns = shared(Population::default);
    let home = shared(|| {
        succeeded(Command::new("ip").args(["link", "set", "lo", "down"]));
        Population::default()
    });
    let flap = Inside::run(&ns.path(), FLAP);
    let (path, home_path) = (ns.path(), home.path());
    let cases = [
        (&home, &path, ns.tag()),
        (&ns, &home_path, "of this process".into()),
    ];
    for (within, counted, tested) in cases {
        let paired = tested == "of this process";
        let mut runs_compared = 0;
        for _ in 0..10 {
            let out = inside(within, &["--source", "bpf", "-v", "--netns", counted])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let said: Vec<String> = err.lines().map(str::to_owned).collect();
            assert!(out.status.success(), "{err}");
            assert!(!complained(&said), "{err}");
            // Compared: the same, or a difference that had no verdict;
            // without the pair, nothing when the walk saw no listener.
            let compared = compared(&said);
            assert!(compared.iter().all(|c| c.starts_with(&tested)), "{err}");
            assert!(compared.len() == 1 || !paired, "{err}");
            assert_eq!(said.iter().any(|l| l.starts_with(PAIRED)), paired, "{err}");
            runs_compared += usize::from(!compared.is_empty());
        }
        // Not one of the ten without a comparison: the flapping namespace
        // was compared, or the test proved nothing.
        assert!(runs_compared > 0, "no run compared {tested}");
    }
    drop(flap);
}

/// Descriptors and memory stay flat over many walks in one process.
fn descriptors_stay_flat_over_gathers() {
    let ns = shared(everything);
    let path = ns.path();
    let mut p = Plugin::start(&["--source", "bpf", "--execd", "--netns", &path]);
    let gather = |p: &mut Plugin| {
        p.tick("\n");
        p.line(Duration::from_secs(20));
    };
    for _ in 0..3 {
        gather(&mut p);
    }
    let (fds, rss) = (fd_count(p.child.id()), p.rss_kib());
    for _ in 0..1000 {
        gather(&mut p);
    }
    assert_eq!(
        fd_count(p.child.id()),
        fds,
        "descriptors after 1000 more gathers"
    );
    assert!(
        p.rss_kib() <= rss + 512,
        "RSS {rss} KiB -> {} KiB",
        p.rss_kib()
    );
    p.eof_kept_promise();
}

/// Walking every 10 ms, SIGTERM and stdin EOF are heard within the
/// promise; so is SIGTERM while the program loads, at start.
fn stops_are_heard_while_walking() {
    let ns = shared(everything);
    let path = ns.path();
    let args = ["--source", "bpf", "--interval", "10ms", "--netns", &path];
    // As soon as its handlers are installed, so the load has just begun.
    let mut p = Plugin::start(&args);
    let status = format!("/proc/{}/status", p.child.id());
    let caught = || {
        let s = std::fs::read_to_string(&status).unwrap_or_default();
        let mask = s.lines().find_map(|l| l.strip_prefix("SigCgt:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
    };
    poll_until(Duration::from_secs(10), caught);
    p.signal_kept_promise(rustix::process::Signal::TERM);
    let mut p = Plugin::start(&args);
    for _ in 0..5 {
        p.line(Duration::from_secs(20));
    }
    p.signal_kept_promise(rustix::process::Signal::TERM);
    let mut p = Plugin::start(&args);
    for _ in 0..5 {
        p.line(Duration::from_secs(20));
    }
    p.eof_kept_promise();
}

/// Without CAP_BPF and CAP_PERFMON (nor CAP_SYS_ADMIN), or without the
/// kernel's BTF, an explicit `--source bpf` is an error naming what is
/// missing, exit 1; a breakdown the walk does not read is a usage error
/// naming the flag, exit 2.
fn what_cannot_run_is_refused() {
    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            "-bpf,-perfmon,-sys_admin",
            BIN,
            "--source",
            "bpf",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("E! --source bpf cannot run: it needs CAP_BPF and CAP_PERFMON"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // No BTF: an empty tmpfs over /sys/kernel/btf in a mount namespace of
    // its own.
    let hidden = format!("mount -t tmpfs none /sys/kernel/btf && exec {BIN} --source bpf");
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &hidden])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("E! --source bpf cannot run: the kernel's BTF is needed (CONFIG_DEBUG_INFO_BTF): cannot read /sys/kernel/btf/vmlinux"),
        "{err}"
    );
    let out = run(&["--source", "bpf", "--listen-queues"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--listen-queues needs more of each socket than --source bpf reads"),
        "{err}"
    );
}

fn main() {
    raise_fd_limit();
    let args = Arguments::from_args();
    let tests = tests![
        the_walk_equals_netlink_in_every_state,
        a_one_table_self_test_takes_a_pair_or_is_followed_by_a_thorough_one,
        a_one_shot_run_proves_both_tables,
        the_bytes_queued_equal_netlinks,
        sharing_namespaces_are_not_said_while_the_walk_counts_them,
        a_wrong_walk_falls_back_to_netlink,
        churn_elsewhere_neither_fails_the_self_test_nor_disturbs_counts,
        a_flapping_listener_fails_no_self_test,
        descriptors_stay_flat_over_gathers,
        stops_are_heard_while_walking,
        what_cannot_run_is_refused,
    ];
    run_trials(args, setup(), named("bpf", &tests));
}
