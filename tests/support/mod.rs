//! Test support: private network namespaces, sockets in known states, and
//! running the real binary (and `ss`) inside those namespaces.
#![allow(dead_code)]

use std::any::Any;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
use rustix::thread::UnshareFlags;
use telegraf_netstat::Counts;

pub mod servers;

pub const BIN: &str = env!("CARGO_BIN_EXE_telegraf-netstat");

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

/// The binary with `args`, to run in the calling thread's namespace. A run
/// with `--all-netns` gets a private mount namespace with an empty tmpfs on
/// /run/netns, so the machine's own named namespaces (which an unprivileged
/// run could not enter) never leak into a test; `command_seeing_named`
/// keeps them.
pub fn command(args: &[&str]) -> Command {
    let mut c = command_seeing_named(args);
    if args.contains(&"--all-netns") {
        hide_named_namespaces(&mut c);
    }
    c
}

/// Runs `c` in a private mount namespace with an empty tmpfs on /run/netns
/// (needs root: register it before a `pre_exec` that drops privileges).
pub fn hide_named_namespaces(c: &mut Command) {
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let fail = |what: &str| {
                    let e = std::io::Error::last_os_error();
                    std::io::Error::new(e.kind(), format!("{what}: {e}"))
                };
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(fail("unshare(CLONE_NEWNS)"));
                }
                let none = c"none".as_ptr();
                if libc::mount(
                    none,
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(fail("making / private"));
                }
                let dir = c"/run/netns".as_ptr();
                if libc::access(dir, libc::F_OK) == 0
                    && libc::mount(
                        c"tmpfs".as_ptr(),
                        dir,
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(fail("hiding /run/netns"));
                }
                Ok(())
            });
        }
    }
}

/// `command` without hiding the machine's named namespaces.
pub fn command_seeing_named(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("HOST_PROC");
    c
}

/// Runs the binary with `args` in the calling thread's namespace.
pub fn run(args: &[&str]) -> Output {
    command(args).output().expect("cannot run telegraf-netstat")
}

/// Has `cmd`'s process move itself into cgroup `dir` (a cgroup v2
/// directory) before it starts: it writes 0 to `dir/cgroup.procs`.
pub fn start_in_cgroup(cmd: &mut Command, dir: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: only async-signal-safe calls (open, write, close) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `within`.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the binary and expects success with one line and a quiet stderr.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{args:?} wrote to stderr:\n{stderr}");
    String::from_utf8(out.stdout).expect("output is not UTF-8")
}

/// Parses one line of our influx output strictly: the measurement, no tags,
/// the 13 integer fields in sorted order, no timestamp, one newline.
pub fn parse_line(line: &str) -> Vec<(String, u64)> {
    let body = line
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no trailing newline: {line:?}"));
    assert!(!body.contains('\n'), "more than one line: {line:?}");
    let fields = body
        .strip_prefix("netstat ")
        .unwrap_or_else(|| panic!("not a netstat line without tags: {line:?}"));
    assert!(
        !fields.contains(' '),
        "unexpected timestamp or tag: {line:?}"
    );
    fields
        .split(',')
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {f:?}"));
            let v = v
                .strip_suffix('i')
                .unwrap_or_else(|| panic!("field {f:?} is not an integer"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {f:?}")),
            )
        })
        .collect()
}

pub fn fields(c: &Counts) -> Vec<(String, u64)> {
    c.fields()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// `program` to run in the calling thread's namespace or, with `netns`, in
/// the namespace of that file (through nsenter).
pub fn tool_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={path}")).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Counts as `ss` sees them in the calling thread's namespace.
pub fn ss_counts() -> Counts {
    ss_counts_where(None, &[])
}

/// Counts as `ss` sees them, of the sockets that match the `ss` filter
/// `filter` (e.g. `["(", "sport", "=", ":443", ")"]`), in the calling
/// thread's namespace or, with `netns`, in that namespace (via nsenter).
pub fn ss_counts_where(netns: Option<&str>, filter: &[&str]) -> Counts {
    let ss = |args: &[&str]| {
        let out = tool_in(netns, "ss")
            .args(args)
            .args(filter)
            .output()
            .expect("cannot run ss");
        assert!(
            out.status.success(),
            "ss {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut c = Counts::default();
    for line in ss(&["-H", "-t", "-a", "-n"]).lines() {
        let field = match line.split_whitespace().next() {
            Some("ESTAB") => &mut c.tcp_established,
            Some("SYN-SENT") => &mut c.tcp_syn_sent,
            Some("SYN-RECV") => &mut c.tcp_syn_recv,
            Some("FIN-WAIT-1") => &mut c.tcp_fin_wait1,
            Some("FIN-WAIT-2") => &mut c.tcp_fin_wait2,
            Some("TIME-WAIT") => &mut c.tcp_time_wait,
            Some("UNCONN") | Some("CLOSE") => &mut c.tcp_close,
            Some("CLOSE-WAIT") => &mut c.tcp_close_wait,
            Some("LAST-ACK") => &mut c.tcp_last_ack,
            Some("LISTEN") => &mut c.tcp_listen,
            Some("CLOSING") => &mut c.tcp_closing,
            other => panic!("unexpected ss state {other:?} in {line:?}"),
        };
        *field += 1;
    }
    c.udp_socket = ss(&["-H", "-u", "-a", "-n"]).lines().count() as u64;
    c
}

/// Waits (at most 20 s, a bound for a loaded machine) until `ss` shows
/// exactly `expected`: some transitions (FIN handshakes, TIME_WAIT) finish
/// in softirq after the syscall returns.
pub fn settle(expected: &Counts) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = ss_counts();
        if seen == *expected {
            return;
        }
        if Instant::now() > deadline {
            panic!("population did not settle:\n  ss:       {seen:?}\n  expected: {expected:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The check every population gets: `ss` agrees with the expected counts,
/// and the netlink, proc and auto sources print exactly them, byte for byte
/// the same line.
pub fn check(expected: &Counts) {
    settle(expected);
    let netlink = run_ok(&["--source", "netlink"]);
    assert_eq!(parse_line(&netlink), fields(expected), "netlink: {netlink}");
    let proc = run_ok(&["--source", "proc"]);
    assert_eq!(proc, netlink, "--source proc differs from netlink");
    let auto = run_ok(&[]);
    assert_eq!(auto, netlink, "the default source differs from netlink");
    assert_eq!(
        ss_counts(),
        *expected,
        "the population changed during the check"
    );
}

/// Sockets that must stay open while a check runs.
#[derive(Default)]
pub struct Population {
    pub expected: Counts,
    keep: Vec<Box<dyn Any + Send>>,
}

impl Population {
    pub fn keep<T: Any + Send>(&mut self, t: T) {
        self.keep.push(Box::new(t));
    }

    pub fn merge(&mut self, other: Population) {
        self.expected.add(&other.expected);
        self.keep.extend(other.keep);
    }
}

pub const V4: &str = "127.0.0.1:0";
pub const V6: &str = "[::1]:0";

fn family(addr: &SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

/// A TCP socket set up by `configure` before it is bound (and connected
/// or listening).
fn tcp_socket(addr: &SocketAddr, configure: impl FnOnce(BorrowedFd<'_>)) -> OwnedFd {
    let fd = rustix::net::socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .expect("socket");
    configure(fd.as_fd());
    fd
}

/// A listener on `addr` with the given backlog.
pub fn listener(addr: &str, backlog: i32, configure: impl FnOnce(BorrowedFd<'_>)) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let fd = tcp_socket(&addr, configure);
    rustix::net::bind(&fd, &addr).expect("bind");
    rustix::net::listen(&fd, backlog).expect("listen");
    TcpListener::from(fd)
}

/// A bound TCP socket that neither listens nor connects: the kernel's
/// bound-inactive set, which must not be counted.
pub fn bound_only(addr: &str) -> OwnedFd {
    let addr: SocketAddr = addr.parse().unwrap();
    let fd = tcp_socket(&addr, |_| {});
    rustix::net::bind(&fd, &addr).expect("bind");
    fd
}

/// A connected pair through `l`: (client, accepted server side).
pub fn connect_pair(
    l: &TcpListener,
    configure_client: impl FnOnce(BorrowedFd<'_>),
) -> (TcpStream, TcpStream) {
    let to = l.local_addr().unwrap();
    let fd = tcp_socket(&to, configure_client);
    rustix::net::connect(&fd, &to).expect("connect");
    let (server, _) = l.accept().expect("accept");
    (TcpStream::from(fd), server)
}

/// A connect that cannot complete: returns at once, leaving SYN_SENT.
pub fn connect_nonblocking(to: SocketAddr) -> OwnedFd {
    let fd = rustix::net::socket_with(
        family(&to),
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .expect("socket");
    match rustix::net::connect(&fd, &to) {
        Err(rustix::io::Errno::INPROGRESS) => fd,
        other => panic!("expected EINPROGRESS, got {other:?}"),
    }
}

/// Sets a small receive buffer, so a peer that writes fills our window fast
/// and its further data (and FIN) stay queued on its side.
pub fn small_rcvbuf(fd: BorrowedFd<'_>) {
    sockopt::set_socket_recv_buffer_size(fd, 4096).expect("SO_RCVBUF");
}

pub fn big_sndbuf(fd: BorrowedFd<'_>) {
    sockopt::set_socket_send_buffer_size(fd, 256 * 1024).expect("SO_SNDBUF");
}

/// Writes until the peer's window and our send buffer are full.
pub fn fill(s: &mut TcpStream) {
    s.set_nonblocking(true).unwrap();
    let chunk = [0x5au8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.write(&chunk) {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "peer never stopped accepting data"
            ),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
}

/// Reads until end of stream (bounded).
pub fn drain_to_eof(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => panic!("read to end of stream: {e}"),
        }
    }
}

pub fn defer_accept(fd: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let secs: libc::c_int = 30;
    // SAFETY: setsockopt with a valid int option value.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "TCP_DEFER_ACCEPT: {}",
        std::io::Error::last_os_error()
    );
}

// Populations: each builds sockets in the calling thread's namespace and
// says what it expects.

pub fn listeners() -> Population {
    let mut p = Population::default();
    for addr in [V4, V4, V4, V6, V6] {
        p.keep(listener(addr, 16, |_| {}));
    }
    p.expected.tcp_listen = 5;
    // Bound-inactive sockets are not counted (nor shown by /proc/net/tcp).
    p.keep(bound_only(V4));
    p.keep(bound_only(V6));
    p
}

pub fn established(v4_pairs: usize, v6_pairs: usize) -> Population {
    let mut p = Population::default();
    for (addr, n) in [(V4, v4_pairs), (V6, v6_pairs)] {
        let l = listener(addr, 128, |_| {});
        for _ in 0..n {
            p.keep(connect_pair(&l, |_| {}));
        }
        p.keep(l);
    }
    p.expected.tcp_listen = 2;
    p.expected.tcp_established = 2 * (v4_pairs + v6_pairs) as u64;
    p
}

/// The client closes first and so ends in TIME_WAIT; the server side closes
/// after reading the end of stream and is gone.
pub fn time_wait(n: usize) -> Population {
    // Loopback connects may take over a TIME_WAIT entry older than a second
    // (tcp_tw_reuse's default, 2): on a loaded machine making n of them
    // takes longer, and some would vanish. This namespace's own setting.
    let _ = std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0");
    let mut p = Population::default();
    let l = listener(V4, 128, |_| {});
    for _ in 0..n {
        let (client, mut server) = connect_pair(&l, |_| {});
        drop(client);
        drain_to_eof(&mut server);
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_time_wait = n as u64;
    p
}

/// Half-closed pairs: the client shuts down writing (FIN_WAIT2), the server
/// has not closed yet (CLOSE_WAIT).
pub fn half_closed(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V6, 128, |_| {});
    for _ in 0..n {
        let (client, server) = connect_pair(&l, |_| {});
        client.shutdown(Shutdown::Write).unwrap();
        p.keep((client, server));
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_fin_wait2 = n as u64;
    p.expected.tcp_close_wait = n as u64;
    p
}

/// A listener with backlog 0 that never accepts: the first connection fills
/// its accept queue (client and server side ESTABLISHED); later SYNs are
/// dropped, so those clients stay in SYN_SENT.
pub fn syn_sent(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V4, 0, |_| {});
    let to = l.local_addr().unwrap();
    p.keep(TcpStream::connect(to).unwrap());
    for _ in 0..n {
        p.keep(connect_nonblocking(to));
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_established = 2;
    p.expected.tcp_syn_sent = n as u64;
    p
}

/// TCP_DEFER_ACCEPT makes the listener drop the handshake's bare ACK: the
/// client is ESTABLISHED while the server keeps a request socket, which
/// counts as SYN_RECV.
pub fn syn_recv(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V6, 128, defer_accept);
    let to = l.local_addr().unwrap();
    for _ in 0..n {
        p.keep(TcpStream::connect(to).unwrap());
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_established = n as u64;
    p.expected.tcp_syn_recv = n as u64;
    p
}

/// The server never reads; the client fills its window and shuts down
/// writing: its FIN waits behind unsent data, in FIN_WAIT1.
pub fn fin_wait1(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V4, 128, small_rcvbuf);
    for _ in 0..n {
        let (mut client, server) = connect_pair(&l, big_sndbuf);
        fill(&mut client);
        client.shutdown(Shutdown::Write).unwrap();
        p.keep((client, server));
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_established = n as u64;
    p.expected.tcp_fin_wait1 = n as u64;
    p
}

/// The client never reads; the server fills its window. The client shuts
/// down writing (FIN_WAIT2, server CLOSE_WAIT), then the server does: its
/// FIN waits behind unsent data, in LAST_ACK.
pub fn last_ack(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V6, 128, big_sndbuf);
    for _ in 0..n {
        let (client, mut server) = connect_pair(&l, small_rcvbuf);
        fill(&mut server);
        client.shutdown(Shutdown::Write).unwrap();
        // Wait for the client's FIN to reach the server before it closes.
        let mut byte = [0u8; 1];
        server.set_nonblocking(false).unwrap();
        assert_eq!(server.read(&mut byte).unwrap(), 0);
        server.shutdown(Shutdown::Write).unwrap();
        p.keep((client, server));
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_fin_wait2 = n as u64;
    p.expected.tcp_last_ack = n as u64;
    p
}

/// Both sides fill each other's window and shut down writing (both
/// FIN_WAIT1, FINs queued). Then the client reads everything: the server's
/// data and FIN arrive while the client's own FIN is still queued, so the
/// client is CLOSING and the server, all acknowledged, FIN_WAIT2.
pub fn closing(n: usize) -> Population {
    let mut p = Population::default();
    let l = listener(V4, 128, |fd| {
        small_rcvbuf(fd);
        big_sndbuf(fd);
    });
    for _ in 0..n {
        let (mut client, mut server) = connect_pair(&l, |fd| {
            small_rcvbuf(fd);
            big_sndbuf(fd);
        });
        fill(&mut client);
        fill(&mut server);
        client.shutdown(Shutdown::Write).unwrap();
        server.shutdown(Shutdown::Write).unwrap();
        drain_to_eof(&mut client);
        p.keep((client, server));
    }
    p.keep(l);
    p.expected.tcp_listen = 1;
    p.expected.tcp_closing = n as u64;
    p.expected.tcp_fin_wait2 = n as u64;
    p
}

/// Every state and protocol at once.
pub fn everything() -> Population {
    let mut p = listeners();
    p.merge(established(4, 3));
    p.merge(time_wait(5));
    p.merge(half_closed(3));
    p.merge(syn_sent(2));
    p.merge(syn_recv(3));
    p.merge(fin_wait1(2));
    p.merge(last_ack(2));
    p.merge(closing(1));
    p.merge(udp());
    p
}

/// UDP over IPv4 and IPv6, bound and connected; an unbound socket is in no
/// table and not counted.
pub fn udp() -> Population {
    let mut p = Population::default();
    let mut n = 0;
    for (addr, bound, connected) in [(V4, 3, 2), (V6, 2, 1)] {
        let peer = UdpSocket::bind(addr).unwrap();
        for _ in 0..connected {
            let s = UdpSocket::bind(addr).unwrap();
            s.connect(peer.local_addr().unwrap()).unwrap();
            p.keep(s);
        }
        for _ in 1..bound {
            p.keep(UdpSocket::bind(addr).unwrap());
        }
        p.keep(peer);
        n += bound + connected;
    }
    let unbound = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None).unwrap();
    p.keep(unbound);
    p.expected.udp_socket = n as u64;
    p
}

/// Makes the command's `socket(AF_NETLINK, ...)` fail with EPERM through a
/// seccomp filter, as container runtimes and sandboxes do.
pub fn block_netlink(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    // struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }
    const ARG0_LOW: u32 = if cfg!(target_endian = "little") {
        16
    } else {
        20
    };
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let filter = [
        stmt(LD_W_ABS, 0),
        jump(JEQ_K, libc::SYS_socket as u32, 0, 3),
        stmt(LD_W_ABS, ARG0_LOW),
        jump(JEQ_K, libc::AF_NETLINK as u32, 0, 1),
        stmt(RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(RET_K, SECCOMP_RET_ALLOW),
    ];
    // SAFETY: only prctl between fork and exec; the filter outlives the call.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs the binary with netlink blocked.
pub fn run_blocked(args: &[&str]) -> Output {
    block_netlink(Command::new(BIN).args(args).env_remove("HOST_PROC"))
        .output()
        .expect("cannot run telegraf-netstat")
}

/// The binary running as a long-lived plugin, driven the way Telegraf's
/// execd input drives it: lines written to stdin, output lines read with a
/// deadline.
pub struct Plugin {
    pub child: std::process::Child,
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: std::sync::mpsc::Receiver<(Instant, String)>,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

fn lines_of<R: Read + Send + 'static>(r: R) -> std::sync::mpsc::Receiver<(Instant, String)> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line + "\n")).is_err() {
                return;
            }
        }
    });
    rx
}

impl Plugin {
    pub fn start(args: &[&str]) -> Plugin {
        use std::process::Stdio;
        let mut child = command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start telegraf-netstat");
        let stdout = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        let (tx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (_, l) in err {
                let _ = tx.send(l);
            }
        });
        Plugin {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// What Telegraf's `signal = "STDIN"` does each interval.
    pub fn tick(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin closed");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    pub fn line(&self, within: Duration) -> String {
        self.stdout
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no output line within {within:?}: {e}"))
            .1
    }

    pub fn no_line(&self, within: Duration) {
        if let Ok((_, l)) = self.stdout.recv_timeout(within) {
            panic!("unexpected output: {l}");
        }
    }

    /// Waits for exit; panics if it takes longer than `within`.
    pub fn exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Sends `signal` and checks the promise: exit 0 within [`PROMISE`] of
    /// its delivery (see [`signal_kept_promise`]).
    pub fn signal_kept_promise(&mut self, signal: rustix::process::Signal) {
        signal_kept_promise(&mut self.child, signal);
    }

    /// Closes stdin and checks the promise: exit 0 within [`PROMISE`] of
    /// the EOF, plus [`LOADED_MARGIN`].
    pub fn eof_kept_promise(&mut self) {
        drop(self.stdin.take());
        let status = wait_at_most(&mut self.child, PROMISE + LOADED_MARGIN);
        assert_eq!(status.code(), Some(0), "after stdin EOF");
    }
}

/// The long-running modes exit within this long of SIGTERM, SIGINT or
/// stdin EOF, in every state.
pub const PROMISE: Duration = Duration::from_millis(100);

/// What a loaded 2-core machine (a build and other tests on both cores)
/// adds between a process's decision to exit and the test seeing the exit:
/// the exiting process and the test thread each wait for a core. Chosen
/// as one and a half promises; the suite has passed with it while four
/// builds and test runs shared the two cores.
pub const LOADED_MARGIN: Duration = Duration::from_millis(150);

/// Waits for `child` to exit; panics (killing it) after `within`.
pub fn wait_at_most(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `signal` is pending for the whole process `pid` (`ShdPnd` in
/// /proc/PID/status): a signal sent with kill(2) stays there until a thread
/// takes it, which happens only when that thread returns from the kernel
/// (a sock_diag dump runs inside one `recvmsg`, which a signal does not cut).
fn pending(pid: u32, signal: rustix::process::Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (signal.as_raw() - 1)) != 0
}

/// Sends `signal` to `child` and checks that it exits 0 within [`PROMISE`]
/// of the signal's *delivery* (when it stopped being pending), plus
/// [`LOADED_MARGIN`]; the delivery itself must come within 10 s.
pub fn signal_kept_promise(child: &mut std::process::Child, signal: rustix::process::Signal) {
    let sent = Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
    let mut delivered = None;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let at = delivered.unwrap_or_else(Instant::now);
            let took = at.elapsed();
            assert_eq!(s.code(), Some(0), "after {signal:?}");
            assert!(
                took < PROMISE + LOADED_MARGIN,
                "exited {took:?} after {signal:?} was delivered ({:?} after it was sent)",
                sent.elapsed()
            );
            return;
        }
        if delivered.is_none() && !pending(child.id(), signal) {
            delivered = Some(Instant::now());
        }
        let limit = match delivered {
            Some(at) => at + PROMISE + LOADED_MARGIN,
            None => sent + Duration::from_secs(10),
        };
        if Instant::now() > limit {
            let _ = child.kill();
            panic!(
                "{signal:?} sent {:?} ago, delivered {:?} ago, no exit",
                sent.elapsed(),
                delivered.map(|d| d.elapsed())
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with a stdout whose reader is already gone (EPIPE) and
/// expects it to exit 0 without a word on stderr.
pub fn expect_quiet_exit_on_closed_stdout(args: &[&str]) {
    let (read, write) = rustix::pipe::pipe().unwrap();
    drop(read);
    let out = Command::new(BIN)
        .args(args)
        .env_remove("HOST_PROC")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("cannot run telegraf-netstat");
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    assert!(
        out.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace test: a name and its body.
pub type NamedTest = (String, Box<dyn FnOnce() + Send>);

/// Names plain test functions `<group>::<name>`.
pub fn named(group: &str, tests: &[(&str, fn())]) -> Vec<NamedTest> {
    tests
        .iter()
        .map(|&(name, f)| -> NamedTest { (format!("{group}::{name}"), Box::new(f)) })
        .collect()
}

/// Runs `tests` with libtest-mimic when `setup` (namespaces, tools) holds.
/// Otherwise they are reported as ignored, with the reason on stderr; under
/// CI they fail instead, so a machine that cannot run them is never green.
pub fn run_trials(args: Arguments, setup: Result<(), String>, tests: Vec<NamedTest>) -> ! {
    run_trials_needing(args, setup, tests, &[])
}

/// `run_trials`, where the tests whose names end in one of `needs`' names
/// also need that requirement to hold: a test that cannot run is ignored
/// (failed under CI), never reported as passed.
pub fn run_trials_needing(
    args: Arguments,
    setup: Result<(), String>,
    tests: Vec<NamedTest>,
    needs: &[(&str, Result<(), String>)],
) -> ! {
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let need = needs
                .iter()
                .find(|(n, _)| name.ends_with(n))
                .map_or(Ok(()), |(_, r)| r.clone());
            match setup.clone().and(need) {
                Ok(()) => Trial::test(name, move || {
                    f();
                    Ok(())
                }),
                Err(why) if in_ci() => Trial::test(name, move || {
                    Err(Failed::from(format!("cannot run in CI: {why}")))
                }),
                Err(why) => {
                    eprintln!("SKIP {name}: {why}; ignored");
                    Trial::test(name, || Ok(())).with_ignored_flag(true)
                }
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// Raises this test process's soft descriptor limit to its hard one, for
/// tests that hold thousands of sockets. Called from `main` before any test
/// thread starts: the limit is process-wide.
pub fn raise_fd_limit() {
    let mut l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    l.current = l.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, l);
}

/// A fresh directory for one test, removed with everything in it when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "telegraf-netstat-{what}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One metric of our influx output: its tags and its fields.
pub type Parsed = (Vec<(String, String)>, Vec<(String, u64)>);

/// Parses every line of our influx output, tags included (test tags hold no
/// characters that need escaping).
pub fn parse_metrics(out: &str) -> Vec<Parsed> {
    out.lines()
        .map(|line| {
            let (series, fields) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no fields: {line:?}"));
            let mut parts = series.split(',');
            assert_eq!(parts.next(), Some("netstat"), "{line}");
            let tags = parts
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            (tags, parse_line(&format!("netstat {fields}\n")))
        })
        .collect()
}

/// A metric of any measurement: its name, tags and fields.
pub type AnyMetric = (String, Vec<(String, String)>, Vec<(String, u64)>);

/// Every line of our influx output as (measurement, tags, fields), any
/// measurement.
pub fn parse_metrics_any(out: &str) -> Vec<AnyMetric> {
    out.lines()
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            let (name, tags) = parse_series(series);
            (name, tags, parse_line(&format!("netstat {fields}\n")))
        })
        .collect()
}

/// A line's measurement and tags (`netstat_port,direction=local,port=1`),
/// any collection of pairs (test tags hold nothing that needs escaping).
pub fn parse_series<T: FromIterator<(String, String)>>(series: &str) -> (String, T) {
    let mut parts = series.split(',');
    let name = parts.next().unwrap().to_string();
    let tags = parts
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (name, tags)
}

/// A long-running `--execd` with `args` (one line per gather), after
/// `first` gathers and after `then` more: its RSS in KiB each time.
pub fn rss_over_gathers(args: &[&str], first: usize, then: usize) -> (u64, u64) {
    let mut a = vec!["--execd"];
    a.extend(args);
    let mut plugin = Plugin::start(&a);
    let mut gather = |n: usize| {
        for _ in 0..n {
            plugin.tick("\n");
            plugin.line(Duration::from_secs(5));
        }
        plugin.rss_kib()
    };
    let before = gather(first);
    (before, gather(then))
}

/// Tags as the tests write them.
pub fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
            let out = tool_in(netns, "ip")
                .args(args)
                .output()
                .expect("cannot run ip");
            assert!(
                out.status.success(),
                "ip {args:?} (in {netns:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
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

/// Makes `cmd` start with RLIMIT_NOFILE `soft`/`hard` (the binary raises its
/// soft limit to the hard one at start).
pub fn with_fd_limit(cmd: &mut Command, soft: u64, hard: u64) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs `promtool check metrics` on `text`; returns its exit status and
/// everything it printed.
pub fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Runs `program` with `args`, panicking with its stderr if it fails.
fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new self-signed CA `name` (P-256) in `dir`, by openssl.
pub fn make_ca(dir: &std::path::Path, name: &str) -> CertFiles {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    CertFiles { cert, key }
}

/// A certificate `name` signed by `ca`, for `localhost` and 127.0.0.1
/// (server and client use), by openssl.
pub fn make_leaf(dir: &std::path::Path, ca: &CertFiles, name: &str) -> CertFiles {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    tool(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ],
    );
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.cert.to_str().unwrap(),
            "-CAkey",
            ca.key.to_str().unwrap(),
            "-set_serial",
            &format!("{}", std::process::id()),
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    CertFiles { cert, key }
}

/// A bcrypt hash of `password` at `cost`, by Apache's `htpasswd -B`.
pub fn bcrypt_hash(password: &str, cost: u32) -> String {
    let out = tool(
        "htpasswd",
        &["-nbB", "-C", &cost.to_string(), "u", password],
    );
    let line = String::from_utf8(out).unwrap();
    line.trim().strip_prefix("u:").unwrap().to_string()
}

/// Process `pid`'s resident memory, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many descriptors process `pid` holds.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `Ok` when every program of `tools` (name, Debian package) is on `PATH`;
/// otherwise what is missing and where it comes from.
pub fn tools_on_path(tools: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(bin, pkg)| format!("{bin} (Debian package {pkg})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

/// Whether `systemd-socket-activate` (what a `.socket` unit does) runs here.
pub fn socket_activation_available() -> Result<(), String> {
    match Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("systemd-socket-activate (Debian package systemd) is not installed".to_string()),
    }
}

/// Whether `bin` is a file in one of `PATH`'s directories.
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Our `--listen` exporter on a free loopback port, verbose (a `D!` line per gather),
/// its stderr read by a thread (a full pipe would block it).
pub struct Exporter {
    pub child: Child,
    pub port: u16,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    pub fn start(extra: &[&str]) -> Exporter {
        Exporter::start_with(extra, |_| {})
    }

    pub fn start_with(
        extra: &[&str],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Exporter {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", &addr, "-v"];
        args.extend(extra);
        let mut cmd = command(&args);
        configure(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the exporter did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Exporter {
            child,
            port,
            stderr,
            reader: Some(reader),
        }
    }

    /// One request; the whole answer (the server closes the connection).
    pub fn request(&self, raw: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    pub fn get(&self, path: &str) -> String {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
    }

    /// SIGTERM, and the promise checked (exit 0 within [`PROMISE`] of its
    /// delivery); returns what the exporter said on stderr.
    pub fn stop(mut self) -> String {
        signal_kept_promise(&mut self.child, rustix::process::Signal::TERM);
        self.reader.take().unwrap().join().unwrap();
        let err = self.stderr.lock().unwrap().clone();
        err
    }
}
