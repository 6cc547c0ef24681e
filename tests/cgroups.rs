//! `netstat_cgroup` (`--by-cgroup`) with processes placed in cgroup v2
//! directories made here, in a private network namespace, compared with
//! `ss -tan --cgroup` and `ss -uan --cgroup`: a service-like cgroup holding
//! a listener and its accepted connections, a Docker-like scope and a
//! pod-like scope holding clients (named by container ID and pod UID), a
//! Docker name made below the root as any delegated user could (named
//! nothing), and a TIME_WAIT socket, which no cgroup owns.
//!
//! Needs root and a writable cgroup2 mount; otherwise ignored (failed
//! under CI).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;
use telegraf_netstat::cgroupfs::cgroup2_mount;

const ID: &str = "5f0c3b1e9a7d4c2b8e6f1a3d5c7b9e0f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b";
const POD: &str = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901";

/// The cgroup2 mount point.
fn mount() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read("/proc/self/mountinfo").ok()?)
}

fn setup() -> Result<(), String> {
    namespace_setup()?;
    needs_root("making cgroups and moving processes into them")?;
    let m = mount().ok_or("no cgroup2 mount")?;
    let probe = m.join(format!("telegraf-netstat-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cannot make a cgroup in {}: {e}", m.display()))?;
    let _ = std::fs::remove_dir(&probe);
    for (tool, why) in [
        ("python3", "to hold sockets"),
        ("promtool", "to check the exposition (Debian prometheus)"),
    ] {
        match Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err(format!("no {tool} {why}")),
        }
    }
    Ok(())
}

const SCRIPT: &str = r#"
import socket, sys
role, keep = sys.argv[1], []
if role == "server":
    l = socket.socket()
    l.bind(("127.0.0.1", 8080))
    l.listen(64)
    print("listening", flush=True)
    first, _ = l.accept()
    first.close()
    keep = [l] + [l.accept()[0] for _ in range(4)]
elif role == "client":
    cs = [socket.create_connection(("127.0.0.1", 8080)) for _ in range(3)]
    cs[0].recv(1)
    cs[0].close()
    keep = cs[1:]
elif role == "pod":
    keep = [socket.create_connection(("127.0.0.1", 8080)) for _ in range(2)]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 5353))
    keep.append(u)
else:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 5354))
    keep = [u]
print("ready", flush=True)
sys.stdin.read()
"#;

/// python3 running `SCRIPT` as `role`, moved into cgroup `dir` before it
/// starts; returns once it printed `line`.
fn start(dir: &Path, role: &str, line: &str) -> Child {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT, role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    start_in_cgroup(&mut cmd, dir);
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut got = String::new();
    out.read_line(&mut got).unwrap();
    assert_eq!(got.trim(), line, "{role} did not start");
    child.stdout = Some(out.into_inner());
    child
}

/// Per cgroup path as `ss` shows it (`unattributed` for sockets without
/// one), the sockets by `ss` state name (UDP as "UDP").
fn from_ss() -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (args, udp) in [
        (["-Htan", "--cgroup"], false),
        (["-Huan", "--cgroup"], true),
    ] {
        let out = Command::new("ss").args(args).output().unwrap();
        assert!(out.status.success());
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let cgroup = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("cgroup:"))
                .unwrap_or("unattributed");
            let state = if udp {
                "UDP".to_string()
            } else {
                line.split_whitespace().next().unwrap().to_string()
            };
            *m.entry(cgroup.to_string())
                .or_default()
                .entry(state)
                .or_default() += 1;
        }
    }
    m
}

/// Our `netstat_cgroup` rows in the same shape, with their other tags.
fn ours(out: &str) -> (BTreeMap<String, BTreeMap<String, u64>>, Vec<AnyMetric>) {
    let all: Vec<AnyMetric> = parse_metrics_any(out)
        .into_iter()
        .filter(|m| m.0 == "netstat_cgroup")
        .collect();
    let states = [
        ("tcp_established", "ESTAB"),
        ("tcp_time_wait", "TIME-WAIT"),
        ("tcp_listen", "LISTEN"),
        ("tcp_syn_sent", "SYN-SENT"),
        ("tcp_syn_recv", "SYN-RECV"),
        ("tcp_fin_wait1", "FIN-WAIT-1"),
        ("tcp_fin_wait2", "FIN-WAIT-2"),
        ("tcp_close_wait", "CLOSE-WAIT"),
        ("tcp_last_ack", "LAST-ACK"),
        ("tcp_closing", "CLOSING"),
        ("tcp_close", "CLOSE"),
        ("udp_socket", "UDP"),
    ];
    let mut m = BTreeMap::new();
    for (_, tags, fields) in &all {
        let cgroup = tags.iter().find(|t| t.0 == "cgroup").unwrap().1.clone();
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (field, n) in fields {
            if *n > 0 {
                let ss = states
                    .iter()
                    .find(|s| s.0 == field)
                    .unwrap_or_else(|| panic!("{field}"));
                by.insert(ss.1.to_string(), *n);
            }
        }
        if !by.is_empty() {
            assert!(
                m.insert(cgroup, by).is_none(),
                "two rows for one cgroup:\n{out}"
            );
        }
    }
    (m, all)
}

/// The cgroup rows add up to the netstat line, with unix sockets too (in
/// the unattributed row: unix_diag reports no cgroup).
fn rows_add_up_to_netstat() {
    // the unattributed row: unix_diag reports no cgroup).
    let _unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
    for args in [&["--by-cgroup"][..], &["--by-cgroup", "--include-unix"]] {
        let out = run_ok(args);
        let all = parse_metrics_any(&out);
        let netstat = &all[0];
        assert_eq!(netstat.0, "netstat");
        let rows: Vec<&AnyMetric> = all.iter().filter(|m| m.0 == "netstat_cgroup").collect();
        for (field, n) in &netstat.2 {
            let sum: u64 = rows
                .iter()
                .map(|r| r.2.iter().find(|f| &f.0 == field).unwrap().1)
                .sum();
            assert_eq!(sum, *n, "{args:?} {field}:\n{out}");
        }
    }
}

/// Native Prometheus names, which promtool accepts, and an execd loop
/// print what a one-shot run does (`want`, by cgroup).
fn native_names_and_execd_agree(want: &BTreeMap<String, BTreeMap<String, u64>>, service: &str) {
    let prom = run_ok(&[
        "--by-cgroup",
        "--only",
        "cgroup",
        "--format",
        "prometheus",
        "--prometheus-names",
        "native",
    ]);
    let line =
        format!("netstat_cgroup_tcp_connections{{cgroup=\"{service}\",state=\"established\"}} 4\n");
    assert!(prom.contains(&line), "{prom}");
    assert_eq!(promtool(&prom), (true, String::new()));
    // An execd loop prints the same.
    let mut plugin = Plugin::start(&["--execd", "--by-cgroup", "--only", "cgroup"]);
    plugin.tick("\n");
    let mut text = String::new();
    while !text.contains("cgroup=unattributed") {
        text.push_str(&plugin.line(Duration::from_secs(5)));
    }
    assert_eq!(&ours(&text).0, want, "{text}");
    drop(plugin);
}

/// /proc knows no cgroups: said, and everything is unattributed.
fn proc_source_says_it_has_no_cgroups() {
    let blocked = run_blocked(&["--by-cgroup", "--only", "cgroup"]);
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        stderr.contains("W! sockets read from /proc carry no cgroup; --by-cgroup counts them in the row tagged cgroup=unattributed\n"),
        "{stderr}"
    );
    let text = String::from_utf8(blocked.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("netstat_cgroup,cgroup=unattributed "),
        "{text}"
    );
}

fn counted_by_cgroup_as_ss_sees_them() {
    let root = mount().unwrap();
    let tag = format!("telegraf-netstat-test-{}", std::process::id());
    let service = format!("/{tag}.slice/web.service");
    let docker = format!("/system.slice/docker-{ID}.scope");
    let pod = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
        POD.replace('-', "_")
    );
    // A runtime's name below the root of the hierarchy, as anyone given a
    // subtree could make it: it names no container.
    let forged = format!("/{tag}.slice/system.slice/docker-{ID}.scope");
    let mut cgroups = Cgroups { made: Vec::new() };
    for p in [&service, &docker, &pod, &forged] {
        cgroups.make(&root.join(&p[1..]));
    }
    let dir = |p: &str| root.join(&p[1..]);
    let (service_dir, docker_dir, pod_dir) = (dir(&service), dir(&docker), dir(&pod));
    let forged_dir = dir(&forged);
    let (want, children) = in_netns(move || {
        let mut server = start(&service_dir, "server", "listening");
        let client = start(&docker_dir, "client", "ready");
        let podc = start(&pod_dir, "pod", "ready");
        let forger = start(&forged_dir, "forged", "ready");
        let out = server.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let expected = telegraf_netstat::Counts {
            tcp_listen: 1,
            tcp_established: 8,
            tcp_time_wait: 1,
            udp_socket: 2,
            ..Default::default()
        };
        settle(&expected);
        let want = from_ss();
        // The population is what it says: the service holds its listener
        // and every accepted connection, though the clients are elsewhere.
        let est = |c: &str| want.get(c).and_then(|s| s.get("ESTAB")).copied();
        assert_eq!(
            (est(&service), est(&docker), est(&pod)),
            (Some(4), Some(2), Some(2)),
            "{want:?}"
        );
        assert_eq!(want["unattributed"]["TIME-WAIT"], 1, "{want:?}");
        let out = run_ok(&["--by-cgroup"]);
        let (got, rows) = ours(&out);
        assert_eq!(got, want, "{out}");
        // Container and pod tags only where the runtime's own path names
        // them.
        let tags_of = |c: &str| {
            rows.iter()
                .find(|m| m.1.contains(&("cgroup".to_string(), c.to_string())))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(tags_of(&service), tags(&[("cgroup", &service)]));
        assert_eq!(tags_of(&forged), tags(&[("cgroup", &forged)]));
        assert_eq!(
            tags_of(&docker),
            tags(&[("cgroup", &docker), ("container_id", ID)])
        );
        assert_eq!(
            tags_of(&pod),
            tags(&[("cgroup", &pod), ("container_id", ID), ("pod_uid", POD)])
        );
        rows_add_up_to_netstat();
        native_names_and_execd_agree(&want, &service);
        proc_source_says_it_has_no_cgroups();
        (want, [server, client, podc, forger])
    });
    // From the host's namespace, through --netns: the same rows, tagged.
    // (The namespace's processes name different containers, so it gets no
    // namespace labels, which a W! line would say: they are left out.)
    let path = format!("/proc/{}/ns/net", children[0].id());
    let out = run_ok(&[
        "--netns",
        &path,
        "--no-netns-labels",
        "--by-cgroup",
        "--only",
        "cgroup",
    ]);
    assert_eq!(ours(&out).0, want, "{out}");
    let tag = format!("pid:{}", children[0].id());
    assert!(
        ours(&out)
            .1
            .iter()
            .all(|m| m.1.contains(&("netns".to_string(), tag.clone()))),
        "{out}"
    );
    for mut c in children {
        drop(c.stdin.take());
        c.wait().unwrap();
    }
    drop(cgroups);
    let _ = std::io::stdout().flush();
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    (f[0] + f[1]) as f64 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// 20 000 cgroups (a user with a delegated subtree can make them, wide or
/// deep) cost no memory beyond the paths asked for, and a socket whose
/// cgroup was removed (the socket keeps it alive) costs no walk per gather.
fn many_cgroups_and_a_removed_one() {
    let root = mount().unwrap();
    let base = root.join(format!("telegraf-netstat-many-{}", std::process::id()));
    let mut cgroups = Cgroups { made: Vec::new() };
    for i in 0..100 {
        for j in 0..100 {
            cgroups.make(&base.join(format!("wide-{i}/c-{j}")));
        }
    }
    for i in 0..10 {
        let mut deep = base.join(format!("deep-{i}"));
        for _ in 0..1000 {
            deep.push("d");
        }
        cgroups.make(&deep);
    }
    assert!(cgroups.made.len() >= 20_000);
    let gone = base.join("gone.service");
    std::fs::create_dir(&gone).unwrap();
    in_netns(move || {
        let mut holder = start(&gone, "other", "ready");
        // The process moves out; the cgroup is removed; its socket stays.
        std::fs::write(base.join("cgroup.procs"), holder.id().to_string()).unwrap();
        poll_until(Duration::from_secs(10), || {
            std::fs::remove_dir(&gone).is_ok()
        });
        let (_, plain) = rss_over_gathers(&[], 2, 20);
        let mut plugin = Plugin::start(&["--execd", "--by-cgroup", "--only", "cgroup"]);
        let gather = |plugin: &mut Plugin| {
            plugin.tick("\n");
            let mut text = String::new();
            while !text.contains("cgroup=unattributed") {
                text.push_str(&plugin.line(Duration::from_secs(30)));
                text.push('\n');
            }
            text
        };
        let first = gather(&mut plugin);
        assert!(
            first.contains("netstat_cgroup,cgroup=unresolved "),
            "{first}"
        );
        let walked = cpu_seconds(plugin.child.id());
        for _ in 0..20 {
            gather(&mut plugin);
        }
        let twenty = cpu_seconds(plugin.child.id()) - walked;
        // The first gather walked 20 000 directories; twenty more walk none.
        assert!(
            twenty < walked,
            "20 gathers took {twenty} s of CPU, the first {walked} s"
        );
        let rss = plugin.rss_kib();
        assert!(
            rss < plain + 4096,
            "{rss} KiB with --by-cgroup, {plain} KiB without"
        );
        drop(plugin);
        drop(holder.stdin.take());
        holder.wait().unwrap();
    });
    drop(cgroups);
}

fn main() {
    let args = Arguments::from_args();
    let setup = setup();
    let tests = tests![
        counted_by_cgroup_as_ss_sees_them,
        many_cgroups_and_a_removed_one,
    ];
    run_trials(args, setup, named("cgroups", &tests));
}
