//! Counting tests against real sockets: every test builds a known socket
//! population in its own private network namespace and runs the real binary
//! (and `ss`) there, comparing exact counts.
//!
//! A custom harness (libtest-mimic) because an unprivileged run must enter a
//! user namespace while the process is still single-threaded.

mod support;

use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;
use telegraf_netstat::Counts;

fn check_population(build: fn() -> Population) {
    in_netns(move || {
        let p = build();
        check(&p.expected);
        drop(p);
    })
}

fn empty_namespace() {
    in_netns(|| check(&Counts::default()))
}

/// With netlink refused by seccomp, auto reads /proc, says so once with
/// `W! ` and prints the same counts.
fn auto_falls_back_when_netlink_is_blocked() {
    in_netns(|| {
        let mut p = established(2, 1);
        p.merge(udp());
        check(&p.expected);
        let proc = run_ok(&["--source", "proc"]);
        let out = run_blocked(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {stderr}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), proc);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one warning: {stderr}");
        assert!(
            lines[0].starts_with("W! cannot open a netlink sock_diag socket: "),
            "{stderr}"
        );
        assert!(lines[0].contains("os error 1"), "{stderr}");
        assert!(
            lines[0].ends_with("reading tcp and udp sockets from /proc from now on"),
            "{stderr}"
        );
    })
}

/// `--source netlink` does not fall back: one `E! ` line, no output, exit 1.
fn netlink_source_fails_when_blocked() {
    in_netns(|| {
        let out = run_blocked(&["--source", "netlink"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("E! gather failed: cannot open a netlink sock_diag socket: "),
            "{stderr}"
        );
        assert!(stderr.contains("os error 1"), "{stderr}");
    })
}

/// Netlink refused and /proc unreadable: the warning, then one `E! ` line
/// naming the /proc path and its OS error; nothing on stdout; exit 1.
fn both_sources_unusable() {
    in_netns(|| {
        let out = run_blocked(&["--proc-root", "/nonexistent/proc"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{stderr}");
        assert!(lines[0].starts_with("W! "), "{stderr}");
        assert_eq!(
            lines[1],
            "E! gather failed: cannot read /nonexistent/proc/net/tcp: No such file or directory (os error 2)"
        );
    })
}

/// Drives `--execd` like Telegraf while the namespace's population changes
/// between ticks; closing stdin ends it with exit 0 within 1 s.
fn execd_follows_a_changing_population() {
    in_netns(|| {
        let mut plugin = Plugin::start(&["--execd"]);
        let wait = std::time::Duration::from_secs(2);
        let mut expected = Counts::default();
        plugin.tick("\n");
        assert_eq!(parse_line(&plugin.line(wait)), fields(&expected));

        let l = std::net::TcpListener::bind(V4).unwrap();
        let mut pairs: Vec<_> = (0..4).map(|_| connect_pair(&l, |_| {})).collect();
        expected.tcp_listen = 1;
        expected.tcp_established = 8;
        settle(&expected);
        plugin.tick("\n");
        assert_eq!(parse_line(&plugin.line(wait)), fields(&expected));

        // Close two connections, client first: two TIME_WAIT remain.
        for (client, mut server) in pairs.drain(..2) {
            drop(client);
            drain_to_eof(&mut server);
        }
        expected.tcp_established = 4;
        expected.tcp_time_wait = 2;
        settle(&expected);
        // Any line content triggers a gather.
        plugin.tick("gather please\n");
        assert_eq!(parse_line(&plugin.line(wait)), fields(&expected));

        drop(plugin.stdin.take());
        let status = plugin.exit_within(std::time::Duration::from_secs(1));
        assert_eq!(status.code(), Some(0));
        drop(pairs);
    })
}

/// A request socket outlives its closed listener until its next SYN-ACK
/// timer, and no kernel counter in /proc/net/sockstat includes it. An execd
/// loop that has only ever seen an empty namespace still counts it, like
/// `ss` and a one-shot run: the client lives in a second namespace (over a
/// veth pair), so the server's namespace holds nothing but that request
/// socket once the listener is closed.
fn execd_counts_a_request_socket_that_outlived_its_listener() {
    in_netns(|| {
        let peer = Peer::new("10.77.0.1/24", "10.77.0.2/24");
        let mut plugin = Plugin::start(&["--execd"]);
        let wait = std::time::Duration::from_secs(2);
        let empty = Counts::default();
        for _ in 0..3 {
            settle(&empty);
            plugin.tick("\n");
            assert_eq!(parse_line(&plugin.line(wait)), fields(&empty));
        }
        let l = listener("10.77.0.1:0", 16, defer_accept);
        let to = l.local_addr().unwrap();
        peer.connect(to);
        // The client's bare ACK leaves the request socket waiting for data.
        settle(&Counts {
            tcp_listen: 1,
            tcp_syn_recv: 1,
            ..empty
        });
        drop(l);
        let orphan = Counts {
            tcp_syn_recv: 1,
            ..empty
        };
        settle(&orphan);
        plugin.tick("\n");
        assert_eq!(parse_line(&plugin.line(wait)), fields(&orphan), "execd");
        assert_eq!(parse_line(&run_ok(&[])), fields(&orphan), "one-shot");
        drop(plugin.stdin.take());
        assert_eq!(plugin.exit_within(wait).code(), Some(0));
        drop(peer);
    })
}

/// 10 000 gathers in a private namespace (so the cost does not depend on
/// the host's sockets): RSS after 10 000 is within a few KiB of RSS after
/// 1 000.
fn memory_does_not_grow_over_10000_gathers() {
    in_netns(|| {
        let p = established(3, 2);
        settle(&p.expected);
        let (after_1k, after_10k) = rss_over_gathers(&[], 1_000, 9_000);
        assert!(
            after_10k <= after_1k + 8,
            "RSS grew from {after_1k} KiB to {after_10k} KiB"
        );
        drop(p);
    })
}

/// The static release binary (`dist/build`; its path in
/// `TELEGRAF_NETSTAT_STATIC_BIN`) prints the same bytes as the default build
/// on a namespace with every TCP state and UDP sockets, in every format and
/// from both sources.
fn static_binary_prints_what_the_default_build_prints() {
    let static_bin = std::env::var("TELEGRAF_NETSTAT_STATIC_BIN").unwrap();
    in_netns(move || {
        let p = everything();
        check(&p.expected);
        for args in [
            &["--source", "netlink"][..],
            &["--source", "proc"],
            &["--format", "prometheus", "--by-family", "--include-unix"],
            &["--format", "json", "--include-unix"],
        ] {
            let ours = run_ok(args);
            let out = std::process::Command::new(&static_bin)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{args:?}: {out:?}"
            );
            let theirs = String::from_utf8(out.stdout).unwrap();
            if args.contains(&"json") {
                // Stamped with the gather time: compare all but the timestamp.
                let strip = |s: &str| s.split("\"timestamp\"").next().unwrap().to_string();
                assert_eq!(strip(&theirs), strip(&ours), "{args:?}");
            } else if args.contains(&"prometheus") {
                // The self-metrics name the build's target (musl, gnu) and
                // time the gather: the same lines but for those values.
                let strip = |s: &str| -> String {
                    s.lines()
                        .map(|l| {
                            if l.starts_with("netstat_build_info{") {
                                "netstat_build_info".to_string()
                            } else if l.starts_with("netstat_gather_duration_seconds ") {
                                "netstat_gather_duration_seconds".to_string()
                            } else {
                                l.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                assert_eq!(strip(&theirs), strip(&ours), "{args:?}");
                assert!(
                    theirs.contains(&format!(
                        "target=\"{}-unknown-linux-musl\"",
                        std::env::consts::ARCH
                    )),
                    "{theirs}"
                );
            } else {
                assert_eq!(theirs, ours, "{args:?}");
            }
        }
        drop(p);
    })
}

/// The JSON and Prometheus outputs carry the same counts as the influx line,
/// read back with a real JSON parser and a strict exposition-format reader.
fn json_and_prometheus_carry_the_same_counts() {
    in_netns(|| {
        let mut p = established(2, 1);
        p.merge(udp());
        p.merge(half_closed(2));
        check(&p.expected);
        let want = fields(&p.expected);

        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let json = run_ok(&["--format", "json"]);
        assert_eq!(json.lines().count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("invalid JSON");
        assert_eq!(v["name"], "netstat");
        assert_eq!(v["tags"], serde_json::json!({}));
        let ts = v["timestamp"].as_u64().expect("integer timestamp");
        assert!(ts >= before && ts <= before + 5, "timestamp {ts}");
        let got: Vec<(String, u64)> = v["fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_u64()
                        .unwrap_or_else(|| panic!("{k} is not an integer: {v}")),
                )
            })
            .collect();
        assert_eq!(got, want);

        let prom = run_ok(&["--format", "prometheus"]);
        // The counts, up to the self-metrics (tested in tests/consumers.rs).
        let (counts, health) = prom.split_once("# HELP netstat_build_info ").unwrap();
        assert!(health.contains("\nnetstat_gather_success 1\n"), "{prom}");
        let mut samples = Vec::new();
        let mut lines = counts.lines();
        while let Some(help) = lines.next() {
            let name = help
                .strip_prefix("# HELP ")
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string();
            assert_eq!(lines.next().unwrap(), format!("# TYPE {name} gauge"));
            let sample = lines.next().unwrap();
            let (n, value) = sample.split_once(' ').unwrap();
            assert_eq!(n, name);
            samples.push((
                name.strip_prefix("netstat_").unwrap().to_string(),
                value.parse::<u64>().unwrap(),
            ));
        }
        assert_eq!(samples, want);
    })
}

/// contrib/netstat.sh prints exactly the binary's line on the richest
/// population (connected UDP sockets included, which ss shows as ESTAB).
fn shell_fallback_matches_the_binary() {
    in_netns(|| {
        let p = everything();
        check(&p.expected);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/netstat.sh");
        let out = succeeded(std::process::Command::new("sh").arg(script));
        assert_eq!(String::from_utf8(out).unwrap(), run_ok(&[]));
        // Without ss: a clear error and exit 1.
        let out = std::process::Command::new("/bin/sh")
            .arg(script)
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "E! ss not found: install iproute2\n"
        );
    })
}

/// `--prometheus-names native`: the state counts as labels, and the bytes
/// queued on non-listening TCP sockets equal the sums of `ss`'s Recv-Q and
/// Send-Q, in total and on the port, from both sources. The data: a server
/// that does not read (its Recv-Q fills) and a client whose peer's window
/// is full (its Send-Q fills), and a listener whose accept queue is left
/// out.
fn native_names_count_queued_bytes_like_ss() {
    in_netns(|| {
        let l = listener("127.0.0.1:7600", 16, |_| {});
        let (mut client, server) = connect_pair(&l, big_sndbuf);
        fill(&mut client);
        // ss: Recv-Q and Send-Q of every socket that is not listening, once
        // the queues stop moving.
        let ss_queues = || {
            let out = std::process::Command::new("ss")
                .args(["-Htna"])
                .output()
                .unwrap();
            let mut q = (0u64, 0u64);
            for line in String::from_utf8(out.stdout).unwrap().lines() {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols[0] != "LISTEN" {
                    q.0 += cols[1].parse::<u64>().unwrap();
                    q.1 += cols[2].parse::<u64>().unwrap();
                }
            }
            q
        };
        let mut last = ss_queues();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = ss_queues();
            if now == last && now.0 > 0 && now.1 > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "queues never settled: {now:?}"
            );
            last = now;
        }
        for source in ["netlink", "proc"] {
            // A window update may still move bytes from the client's send
            // queue to the server's receive queue: a gather counts when
            // ss reads the same before and after it.
            let (out, last) = loop {
                let before = ss_queues();
                let out = run_ok(&[
                    "--format",
                    "prometheus",
                    "--prometheus-names",
                    "native",
                    "--source",
                    source,
                    "--local-port",
                    "7600",
                ]);
                if ss_queues() == before {
                    break (out, before);
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "queues never stood still around a gather"
                );
            };
            let value = |name: &str| -> u64 {
                out.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                    .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                    .parse()
                    .unwrap()
            };
            assert_eq!(
                (
                    value("netstat_tcp_receive_queue_bytes"),
                    value("netstat_tcp_send_queue_bytes")
                ),
                last,
                "{source}:\n{out}"
            );
            // Port 7600 is the server's end: what it has not read.
            assert_eq!(
                value("netstat_port_tcp_receive_queue_bytes{direction=\"local\",port=\"7600\"}"),
                last.0,
                "{source}"
            );
            assert!(
                out.contains("\nnetstat_tcp_connections{state=\"established\"} 2\n"),
                "{out}"
            );
            assert!(
                out.contains("\nnetstat_tcp_connections{state=\"listen\"} 1\n"),
                "{out}"
            );
            assert!(!out.contains("tcp_none"), "{out}");
        }
        drop((l, client, server));
    })
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup();

    type Build = fn() -> Population;
    let populations: &[(&str, Build)] = &[
        ("listen_ipv4_ipv6_not_bound_inactive", listeners),
        ("established_ipv4_ipv6", || established(4, 3)),
        ("time_wait", || time_wait(5)),
        ("close_wait_and_fin_wait2", || half_closed(3)),
        ("syn_sent_backlog_full", || syn_sent(2)),
        ("syn_recv_deferred_accept", || syn_recv(3)),
        ("fin_wait1", || fin_wait1(2)),
        ("last_ack", || last_ack(2)),
        ("closing", || closing(1)),
        ("udp_ipv4_ipv6_bound_and_connected", udp),
        ("everything_at_once", everything),
    ];
    let mut tests: Vec<NamedTest> = populations
        .iter()
        .map(|&(name, build)| {
            let f: Box<dyn FnOnce() + Send> = Box::new(move || check_population(build));
            (format!("population::{name}"), f)
        })
        .collect();
    let others = tests![
        native_names_count_queued_bytes_like_ss,
        shell_fallback_matches_the_binary,
        json_and_prometheus_carry_the_same_counts,
        execd_follows_a_changing_population,
        execd_counts_a_request_socket_that_outlived_its_listener,
        empty_namespace,
        memory_does_not_grow_over_10000_gathers,
        static_binary_prints_what_the_default_build_prints,
        auto_falls_back_when_netlink_is_blocked,
        netlink_source_fails_when_blocked,
        both_sources_unusable,
    ];
    tests.extend(named("source", &others));

    let static_bin = match std::env::var_os("TELEGRAF_NETSTAT_STATIC_BIN") {
        Some(p) if std::path::Path::new(&p).is_file() => Ok(()),
        Some(p) => Err(format!("TELEGRAF_NETSTAT_STATIC_BIN={p:?} is not a file")),
        None => Err(
            "TELEGRAF_NETSTAT_STATIC_BIN is not set (dist/build, then point it at \
                     target/dist/stage/usr/bin/telegraf-netstat)"
                .to_string(),
        ),
    };
    run_trials_needing(
        args,
        setup,
        tests,
        &[(
            "static_binary_prints_what_the_default_build_prints",
            static_bin,
        )],
    );
}
