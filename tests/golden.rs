//! Golden output: every measurement flag at once and each alone, in every
//! format and naming, compared byte for byte with the files in
//! `tests/golden/` after masking what legitimately varies between runs and
//! machines (counter values, the gather time, the JSON timestamp, the
//! version, whether the namespace shares the host's TCP hash, the path of
//! the cgroup the test runs in). Captured before the measurements became
//! modules: a refactor keeps these bytes.
//!
//! The population is fixed, in a private network namespace: listeners on
//! 127.0.0.1:8080 and [::1]:8443, connections to both (one of them left in
//! the accept queue), UDP sockets bound to 5353 and one connected to it,
//! a unix stream pair and a unix datagram pair. Ephemeral port numbers
//! appear in no tag: every port named is a listener's.
//!
//! `GOLDEN_UPDATE=1 cargo test --test golden` writes the files anew; the
//! diff is then what changed in the output.

mod support;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;

use libtest_mimic::Arguments;
use support::*;

/// Every measurement flag (the values fixed; the counters a few that every
/// kernel since 2.6 has, from each of the three files).
const COUNTERS: &str =
    "--counters=TcpActiveOpens,TcpPassiveOpens,TcpExtListenOverflows,UdpNoPorts,Udp6InDatagrams";

/// Each case: its file's name and the flags.
const CASES: &[(&str, &[&str])] = &[
    ("default", &[]),
    (
        "all",
        &[
            "--by-family",
            "--local-port",
            "8080",
            "--remote-port",
            "8080,8443",
            "--listening-ports",
            "--listen-queues",
            "--ephemeral-ports",
            "--destinations",
            "2",
            "--by-cgroup",
            "--include-unix",
            COUNTERS,
            "--health",
        ],
    ),
    ("by-family", &["--by-family"]),
    ("local-port", &["--local-port", "8080,8443,5353,9"]),
    ("remote-port", &["--remote-port", "8080,8443,5353"]),
    ("listening-ports", &["--listening-ports"]),
    ("listen-queues", &["--listen-queues"]),
    (
        "listen-queues-proc",
        &["--listen-queues", "--source", "proc"],
    ),
    ("only-listen", &["--listen-queues", "--only", "listen"]),
    ("ephemeral-ports", &["--ephemeral-ports"]),
    ("destinations", &["--destinations", "2"]),
    ("by-cgroup", &["--by-cgroup"]),
    ("include-unix", &["--include-unix", "--by-family"]),
    ("counters", &[COUNTERS]),
    ("only-counters", &[COUNTERS, "--only", "counters"]),
    ("health", &["--health"]),
    ("only-health", &["--health", "--only", "health"]),
    (
        "health-rows",
        &[
            "--health",
            "--local-port",
            "8080,5353",
            "--listen-queues",
            "--destinations",
            "2",
            "--by-cgroup",
        ],
    ),
];

fn setup() -> Result<(), String> {
    namespace_setup()?;
    // The kernel says whether a namespace shares the TCP hash (6.1+):
    // netstat_tcp_hash_shared is printed.
    if !std::path::Path::new("/proc/sys/net/ipv4/tcp_child_ehash_entries").exists() {
        return Err("needs Linux 6.1+ (net.ipv4.tcp_child_ehash_entries)".into());
    }
    let mountinfo = std::fs::read("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    telegraf_netstat::cgroupfs::cgroup2_mount(&mountinfo).ok_or("no cgroup2 mount")?;
    Ok(())
}

/// The sockets every case counts.
struct Population {
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn population() -> Population {
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let v4 = TcpListener::bind("127.0.0.1:8080").unwrap();
    let v6 = TcpListener::bind("[::1]:8443").unwrap();
    for _ in 0..2 {
        keep.push(Box::new(TcpStream::connect("127.0.0.1:8080").unwrap()));
        keep.push(Box::new(v4.accept().unwrap()));
    }
    keep.push(Box::new(TcpStream::connect("[::1]:8443").unwrap()));
    keep.push(Box::new(v6.accept().unwrap()));
    // Left in the accept queue.
    let waiting = TcpStream::connect("127.0.0.1:8080").unwrap();
    keep.push(Box::new(waiting));
    let udp = UdpSocket::bind("127.0.0.1:5353").unwrap();
    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect("127.0.0.1:5353").unwrap();
    keep.push(Box::new(UdpSocket::bind("[::1]:5353").unwrap()));
    keep.push(Box::new((udp, connected)));
    keep.push(Box::new(UnixStream::pair().unwrap()));
    keep.push(Box::new(UnixDatagram::pair().unwrap()));
    keep.push(Box::new((v4, v6)));
    Population { _keep: keep }
}

/// Replaces what follows each `key` up to one of `ends` (or the end) with
/// `with`, when `keep` says the value is not to be kept.
fn mask_after(
    line: &str,
    key: &str,
    ends: &[char],
    with: &str,
    keep: &dyn Fn(&str) -> bool,
) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        let end = tail.find(ends).unwrap_or(tail.len());
        let value = &tail[..end];
        out.push_str(if keep(value) { value } else { with });
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Removes each `key` and its value up to one of `ends`; `sep` before it.
fn drop_tag(line: &str, key: &str, ends: &[char]) -> String {
    let Some(i) = line.find(key) else {
        return line.to_string();
    };
    let end = line[i + key.len()..]
        .find(ends)
        .map_or(line.len(), |e| i + key.len() + e);
    format!("{}{}", &line[..i], &line[end..])
}

/// Cgroup tags kept as they are: the rows that are not a path.
fn fixed_cgroup(v: &str) -> bool {
    matches!(
        v,
        "unattributed" | "other" | "unresolved" | "\"unattributed" | "\"other" | "\"unresolved"
    )
}

fn any(_: &str) -> bool {
    false
}

fn mask_influx(line: &str) -> String {
    if line.starts_with("netstat_counters") {
        let (series, fields) = line.split_once(' ').unwrap();
        return format!("{series} {}", mask_after(fields, "=", &[','], "Ni", &any));
    }
    if line.starts_with("netstat_cgroup,") && line.contains(",cgroup=/") {
        let l = drop_tag(line, ",container_id=", &[',', ' ']);
        let l = drop_tag(&l, ",pod_uid=", &[',', ' ']);
        return mask_after(&l, ",cgroup=", &[',', ' '], "<cgroup>", &fixed_cgroup);
    }
    line.to_string()
}

fn mask_json(line: &str) -> String {
    let mut l = mask_after(line, "\"timestamp\":", &['}', ','], "T", &any);
    if l.contains("\"name\":\"netstat_counters\"") {
        let start = l.find("\"fields\":{").unwrap() + "\"fields\":{".len();
        let end = start + l[start..].find('}').unwrap();
        let fields = mask_after(&l[start..end], ":", &[','], "N", &any);
        l = format!("{}{fields}{}", &l[..start], &l[end..]);
    }
    if l.contains("\"name\":\"netstat_cgroup\"") && l.contains("\"cgroup\":\"/") {
        l = drop_tag(&l, "\"container_id\":", &[',', '}']);
        l = drop_tag(&l, "\"pod_uid\":", &[',', '}']);
        l = l.replace(",,", ",").replace("{,", "{").replace(",}", "}");
        l = mask_after(&l, "\"cgroup\":\"", &['"'], "<cgroup>", &fixed_cgroup);
    }
    l
}

fn mask_prometheus(text: &str) -> String {
    let mut counters: Vec<String> = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            counters.push(name.to_string());
        }
        let mut l = line.to_string();
        if !line.starts_with('#') {
            let name = &line[..line.find(['{', ' ']).unwrap()];
            let masked = counters.iter().any(|c| c == name)
                || matches!(
                    name,
                    "netstat_gather_duration_seconds" | "netstat_tcp_hash_shared"
                );
            if masked {
                let (head, _) = l.rsplit_once(' ').unwrap();
                l = format!("{head} N");
            }
            if name == "netstat_build_info" {
                l = mask_after(&l, "version=\"", &['"'], "V", &any);
                l = mask_after(&l, "target=\"", &['"'], "T", &any);
            }
            if l.contains("cgroup=\"/") {
                l = drop_tag(&l, "container_id=\"", &['}', ',']);
                l = drop_tag(&l, "pod_uid=\"", &['}', ',']);
                l = l.replace(",,", ",").replace("{,", "{").replace(",}", "}");
                l = mask_after(&l, "cgroup=\"", &['"'], "<cgroup>", &fixed_cgroup);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Every case's output in every format, masked.
fn outputs() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (name, flags) in CASES {
        let mut text = String::new();
        for format in FORMATS {
            let mut args: Vec<&str> = flags.to_vec();
            args.extend(format);
            let out = run_ok(&args);
            text.push_str(&format!("## {}\n", args.join(" ")));
            match format[1] {
                "influx" => out
                    .lines()
                    .for_each(|l| text.push_str(&(mask_influx(l) + "\n"))),
                "json" => out
                    .lines()
                    .for_each(|l| text.push_str(&(mask_json(l) + "\n"))),
                _ => text.push_str(&mask_prometheus(&out)),
            }
        }
        files.push((name.to_string(), text));
    }
    files
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every case, compared with its file (or written with `GOLDEN_UPDATE=1`).
fn every_measurement_and_format_as_captured() {
    let files = in_netns(|| {
        let p = population();
        let files = outputs();
        drop(p);
        files
    });
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    let mut differ = Vec::new();
    for (name, text) in files {
        let path = golden_dir().join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (GOLDEN_UPDATE=1 writes it)", path.display()));
        if want != text {
            let line = want
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(text.lines().count()));
            differ.push(format!(
                "{}: first difference at line {}:\n  want {:?}\n  got  {:?}",
                path.display(),
                line + 1,
                want.lines().nth(line),
                text.lines().nth(line)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

fn main() {
    let args = Arguments::from_args();
    let tests = tests![every_measurement_and_format_as_captured];
    run_trials(args, setup(), named("golden", &tests));
}
