//! `netstat_listen` (`--listen-queues`) on listeners in known states in a
//! private network namespace, every value compared with what `ss -Hltnm`
//! (Recv-Q, Send-Q, `d` in skmem) and `ss state syn-recv` show at the same
//! time, for both sources and with `--only listen`.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use rustix::net::sockopt;
use support::*;

/// (address, port) → (sockets, queue, backlog, drops), from `ss -Hltnm`.
type Listeners = BTreeMap<(String, u16), [u64; 4]>;

/// `ss` prints the address of a dual-stack IPv6 wildcard as `*` and IPv6
/// addresses in brackets; ours are the bare addresses.
fn ss_address(s: &str) -> (String, u16) {
    let (addr, port) = s.rsplit_once(':').unwrap();
    let addr = match addr.trim_start_matches('[').trim_end_matches(']') {
        "*" => "::",
        a => a,
    };
    (addr.to_string(), port.parse().unwrap())
}

fn ss_listeners() -> Listeners {
    let out = std::process::Command::new("ss")
        .args(["-Hltnm"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut m = Listeners::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], "LISTEN", "{line}");
        let skmem = lines.next().unwrap();
        let drops: u64 = skmem
            .split([',', ')'])
            .find_map(|f| f.strip_prefix('d'))
            .unwrap()
            .parse()
            .unwrap();
        let e = m.entry(ss_address(cols[3])).or_default();
        e[0] += 1;
        e[1] += cols[1].parse::<u64>().unwrap();
        e[2] += cols[2].parse::<u64>().unwrap();
        e[3] += drops;
    }
    m
}

/// Handshakes in progress by local port, from `ss`.
fn ss_syn_recv() -> BTreeMap<u16, u64> {
    let out = std::process::Command::new("ss")
        .args(["-Htn", "state", "syn-recv"])
        .output()
        .unwrap();
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let local = line.split_whitespace().nth(2).unwrap();
        *m.entry(ss_address(local).1).or_insert(0) += 1;
    }
    m
}

/// Our netstat_listen lines: (address, port) → fields by name.
fn ours(out: &str) -> BTreeMap<(String, u16), BTreeMap<String, u64>> {
    parse_metrics_any(out)
        .into_iter()
        .filter(|(name, _, _)| name == "netstat_listen")
        .map(|(_, tags, fields)| {
            let tag = |k: &str| tags.iter().find(|t| t.0 == k).unwrap().1.clone();
            (
                (tag("address"), tag("port").parse().unwrap()),
                fields.into_iter().collect(),
            )
        })
        .collect()
}

fn reuseport_listener(addr: &str, backlog: i32, v6only: bool) -> std::net::TcpListener {
    listener(addr, backlog, |fd| {
        sockopt::set_socket_reuseport(fd, true).unwrap();
        if v6only {
            sockopt::set_ipv6_v6only(fd, true).unwrap();
        }
    })
}

/// A listener with backlog 2 that never accepts and six clients (queue 3,
/// the rest dropped and retrying in SYN_SENT); a SO_REUSEPORT group of three
/// IPv4 wildcards with a specific address and an IPv6-only wildcard on the
/// same port; TCP_DEFER_ACCEPT listeners whose clients' bare ACKs leave
/// request sockets, on an exact address and through a wildcard.
fn population() -> Population {
    let mut p = Population::default();
    let full = listener("127.0.0.1:7000", 2, |_| {});
    for _ in 0..6 {
        p.keep(connect_nonblocking("127.0.0.1:7000".parse().unwrap()));
    }
    p.keep(full);
    for _ in 0..3 {
        p.keep(reuseport_listener("0.0.0.0:7100", 8, false));
    }
    p.keep(reuseport_listener("127.0.0.1:7100", 16, false));
    p.keep(reuseport_listener("[::]:7100", 32, true));
    let exact = listener("127.0.0.1:7200", 16, defer_accept);
    let wild = listener("0.0.0.0:7300", 16, defer_accept);
    for to in ["127.0.0.1:7200", "127.0.0.1:7200", "127.0.0.1:7300"] {
        p.keep(TcpStream::connect(to).unwrap());
    }
    p.keep((exact, wild));
    // Three accepted-but-waiting connections (both ends established), three
    // turned-away clients, three deferred handshakes (clients established).
    p.expected = telegraf_netstat::Counts {
        tcp_listen: 8,
        tcp_established: 9,
        tcp_syn_sent: 3,
        tcp_syn_recv: 3,
        ..Default::default()
    };
    p
}

/// Waits until the full queue and the drops and handshakes have settled.
fn settled() -> (Listeners, BTreeMap<u16, u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = ss_listeners();
        let s = ss_syn_recv();
        let full = l
            .get(&("127.0.0.1".to_string(), 7000))
            .copied()
            .unwrap_or_default();
        if full[1] == 3 && full[3] > 0 && s.get(&7200) == Some(&2) && s.get(&7300) == Some(&1) {
            return (l, s);
        }
        assert!(Instant::now() < deadline, "did not settle: {l:?} {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listeners_match_ss() {
    in_netns(|| {
        let p = population();
        let (want, syn) = settled();
        let out = run_ok(&["--listen-queues"]);
        let (after, syn_after) = (ss_listeners(), ss_syn_recv());
        let got = ours(&out);
        // Drops may grow while we look (the SYN_SENT clients retry): compare
        // with the readings before and after.
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{out}"
        );
        for (key, w) in &want {
            let g = &got[key];
            let a = after[key];
            assert_eq!(g["sockets"], w[0], "{key:?} sockets");
            assert_eq!(g["queue"], w[1], "{key:?} queue");
            assert_eq!(g["backlog"], w[2], "{key:?} backlog");
            assert!(
                g["drops"] >= w[3] && g["drops"] <= a[3],
                "{key:?} drops {} not in {}..={}",
                g["drops"],
                w[3],
                a[3]
            );
            let s = syn.get(&key.1).copied().unwrap_or(0);
            // Each test port has one kind of listener the handshakes go to.
            let routed = match key {
                (a, 7200) if a == "127.0.0.1" => s,
                (a, 7300) if a == "0.0.0.0" => s,
                _ => 0,
            };
            assert_eq!(g["syn_recv"], routed, "{key:?} syn_recv");
        }
        assert_eq!(syn, syn_after);
        // The shapes the issue names.
        let full = &got[&("127.0.0.1".to_string(), 7000)];
        assert_eq!((full["queue"], full["backlog"]), (3, 2));
        assert!(full["drops"] > 0);
        let group = &got[&("0.0.0.0".to_string(), 7100)];
        assert_eq!((group["sockets"], group["backlog"]), (3, 24));
        assert!(got.contains_key(&("::".to_string(), 7100)));
        assert!(got.contains_key(&("127.0.0.1".to_string(), 7100)));
        // The clients the full queue turned away wait in SYN_SENT.
        assert!(
            out.lines().next().unwrap().contains(",tcp_syn_sent=3i,"),
            "{out}"
        );

        // /proc: what it shows (no backlog, no drops), the same values.
        let proc = ours(&run_ok(&["--listen-queues", "--source", "proc"]));
        for (key, g) in &got {
            let pr = &proc[key];
            assert_eq!(
                pr.keys().collect::<Vec<_>>(),
                ["queue", "sockets", "syn_recv"]
            );
            for f in ["queue", "sockets", "syn_recv"] {
                assert_eq!(pr[f], g[f], "{key:?} {f}");
            }
        }

        // --only listen: no netstat line, no syn_recv, the same listeners.
        let only = run_ok(&["--listen-queues", "--only", "listen"]);
        assert!(
            only.lines().all(|l| l.starts_with("netstat_listen,")),
            "{only}"
        );
        for (key, o) in ours(&only) {
            assert!(!o.contains_key("syn_recv"));
            assert_eq!(o["queue"], got[&key]["queue"]);
            assert_eq!(o["backlog"], got[&key]["backlog"]);
        }
        let proc_only = run_ok(&["--listen-queues", "--only", "listen", "--source", "proc"]);
        assert_eq!(ours(&proc_only).len(), got.len());
        drop(p);
    })
}

/// The Prometheus output: the drop counter is a counter named `_total`, the
/// rest gauges, and promtool-style names; JSON carries the same fields.
fn formats_type_the_fields() {
    in_netns(|| {
        let p = population();
        settled();
        let prom = run_ok(&[
            "--listen-queues",
            "--format",
            "prometheus",
            "--only",
            "listen",
        ]);
        assert!(
            prom.contains("# TYPE netstat_listen_drops_total counter\n"),
            "{prom}"
        );
        for g in ["backlog", "queue", "sockets"] {
            assert!(
                prom.contains(&format!("# TYPE netstat_listen_{g} gauge\n")),
                "{prom}"
            );
        }
        assert!(
            prom.contains("netstat_listen_queue{address=\"127.0.0.1\",port=\"7000\"} 3\n"),
            "{prom}"
        );
        let json = run_ok(&["--listen-queues", "--format", "json", "--only", "listen"]);
        for line in json.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["name"], "netstat_listen");
            assert!(v["fields"]["backlog"].is_u64() && v["tags"]["address"].is_string());
        }
        drop(p);
    })
}

/// With `--netns`, `--by-family`, the execd loop and `netstat_port`: the
/// same listeners, tagged with the namespace and family.
fn loops_namespaces_and_ports() {
    let ns = Netns::new(population, 1);
    let path = ns.path();
    // Settle inside: the full queue and the handshakes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let args = [
        "--netns",
        &path,
        "--listen-queues",
        "--by-family",
        "--listening-ports",
    ];
    let oneshot = loop {
        let out = run_ok(&args);
        let m = ours(&out);
        let full = m.get(&("127.0.0.1".to_string(), 7000));
        if full.is_some_and(|f| f["queue"] == 3)
            && m[&("127.0.0.1".to_string(), 7200)]["syn_recv"] == 2
        {
            break out;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let all = parse_metrics_any(&oneshot);
    let listen: Vec<_> = all.iter().filter(|m| m.0 == "netstat_listen").collect();
    assert_eq!(listen.len(), 6, "{oneshot}");
    for (_, tags, _) in &listen {
        let keys: Vec<&str> = tags.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(keys, ["address", "family", "netns", "port"]);
        assert!(tags.contains(&("netns".into(), ns.tag())));
    }
    assert!(all.iter().any(|m| m.0 == "netstat_port"), "{oneshot}");
    let mut plugin = Plugin::start(&[&["--execd"][..], &args].concat());
    plugin.tick("\n");
    let mut text = plugin.line(Duration::from_secs(5));
    while let Ok((_, l)) = plugin.stdout.recv_timeout(Duration::from_millis(200)) {
        text.push_str(&l);
    }
    let (a, b) = (ours(&text), ours(&oneshot));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, f) in &a {
        for name in ["sockets", "queue", "backlog", "syn_recv"] {
            assert_eq!(f[name], b[key][name], "{key:?} {name}");
        }
    }
    drop(plugin);
    drop(ns);
}

/// Handshakes to a port where an exact-address listener and wildcards
/// compete (one SO_REUSEPORT port: 127.0.0.1, a group of two 0.0.0.0, an
/// IPv6-only [::]): each listener's `syn_recv` is what the kernel routes to
/// it. The kernel's own answer: once the deferred clients send a byte, each
/// request socket becomes a connection in its listener's accept queue, which
/// `ss -ltn` shows per listener.
fn exact_and_wildcard_listeners_compete() {
    in_netns(|| {
        let mut p = Population::default();
        let port = 7400;
        let mut listeners = vec![
            listener(&format!("127.0.0.1:{port}"), 16, |fd| {
                sockopt::set_socket_reuseport(fd, true).unwrap();
                defer_accept(fd);
            }),
            listener(&format!("[::]:{port}"), 16, |fd| {
                sockopt::set_socket_reuseport(fd, true).unwrap();
                sockopt::set_ipv6_v6only(fd, true).unwrap();
                defer_accept(fd);
            }),
        ];
        for _ in 0..2 {
            listeners.push(listener(&format!("0.0.0.0:{port}"), 16, |fd| {
                sockopt::set_socket_reuseport(fd, true).unwrap();
                defer_accept(fd);
            }));
        }
        // 3 to the exact address, 2 to another loopback address (only the
        // wildcard takes them), 1 over IPv6.
        let mut clients = Vec::new();
        for to in [
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.2",
            "[::1]",
        ] {
            clients.push(TcpStream::connect(format!("{to}:{port}")).unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while ss_syn_recv().get(&port) != Some(&6) {
            assert!(Instant::now() < deadline, "handshakes: {:?}", ss_syn_recv());
            std::thread::sleep(Duration::from_millis(20));
        }
        let ours_now = ours(&run_ok(&["--listen-queues"]));
        let syn: BTreeMap<String, u64> = ours_now
            .iter()
            .filter(|((_, p), _)| *p == port)
            .map(|((a, _), f)| (a.clone(), f["syn_recv"]))
            .collect();
        assert_eq!(syn.values().sum::<u64>(), 6, "{syn:?}");

        // The kernel's routing: data turns each request into a connection
        // queued on the listener that owned it.
        for c in &mut clients {
            use std::io::Write;
            c.write_all(b"x").unwrap();
        }
        let queued = loop {
            let l = ss_listeners();
            let q: BTreeMap<String, u64> = l
                .iter()
                .filter(|((_, p), _)| *p == port)
                .map(|((a, _), v)| (a.clone(), v[1]))
                .collect();
            if q.values().sum::<u64>() == 6 {
                break q;
            }
            assert!(Instant::now() < deadline, "accept queues: {l:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(syn, queued, "ours (syn_recv) vs the kernel (accept queues)");
        // The shape: the exact address wins over the wildcard for its own.
        assert_eq!(syn["127.0.0.1"], 3);
        p.keep((listeners, clients));
        drop(p);
    })
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests = tests![
        exact_and_wildcard_listeners_compete,
        loops_namespaces_and_ports,
        listeners_match_ss,
        formats_type_the_fields,
    ];
    run_trials(args, setup, named("listen", &tests));
}
