//! Private network namespaces: making them, named ones (`ip netns`), and peers in them.

use super::*;

/// Gives an unprivileged test process a user namespace in which it may
/// create network namespaces. Must run while the process is single-threaded
/// (first thing in `main`). Root needs nothing.
pub fn enter_user_namespace() -> Result<(), String> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    // SAFETY: no file descriptor tables are unshared.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    let w =
        |path: &str, text: String| std::fs::write(path, text).map_err(|e| format!("{path}: {e}"));
    w("/proc/self/setgroups", "deny".into())?;
    w("/proc/self/uid_map", format!("0 {uid} 1"))?;
    w("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// Runs `f` on a new thread that has its own, fresh network namespace with
/// loopback up. Sockets `f` creates and processes it starts live there; the
/// namespace disappears with its last socket and process.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        new_netns().expect("cannot create a private network namespace");
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Moves the calling thread into a fresh network namespace with `lo` up.
pub fn new_netns() -> Result<(), String> {
    // SAFETY: no file descriptor tables are unshared.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    loopback_up()
}

/// Brings `lo` up in the calling thread's namespace.
pub fn loopback_up() -> Result<(), String> {
    // SAFETY: plain socket ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(format!("bringing lo up: {err}"));
        }
    }
    Ok(())
}

/// Probes once whether this machine lets the tests create namespaces.
pub fn namespaces_available() -> Result<(), String> {
    std::thread::spawn(new_netns)
        .join()
        .map_err(|_| "probe panicked".to_string())?
}

/// What every namespace test binary does first, while single-threaded:
/// enter a user namespace if unprivileged, check that network namespaces
/// can be made, and that `ss` (iproute2), which the tests compare with, is
/// installed.
pub fn namespace_setup() -> Result<(), String> {
    enter_user_namespace()
        .and_then(|()| namespaces_available())
        .map_err(|why| format!("cannot create private network namespaces here ({why})"))?;
    match Command::new("ss").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`ss -V` failed: {:?}", o.status)),
        Err(e) => Err(format!("`ss` (iproute2) cannot be run: {e}")),
    }
}

/// Whether `ip netns add` works here (real root; a user namespace cannot
/// mount on /run/netns): probed by adding and deleting a namespace.
pub fn named_namespaces_available() -> Result<(), String> {
    let name = format!("telegraf-netstat-probe-{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    Ok(())
}

/// True when running under CI, where a skipped namespace test is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A network namespace kept alive by a thread of the test: it holds a known
/// population and `sleepers` idle processes (so the namespace shows up as
/// /proc/PID/ns/net). Dropping it kills them and closes every socket.
pub struct Netns {
    pub pids: Vec<u32>,
    pub expected: Counts,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Netns {
    pub fn new(build: impl FnOnce() -> Population + Send + 'static, sleepers: usize) -> Netns {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            new_netns().expect("cannot create a private network namespace");
            let p = build();
            settle(&p.expected);
            let mut children: Vec<std::process::Child> = (0..sleepers)
                .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
                .collect();
            let pids = children.iter().map(|c| c.id()).collect();
            ready_tx.send((pids, p.expected)).unwrap();
            let _ = stop_rx.recv();
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            drop(p);
        });
        let (pids, expected) = ready_rx.recv().expect("namespace thread failed");
        Netns {
            pids,
            expected,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The namespace as `/proc/PID/ns/net` of its first process.
    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pids[0])
    }

    /// The tag `--netns` gives `path()`.
    pub fn tag(&self) -> String {
        format!("pid:{}", self.pids[0])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() && !std::thread::panicking() {
                panic!("namespace thread panicked");
            }
        }
    }
}

/// A second network namespace joined to the calling thread's by a veth
/// pair, with a thread inside that opens TCP connections on request: a
/// client whose sockets are not counted in the caller's namespace.
pub struct Peer {
    connect: Option<std::sync::mpsc::Sender<SocketAddr>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    /// `here` and `there_addr`: the addresses (with prefix) of the two ends.
    pub fn new(here: &str, there_addr: &str) -> Peer {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let thread = std::thread::spawn(move || {
            new_netns().expect("cannot create the peer namespace");
            tid_tx
                .send(rustix::thread::gettid().as_raw_nonzero())
                .unwrap();
            let mut kept = Vec::new();
            for to in rx {
                kept.push(TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap());
            }
        });
        let tid = tid_rx.recv().expect("peer thread failed").to_string();
        let ip = |netns: Option<&str>, args: &[&str]| {
            succeeded(tool_in(netns, "ip").args(args));
        };
        let there_ns = format!("/proc/{tid}/ns/net");
        let there = Some(there_ns.as_str());
        ip(
            None,
            &[
                "link", "add", "tn0", "type", "veth", "peer", "name", "tn1", "netns", &tid,
            ],
        );
        ip(None, &["addr", "add", here, "dev", "tn0"]);
        ip(None, &["link", "set", "tn0", "up"]);
        ip(there, &["addr", "add", there_addr, "dev", "tn1"]);
        ip(there, &["link", "set", "tn1", "up"]);
        Peer {
            connect: Some(tx),
            thread: Some(thread),
        }
    }

    /// Connects from the peer namespace to `to`, keeping the connection.
    pub fn connect(&self, to: SocketAddr) {
        self.connect.as_ref().unwrap().send(to).unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.connect.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() && !std::thread::panicking() {
                panic!("peer thread panicked");
            }
        }
    }
}
