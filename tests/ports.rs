//! `netstat_port` (`--local-port`, `--remote-port`, `--listening-ports`) on
//! known populations on chosen ports in private network namespaces, every
//! value compared with `ss` filtered by port, for both sources, one-shot,
//! execd and `--netns`.

mod support;

use std::net::{TcpStream, UdpSocket};

use libtest_mimic::Arguments;
use support::*;
use telegraf_netstat::Counts;

/// Ports the population uses, and one nothing uses.
const PORTS: [u16; 5] = [4430, 5353, 5432, 6000, 9999];

/// Listeners on 4430 (IPv4 and IPv6) with five connections, a database on
/// 5432 whose two clients closed first (TIME_WAIT on the client side), a
/// listener on 6000 whose full backlog leaves two connects in SYN_SENT, and
/// UDP on 5353: bound on both families and one socket connected to it.
fn population() -> Population {
    let mut p = Population::default();
    let web4 = listener("127.0.0.1:4430", 16, |_| {});
    let web6 = listener("[::1]:4430", 16, |_| {});
    for l in [&web4, &web4, &web4, &web6, &web6] {
        p.keep(connect_pair(l, |_| {}));
    }
    p.keep((web4, web6));
    let db = listener("127.0.0.1:5432", 16, |_| {});
    for _ in 0..2 {
        let (client, mut server) = connect_pair(&db, |_| {});
        drop(client);
        drain_to_eof(&mut server);
    }
    p.keep(db);
    let full = listener("127.0.0.1:6000", 0, |_| {});
    let to = full.local_addr().unwrap();
    p.keep(TcpStream::connect(to).unwrap());
    for _ in 0..2 {
        p.keep(connect_nonblocking(to));
    }
    p.keep(full);
    let dns4 = UdpSocket::bind("127.0.0.1:5353").unwrap();
    let dns6 = UdpSocket::bind("[::1]:5353").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect("127.0.0.1:5353").unwrap();
    p.keep((dns4, dns6, client));
    p.expected = Counts {
        tcp_listen: 4,
        tcp_established: 10 + 2,
        tcp_time_wait: 2,
        tcp_syn_sent: 2,
        udp_socket: 3,
        ..Counts::default()
    };
    p
}

/// What `ss` counts per (direction, port), in `netns` or here.
fn ss_by_port(netns: Option<&str>, ports: &[u16]) -> Vec<(String, String, Counts)> {
    let mut want = Vec::new();
    for (direction, key) in [("local", "sport"), ("remote", "dport")] {
        for &port in ports {
            let p = format!(":{port}");
            let counts = ss_counts_where(netns, &["(", key, "=", &p, ")"]);
            want.push((direction.to_string(), port.to_string(), counts));
        }
    }
    want
}

/// The `netstat_port` lines of our output as (direction, port, counts),
/// other tags dropped; the `netstat` line must come first.
fn port_lines(out: &str) -> Vec<(String, String, Counts)> {
    let mut lines = out.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("netstat ") || first.starts_with("netstat,"),
        "{out}"
    );
    lines
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            let mut parts = series.split(',');
            assert_eq!(parts.next(), Some("netstat_port"), "{line}");
            let tags: Vec<(&str, &str)> = parts.map(|t| t.split_once('=').unwrap()).collect();
            let tag = |k: &str| tags.iter().find(|t| t.0 == k).unwrap().1.to_string();
            let f = parse_line(&format!("netstat {fields}\n"));
            let get = |name: &str| f.iter().find(|(k, _)| k == name).unwrap().1;
            let counts = Counts {
                tcp_established: get("tcp_established"),
                tcp_syn_sent: get("tcp_syn_sent"),
                tcp_syn_recv: get("tcp_syn_recv"),
                tcp_fin_wait1: get("tcp_fin_wait1"),
                tcp_fin_wait2: get("tcp_fin_wait2"),
                tcp_time_wait: get("tcp_time_wait"),
                tcp_close: get("tcp_close"),
                tcp_close_wait: get("tcp_close_wait"),
                tcp_last_ack: get("tcp_last_ack"),
                tcp_listen: get("tcp_listen"),
                tcp_closing: get("tcp_closing"),
                tcp_none: get("tcp_none"),
                udp_socket: get("udp_socket"),
            };
            (tag("direction"), tag("port"), counts)
        })
        .collect()
}

fn port_args() -> Vec<String> {
    let list: Vec<String> = PORTS.iter().map(u16::to_string).collect();
    let list = list.join(",");
    vec![
        "--local-port".into(),
        list.clone(),
        "--remote-port".into(),
        list,
    ]
}

/// Every named port, both directions, from both sources, equals `ss`; the
/// values are the population's (not all zeros).
fn explicit_ports_match_ss() {
    in_netns(|| {
        let p = population();
        settle(&p.expected);
        let want = ss_by_port(None, &PORTS);
        let local_4430 = &want[0].2;
        assert_eq!((local_4430.tcp_listen, local_4430.tcp_established), (2, 5));
        let remote_5432 = &want[PORTS.len() + 2].2;
        assert_eq!(remote_5432.tcp_time_wait, 2);
        let args = port_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for source in ["netlink", "proc"] {
            let mut a = vec!["--source", source];
            a.extend(&args);
            let out = run_ok(&a);
            assert_eq!(port_lines(&out), want, "--source {source}:\n{out}");
            // The netstat line is the one without port options.
            assert_eq!(
                out.lines().next().unwrap(),
                run_ok(&["--source", source]).trim_end()
            );
        }
        // An execd loop prints the same.
        let mut a = vec!["--execd"];
        a.extend(&args);
        let mut plugin = Plugin::start(&a);
        plugin.tick("\n");
        let mut text = plugin.line(std::time::Duration::from_secs(5));
        while let Ok((_, l)) = plugin
            .stdout
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            text.push_str(&l);
        }
        assert_eq!(port_lines(&text), want, "execd:\n{text}");
        drop(plugin);
        drop(p);
    })
}

/// `--listening-ports` finds 4430, 5432 and 6000 (TCP listeners; UDP 5353
/// is not one), from both sources, with `ss`'s counts.
fn listening_ports_match_ss() {
    in_netns(|| {
        let p = population();
        settle(&p.expected);
        let want: Vec<_> = ss_by_port(None, &[4430, 5432, 6000])
            .into_iter()
            .filter(|w| w.0 == "local")
            .collect();
        for source in ["netlink", "proc"] {
            let out = run_ok(&["--source", source, "--listening-ports"]);
            assert_eq!(port_lines(&out), want, "--source {source}:\n{out}");
        }
        drop(p);
    })
}

/// With `--netns`, the lines carry the namespace's tag and `ss` run inside
/// it agrees; `--by-family` splits them into ipv4 and ipv6 that add up.
fn netns_and_by_family() {
    let ns = Netns::new(population, 1);
    let path = ns.path();
    let want = ss_by_port(Some(&path), &PORTS);
    let args = port_args();
    let mut a: Vec<&str> = vec!["--netns", &path];
    a.extend(args.iter().map(String::as_str));
    let out = run_ok(&a);
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.contains(&format!(",netns={},", ns.tag()))),
        "{out}"
    );
    assert_eq!(port_lines(&out), want);
    a.push("--by-family");
    let out = run_ok(&a);
    let m = parse_metrics_any(&out);
    for (direction, port, total) in &want {
        let of = |family: &str| {
            m.iter()
                .find(|(name, tags, _)| {
                    name == "netstat_port"
                        && tags.contains(&("direction".into(), direction.clone()))
                        && tags.contains(&("port".into(), port.clone()))
                        && tags.contains(&("family".into(), family.into()))
                })
                .unwrap_or_else(|| panic!("{direction} {port} {family} missing:\n{out}"))
                .2
                .clone()
        };
        let (v4, v6) = (of("ipv4"), of("ipv6"));
        let sum: Vec<u64> = v4.iter().zip(&v6).map(|(a, b)| a.1 + b.1).collect();
        let want_total: Vec<u64> = fields(total).iter().map(|f| f.1).collect();
        assert_eq!(sum, want_total, "{direction} {port}");
    }
    // 4430 has IPv6 connections, 5432 none.
    let v6_4430 = m
        .iter()
        .find(|(n, t, _)| {
            n == "netstat_port"
                && t.contains(&("port".into(), "4430".into()))
                && t.contains(&("direction".into(), "local".into()))
                && t.contains(&("family".into(), "ipv6".into()))
        })
        .unwrap();
    assert!(v6_4430.2.contains(&("tcp_established".into(), 2)));
    drop(ns);
}

/// More than 1024 listening ports: the first 1024 are broken down, and one
/// `W! ` line names the cap; the netstat line still counts them all.
fn listening_ports_are_capped_with_a_warning() {
    in_netns(|| {
        let mut p = Population::default();
        for _ in 0..1030 {
            p.keep(listener("127.0.0.1:0", 1, |_| {}));
        }
        let out = run(&["--listening-ports"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stderr,
            "W! more than 1024 ports have TCP listeners; --listening-ports breaks down the first 1024 found\n"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1 + 1024);
        assert!(text.starts_with("netstat ") && text.contains(",tcp_listen=1030i,"));
        drop(p);
    })
}

fn main() {
    // The cap test holds 1030 listeners; the soft limit may be 1024.
    raise_fd_limit();
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests = tests![
        listening_ports_are_capped_with_a_warning,
        explicit_ports_match_ss,
        listening_ports_match_ss,
        netns_and_by_family,
    ];
    run_trials(args, setup, named("ports", &tests));
}
