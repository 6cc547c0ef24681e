//! Benchmark population: fills the calling process's network namespace with
//! ESTABLISHED pairs, TIME_WAIT sockets, listeners and UDP sockets, prints
//! "ready" and holds them until stdin closes. Run it in a private namespace
//! (bench/run does); traffic stays on loopback.
//!
//! usage: populate ESTABLISHED_SOCKETS TIME_WAIT LISTENERS UDP
//!
//! ESTABLISHED pairs are made by worker processes (this program again, with
//! `worker PAIRS SPREAD`), each within a per-process fd limit that cannot be
//! raised without CAP_SYS_RESOURCE. Their client ends are outbound to about
//! `DESTINATIONS` destinations in all: each worker's two IPv4 listeners
//! listen on every address and are reached through SPREAD loopback
//! addresses each (127.0.0.1, .2, ...), its two IPv6 ones through ::1.
//!
//! Run as root on a host with a writable cgroup2 mount, the client sockets
//! are spread over `CGROUPS` cgroups made for the run (each worker moves
//! itself to the next one every 40 connections; the kernel charges a
//! socket to its creator's cgroup, an accepted one to its listener's), for
//! `--by-cgroup`. The cgroups are removed when the run ends.

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

fn arg(i: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .expect("usage: populate ESTABLISHED TIME_WAIT LISTENERS UDP")
}

fn loopback_up() {
    // SAFETY: socket ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr),
            0,
            "lo up: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

/// The soft fd limit raised to the hard one; returns it.
fn fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur as usize
    }
}

fn hold_until_stdin_closes() {
    println!("ready");
    std::io::stdout().flush().unwrap();
    for _ in std::io::stdin().lock().lines() {}
}

/// Destinations the client ends go to, in all.
const DESTINATIONS: usize = 1000;

/// Cgroups the client ends are spread over.
const CGROUPS: usize = 50;

/// The variable that hands the workers the cgroups' parent directory.
const CGROUPS_VAR: &str = "TELEGRAF_NETSTAT_BENCH_CGROUPS";

/// Makes `CGROUPS` cgroups under the cgroup2 mount; `None` where that is
/// not possible (not root, no cgroup2).
fn make_cgroups() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read("/proc/self/mountinfo").ok()?;
    let base = telegraf_netstat::cgroupfs::cgroup2_mount(&mountinfo)?
        .join(format!("telegraf-netstat-bench-{}", std::process::id()));
    std::fs::create_dir(&base).ok()?;
    for i in 0..CGROUPS {
        std::fs::create_dir(base.join(format!("c{i:02}"))).ok()?;
    }
    Some(base)
}

fn remove_cgroups(base: &std::path::Path) {
    for i in 0..CGROUPS {
        let dir = base.join(format!("c{i:02}"));
        // A reaped process leaves its cgroup a moment later.
        for _ in 0..500 {
            if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_dir(base);
}

/// A worker: `pairs` connected pairs over four listeners of its own, the
/// IPv4 ones reached through `spread` addresses each.
fn worker(pairs: usize, spread: usize) {
    fd_limit();
    let ls: Vec<TcpListener> = ["0.0.0.0:0", "[::1]:0", "0.0.0.0:0", "[::1]:0"]
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect();
    let cgroups = std::env::var_os(CGROUPS_VAR).map(std::path::PathBuf::from);
    let mut keep = Vec::with_capacity(2 * pairs);
    let mut made = 0;
    while made < pairs {
        // std listeners have a backlog of 128: stay under it per listener.
        let batch = (pairs - made).min(400);
        for j in 0..batch {
            if let (Some(base), 0) = (&cgroups, (made + j) % 40) {
                let c = base.join(format!("c{:02}", ((made + j) / 40) % CGROUPS));
                std::fs::write(c.join("cgroup.procs"), "0").unwrap();
            }
            let (i, l) = ((made + j) % 4, &ls[(made + j) % 4]);
            let mut to = l.local_addr().unwrap();
            if i.is_multiple_of(2) {
                let host = 1 + ((made + j) / 4) % spread;
                to.set_ip(std::net::Ipv4Addr::new(127, 0, (host >> 8) as u8, host as u8).into());
            }
            keep.push(TcpStream::connect(to).unwrap());
        }
        for j in 0..batch {
            keep.push(ls[(made + j) % 4].accept().unwrap().0);
        }
        made += batch;
    }
    hold_until_stdin_closes();
    drop((keep, ls));
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker(arg(2), arg(3));
    }
    let (established, time_wait, listeners, udp) = (arg(1), arg(2), arg(3), arg(4));
    let per_worker = (fd_limit().saturating_sub(64) / 2).clamp(1, 8000);
    loopback_up();
    // Per-namespace sysctls: room for many connections per destination.
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535").unwrap();

    let cgroups = make_cgroups();
    let mut workers = Vec::new();
    let mut left = established / 2;
    let spread = (DESTINATIONS / (2 * left.div_ceil(per_worker)).max(1)).max(1);
    while left > 0 {
        let n = left.min(per_worker);
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["worker", &n.to_string(), &spread.to_string()])
            .stdout(std::process::Stdio::piped());
        if let Some(base) = &cgroups {
            cmd.env(CGROUPS_VAR, base);
        }
        let mut w = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(w.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "worker failed");
        workers.push(w);
        left -= n;
    }

    // Listeners beyond the workers' four each; TIME_WAIT made through the first.
    let mut keep_l = Vec::new();
    for i in 0..listeners.saturating_sub(4 * workers.len()).max(1) {
        let addr = if i.is_multiple_of(2) {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        keep_l.push(TcpListener::bind(addr).unwrap());
    }
    for _ in 0..time_wait {
        let l = &keep_l[0];
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c);
        drop(s);
    }
    let keep_u: Vec<UdpSocket> = (0..udp)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    hold_until_stdin_closes();
    for mut w in workers {
        w.wait().unwrap();
    }
    if let Some(base) = &cgroups {
        remove_cgroups(base);
    }
    drop((keep_l, keep_u));
}
