//! `--counters`: each namespace's SNMP MIB counters, on events the tests
//! cause in two private namespaces, compared with what `nstat` (iproute2)
//! and `ss` print inside the same namespace.

mod support;

use std::any::Any;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::*;

/// Something to run inside a namespace; what it returns is kept alive there
/// until the namespace is dropped.
type Job = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// A private network namespace with a thread inside that runs jobs on
/// request, and one idle process (so it has a /proc/PID/ns/net). Dropping it
/// ends both and closes every socket made there.
struct Ns {
    pid: u32,
    jobs: Option<Sender<(Job, Sender<()>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ns {
    fn new() -> Ns {
        let (pid_tx, pid_rx) = channel();
        let (jobs, rx) = channel::<(Job, Sender<()>)>();
        let thread = std::thread::spawn(move || {
            new_netns().expect("cannot create a private network namespace");
            let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
            pid_tx.send(sleeper.id()).unwrap();
            let mut kept = Vec::new();
            for (job, done) in rx {
                kept.push(job());
                let _ = done.send(());
            }
            let _ = sleeper.kill();
            let _ = sleeper.wait();
        });
        Ns {
            pid: pid_rx.recv().expect("namespace thread failed"),
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `f` inside and waits for it.
    fn run<T: Any + Send>(&self, f: impl FnOnce() -> T + Send + 'static) {
        let (done, wait) = channel();
        let job: Job = Box::new(move || Box::new(f()));
        self.jobs.as_ref().unwrap().send((job, done)).unwrap();
        wait.recv().expect("job panicked");
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    fn tag(&self) -> String {
        format!("pid:{}", self.pid)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Values = BTreeMap<String, u64>;

/// Our `netstat_counters` rows, by namespace tag.
fn ours(args: &[&str]) -> BTreeMap<String, Values> {
    let out = run_ok(&[&["--only", "counters"], args].concat());
    parse_metrics_any(&out)
        .into_iter()
        .map(|(name, tags, fields)| {
            assert_eq!(name, "netstat_counters");
            let netns = tags.iter().find(|t| t.0 == "netns").unwrap().1.clone();
            (netns, fields.into_iter().collect())
        })
        .collect()
}

/// `--counters SET` of namespaces `ns`, by tag.
fn counters(set: &str, ns: &[&Ns]) -> BTreeMap<String, Values> {
    let mut args = vec![format!("--counters={set}")];
    for n in ns {
        args.extend(["--netns".to_string(), n.path()]);
    }
    ours(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// What `nstat -az` prints inside `ns` (its history file left alone and
/// kept in `scratch`), SCTP left out: we read snmp, netstat and snmp6.
fn nstat(ns: &Ns, scratch: &Scratch) -> Values {
    let out = tool_in(Some(&ns.path()), "nstat")
        .args(["-a", "-z", "-s"])
        .env("NSTAT_HISTORY", scratch.join("nstat.history"))
        .output()
        .expect("cannot run nstat");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("Sctp"))
        .map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next().unwrap().to_string();
            (name, it.next().unwrap().parse().unwrap())
        })
        .collect()
}

/// Polls until `f` holds, up to `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Five connects to a closed port in A raise A's `TcpAttemptFails` and
/// `TcpOutRsts` by exactly 5 and change nothing of B; from either source.
fn refused_connects_count_in_their_namespace_only() {
    let (a, b) = (Ns::new(), Ns::new());
    for source in ["netlink", "proc"] {
        let read = || {
            let mut r = counters("default", &[&a, &b]);
            let s = ours(&[
                "--source",
                source,
                "--counters",
                "--netns",
                &a.path(),
                "--netns",
                &b.path(),
            ]);
            assert_eq!(r, s, "--source {source}");
            (r.remove(&a.tag()).unwrap(), r.remove(&b.tag()).unwrap())
        };
        let (a0, b0) = read();
        assert_eq!(a0.len(), 22, "the default set: {a0:?}");
        a.run(|| {
            for _ in 0..5 {
                let e = std::net::TcpStream::connect("127.0.0.1:1").unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            }
        });
        let (a1, b1) = read();
        assert_eq!(a1["TcpAttemptFails"], a0["TcpAttemptFails"] + 5);
        assert_eq!(a1["TcpOutRsts"], a0["TcpOutRsts"] + 5);
        assert_eq!(a1["TcpActiveOpens"], a0["TcpActiveOpens"] + 5);
        assert_eq!(b1, b0, "B moved");
    }
}

/// A listener with backlog 1 that never accepts, and twenty connects:
/// B's `TcpExtListenOverflows` (and `ListenDrops`) rise, A's do not.
fn listen_overflows_count() {
    let (a, b) = (Ns::new(), Ns::new());
    let before = counters("default", &[&a, &b]);
    b.run(|| {
        let l = listener(V4, 1, |_| {});
        let to = l.local_addr().unwrap();
        let clients: Vec<_> = (0..20).map(|_| connect_without_waiting(to)).collect();
        (l, clients)
    });
    let mut now = BTreeMap::new();
    let rose = eventually(Duration::from_secs(10), || {
        now = counters("default", &[&a, &b]);
        now[&b.tag()]["TcpExtListenOverflows"] > 0
    });
    assert!(rose, "no overflow counted: {now:?}");
    let (b0, b1) = (&before[&b.tag()], &now[&b.tag()]);
    assert_eq!(b0["TcpExtListenOverflows"], 0);
    assert!(b1["TcpExtListenDrops"] >= b1["TcpExtListenOverflows"]);
    assert_eq!(now[&a.tag()], before[&a.tag()], "A moved");
}

/// A non-blocking connect to `to`, left to complete (or not) on its own.
fn connect_without_waiting(to: SocketAddr) -> std::os::fd::OwnedFd {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd =
        rustix::net::socket_with(AddressFamily::INET, SocketType::STREAM, flags, None).unwrap();
    match rustix::net::connect(&fd, &to) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => fd,
        Err(e) => panic!("connect: {e}"),
    }
}

/// A UDP socket with a tiny receive buffer, flooded and never read: A's
/// `UdpRcvbufErrors` rises by what `ss -uamn` shows the socket dropped.
fn udp_receive_buffer_errors_match_ss() {
    let (a, b) = (Ns::new(), Ns::new());
    let before = counters("default", &[&a, &b]);
    a.run(|| {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(r.as_fd(), 2048).unwrap();
        let to: SocketAddr = r.local_addr().unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..1000 {
            s.send_to(&[0u8; 200], to).unwrap();
        }
        (r, s)
    });
    let ss = tool_in(Some(&a.path()), "ss")
        .args(["-uamnH"])
        .output()
        .unwrap();
    let text = String::from_utf8(ss.stdout).unwrap();
    let dropped: u64 = text
        .split(|c: char| c == ',' || c == ')' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix('d')?.parse::<u64>().ok())
        .sum();
    assert!(dropped > 900, "ss shows {dropped} drops:\n{text}");
    let now = counters("default", &[&a, &b]);
    let (a0, a1) = (&before[&a.tag()], &now[&a.tag()]);
    assert_eq!(a1["UdpRcvbufErrors"], a0["UdpRcvbufErrors"] + dropped);
    assert_eq!(a1["UdpInErrors"], a0["UdpInErrors"] + dropped);
    assert_eq!(now[&b.tag()], before[&b.tag()], "B moved");
}

/// Every counter we print equals what `nstat -az` prints inside the same
/// idle namespace, and we print every one it does (SCTP aside): with
/// `--counters all`, and with the default set and a pattern.
fn every_field_equals_nstat() {
    let (a, b) = (Ns::new(), Ns::new());
    a.run(|| {
        let _ = std::net::TcpStream::connect("127.0.0.1:1");
        let l = listener(V6, 8, |_| {});
        connect_pair(&l, |_| {})
    });
    let scratch = Scratch::new("nstat");
    for ns in [&a, &b] {
        let all = counters("all", &[ns]).remove(&ns.tag()).unwrap();
        let theirs = nstat(ns, &scratch);
        assert_eq!(all, theirs);
        assert!(all.len() > 200 && all["TcpActiveOpens"] == u64::from(ns.pid == a.pid) * 2);
        let some = counters("default,tcpext*", &[ns])
            .remove(&ns.tag())
            .unwrap();
        let default = telegraf_netstat::counters::DEFAULT.map(|k| k.name);
        let want: Values = theirs
            .into_iter()
            .filter(|(k, _)| k.starts_with("TcpExt") || default.contains(&k.as_str()))
            .collect();
        assert_eq!(some, want);
    }
}

/// A counter file that cannot be parsed fails the namespace like any other
/// failure: an `E!` line naming the file, and no row.
fn an_unreadable_namespace_is_said() {
    let root = Scratch::new("counters-proc");
    std::fs::create_dir_all(root.join("net")).unwrap();
    std::fs::write(root.join("net/snmp"), "Tcp: A B\nTcp: 1\n").unwrap();
    std::fs::write(root.join("net/netstat"), "").unwrap();
    let proc_root = root.to_str().unwrap();
    let out = run(&["--proc-root", proc_root, "--counters"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("E! ") && stderr.contains(&format!("malformed {proc_root}/net/snmp")),
        "{stderr}"
    );
    // Without snmp6 (IPv6 off) the others are read; what the kernel does
    // not print is left out, not zero.
    std::fs::write(
        root.join("net/snmp"),
        "Tcp: MaxConn AttemptFails\nTcp: -1 7\n",
    )
    .unwrap();
    let out = run_ok(&["--proc-root", proc_root, "--counters", "--only", "counters"]);
    assert_eq!(out, "netstat_counters TcpAttemptFails=7i\n");
}

/// A long-running gatherer keeps the files it opened: its descriptors do
/// not grow with gathers, and memory stays flat.
fn files_are_kept_between_gathers() {
    let (a, b) = (Ns::new(), Ns::new());
    let mut plugin = Plugin::start(&[
        "--execd",
        "--counters=all",
        "--only",
        "counters",
        "--netns",
        &a.path(),
        "--netns",
        &b.path(),
    ]);
    let mut gather = |n: usize| {
        for _ in 0..n {
            plugin.tick("\n");
            for _ in 0..2 {
                let line = plugin.line(Duration::from_secs(5));
                assert!(line.starts_with("netstat_counters,netns="), "{line}");
            }
        }
        (fd_count(plugin.child.id()), plugin.rss_kib())
    };
    let first = gather(3);
    let then = gather(100);
    assert_eq!(first.0, then.0, "descriptors grew");
    assert!(then.1 <= first.1 + 256, "RSS grew: {first:?} -> {then:?}");
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup().and_then(|()| tools_on_path(&[("nstat", "iproute2")]));
    let tests = tests![
        refused_connects_count_in_their_namespace_only,
        listen_overflows_count,
        udp_receive_buffer_errors_match_ss,
        every_field_equals_nstat,
        an_unreadable_namespace_is_said,
        files_are_kept_between_gathers,
    ];
    run_trials(args, setup, named("counters", &tests));
}
