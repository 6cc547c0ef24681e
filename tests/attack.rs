//! The exporter under attack (issue 30): each test runs a scripted attacker
//! next to a scrape loop, both in a private network namespace, the attacker
//! from other loopback addresses (127.0.0.2 and up: other peers), and
//! asserts the measured outcome: at least 19 of 20 valid scrapes answered
//! 200 within 2 s, SIGTERM heard within 100 ms (`Exporter::stop`), and
//! descriptors back where they were once the attacker is gone.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::*;

/// A valid scrape must be answered within this.
const WITHIN: Duration = Duration::from_secs(2);

/// A connection to the exporter on 127.0.0.1 from loopback address `from`.
fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddr::from((from, 0)))?;
    rustix::net::connect(&fd, &SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    Ok(TcpStream::from(fd))
}

/// Attacker address `i` (127.0.0.2 and up).
fn attacker(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8)
}

/// Standard base64 (RFC 4648), for `Authorization: Basic`.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn auth_header(user_password: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        base64(user_password.as_bytes())
    )
}

/// One plain-HTTP scrape from 127.0.0.1: the status code ("none" without
/// an answer) and how long it took.
fn scrape(port: u16, extra: &str) -> (String, Duration) {
    let t = Instant::now();
    let status = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(status_of(&out))
    })()
    .unwrap_or_else(|e| format!("none ({e})"));
    (status, t.elapsed())
}

fn status_of(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .split(' ')
        .nth(1)
        .unwrap_or("none")
        .to_string()
}

/// Runs `scrape` 20 times, 50 ms apart, and asserts that at least 19 were
/// answered 200 within [`WITHIN`]; returns how many were.
fn nineteen_of_twenty(what: &str, mut scrape: impl FnMut(usize) -> (String, Duration)) -> usize {
    let results: Vec<(String, Duration)> = (0..20)
        .map(|i| {
            let r = scrape(i);
            std::thread::sleep(Duration::from_millis(50));
            r
        })
        .collect();
    let good = results
        .iter()
        .filter(|(s, t)| s == "200" && *t < WITHIN)
        .count();
    assert!(
        good >= 19,
        "{what}: {good} of 20 answered 200 within 2 s: {results:?}"
    );
    eprintln!("{what}: {good} of 20 valid scrapes answered 200 within 2 s");
    good
}

/// Waits until `n` reaches `want` (the attacker is in full swing).
fn until_at_least(n: &AtomicUsize, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while n.load(Ordering::Relaxed) < want {
        assert!(Instant::now() < deadline, "the attacker never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills process `pid` if the test fails while it runs, so a failed test
/// leaves no exporter behind (a passing one stops it itself).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// A running attacker: threads that go on until dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// What the attacker counts (connections held, guesses made).
    count: Arc<AtomicUsize>,
}

impl Attack {
    fn start(
        threads: usize,
        body: impl Fn(usize, &AtomicBool, &AtomicUsize) + Send + Sync + 'static,
    ) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(body);
        let threads = (0..threads)
            .map(|i| {
                let (stop, count, body) =
                    (Arc::clone(&stop), Arc::clone(&count), Arc::clone(&body));
                std::thread::spawn(move || body(i, &stop, &count))
            })
            .collect();
        Attack {
            stop,
            threads,
            count,
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Holds up to `hold` connections from `from`, each opened by `open` (which
/// sends a request, or nothing), renewing the oldest as fast as it can.
fn holder<T>(
    port: u16,
    hold: usize,
    open: impl Fn(TcpStream) -> Option<T> + Send + Sync + 'static,
) -> impl Fn(usize, &AtomicBool, &AtomicUsize) + Send + Sync + 'static {
    move |i, stop, count| {
        let mut held = std::collections::VecDeque::with_capacity(hold);
        while !stop.load(Ordering::Relaxed) {
            match connect_from(attacker(i), port).ok().and_then(&open) {
                Some(s) => {
                    held.push_back(s);
                    if held.len() > hold {
                        held.pop_front();
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

/// Clients that send a request, take nothing and never close (1 500 held
/// at once, more than the 1024 slots, renewed as fast as one thread can):
/// before, each held its slot for 30 s after its answer and every scrape
/// got 503; now an answered connection lingers 500 ms and gives its slot
/// first. Descriptors are back and memory flat after two rounds.
fn answered_but_unclosed_connections_hold_no_slot() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let _reaper = Reaper(e.child.id());
        let pid = e.child.id();
        // After a first scrape: the gather opens its netlink socket then.
        assert_eq!(scrape(e.port, "").0, "200");
        let fds_before = fd_count(pid);
        // Two rounds: the second costs no memory the first did not.
        let mut rss = Vec::new();
        for round in 1..=2 {
            let attack = Attack::start(
                1,
                holder(e.port, 1500, |mut s| {
                    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
                    Some(s)
                }),
            );
            until_at_least(&attack.count, 1500);
            nineteen_of_twenty(
                &format!("answered-but-unclosed holders, round {round}"),
                |_| scrape(e.port, ""),
            );
            drop(attack);
            assert!(
                wait_for(Duration::from_secs(10), || fd_count(pid) <= fds_before),
                "{} descriptors after the attack, {fds_before} before",
                fd_count(pid)
            );
            rss.push(rss_kib(pid));
        }
        assert!(
            rss[1] <= rss[0] + 256,
            "RSS {} KiB after round 1, {} after 2",
            rss[0],
            rss[1]
        );
        eprintln!(
            "answered-but-unclosed holders: RSS {} KiB after round 1, {} after 2",
            rss[0], rss[1]
        );
        e.stop();
    })
}

/// The same over TLS with basic auth: 1 500 unauthenticated clients that
/// finish a handshake, get their 401 and never read or close (4 threads).
/// The issue measured 71 of 80 valid scrapes reset before.
fn answered_but_unclosed_tls_connections_hold_no_slot() {
    in_netns(|| {
        let (dir, ca) = pki("attack-hold-tls");
        let hash = bcrypt_hash("right", 4);
        let config = web_config(&dir, &format!("basic_auth_users:\n  prom: {hash}\n"));
        let e = Exporter::start(&["--web.config.file", &config]);
        let _reaper = Reaper(e.child.id());
        let roots = roots_of(&ca);
        let theirs = Arc::clone(&roots);
        let attack = Attack::start(
            4,
            holder(e.port, 375, move |tcp| {
                let mut tls = tls_client(&theirs, tcp);
                tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .ok()?;
                Some(tls)
            }),
        );
        until_at_least(&attack.count, 1500);
        let auth = auth_header("prom:right");
        nineteen_of_twenty("answered-but-unclosed holders over TLS", |_| {
            tls_scrape(e.port, &roots, Duration::ZERO, &auth)
        });
        drop(attack);
        e.stop();
    })
}

/// Connections churned without a byte sent (4 threads, 400 held each,
/// renewed as fast as they connect), against scrapes over TLS from a
/// client 150 ms away (its second flight waits): the scrape in the middle
/// of its handshake has sent bytes and is not the one evicted. Before, the
/// oldest connection still reading was, whatever it had sent.
fn churn_never_evicts_a_handshake_in_progress() {
    in_netns(|| {
        let (dir, ca) = pki("attack-churn");
        let config = web_config(&dir, "");
        let e = Exporter::start(&["--web.config.file", &config]);
        let _reaper = Reaper(e.child.id());
        let roots = roots_of(&ca);
        let attack = Attack::start(4, holder(e.port, 400, Some));
        until_at_least(&attack.count, 3000);
        nineteen_of_twenty("idle churn against TLS", |_| {
            tls_scrape(e.port, &roots, Duration::from_millis(150), "")
        });
        drop(attack);
        e.stop();
    })
}

/// 40 threads from 4 addresses guess passwords as fast as the exporter
/// answers: a scrape with credentials already checked passes at once (the
/// guesses cannot push them out), one with new credentials waits for one
/// check at most (the guessers cannot take the queue).
fn guess_floods_never_starve_valid_credentials() {
    in_netns(|| {
        let dir = Scratch::new("attack-guess");
        let mut users = format!("basic_auth_users:\n  prom: {}\n", bcrypt_hash("right", 5));
        for i in 0..10 {
            users.push_str(&format!("  u{i}: {}\n", bcrypt_hash(&format!("p{i}"), 5)));
        }
        let config = dir.0.join("web.yml");
        std::fs::write(&config, users).unwrap();
        let e = Exporter::start(&["--web.config.file", config.to_str().unwrap()]);
        let _reaper = Reaper(e.child.id());
        let port = e.port;
        assert_eq!(scrape(port, &auth_header("prom:right")).0, "200");
        let attack = Attack::start(40, move |i, stop, count| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let guess = auth_header(&format!("prom:guess-{i}-{n}"));
                let Ok(mut s) = connect_from(attacker(i % 4), port) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{guess}\r\n");
                if s.write_all(request.as_bytes()).is_ok() {
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        // More wrong verdicts than the 100 remembered, and the queue full.
        until_at_least(&attack.count, 300);
        nineteen_of_twenty("guess flood, known and new credentials", |i| {
            // Even: remembered; odd: a user not checked yet.
            let user = if i.is_multiple_of(2) {
                "prom:right".to_string()
            } else {
                format!("u{}:p{}", i / 2, i / 2)
            };
            scrape(port, &auth_header(&user))
        });
        drop(attack);
        e.stop();
    })
}

/// `rate_limit` (one token per 20 ms, a burst of 5): a client sending as
/// fast as it can (4 threads from one address) gets 429s; another peer
/// scraping every 50 ms does not, its bucket being its own. (The toolkit's
/// single bucket gave such a scraper 18 of 20 429s.)
fn one_fast_client_does_not_rate_limit_the_others() {
    in_netns(|| {
        let dir = Scratch::new("attack-rate");
        let config = dir.0.join("web.yml");
        std::fs::write(&config, "rate_limit:\n  interval: 20ms\n  burst: 5\n").unwrap();
        let e = Exporter::start(&["--web.config.file", config.to_str().unwrap()]);
        let _reaper = Reaper(e.child.id());
        let port = e.port;
        let limited = Arc::new(AtomicUsize::new(0));
        let theirs = Arc::clone(&limited);
        let attack = Attack::start(4, move |_, stop, count| {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from(attacker(0), port) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut out = Vec::new();
                if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok() {
                    let _ = s.read_to_end(&mut out);
                }
                if status_of(&out) == "429" {
                    theirs.fetch_add(1, Ordering::Relaxed);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        until_at_least(&attack.count, 300);
        nineteen_of_twenty("a fast client under rate_limit", |_| scrape(port, ""));
        drop(attack);
        assert!(
            limited.load(Ordering::Relaxed) > 100,
            "the fast client was not limited"
        );
        e.stop();
    })
}

/// Every slot a scrape waiting for its gather (held by a FIFO in place of
/// /proc/net/tcp): a new connection is refused with 503, and a `HEAD`
/// whose request has arrived gets the head without the body.
fn a_head_refused_at_the_limit_gets_no_body() {
    let root = Scratch::new("attack-head");
    std::fs::create_dir(root.0.join("net")).unwrap();
    let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    std::fs::write(root.0.join("net/udp"), header).unwrap();
    let fifo = root.0.join("net/tcp");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = root.0.to_str().unwrap().to_string();
    in_netns(move || {
        let e = Exporter::start(&["--source", "proc", "--proc-root", &r]);
        let _reaper = Reaper(e.child.id());
        let waiting: Vec<TcpStream> = (0..1024)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                s
            })
            .collect();
        // All taken by the exporter: its accept queue is empty.
        assert!(wait_for(Duration::from_secs(20), || e.accepted_all()));
        // The request is there when the exporter accepts: it is stopped
        // meanwhile (the refusal looks at what has arrived, not waiting).
        let pid = rustix::process::Pid::from_child(&e.child);
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        let mut s = e.connect().unwrap();
        s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 503 ")
                && out.ends_with("\r\n\r\n")
                && out.contains("\r\nContent-Length: 25\r\n"),
            "{out:?}"
        );
        // The gather goes on once the FIFO has a writer.
        std::fs::write(&fifo, header).unwrap();
        drop(waiting);
        e.stop();
    });
    drop(root);
}

/// The 430-byte alias bomb of issue 30 (nine levels of nine aliases).
fn alias_bomb() -> String {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb
}

/// The alias bomb as `--web.config.file`: at start, exit 2 within 1 s
/// with its data segment held under 64 MiB (RLIMIT_DATA: building the
/// tree would abort on a failed allocation instead); swapped in at run
/// time, refused (said once) while the last good configuration serves,
/// RSS under 64 MiB, and SIGTERM heard.
fn alias_bombs_are_refused_at_start_and_at_reload() {
    let dir = Scratch::new("attack-alias");
    let bomb = dir.0.join("bomb.yml");
    std::fs::write(&bomb, alias_bomb()).unwrap();
    let t = Instant::now();
    let mut cmd = command(&[
        "--listen",
        "127.0.0.1:0",
        "--web.config.file",
        bomb.to_str().unwrap(),
    ]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: 64 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(1), "exit after {took:?}");
    assert!(
        err.contains("aliases expand to more than 10000 nodes"),
        "{err}"
    );
    eprintln!("alias bomb at start: exit 2 after {took:?} under a 64 MiB data limit");

    let config = dir.0.join("web.yml");
    let good = format!("basic_auth_users:\n  prom: {}\n", bcrypt_hash("right", 4));
    std::fs::write(&config, &good).unwrap();
    let config = config.to_str().unwrap().to_string();
    in_netns(move || {
        let e = Exporter::start(&["--web.config.file", &config]);
        let _reaper = Reaper(e.child.id());
        let auth = auth_header("prom:right");
        assert_eq!(scrape(e.port, &auth).0, "200");
        std::fs::write(&config, alias_bomb()).unwrap();
        nineteen_of_twenty("alias bomb at reload", |_| scrape(e.port, &auth));
        let rss = rss_kib(e.child.id());
        assert!(rss < 64 * 1024, "RSS {rss} KiB");
        eprintln!("alias bomb at reload: RSS {rss} KiB");
        let err = e.stop();
        let refused: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("E! web config"))
            .collect();
        assert_eq!(refused.len(), 1, "{err}");
        assert!(refused[0].contains("aliases expand"), "{err}");
    });
    drop(dir);
}

/// A client that shuts its sending side after the request (`printf ... |
/// socat - TCP:...`, RFC 9112 §9.6 allows it) still gets its scrape.
fn a_half_close_after_the_request_gets_the_answer() {
    in_netns(|| {
        let e = Exporter::start(&[]);
        let _reaper = Reaper(e.child.id());
        for request in ["GET /metrics HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"] {
            let mut s = e.connect().unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            assert_eq!(
                status_of(&out),
                "200",
                "{request:?}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        e.stop();
    })
}

/// Out of descriptors under TLS (RLIMIT_NOFILE 24, 60 idle clients), the
/// web config is not reported refused: a read that cannot happen is not a
/// refusal, and an unchanged file is not read at all.
fn out_of_descriptors_is_not_a_refused_web_config() {
    in_netns(|| {
        let (dir, ca) = pki("attack-emfile");
        let config = web_config(&dir, "");
        let e = Exporter::start_with(&["--web.config.file", &config], |cmd| {
            with_fd_limit(cmd, 24, 24);
        });
        let _reaper = Reaper(e.child.id());
        let clients: Vec<TcpStream> = (0..60)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", e.port)).ok())
            .collect();
        assert!(
            wait_for(Duration::from_secs(10), || e
                .said("E! cannot accept connections")),
            "{}",
            e.stderr.lock().unwrap()
        );
        drop(clients);
        let roots = roots_of(&ca);
        let mut answer = String::new();
        assert!(wait_for(Duration::from_secs(20), || {
            answer = tls_get(
                e.port,
                &roots,
                "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
                Duration::ZERO,
            )
            .unwrap_or_default();
            answer.starts_with("HTTP/1.1 200")
        }));
        assert!(
            answer.contains("\nnetstat_web_config_last_reload_successful 1\n"),
            "{answer}"
        );
        let err = e.stop();
        assert!(!err.contains("web config"), "{err}");
    })
}

/// stdin flooded: `--execd` reading `/dev/zero`, and `--listen` and
/// `--interval` with a pipe written without end. Each costs under 0.3 s of
/// CPU a second (a bounded read per 10 ms) and hears SIGTERM within 100 ms;
/// the exporter answers its scrapes meanwhile.
fn stdin_floods_cost_little_and_signals_are_heard() {
    in_netns(|| {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        for (args, zero) in [
            (vec!["--execd"], true),
            (vec!["--listen", listen.as_str()], false),
            (vec!["--interval", "1h"], false),
        ] {
            let mut cmd = command(&args);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            if zero {
                cmd.stdin(std::fs::File::open("/dev/zero").unwrap());
            } else {
                cmd.stdin(Stdio::piped());
            }
            let mut child = cmd.spawn().unwrap();
            let flood = child.stdin.take().map(|mut pipe| {
                std::thread::spawn(move || {
                    let chunk = vec![b'x'; 65536];
                    while pipe.write_all(&chunk).is_ok() {}
                })
            });
            std::thread::sleep(Duration::from_millis(300));
            if args[0] == "--listen" {
                assert!(wait_for(Duration::from_secs(5), || {
                    TcpStream::connect(("127.0.0.1", port)).is_ok()
                }));
                let (status, took) = scrape(port, "");
                assert!(status == "200" && took < WITHIN, "{status} after {took:?}");
            }
            let pid = child.id();
            let before = cpu_seconds(pid);
            std::thread::sleep(Duration::from_secs(1));
            let used = cpu_seconds(pid) - before;
            assert!(
                used < 0.3,
                "{args:?}: {used} CPU seconds in 1 s with stdin flooded"
            );
            eprintln!("{args:?} with stdin flooded: {used:.2} CPU seconds in 1 s");
            signal_kept_promise(&mut child, rustix::process::Signal::TERM);
            if let Some(f) = flood {
                f.join().unwrap();
            }
        }
    })
}

/// The roots a rustls client trusts: `ca`'s certificate.
fn roots_of(ca: &CertFiles) -> Arc<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca.cert).unwrap();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(roots)
}

/// A client's TCP stream whose second write (after the server's first
/// flight) waits `delay`: a client a long round trip away, in the middle
/// of its handshake meanwhile.
struct Far {
    tcp: TcpStream,
    writes: usize,
    delay: Duration,
}

impl Read for Far {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(b)
    }
}

impl Write for Far {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.writes += 1;
        if self.writes == 2 {
            std::thread::sleep(self.delay);
        }
        self.tcp.write(b)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// A rustls client over `tcp`, trusting `roots`.
fn tls_client<S: Read + Write>(
    roots: &Arc<rustls::RootCertStore>,
    tcp: S,
) -> rustls::StreamOwned<rustls::ClientConnection, S> {
    use rustls::pki_types::ServerName;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(Arc::clone(roots))
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// One request over TLS by a rustls client, its handshake's second flight
/// `delay` late: the whole answer.
fn tls_get(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    request: &str,
    delay: Duration,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let far = Far {
        tcp,
        writes: 0,
        delay,
    };
    let mut tls = tls_client(roots, far);
    tls.write_all(request.as_bytes())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)?;
    Ok(out)
}

/// One scrape over TLS: its status code and how long it took.
fn tls_scrape(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    delay: Duration,
    extra: &str,
) -> (String, Duration) {
    let t = Instant::now();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    let status = match tls_get(port, roots, &request, delay) {
        Ok(answer) => status_of(answer.as_bytes()),
        Err(e) => format!("none ({e})"),
    };
    (status, t.elapsed())
}

fn main() {
    // The holders keep thousands of sockets.
    raise_fd_limit();
    let args = Arguments::from_args();
    let tools = tools_on_path(&[("openssl", "openssl"), ("htpasswd", "apache2-utils")]);
    let tests = tests![
        answered_but_unclosed_tls_connections_hold_no_slot,
        a_head_refused_at_the_limit_gets_no_body,
        one_fast_client_does_not_rate_limit_the_others,
        answered_but_unclosed_connections_hold_no_slot,
        churn_never_evicts_a_handshake_in_progress,
        guess_floods_never_starve_valid_credentials,
        alias_bombs_are_refused_at_start_and_at_reload,
        a_half_close_after_the_request_gets_the_answer,
        out_of_descriptors_is_not_a_refused_web_config,
        stdin_floods_cost_little_and_signals_are_heard,
    ];
    run_trials(args, namespace_setup().and(tools), named("attack", &tests));
}
