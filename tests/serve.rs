//! `--listen`: the HTTP exporter on loopback in a private network namespace:
//! the exact Content-Type, the landing page, 404/405/HEAD, idle and hostile
//! clients that never delay a scrape, concurrent scrapes sharing one gather,
//! SIGTERM, and descriptors and memory flat over 10 000 scrapes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::*;

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap().1
}

/// The metrics page is the Prometheus exposition of the namespace's exact
/// counts, with exactly the Content-Type Prometheus 3 requires, no
/// timestamps; `/` is a small HTML page; other paths 404, other methods 405,
/// HEAD has the headers without the body.
fn pages_and_methods() {
    in_netns(|| {
        let p = established(2, 1);
        settle(&p.expected);
        let e = Exporter::start(&[]);
        let a = e.get("/metrics");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(
            a.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{a}"
        );
        // The population, plus the exporter's listener and both ends of
        // this scrape's own connection.
        let want = format!(
            "\nnetstat_tcp_established {}\n",
            p.expected.tcp_established + 2
        );
        assert!(body(&a).contains(&want), "{a}");
        let want = format!("\nnetstat_tcp_listen {}\n", p.expected.tcp_listen + 1);
        assert!(body(&a).contains(&want), "{a}");
        assert!(
            !body(&a)
                .lines()
                .any(|l| !l.starts_with('#') && l.split(' ').count() != 2),
            "timestamps: {a}"
        );
        let head = e.request("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && body(&head).is_empty(),
            "{head}"
        );
        let len = |a: &str| {
            a.lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(len(&head), len(&a));
        let landing = e.get("/");
        assert!(
            landing.contains("Content-Type: text/html; charset=utf-8"),
            "{landing}"
        );
        assert!(
            landing.contains("<a href=\"/metrics\">")
                && landing.contains(env!("CARGO_PKG_VERSION"))
        );
        assert!(e.get("/nope").starts_with("HTTP/1.1 404 "));
        let post = e.request("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n"),
            "{post}"
        );
        assert!(e.request("garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let port = e.port;
        // Where it listens, and without TLS, said once at start.
        let err = e.stop();
        let said = format!(
            "I! listening on 127.0.0.1:{port}: serving /metrics, TLS off, basic auth off (telegraf-netstat {})\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(err.matches(&said).count(), 1, "{err}");
        // Another path for the metrics.
        let e = Exporter::start(&["--web.telemetry-path", "/stats"]);
        assert!(e.get("/stats").starts_with("HTTP/1.1 200 OK"));
        assert!(e.get("/metrics").starts_with("HTTP/1.1 404"));
        e.stop();
        drop(p);
    })
}

/// A gather that fails answers 500 with a short text (the detail, with its
/// paths, goes to stderr only), and the exporter goes on serving: the next
/// scrape, once the cause is gone, answers 200.
fn failed_gathers_answer_500_and_the_exporter_goes_on() {
    in_netns(|| {
        let root = Scratch::new("serve-proc");
        std::fs::create_dir(root.0.join("net")).unwrap();
        let r = root.0.to_str().unwrap();
        let e = Exporter::start(&["--source", "proc", "--proc-root", r]);
        let a = e.get("/metrics");
        assert!(
            a.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{a}"
        );
        assert_eq!(body(&a), "gather failed: see the exporter's log\n");
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        for t in ["tcp", "udp"] {
            std::fs::write(root.0.join("net").join(t), header).unwrap();
        }
        let a = e.get("/metrics");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(body(&a).contains("\nnetstat_tcp_established 0\n"), "{a}");
        let stderr = e.stop();
        assert!(
            stderr.contains(&format!(
                "E! gather failed: cannot read {r}/net/tcp: No such file or directory (os error 2)\n"
            )),
            "{stderr}"
        );
    })
}

/// 300 idle connections held open: a scrape still answers within 1 s, and
/// SIGTERM still ends the process at once.
fn idle_connections_never_delay_a_scrape() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let idle: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(("127.0.0.1", e.port)).unwrap())
            .collect();
        // Polled: every one accepted (the listener's accept queue is empty).
        assert!(wait_for(Duration::from_secs(20), || e.accepted_all()));
        let t = Instant::now();
        let a = e.get("/metrics");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(a.starts_with("HTTP/1.1 200 OK"));
        e.stop();
        drop(idle);
    })
}

/// 50 scrapes at once: all answered, with identical bodies, from a few
/// gathers (one per wave of scrapes that arrive while none runs). The
/// exporter reads a fake /proc of 200 000 sockets, so that a gather is long
/// (hundreds of ms) next to the time the 50 requests take to arrive, however
/// loaded the machine, and the scrapes' own connections are not counted.
fn concurrent_scrapes_share_gathers() {
    use std::fmt::Write as _;
    let root = Scratch::new("serve-concurrent");
    std::fs::create_dir(root.0.join("net")).unwrap();
    let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    let mut tcp = String::from(header);
    for i in 0..200_000 {
        let _ = writeln!(
            tcp,
            "{i:6}: 0100007F:1388 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 1 1"
        );
    }
    std::fs::write(root.0.join("net/tcp"), tcp).unwrap();
    std::fs::write(root.0.join("net/udp"), header).unwrap();
    let r = root.0.to_str().unwrap().to_string();
    in_netns(move || {
        let e = Exporter::start(&["--source", "proc", "--proc-root", &r]);
        let port = e.port;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let b = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    b.wait();
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out
                })
            })
            .collect();
        let answers: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200 OK")));
        assert!(answers.iter().all(|a| body(a) == body(&answers[0])));
        let stderr = e.stop();
        let gathers = stderr
            .lines()
            .filter(|l| l.starts_with("D! gathered for "))
            .count();
        assert!(
            (1..=5).contains(&gathers),
            "{gathers} gathers for 50 scrapes:\n{stderr}"
        );
        assert!(body(&answers[0]).contains("\nnetstat_tcp_established 200000\n"));
    });
    drop(root);
}

/// A 1 MB header is refused with 431 and the connection closed; a client
/// that sends its request a byte at a time (slowloris) is cut off after the
/// request timeout; meanwhile scrapes are answered at once.
fn hostile_clients_are_cut_off() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let mut big = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1 << 20));
        let _ = big.write_all(&req); // the server may close before all is sent
        let mut out = Vec::new();
        let _ = big.read_to_end(&mut out);
        assert!(
            String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&out)
        );

        let mut slow = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let start = Instant::now();
        let closed = loop {
            std::thread::sleep(Duration::from_millis(250));
            let t = Instant::now();
            assert!(e.get("/metrics").starts_with("HTTP/1.1 200"));
            assert!(t.elapsed() < Duration::from_secs(2));
            if slow.write_all(b"X-Slow: y\r\n").is_err() {
                break start.elapsed();
            }
            let mut b = [0u8; 1];
            slow.set_nonblocking(true).unwrap();
            let r = slow.read(&mut b);
            slow.set_nonblocking(false).unwrap();
            if matches!(r, Ok(0)) {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "slowloris never cut off"
            );
        };
        assert!(closed >= Duration::from_secs(4), "{closed:?}");
        e.stop();
    })
}

/// 10 000 scrapes: the process's descriptors and RSS after 10 000 are those
/// after 1 000.
fn descriptors_and_memory_stay_flat() {
    in_netns(|| {
        let p = established(2, 2);
        settle(&p.expected);
        let e = Exporter::start(&[]);
        let pid = e.child.id();
        let fds = || fd_count(pid);
        let rss = || rss_kib(pid);
        let scrape = |n: usize| {
            for _ in 0..n {
                assert!(e.get("/metrics").starts_with("HTTP/1.1 200"));
            }
        };
        scrape(1_000);
        let (fds_1k, rss_1k) = (fds(), rss());
        scrape(9_000);
        let rss_10k = rss();
        // The last connection closes when the exporter sees the client's
        // end (a lingering close): poll for it.
        assert!(
            wait_for(Duration::from_secs(10), || fds() <= fds_1k),
            "{} descriptors after 10 000 scrapes, {fds_1k} after 1 000",
            fds()
        );
        assert!(
            rss_10k <= rss_1k + 64,
            "RSS grew from {rss_1k} to {rss_10k} KiB"
        );
        e.stop();
        drop(p);
    })
}

/// Socket activation: `systemd-socket-activate` (what a `.socket` unit does)
/// holds the listening socket and starts the program with it on the first
/// connection (`LISTEN_FDS`, `LISTEN_PID`); the program serves on it, and
/// exits 0 on SIGTERM.
fn systemd_socket_activation() {
    in_netns(|| {
        let port = free_port();
        let mut child = std::process::Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(BIN)
            .arg("--web.systemd-socket")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer = loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                break out;
            }
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("netstat_tcp_established"), "{answer}");
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
    })
}

/// 2000 idle connections held and renewed (more than the 1024 slots):
/// every one of 20 scrapes still gets its 200, because a new connection
/// evicts the oldest one that has not sent a request.
fn idle_connections_cannot_lock_scrapers_out() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let mut idle: std::collections::VecDeque<TcpStream> = (0..2000)
            .map(|_| TcpStream::connect(("127.0.0.1", e.port)).unwrap())
            .collect();
        for _ in 0..20 {
            // The attacker renews 100 of them before each scrape.
            for _ in 0..100 {
                idle.pop_front();
                idle.push_back(TcpStream::connect(("127.0.0.1", e.port)).unwrap());
            }
            let a = e.get("/metrics");
            assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        }
        drop(idle);
        e.stop();
    })
}

/// A request with a 1 MB body, and two pipelined requests: the whole
/// answer arrives (a lingering close), not a reset that cuts it short.
fn unread_request_bytes_do_not_cost_the_answer() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let full = e.get("/metrics");
        let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = vec![b'x'; 1 << 20];
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
            .unwrap();
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(&body))
        };
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let _ = writer.join().unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        complete(&out);
        complete(&full);
        let a =
            e.request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        complete(&a);
        // 405 after a body.
        let a = e.request("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        assert!(
            a.starts_with("HTTP/1.1 405 ") && a.ends_with("only GET and HEAD\n"),
            "{a}"
        );
        assert!(a.contains("\r\nDate: "), "{a}");
        e.stop();
    })
}

/// The answer is all there: as long as its Content-Length says, ending
/// with the last metric.
fn complete(answer: &str) {
    let len: usize = answer
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body(answer).len(), len, "{answer}");
    assert!(answer.contains("\nnetstat_udp_socket 0\n"), "{answer}");
    let last = answer.trim_end_matches('\n').rsplit('\n').next().unwrap();
    let seconds = last.strip_prefix("netstat_gather_duration_seconds ");
    assert!(
        seconds.is_some_and(|s| s.parse::<f64>().is_ok()) && answer.ends_with('\n'),
        "{answer}"
    );
}

/// With its descriptors used up (RLIMIT_NOFILE 16), the exporter does not
/// spin on `accept`: it pauses, says so once, and serves again once
/// descriptors are free.
fn out_of_descriptors_pauses_and_says_so_once() {
    in_netns(|| {
        let e = Exporter::start_with(&[], |cmd| {
            with_fd_limit(cmd, 16, 16);
        });
        let pid = e.child.id();
        // More clients than descriptors; none sends a request.
        let clients: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(("127.0.0.1", e.port)).unwrap())
            .collect();
        assert!(
            wait_for(Duration::from_secs(10), || e
                .said("E! cannot accept connections: Too many open files")),
            "{}",
            e.stderr.lock().unwrap()
        );
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(pid) - before;
        assert!(
            used < 0.3,
            "{used} CPU seconds in 1 s while out of descriptors"
        );
        drop(clients);
        assert!(wait_for(Duration::from_secs(20), || {
            e.try_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .is_ok_and(|a| a.starts_with("HTTP/1.1 200 OK"))
        }));
        let stderr = e.stop();
        assert_eq!(stderr.matches("E! cannot accept").count(), 1, "{stderr}");
    })
}

/// `--web.systemd-socket` checks what it is given: no sockets, a count
/// that is not one, a descriptor that is not open or not a listening TCP
/// socket are each a clear error and exit 2, never a silent spin or an
/// abort.
fn systemd_descriptors_are_checked() {
    for (fds, setup, want) in [
        (
            "0",
            "3</dev/null",
            "LISTEN_FDS=0 is not a number of sockets from 1 to 64",
        ),
        (
            "-1",
            "3</dev/null",
            "LISTEN_FDS=-1 is not a number of sockets from 1 to 64",
        ),
        ("1", "3</dev/null", "descriptor 3: not a socket"),
        (
            "1",
            "3<&-",
            "descriptor 3: not open (LISTEN_FDS=1 names more sockets than were passed)",
        ),
    ] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "LISTEN_PID=$$ LISTEN_FDS={fds} exec {BIN} --web.systemd-socket {setup}"
            ))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fds}: {stderr}");
        assert_eq!(stderr, format!("E! --web.systemd-socket: {want}\n"));
    }
}

/// `:PORT` serves IPv4 and IPv6 even where `net.ipv6.bindv6only=1`, and
/// port 0 says which port it got.
fn any_address_serves_both_families() {
    in_netns(|| {
        std::fs::write("/proc/sys/net/ipv6/bindv6only", "1").unwrap();
        let mut child = command(&["--listen", ":0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stderr.take().unwrap()),
            &mut line,
        )
        .unwrap();
        // The start-up line: where (every address, the port the kernel
        // chose), what, and that TLS and auth are off.
        assert!(
            line.contains("; every address, IPv6 and IPv4): serving /metrics, TLS off, basic auth off (telegraf-netstat "),
            "{line}"
        );
        let port: u16 = line
            .strip_prefix("I! listening on [::]:")
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        for host in ["127.0.0.1", "::1"] {
            let mut s = TcpStream::connect((host, port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.1 200 OK"), "{host}: {out}");
        }
        let _ = child.kill();
        let _ = child.wait();
        // localhost:0 then a fixed address: the port-0 line names both
        // loopback sockets, and only them.
        let fixed = format!("127.0.0.1:{}", free_port());
        // Killed when dropped, also when an assertion fails.
        let exporter = Plugin::start(&["--listen", "localhost:0", "--listen", &fixed]);
        let lines: Vec<String> = (0..2)
            .map(|_| {
                exporter
                    .stderr
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("no I! line: {e}"))
            })
            .collect();
        assert!(
            lines[0].starts_with("I! listening on 127.0.0.1:"),
            "{lines:?}"
        );
        let port = lines[0]
            .split(':')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            lines[1].starts_with(&format!("I! listening on [::1]:{port} ")),
            "{lines:?}"
        );
        drop(exporter);
    })
}

fn main() {
    // The idle-connection test holds 2000 client sockets.
    raise_fd_limit();
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests = tests![
        idle_connections_cannot_lock_scrapers_out,
        unread_request_bytes_do_not_cost_the_answer,
        out_of_descriptors_pauses_and_says_so_once,
        systemd_descriptors_are_checked,
        any_address_serves_both_families,
        failed_gathers_answer_500_and_the_exporter_goes_on,
        systemd_socket_activation,
        pages_and_methods,
        idle_connections_never_delay_a_scrape,
        concurrent_scrapes_share_gathers,
        hostile_clients_are_cut_off,
        descriptors_and_memory_stay_flat,
    ];
    let activate = socket_activation_available();
    run_trials_needing(
        args,
        setup,
        named("serve", &tests),
        &[("systemd_socket_activation", activate)],
    );
}
