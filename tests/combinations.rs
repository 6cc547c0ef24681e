//! Every measurement at once, × each way of choosing and labelling
//! namespaces (our own; `--netns` of a labelled container namespace;
//! `--all-netns`), × every format and naming, read by the real consumers:
//! InfluxDB stores as many series as there are lines, promtool finds
//! nothing to say, JSON parses with every key once, no two rows of one
//! measurement share their tags, and the `netstat_cgroup` rows add up to
//! the `netstat` line of their namespace (README, `--by-cgroup`).
//!
//! The container namespace is the deployment that broke: its only process
//! runs in `/system.slice/docker-<ID>.scope`, so the namespace is labelled
//! `container_id=<ID>` (and its hostname) while its sockets' cgroup rows
//! name the container again: each key must still be written once.
//!
//! A new measurement flag joins `MEASUREMENTS`. `--source bpf` runs the
//! same with the flags it takes (`BPF_MEASUREMENTS`) in every format.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::Arguments;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use support::servers::Influx;
use support::*;
use telegraf_netstat::cgroupfs::cgroup2_mount;

const ID: &str = "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// Every measurement flag (with the values it needs).
const MEASUREMENTS: [&str; 16] = [
    "--by-family",
    "--local-port",
    "8080",
    "--remote-port",
    "8080",
    "--listening-ports",
    "--listen-queues",
    "--ephemeral-ports",
    "--destinations",
    "5",
    "--by-cgroup",
    "--include-unix",
    "--counters",
    "--health",
    "--tcp-info",
    "--timestamp",
];

/// What `--source bpf` takes of `MEASUREMENTS`.
const BPF_MEASUREMENTS: [&str; 6] = [
    "--source",
    "bpf",
    "--by-family",
    "--include-unix",
    "--counters",
    "--timestamp",
];

fn setup() -> Result<(), String> {
    namespace_setup()?;
    needs_root("a container-like cgroup and namespace")?;
    cgroup2_mount(&std::fs::read("/proc/self/mountinfo").map_err(|e| e.to_string())?)
        .ok_or("no cgroup2 mount")?;
    tools_on_path(&[
        ("influxd", "influxdb"),
        ("promtool", "prometheus"),
        ("python3", "python3"),
    ])
}

const HOLDER: &str = r#"
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 8080))
l.listen(16)
cs = [socket.create_connection(("127.0.0.1", 8080)) for _ in range(3)]
ss = [l.accept()[0] for _ in range(3)]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 5353))
print("ready", flush=True)
sys.stdin.read()
"#;

/// A container as Docker makes one: a network and UTS namespace (hostname
/// `web-0`) whose one process, holding sockets, runs in the runtime's
/// cgroup. Torn down when dropped.
struct Container {
    holder: Child,
    cgroup: PathBuf,
}

impl Container {
    fn start() -> Container {
        let mount = cgroup2_mount(&std::fs::read("/proc/self/mountinfo").unwrap()).unwrap();
        let slice = mount.join("system.slice");
        let cgroup = slice.join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&cgroup).unwrap();
        let dir = cgroup.clone();
        let holder = std::thread::spawn(move || {
            use rustix::thread::UnshareFlags;
            // SAFETY: no file descriptor tables are unshared.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::NEWUTS) }
                .unwrap();
            rustix::system::sethostname(b"web-0").unwrap();
            loopback_up().unwrap();
            let mut cmd = Command::new("python3");
            cmd.args(["-c", HOLDER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            start_in_cgroup(&mut cmd, &dir);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let mut holder = holder;
        let mut out = BufReader::new(holder.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Container { holder, cgroup }
    }

    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
        poll_until(Duration::from_secs(10), || {
            std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists()
        });
    }
}

/// A JSON value with every object kept as its list of pairs, so a key
/// written twice is seen (`serde_json::Value` keeps only the last).
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Json, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Json>()? {
                    pairs.push((k, v));
                }
                Ok(Json::Object(pairs))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = s.next_element::<Json>()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_str<E>(self, _: &str) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Panics if any object in `j` has a key twice.
fn keys_once(j: &Json, line: &str) {
    match j {
        Json::Object(pairs) => {
            let mut seen = HashSet::new();
            for (k, v) in pairs {
                assert!(seen.insert(k), "key {k:?} twice in {line}");
                keys_once(v, line);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| keys_once(v, line)),
        Json::Other => {}
    }
}

/// One influx line as (measurement, tags, fields), fields as text.
type Row = (String, Vec<(String, String)>, Vec<(String, String)>);

/// Splits at `sep` where it is not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if c == sep && !escaped {
            out.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        out.last_mut().unwrap().push(c);
    }
    out
}

fn influx_rows(out: &str) -> Vec<Row> {
    out.lines()
        .map(|line| {
            let parts = split_unescaped(line, ' ');
            assert_eq!(parts.len(), 3, "series, fields and time: {line}");
            let mut series = split_unescaped(&parts[0], ',').into_iter();
            let name = series.next().unwrap();
            let pair = |kv: String| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            };
            let tags: Vec<_> = series.map(pair).collect();
            let fields: Vec<_> = split_unescaped(&parts[1], ',')
                .into_iter()
                .map(pair)
                .collect();
            (name, tags, fields)
        })
        .collect()
}

/// Rows well formed: each tag key once per row, no two rows of one
/// measurement with the same tags, and the cgroup rows of each namespace
/// summing to its `netstat` and `netstat_health` rows field by field.
fn check_rows(rows: &[Row], text: &str) {
    let mut seen = HashSet::new();
    for (name, tags, _) in rows {
        let keys: HashSet<&String> = tags.iter().map(|t| &t.0).collect();
        assert_eq!(keys.len(), tags.len(), "a tag key twice: {name} {tags:?}");
        assert!(
            seen.insert((name, tags)),
            "two {name} rows tagged {tags:?}:\n{text}"
        );
    }
    // netns tag -> field -> (netstat sum, cgroup sum)
    let mut sums: BTreeMap<(Option<String>, String), (u64, u64)> = BTreeMap::new();
    for (name, tags, fields) in rows {
        let which = match name.as_str() {
            "netstat" | "netstat_health" => 0,
            "netstat_cgroup" => 1,
            _ => continue,
        };
        let ns = tags.iter().find(|t| t.0 == "netns").map(|t| t.1.clone());
        for (k, v) in fields {
            let v: u64 = v.strip_suffix('i').unwrap().parse().unwrap();
            let e = sums.entry((ns.clone(), k.clone())).or_default();
            if which == 0 {
                e.0 += v;
            } else {
                e.1 += v;
            }
        }
    }
    assert!(!sums.is_empty(), "{text}");
    if !rows.iter().any(|r| r.0 == "netstat_cgroup") {
        return;
    }
    for ((ns, field), (netstat, cgroup)) in &sums {
        assert_eq!(netstat, cgroup, "{field} in {ns:?}:\n{text}");
    }
}

/// One run of every measurement with `namespaces` in every format, read by
/// each consumer. Returns the influx rows.
fn every_format(influx: &Influx, db: &str, measurements: &[&str], namespaces: &[&str]) -> Vec<Row> {
    let mut rows = Vec::new();
    for format in FORMATS.iter() {
        let mut args: Vec<&str> = measurements.to_vec();
        args.extend(namespaces);
        args.extend(*format);
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("E! "), "{args:?}: {stderr}");
        assert!(!stderr.contains("--state-file"), "{args:?}: {stderr}");
        let text = String::from_utf8(out.stdout).unwrap();
        match format[1] {
            "influx" => {
                influx.query(&format!("CREATE DATABASE {db}"));
                assert_eq!(influx.write(db, &text), (204, String::new()), "{text}");
                let series = influx.query(&format!("SHOW SERIES ON {db}"));
                let stored = series["series"][0]["values"].as_array().map_or(0, Vec::len);
                assert_eq!(stored, text.lines().count(), "{series}\n{text}");
                rows = influx_rows(&text);
                check_rows(&rows, &text);
            }
            "json" => {
                for line in text.lines() {
                    let j: Json =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                    keys_once(&j, line);
                }
            }
            _ => {
                // Telegraf's names for the kernel's counters keep nstat's
                // camelCase field names, which promtool's lint calls out (as
                // it does node_exporter's node_netstat_Tcp_*): that and
                // nothing else is allowed, and only in Telegraf's naming.
                let (ok, said) = promtool(&text);
                let native = format.contains(&"native");
                let lint_only = said.lines().all(|l| {
                    l.starts_with("netstat_counters_")
                        && l.ends_with(
                            "metric names should be written in 'snake_case' not 'camelCase'",
                        )
                });
                assert!(ok || !native && lint_only, "{args:?}: {said}");
            }
        }
    }
    rows
}

/// Every measurement × every namespace choice × every format.
fn every_flag_namespace_and_format_together() {
    together(&MEASUREMENTS);
}

/// The same with `--source bpf` and the flags it takes.
fn every_flag_namespace_and_format_together_with_bpf() {
    together(&BPF_MEASUREMENTS);
}

/// `measurements` × every namespace choice × every format.
fn together(measurements: &'static [&'static str]) {
    let bpf = measurements.contains(&"bpf");
    let container = Container::start();
    let container_ns = container.netns();
    let container_pid = container.holder.id();
    in_netns(move || {
        // Its sockets join our namespace's counts; every check is within
        // one gather, so they only add rows.
        let influx = Influx::start();
        // Our own namespace: listeners, connections (one to 8080), UDP and
        // unix sockets.
        let mut p = listeners();
        p.merge(established(2, 1));
        p.merge(udp());
        let l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
        let c = std::net::TcpStream::connect("127.0.0.1:8080").unwrap();
        let s = l.accept().unwrap();
        let unix = (
            std::os::unix::net::UnixStream::pair().unwrap(),
            std::os::unix::net::UnixDatagram::pair().unwrap(),
        );
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        // A proc root with just our namespace's process and the
        // container's: the machine's other processes stay out.
        let proc_root = Scratch::new("combinations-proc");
        for pid in [sleeper.id(), container_pid] {
            std::os::unix::fs::symlink(format!("/proc/{pid}"), proc_root.0.join(pid.to_string()))
                .unwrap();
        }
        // Its /proc/sys, /proc/self and /proc/thread-self are the real ones
        // (the port range, the cgroup2 mount and the counters are read there).
        for entry in ["sys", "self", "thread-self"] {
            std::os::unix::fs::symlink(format!("/proc/{entry}"), proc_root.0.join(entry)).unwrap();
        }
        let root = proc_root.0.to_str().unwrap();
        // Every one-shot run below keeps --tcp-info's destinations in one
        // --state-file and reads back what the run before it kept, whatever
        // namespaces and format that run had (bpf takes no --tcp-info).
        let state = Scratch::new("combinations-state");
        let state_file = state.join("netstat.state");
        let mut m = measurements.to_vec();
        if !bpf {
            m.extend(["--state-file", state_file.to_str().unwrap()]);
        }
        let m = &m[..];
        let own = every_format(&influx, "own", m, &[]);
        assert!(own.iter().all(|r| r.1.iter().all(|t| t.0 != "netns")));
        let netns = every_format(
            &influx,
            "netns",
            m,
            &["--netns", &container_ns, "--proc-root", root],
        );
        let all = every_format(
            &influx,
            "allnetns",
            m,
            &["--all-netns", "--proc-root", root],
        );
        // The container's namespace is labelled, and its cgroup rows name
        // the container once (the socket's own cgroup; the same here); with
        // bpf, which has no cgroup rows, its netstat rows.
        for (rows, tag) in [
            (&netns, container_ns.clone()),
            (&all, format!("pid:{container_pid}")),
        ] {
            let cgroup = format!("/system.slice/docker-{ID}.scope");
            let row = rows
                .iter()
                .find(|r| match bpf {
                    true => r.0 == "netstat" && r.1.contains(&("netns".into(), tag.clone())),
                    false => {
                        r.0 == "netstat_cgroup" && r.1.contains(&("cgroup".into(), cgroup.clone()))
                    }
                })
                .unwrap_or_else(|| panic!("no row for {cgroup}: {rows:?}"));
            for (k, v) in [
                ("container_id", ID),
                ("hostname", "web-0"),
                ("netns", tag.as_str()),
            ] {
                assert!(row.1.contains(&(k.to_string(), v.to_string())), "{row:?}");
            }
        }
        if !bpf {
            // Kept by the last run: our connection to 8080 among them.
            let kept = std::fs::read_to_string(&state_file).unwrap();
            let to_8080 = |l: &str| l.starts_with("tcp-info-destination ") && l.ends_with(" 8080");
            assert!(kept.lines().any(to_8080), "{kept}");
        }
        assert!(all
            .iter()
            .any(|r| r.0 == "netstat" && r.1.contains(&("netns".into(), "self".into()))));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        drop((p, l, c, s, unix));
    });
    drop(container);
}

fn main() {
    let args = Arguments::from_args();
    let tests = tests![
        every_flag_namespace_and_format_together,
        every_flag_namespace_and_format_together_with_bpf,
    ];
    let needs = [("_with_bpf", bpf_available())];
    run_trials_needing(args, setup(), named("combinations", &tests), &needs);
}
