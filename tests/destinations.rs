//! `netstat_destination` (`--destinations N`) and `netstat_ephemeral`
//! (`--ephemeral-ports`) in private network namespaces whose ephemeral
//! range is set small, so that every figure is known exactly: compared
//! with what `ss` shows (worked out here independently from its listing),
//! for both sources, one-shot, execd and `--netns`; exhaustion reproduced;
//! the cap on tracked destinations said.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use libtest_mimic::Arguments;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use support::*;
use telegraf_netstat::Counts;

/// The namespace's range: 20 ports, one of them reserved.
const LOW: u16 = 40000;
const HIGH: u16 = 40019;
const RESERVED: u16 = 40005;
/// A listener inside the range, with inbound connections.
const INBOUND: u16 = 40010;

fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/net/ipv4/{name}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// A TCP connection from an IPv6 socket to `to` (an IPv4-mapped address):
/// (client, accepted server end).
fn connect_v6(l: &TcpListener, to: &str) -> (TcpStream, TcpStream) {
    let to: SocketAddr = to.parse().unwrap();
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::connect(&fd, &to).expect("connect");
    (TcpStream::from(fd), l.accept().unwrap().0)
}

/// Binds to `addr` (port 0) before connecting, as a client with a chosen
/// source address does.
fn bind_to(addr: &'static str) -> impl FnOnce(std::os::fd::BorrowedFd<'_>) {
    move |fd| rustix::net::bind(fd, &addr.parse::<SocketAddr>().unwrap()).unwrap()
}

/// Destinations of every kind, in a namespace whose range is
/// `LOW..=HIGH` minus `RESERVED`:
/// - a database at 127.0.0.1:5432 (outside the range): two connections,
///   two more in TIME_WAIT (the client closed first), two bound first to
///   127.0.0.5, one from an IPv6 socket to ::ffff:127.0.0.1, one bound to
///   the reserved port;
/// - a cache at [::1]:6379, three connections;
/// - 127.0.0.2, .3 and .4 port 80, one each (one listener on 0.0.0.0);
/// - a listener on `INBOUND`, inside the range, with two connections: its
///   accepted ends are not outbound, its clients are;
/// - two UDP sockets connected to 127.0.0.1:53, and one not connected.
fn population() -> Population {
    sysctl("ip_local_port_range", &format!("{LOW} {HIGH}"));
    sysctl("ip_local_reserved_ports", &RESERVED.to_string());
    let mut p = Population::default();
    // First, before a client takes the port.
    let inbound = listener(&format!("127.0.0.1:{INBOUND}"), 16, |_| {});
    let db = listener("127.0.0.1:5432", 16, |_| {});
    for _ in 0..2 {
        p.keep(connect_pair(&db, |_| {}));
    }
    for _ in 0..2 {
        let (client, mut server) = connect_pair(&db, |_| {});
        drop(client);
        drain_to_eof(&mut server);
    }
    for _ in 0..2 {
        p.keep(connect_pair(&db, bind_to("127.0.0.5:0")));
    }
    p.keep(connect_v6(&db, "[::ffff:127.0.0.1]:5432"));
    // Bound explicitly to the reserved port: connect() could not have
    // picked it, so it is not outbound and not among the ports used.
    p.keep(connect_pair(&db, bind_to("127.0.0.1:40005")));
    let cache = listener("[::1]:6379", 16, |_| {});
    for _ in 0..3 {
        p.keep(connect_pair(&cache, |_| {}));
    }
    let web = listener("0.0.0.0:80", 16, |_| {});
    for host in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let c = TcpStream::connect((host, 80)).unwrap();
        p.keep((c, web.accept().unwrap().0));
    }
    for _ in 0..2 {
        p.keep(connect_pair(&inbound, |_| {}));
    }
    // UDP ports are chosen here: an automatic one could be INBOUND (TCP
    // and UDP ports are apart), which is then not outbound by the rule.
    for port in [40011, 40012] {
        let u = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        u.connect("127.0.0.1:53").unwrap();
        p.keep(u);
    }
    p.keep(UdpSocket::bind("127.0.0.1:0").unwrap());
    p.keep((db, cache, web, inbound));
    p.expected = Counts {
        tcp_listen: 4,
        tcp_established: 2 * (2 + 2 + 1 + 1 + 3 + 3 + 2),
        tcp_time_wait: 2,
        udp_socket: 3,
        ..Counts::default()
    };
    p
}

/// `ss`'s address column as our tag writes it: brackets off, an
/// IPv4-mapped address as IPv4.
fn address(column: &str) -> (String, String) {
    let (addr, port) = column.rsplit_once(':').unwrap();
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = match addr.strip_prefix("::ffff:") {
        Some(v4) if v4.contains('.') => v4,
        _ => addr,
    };
    (addr.to_string(), port.to_string())
}

/// What the two measurements must say, worked out from `ss -tan` and
/// `ss -uan` by their definitions.
#[derive(Debug, PartialEq)]
struct Expected {
    /// range_size, ports_used, max_per_destination, destinations.
    ephemeral: [u64; 4],
    /// (address, port) → (sockets by `ss` state name, most TCP sockets
    /// from one local address).
    destinations: BTreeMap<(String, String), (BTreeMap<String, u64>, u64)>,
}

fn from_ss(netns: Option<&str>, range_size: u64) -> Expected {
    let ss = |args: &[&str]| {
        let out = tool_in(netns, "ss").args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let in_range = |p: u16| (LOW..=HIGH).contains(&p) && p != RESERVED;
    let tcp = ss(&["-Htan"]);
    let rows: Vec<Vec<&str>> = tcp
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let port = |c: &str| address(c).1.parse::<u16>().unwrap();
    let listening: BTreeSet<u16> = rows
        .iter()
        .filter(|r| r[0] == "LISTEN")
        .map(|r| port(r[3]))
        .collect();
    let used: BTreeSet<u16> = rows
        .iter()
        .map(|r| port(r[3]))
        .filter(|&p| in_range(p))
        .collect();
    let mut destinations: BTreeMap<(String, String), (BTreeMap<String, u64>, u64)> =
        BTreeMap::new();
    let mut triples: BTreeMap<(String, (String, String)), u64> = BTreeMap::new();
    let udp = ss(&["-Huan"]);
    let udp_rows: Vec<Vec<&str>> = udp
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (r, is_tcp) in rows
        .iter()
        .map(|r| (r, true))
        .chain(udp_rows.iter().map(|r| (r, false)))
    {
        let outbound = if is_tcp {
            r[0] != "LISTEN"
        } else {
            r[0] == "ESTAB"
        };
        let local_port = port(r[3]);
        if !outbound || !in_range(local_port) || listening.contains(&local_port) {
            continue;
        }
        let to = address(r[4]);
        let state = if is_tcp {
            r[0].to_string()
        } else {
            "UDP".into()
        };
        let d = destinations.entry(to.clone()).or_default();
        *d.0.entry(state).or_default() += 1;
        if is_tcp {
            let n = triples.entry((address(r[3]).0, to)).or_default();
            *n += 1;
            d.1 = d.1.max(*n);
        }
    }
    let tcp_destinations = destinations
        .values()
        .filter(|(states, _)| states.keys().any(|s| s != "UDP"))
        .count() as u64;
    let max = triples.values().copied().max().unwrap_or(0);
    Expected {
        ephemeral: [range_size, used.len() as u64, max, tcp_destinations],
        destinations,
    }
}

/// One line of our influx output: measurement, tags, fields (integers as
/// they are, floats as f64).
type Line = (String, BTreeMap<String, String>, BTreeMap<String, f64>);

fn lines(out: &str) -> Vec<Line> {
    out.lines()
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            assert!(!fields.contains(' '), "timestamp or space: {line}");
            let (name, tags) = parse_series(series);
            let fields = fields
                .split(',')
                .map(|f| {
                    let (k, v) = f.split_once('=').unwrap();
                    let v: f64 = v.strip_suffix('i').unwrap_or(v).parse().unwrap();
                    (k.to_string(), v)
                })
                .collect();
            (name, tags, fields)
        })
        .collect()
}

/// The `ss` state names of our fields.
const STATES: [(&str, &str); 11] = [
    ("tcp_established", "ESTAB"),
    ("tcp_syn_sent", "SYN-SENT"),
    ("tcp_syn_recv", "SYN-RECV"),
    ("tcp_fin_wait1", "FIN-WAIT-1"),
    ("tcp_fin_wait2", "FIN-WAIT-2"),
    ("tcp_time_wait", "TIME-WAIT"),
    ("tcp_close", "UNCONN"),
    ("tcp_close_wait", "CLOSE-WAIT"),
    ("tcp_last_ack", "LAST-ACK"),
    ("tcp_listen", "LISTEN"),
    ("tcp_closing", "CLOSING"),
];

/// Our output as `Expected`, with every `netstat_destination` row
/// (`other` included) and its utilization checked against `range_size`.
fn ours(out: &str) -> (Expected, Vec<(String, String)>) {
    let mut e = Expected {
        ephemeral: [0; 4],
        destinations: BTreeMap::new(),
    };
    let mut order = Vec::new();
    for (name, tags, f) in lines(out) {
        match name.as_str() {
            "netstat" => {}
            "netstat_ephemeral" => {
                let g = |k: &str| f[k] as u64;
                e.ephemeral = [
                    g("range_size"),
                    g("ports_used"),
                    g("max_per_destination"),
                    g("destinations"),
                ];
                assert_eq!(f.len(), 5, "{out}");
                assert_eq!(
                    f["utilization"],
                    f["max_per_destination"] / f["range_size"],
                    "{out}"
                );
            }
            "netstat_destination" => {
                assert_eq!(f.len(), 14, "13 fields and utilization: {out}");
                let mut states = BTreeMap::new();
                for (field, ss) in STATES {
                    if f[field] > 0.0 {
                        states.insert(ss.to_string(), f[field] as u64);
                    }
                }
                if f["udp_socket"] > 0.0 {
                    states.insert("UDP".to_string(), f["udp_socket"] as u64);
                }
                assert_eq!(f["tcp_none"], 0.0);
                let to = (tags["address"].clone(), tags["port"].clone());
                let max = (f["utilization"] * e.ephemeral[0] as f64).round() as u64;
                e.destinations.insert(to.clone(), (states, max));
                order.push(to);
            }
            other => panic!("unexpected measurement {other}: {out}"),
        }
    }
    (e, order)
}

const ARGS: [&str; 3] = ["--ephemeral-ports", "--destinations", "1000"];

/// Every destination and the namespace's figures equal `ss`'s, from both
/// sources and an execd loop; the numbers are the population's.
fn destinations_match_ss() {
    in_netns(|| {
        let p = population();
        settle(&p.expected);
        let want = from_ss(None, 19);
        // The population is what it says: 7 sockets to the database, 5 of
        // them from 127.0.0.1 (the mapped one included); 6 TCP
        // destinations; 2 UDP sockets to 53.
        assert_eq!(want.ephemeral[2..], [5, 6], "{want:?}");
        let db = &want.destinations[&("127.0.0.1".into(), "5432".into())];
        assert_eq!((db.0["ESTAB"], db.0["TIME-WAIT"], db.1), (5, 2, 5));
        let dns = &want.destinations[&("127.0.0.1".into(), "53".into())];
        assert_eq!(dns.0["UDP"], 2);
        assert_eq!(want.destinations.len(), 7, "{want:?}");
        for source in ["netlink", "proc"] {
            let mut a = vec!["--source", source];
            a.extend(ARGS);
            let out = run_ok(&a);
            let (got, order) = ours(&out);
            assert_eq!(got, want, "--source {source}:\n{out}");
            // Busiest first; ties by address, then port.
            assert_eq!(order[0], ("127.0.0.1".into(), "5432".into()), "{out}");
            assert_eq!(order[1], ("::1".into(), "6379".into()), "{out}");
            assert_eq!(
                order[2..4],
                [
                    ("127.0.0.1".into(), "53".into()),
                    ("127.0.0.1".into(), INBOUND.to_string())
                ],
                "{out}"
            );
            // The netstat line is the plain run's.
            assert_eq!(
                out.lines().next().unwrap(),
                run_ok(&["--source", source]).trim_end()
            );
        }
        let mut plugin = Plugin::start(&["--execd", "--ephemeral-ports", "--destinations", "1000"]);
        plugin.tick("\n");
        let mut text = plugin.line(Duration::from_secs(5));
        while !text.contains("address=127.0.0.4") {
            text.push_str(&plugin.line(Duration::from_secs(5)));
        }
        assert_eq!(ours(&text).0, want, "execd:\n{text}");
        drop(plugin);
        drop(p);
    })
}

/// `--destinations 3`: the three busiest, then `other` summing the rest
/// (its utilization the largest among them); `--only` picks measurements.
fn the_rest_is_summed_as_other() {
    in_netns(|| {
        let p = population();
        settle(&p.expected);
        for source in ["netlink", "proc"] {
            let out = run_ok(&[
                "--source",
                source,
                "--destinations",
                "3",
                "--only",
                "destination",
            ]);
            let all = lines(&out);
            assert_eq!(all.len(), 4, "{out}");
            assert!(all.iter().all(|l| l.0 == "netstat_destination"), "{out}");
            let other = &all[3];
            assert_eq!(
                (other.1["address"].as_str(), other.1["port"].as_str()),
                ("other", "other")
            );
            // 127.0.0.1:INBOUND (2) and 127.0.0.2-4:80 (1 each).
            assert_eq!(other.2["tcp_established"], 5.0, "{out}");
            assert_eq!(other.2["utilization"], 2.0 / 19.0, "{out}");
        }
        drop(p);
    })
}

/// `--netns`: the rows carry the namespace's tag and equal `ss` run inside
/// it; `--by-family` changes nothing in them (a destination and the range
/// are shared by both families).
fn netns_and_by_family() {
    let ns = Netns::new(population, 1);
    let path = ns.path();
    let want = from_ss(Some(&path), 19);
    let mut a = vec!["--netns", &path];
    a.extend(ARGS);
    let out = run_ok(&a);
    assert_eq!(ours(&out).0, want, "{out}");
    let tag = format!("netns={}", ns.tag());
    assert!(
        lines(&out)
            .iter()
            .all(|l| l.1.get("netns") == Some(&ns.tag())),
        "{tag}: {out}"
    );
    a.push("--by-family");
    let by_family = run_ok(&a);
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("netstat,") && !l.starts_with("netstat "))
            .map(String::from)
            .collect()
    };
    assert_eq!(strip(&by_family), strip(&out));
    // The host's own range is not the namespace's.
    let host = run_ok(&["--ephemeral-ports", "--only", "ephemeral"]);
    assert_ne!(lines(&host)[0].2["range_size"], 19.0, "{host}");
    // --all-netns finds it among the others (exit 3 where some process
    // cannot be looked at, as on machines whose PID 1 is hidden).
    let all = run(&["--all-netns", "--ephemeral-ports", "--only", "ephemeral"]);
    assert!(matches!(all.status.code(), Some(0 | 3)), "{all:?}");
    let text = String::from_utf8(all.stdout).unwrap();
    let mine: Vec<Line> = lines(&text)
        .into_iter()
        .filter(|l| l.1.get("netns") == Some(&ns.tag()))
        .collect();
    assert_eq!(mine.len(), 1, "{text}");
    assert_eq!(mine[0].2["range_size"], 19.0);
    assert_eq!(mine[0].2["max_per_destination"], want.ephemeral[2] as f64);
    drop(ns);
}

/// The exporter serves both measurements with native names, and a loop's
/// memory stays flat over thousands of gathers that fill the map.
fn exporter_and_memory() {
    in_netns(|| {
        let p = population();
        settle(&p.expected);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = command(&[
            "--listen",
            &addr,
            "--prometheus-names",
            "native",
            "--ephemeral-ports",
            "--destinations",
            "2",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let page = loop {
            use std::io::{Read, Write};
            if let Ok(mut s) = TcpStream::connect(&addr) {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut page = String::new();
                s.read_to_string(&mut page).unwrap();
                break page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the exporter did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            page.contains("\nnetstat_ephemeral_range_ports 19\n"),
            "{page}"
        );
        assert!(
            page.contains("\nnetstat_ephemeral_utilization_ratio 0.2631578947368421\n"),
            "{page}"
        );
        assert!(
            page.contains("\nnetstat_destination_tcp_connections{address=\"127.0.0.1\",port=\"5432\",state=\"time_wait\"} 2\n"),
            "{page}"
        );
        assert!(
            page.contains(
                "netstat_destination_utilization_ratio{address=\"other\",port=\"other\"}"
            ),
            "{page}"
        );
        let (after_1k, after_4k) =
            rss_over_gathers(&["--ephemeral-ports", "--only", "ephemeral"], 1_000, 3_000);
        assert!(
            after_4k <= after_1k + 8,
            "RSS grew from {after_1k} KiB to {after_4k} KiB"
        );
        drop(p);
    })
}

/// The worked example of the README: with a 10-port range, ten
/// connections to one destination exhaust it; the eleventh `connect()`
/// fails with EADDRNOTAVAIL, and utilization says 1 for that destination
/// while another one is still free.
fn exhaustion_is_utilization_one() {
    in_netns(|| {
        sysctl("ip_local_port_range", "40000 40009");
        let mut p = Population::default();
        let db = listener("127.0.0.1:5432", 64, |_| {});
        for _ in 0..10 {
            p.keep(connect_pair(&db, |_| {}));
        }
        let e = TcpStream::connect("127.0.0.1:5432").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");
        // Another destination still gets a port.
        let other = listener("127.0.0.1:6379", 4, |_| {});
        p.keep(connect_pair(&other, |_| {}));
        let out = run_ok(&[
            "--ephemeral-ports",
            "--destinations",
            "1",
            "--only",
            "ephemeral,destination",
        ]);
        let all = lines(&out);
        assert_eq!(all[0].0, "netstat_ephemeral");
        assert_eq!(
            (
                all[0].2["range_size"],
                all[0].2["max_per_destination"],
                all[0].2["utilization"]
            ),
            (10.0, 10.0, 1.0),
            "{out}"
        );
        assert_eq!(all[0].2["ports_used"], 10.0, "{out}");
        assert_eq!(
            (all[1].1["port"].as_str(), all[1].2["utilization"]),
            ("5432", 1.0),
            "{out}"
        );
        assert_eq!(
            (all[2].1["address"].as_str(), all[2].2["utilization"]),
            ("other", 0.1)
        );
        drop((p, db, other));
    })
}

/// Past `MAX_TRACKED` (local address, destination) pairs, one `W!` line
/// says so, and the rows still add up to every outbound socket.
fn past_the_cap_totals_stay_exact() {
    in_netns(|| {
        let cap = telegraf_netstat::measure::destination::count::MAX_TRACKED;
        let n = cap + 50;
        let mut keep = Vec::with_capacity(n);
        for i in 0..n {
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.connect(("127.0.0.1", 1 + i as u16)).unwrap();
            keep.push(u);
        }
        let warning = format!(
            "W! more than {cap} (local address, destination) pairs have outbound sockets; \
             the rest are counted in totals and in the destination row tagged other, so \
             netstat_ephemeral's destinations field counts at most {cap} and the top \
             destinations and max_per_destination may miss one\n"
        );
        // The ephemeral row's destinations field alone is said too.
        let out = run(&["--ephemeral-ports", "--only", "ephemeral"]);
        assert_eq!(String::from_utf8_lossy(&out.stderr), warning);
        let out = run(&["--destinations", "5", "--only", "destination"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stderr, warning);
        let text = String::from_utf8(out.stdout).unwrap();
        let all = lines(&text);
        assert_eq!(all.len(), 6);
        let total: f64 = all.iter().map(|l| l.2["udp_socket"]).sum();
        assert_eq!(total, n as f64);
        drop(keep);
    })
}

fn main() {
    // The cap test holds 16 434 sockets.
    raise_fd_limit();
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests = tests![
        exporter_and_memory,
        destinations_match_ss,
        the_rest_is_summed_as_other,
        netns_and_by_family,
        exhaustion_is_utilization_one,
        past_the_cap_totals_stay_exact,
    ];
    run_trials(args, setup, named("destinations", &tests));
}
