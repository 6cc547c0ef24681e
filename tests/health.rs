//! `--health` on failures made in private network namespaces: connects
//! into a black hole (a route to `lo` for an address nobody holds), data
//! dropped by iptables, a reader that never reads (zero window), clients
//! whose SYN-ACKs are dropped, and a UDP socket flooded past its 2 KiB
//! receive buffer. Every count is compared with what `ss -tnoa` (its
//! `timer:(on|persist|keepalive,…,N)`) and `ss -uamn` (`d<N>`, Recv-Q) and
//! /proc/net/udp (`drops`) show, and the netlink and /proc sources with
//! each other; runs without `--health` print none of it.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use libtest_mimic::Arguments;
use rustix::net::sockopt;
use support::*;

/// One influx line: measurement, tags, fields (values as written).
type Line = (String, BTreeMap<String, String>, BTreeMap<String, String>);

fn lines(out: &str) -> Vec<Line> {
    out.lines()
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            let (name, tags) = parse_series(series);
            let fields = fields
                .split(',')
                .map(|f| {
                    let (k, v) = f.split_once('=').unwrap();
                    (k.to_string(), v.trim_end_matches('i').to_string())
                })
                .collect();
            (name, tags, fields)
        })
        .collect()
}

/// Field `field` of the one `measurement` row whose tags include `tags`.
fn field(out: &[Line], measurement: &str, tags: &[(&str, &str)], field: &str) -> u64 {
    let rows: Vec<&Line> = out
        .iter()
        .filter(|(m, t, _)| {
            m == measurement
                && tags
                    .iter()
                    .all(|(k, v)| t.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(rows.len(), 1, "{measurement} {tags:?}: {out:?}");
    rows[0].2[field]
        .parse()
        .unwrap_or_else(|_| panic!("{field} in {:?}", rows[0]))
}

/// The sum of `field` over every `measurement` row.
fn sum(out: &[Line], measurement: &str, field: &str) -> u64 {
    out.iter()
        .filter(|(m, ..)| m == measurement)
        .map(|(_, _, f)| f[field].parse::<u64>().unwrap())
        .sum()
}

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

/// A failing socket as `ss -Htnoa` shows it: (failure, local port, remote
/// address, remote port), failure named as our fields are.
type Failing = (&'static str, u16, String, u16);

fn port_of(addr: &str) -> (String, u16) {
    let (a, p) = addr.rsplit_once(':').unwrap();
    (
        a.trim_start_matches('[').trim_end_matches(']').to_string(),
        p.parse().unwrap(),
    )
}

/// Every socket `ss -Htnoa` shows failing: `timer:(on,…,N≥1)` by state
/// (SYN-SENT, SYN-RECV, or later), `timer:(persist,…)`, and
/// `timer:(keepalive,…,N≥1)`.
fn ss_failing() -> Vec<Failing> {
    let out = Command::new("ss").args(["-Htnoa"]).output().unwrap();
    let mut v = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(timer) = cols.iter().find_map(|c| c.strip_prefix("timer:(")) else {
            continue;
        };
        let t: Vec<&str> = timer.trim_end_matches(')').split(',').collect();
        let n: u32 = t[2].parse().unwrap();
        let failure = match (t[0], cols[0], n) {
            ("on", "SYN-SENT", 1..) => "syn_retrying",
            ("on", "SYN-RECV", 1..) => "synack_retrying",
            ("on", "LISTEN" | "TIME-WAIT" | "CLOSE", _) | ("on", _, 0) => continue,
            ("on", ..) => "retransmitting",
            ("persist", ..) => "zero_window",
            ("keepalive", _, 1..) => "keepalive_probing",
            _ => continue,
        };
        let local = port_of(cols[3]).1;
        let (remote, remote_port) = port_of(cols[4]);
        v.push((failure, local, remote, remote_port));
    }
    v
}

fn ss_count(ss: &[Failing], failure: &str, on: impl Fn(&Failing) -> bool) -> u64 {
    ss.iter().filter(|f| f.0 == failure && on(f)).count() as u64
}

const FAILURES: [&str; 5] = [
    "keepalive_probing",
    "retransmitting",
    "syn_retrying",
    "synack_retrying",
    "zero_window",
];

/// `netstat_health` and the `netstat_port` rows of `out`, for comparing
/// the two sources.
fn health_and_ports(out: &[Line]) -> Vec<&Line> {
    out.iter()
        .filter(|(m, ..)| m == "netstat_health" || m == "netstat_port")
        .collect()
}

/// Two connects into a black hole: `syn_retrying` 2 on their destination,
/// their remote port, their cgroup and the namespace, as `ss` counts them;
/// /proc agrees; `netstat` keeps its 13 fields.
fn syn_retrying_toward_a_black_hole() {
    in_netns(|| {
        tool("ip", &["route", "add", "10.9.0.0/24", "dev", "lo"]);
        tool("ip", &["addr", "add", "10.9.0.1/32", "dev", "lo"]);
        let to: SocketAddr = "10.9.0.7:5432".parse().unwrap();
        let c = [connect_nonblocking(to), connect_nonblocking(to)];
        poll_until(Duration::from_secs(10), || {
            ss_count(&ss_failing(), "syn_retrying", |f| f.3 == 5432) == 2
        });
        let args = [
            "--health",
            "--remote-port",
            "5432",
            "--destinations",
            "5",
            "--by-cgroup",
        ];
        let out = lines(&run_ok(&args));
        let ss = ss_failing();
        let want = ss_count(&ss, "syn_retrying", |f| f.2 == "10.9.0.7" && f.3 == 5432);
        assert_eq!(want, 2, "{ss:?}");
        let port = [("direction", "remote"), ("port", "5432")];
        assert_eq!(field(&out, "netstat_port", &port, "syn_retrying"), want);
        let dest = [("address", "10.9.0.7"), ("port", "5432")];
        assert_eq!(
            field(&out, "netstat_destination", &dest, "syn_retrying"),
            want
        );
        assert_eq!(sum(&out, "netstat_cgroup", "syn_retrying"), want);
        for f in FAILURES {
            let n = ss_count(&ss, f, |_| true);
            assert_eq!(field(&out, "netstat_health", &[], f), n, "{f}");
        }
        let netstat = out.iter().find(|l| l.0 == "netstat").unwrap();
        assert_eq!(netstat.2.len(), 13, "{netstat:?}");
        let proc = lines(&run_ok(&[
            "--health",
            "--remote-port",
            "5432",
            "--source",
            "proc",
        ]));
        assert_eq!(health_and_ports(&proc), health_and_ports(&out));
        drop(c);
    })
}

/// A connection whose data iptables drops (`retransmitting`), one whose
/// reader never reads (`zero_window`) and a healthy busy one (nothing),
/// each on its own port, as `ss` counts them; /proc agrees.
fn retransmitting_and_zero_window_per_port() {
    in_netns(|| {
        let dropped = std::net::TcpListener::bind("127.0.0.1:7000").unwrap();
        let healthy = std::net::TcpListener::bind("127.0.0.1:7001").unwrap();
        let stuck = listener("127.0.0.1:7002", 8, small_rcvbuf);
        let (mut c, s) = connect_pair(&dropped, |_| {});
        let (mut h, mut hs) = connect_pair(&healthy, |_| {});
        let (mut z, zs) = connect_pair(&stuck, big_sndbuf);
        for _ in 0..100 {
            h.write_all(&[7; 1000]).unwrap();
            let mut b = [0; 1000];
            std::io::Read::read_exact(&mut hs, &mut b).unwrap();
        }
        tool(
            "iptables",
            &["-A", "INPUT", "-p", "tcp", "--dport", "7000", "-j", "DROP"],
        );
        c.write_all(b"lost").unwrap();
        fill(&mut z);
        poll_until(Duration::from_secs(10), || {
            let ss = ss_failing();
            ss_count(&ss, "retransmitting", |f| f.3 == 7000) == 1
                && ss_count(&ss, "zero_window", |f| f.3 == 7002) == 1
        });
        let args = [
            "--health",
            "--remote-port",
            "7000,7001,7002",
            "--local-port",
            "7001",
        ];
        let out = lines(&run_ok(&args));
        let ss = ss_failing();
        for port in [7000u16, 7001, 7002] {
            let p = port.to_string();
            let tags = [("direction", "remote"), ("port", p.as_str())];
            for f in FAILURES {
                let want = ss_count(&ss, f, |s| s.3 == port);
                assert_eq!(field(&out, "netstat_port", &tags, f), want, "{port} {f}");
            }
        }
        let r = |p: &str, f: &str| {
            field(
                &out,
                "netstat_port",
                &[("direction", "remote"), ("port", p)],
                f,
            )
        };
        assert_eq!(
            (r("7000", "retransmitting"), r("7002", "zero_window")),
            (1, 1)
        );
        let local = [("direction", "local"), ("port", "7001")];
        for f in FAILURES {
            assert_eq!(
                r("7001", f) + field(&out, "netstat_port", &local, f),
                0,
                "{f}"
            );
            assert_eq!(
                field(&out, "netstat_health", &[], f),
                ss_count(&ss, f, |_| true)
            );
        }
        let proc = lines(&run_ok(&[&args[..], &["--source", "proc"]].concat()));
        assert_eq!(health_and_ports(&proc), health_and_ports(&out));
        drop((c, s, h, hs, z, zs));
    })
}

/// Clients whose SYN-ACKs are dropped: `synack_retrying` on the listener
/// and the namespace, the clients `syn_retrying`, as `ss` counts them; /proc
/// agrees once every handshake's timer has fired (it shows SYN-ACK
/// timeouts, netlink SYN-ACKs resent).
fn synack_retrying_on_the_listener() {
    in_netns(|| {
        let l = listener("127.0.0.1:7100", 16, |_| {});
        let drop_synack = [
            "INPUT",
            "-p",
            "tcp",
            "--sport",
            "7100",
            "--tcp-flags",
            "SYN,ACK",
            "SYN,ACK",
            "-j",
            "DROP",
        ];
        tool("iptables", &[&["-A"], &drop_synack[..]].concat());
        let to: SocketAddr = "127.0.0.1:7100".parse().unwrap();
        let c: Vec<_> = (0..3).map(|_| connect_nonblocking(to)).collect();
        let args = ["--health", "--listen-queues"];
        let settled = |source: &str| {
            let out = lines(&run_ok(&[&args[..], &["--source", source]].concat()));
            let tags = [("address", "127.0.0.1"), ("port", "7100")];
            (field(&out, "netstat_listen", &tags, "synack_retrying") == 3).then_some(out)
        };
        poll_until(Duration::from_secs(10), || {
            ss_count(&ss_failing(), "synack_retrying", |f| f.1 == 7100) == 3
                && settled("proc").is_some()
        });
        let out = settled("netlink").expect("netlink sees the three handshakes");
        let ss = ss_failing();
        let tags = [("address", "127.0.0.1"), ("port", "7100")];
        assert_eq!(field(&out, "netstat_listen", &tags, "syn_recv"), 3);
        for f in FAILURES {
            assert_eq!(
                field(&out, "netstat_health", &[], f),
                ss_count(&ss, f, |_| true),
                "{f}"
            );
        }
        assert_eq!(field(&out, "netstat_health", &[], "syn_retrying"), 3);
        let proc = settled("proc").unwrap();
        let of = |o: &[Line]| -> Vec<u64> {
            ["synack_retrying", "syn_retrying"]
                .iter()
                .map(|f| field(o, "netstat_health", &[], f))
                .collect()
        };
        assert_eq!(of(&proc), of(&out));
        drop((l, c));
    })
}

/// `ss -uamn`'s Recv-Q and `d<N>` of the socket on `port`.
fn ss_udp(port: u16) -> (u64, u64) {
    let out = Command::new("ss").args(["-Huamn"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let skmem = lines.next().unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        if port_of(cols[3]).1 != port {
            continue;
        }
        let drops = skmem
            .split([',', ')'])
            .find_map(|f| f.strip_prefix('d'))
            .unwrap()
            .parse()
            .unwrap();
        return (cols[1].parse().unwrap(), drops);
    }
    panic!("no UDP socket on {port}: {text}")
}

/// /proc/net/udp's `drops` of the socket on `port`, in this thread's
/// namespace.
fn proc_udp_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap();
    let want = format!(":{port:04X}");
    let line = text
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&want))
        })
        .unwrap();
    line.split_whitespace().nth(12).unwrap().parse().unwrap()
}

/// A UDP socket with a 2 KiB receive buffer sent 1000 datagrams unread:
/// `udp_drops` equal to `ss`'s `d`, /proc's drops and the namespace's row,
/// `udp_receive_queue` to its Recv-Q; /proc agrees; the Prometheus drop
/// family is a counter.
fn udp_drops_and_receive_queue() {
    in_netns(|| {
        let r = UdpSocket::bind("127.0.0.1:9999").unwrap();
        sockopt::set_socket_recv_buffer_size(r.as_fd(), 2048).unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..1000 {
            s.send_to(&[1; 200], "127.0.0.1:9999").unwrap();
        }
        let args = ["--health", "--local-port", "9999"];
        let out = lines(&run_ok(&args));
        let (queue, drops) = ss_udp(9999);
        assert!(drops > 900, "{drops}");
        assert_eq!(proc_udp_drops(9999), drops);
        let port = [("direction", "local"), ("port", "9999")];
        assert_eq!(field(&out, "netstat_port", &port, "udp_drops"), drops);
        assert_eq!(
            field(&out, "netstat_port", &port, "udp_receive_queue"),
            queue
        );
        assert_eq!(field(&out, "netstat_health", &[], "udp_drops"), drops);
        assert_eq!(
            field(&out, "netstat_health", &[], "udp_receive_queue"),
            queue
        );
        let proc = lines(&run_ok(&[&args[..], &["--source", "proc"]].concat()));
        assert_eq!(health_and_ports(&proc), health_and_ports(&out));
        let prom = run_ok(
            &[
                &args[..],
                &["--format", "prometheus", "--prometheus-names", "native"],
            ]
            .concat(),
        );
        assert!(
            prom.contains("# TYPE netstat_udp_socket_drops_total counter\n"),
            "{prom}"
        );
        assert!(prom.contains(&format!("netstat_port_udp_socket_drops_total{{direction=\"local\",port=\"9999\"}} {drops}\n")), "{prom}");
        drop((r, s));
    })
}

/// Without `--health` no row carries its fields and no `netstat_health` is
/// printed; `--only health` prints that row alone.
fn nothing_without_the_flag() {
    in_netns(|| {
        let r = UdpSocket::bind("127.0.0.1:9999").unwrap();
        let l = listener("127.0.0.1:7100", 16, |_| {});
        let c = TcpStream::connect("127.0.0.1:7100").unwrap();
        let args = [
            "--local-port",
            "9999",
            "--listen-queues",
            "--destinations",
            "5",
            "--by-cgroup",
        ];
        let health_fields = [&FAILURES[..], &["udp_drops", "udp_receive_queue"]].concat();
        for (source, with) in [
            ("netlink", false),
            ("proc", false),
            ("netlink", true),
            ("proc", true),
        ] {
            let mut a: Vec<&str> = args.to_vec();
            if source == "proc" {
                a.retain(|x| *x != "--by-cgroup");
            }
            a.extend(["--source", source]);
            if with {
                a.push("--health");
            }
            let out = lines(&run_ok(&a));
            let carrying = out
                .iter()
                .filter(|(_, _, f)| f.keys().any(|k| health_fields.contains(&k.as_str())))
                .count();
            let others = out
                .iter()
                .filter(|(m, ..)| m != "netstat" && m != "netstat_ephemeral")
                .count();
            assert_eq!(carrying, if with { others } else { 0 }, "{out:?}");
            assert_eq!(out.iter().any(|(m, ..)| m == "netstat_health"), with);
        }
        let only = run_ok(&["--health", "--only", "health"]);
        assert!(
            only.lines().count() == 1 && only.starts_with("netstat_health "),
            "{only}"
        );
        drop((r, l, c));
    })
}

fn main() {
    let args = Arguments::from_args();
    let tools = tools_on_path(&[
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("ss", "iproute2"),
    ]);
    let setup = namespace_setup()
        .and(tools)
        .and(needs_root("iptables and routes in the namespace"));
    let tests = tests![
        syn_retrying_toward_a_black_hole,
        retransmitting_and_zero_window_per_port,
        synack_retrying_on_the_listener,
        udp_drops_and_receive_queue,
        nothing_without_the_flag,
    ];
    run_trials(args, setup, named("health", &tests));
}
