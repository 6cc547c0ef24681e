//! The exporter's listening sockets: bound from `--listen`, or taken from
//! systemd (socket activation), each checked to be what it must be.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::Serve;
use rustix::io::Errno;
use rustix::net::{sockopt, AddressFamily, SocketType};
use telegraf_netstat::values::ListenAddr;

/// Pending connections the kernel queues for us.
const BACKLOG: i32 = 1024;

/// Why there is nothing to serve on; the exit code says whose fault.
pub enum ListenError {
    /// The sockets systemd passed are not usable listening sockets: a
    /// configuration error (exit 2).
    Usage(String),
    /// An address could not be bound (exit 1).
    Bind(String),
}

/// A bound (or passed) listening socket, non-blocking.
pub struct Listener {
    pub socket: TcpListener,
    /// Bound for a `--listen` address with port 0: the port is the kernel's
    /// choice, to be told.
    pub port_chosen: bool,
}

pub fn open(serve: &Serve) -> Result<Vec<Listener>, ListenError> {
    if serve.systemd_socket {
        return from_systemd(
            std::env::var("LISTEN_PID").ok().as_deref(),
            std::env::var("LISTEN_FDS").ok().as_deref(),
        );
    }
    let mut v = Vec::new();
    for addr in &serve.listen {
        let first = v.len();
        match *addr {
            ListenAddr::Any(port) => v.push(any(port)?),
            ListenAddr::Localhost(port) => {
                v.push(bind((Ipv4Addr::LOCALHOST, port).into(), false)?);
                // The port the first one got, if it asked for any.
                let port = v
                    .last()
                    .and_then(|l| l.socket.local_addr().ok())
                    .map_or(port, |a| a.port());
                match bind((Ipv6Addr::LOCALHOST, port).into(), false) {
                    Ok(l) => v.push(l),
                    // IPv6 absent (disabled at boot, or no ::1).
                    Err(_) if !ipv6_present() => {}
                    Err(e) => return Err(e),
                }
            }
            ListenAddr::Addr(a) => v.push(bind(a, false)?),
        }
        for l in &mut v[first..] {
            l.port_chosen = addr.port() == 0;
        }
    }
    Ok(v)
}

fn ipv6_present() -> bool {
    rustix::net::socket(AddressFamily::INET6, SocketType::STREAM, None).is_ok()
        && std::path::Path::new("/proc/net/if_inet6").exists()
}

/// `:PORT`: IPv6 and IPv4 on one socket whatever `net.ipv6.bindv6only`
/// says, or IPv4 alone where the kernel has no IPv6.
fn any(port: u16) -> Result<Listener, ListenError> {
    match bind((Ipv6Addr::UNSPECIFIED, port).into(), true) {
        Ok(l) => Ok(l),
        Err(_) if !ipv6_present() => bind((Ipv4Addr::UNSPECIFIED, port).into(), false),
        Err(e) => Err(e),
    }
}

fn bind(addr: SocketAddr, dual: bool) -> Result<Listener, ListenError> {
    let err = |e: Errno| {
        ListenError::Bind(format!(
            "cannot listen on {addr}: {}",
            std::io::Error::from(e)
        ))
    };
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .map_err(err)?;
    if dual {
        sockopt::set_ipv6_v6only(&fd, false).map_err(err)?;
    }
    sockopt::set_socket_reuseaddr(&fd, true).map_err(err)?;
    rustix::net::bind(&fd, &addr).map_err(err)?;
    rustix::net::listen(&fd, BACKLOG).map_err(err)?;
    Ok(Listener {
        socket: TcpListener::from(fd),
        port_chosen: false,
    })
}

/// The sockets systemd passes (`LISTEN_PID` is ours, `LISTEN_FDS` sockets
/// from fd 3), each checked to be a listening TCP stream socket.
fn from_systemd(pid: Option<&str>, fds: Option<&str>) -> Result<Vec<Listener>, ListenError> {
    let usage = |m: String| ListenError::Usage(format!("--web.systemd-socket: {m}"));
    let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if !ours {
        return Err(usage(
            "no sockets passed by systemd (LISTEN_PID is not this process)".into(),
        ));
    }
    let n: RawFd = fds
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| {
            usage(format!(
                "LISTEN_FDS={} is not a number of sockets from 1 to 64",
                fds.unwrap_or("")
            ))
        })?;
    let mut v = Vec::new();
    for fd in 3..3 + n {
        // A count naming a descriptor that is not open: owning it would
        // close it again later (a debug build aborts on that).
        // SAFETY: F_GETFD only asks; on a closed descriptor it fails.
        let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok();
        if !open {
            return Err(usage(format!(
                "descriptor {fd}: not open (LISTEN_FDS={n} names more sockets than were passed)"
            )));
        }
        // SAFETY: systemd passes these descriptors to us alone; each is
        // open (checked above), checked before use and owned from here on.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        check_passed(owned.as_fd()).map_err(|m| usage(format!("descriptor {fd}: {m}")))?;
        rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| usage(format!("descriptor {fd}: {e}")))?;
        let l = TcpListener::from(owned);
        l.set_nonblocking(true)
            .map_err(|e| usage(format!("descriptor {fd}: {e}")))?;
        v.push(Listener {
            socket: l,
            port_chosen: false,
        });
    }
    Ok(v)
}

/// A passed descriptor must be a listening TCP (IPv4 or IPv6 stream)
/// socket: anything else would make `accept` fail at every wake-up.
fn check_passed(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), NotListener> {
    let what = |e: Errno| NotListener::Os(e.into());
    let st = rustix::fs::fstat(fd).map_err(what)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return Err(NotListener::NotSocket);
    }
    let domain = sockopt::socket_domain(fd).map_err(what)?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(NotListener::NotInet);
    }
    if sockopt::socket_type(fd).map_err(what)? != SocketType::STREAM {
        return Err(NotListener::NotStream);
    }
    if !sockopt::socket_acceptconn(fd).map_err(what)? {
        return Err(NotListener::NotListening);
    }
    Ok(())
}

/// Why a passed descriptor is refused.
#[derive(Debug)]
enum NotListener {
    /// Asking about it failed.
    Os(std::io::Error),
    NotSocket,
    NotInet,
    NotStream,
    NotListening,
}

impl std::fmt::Display for NotListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotListener::Os(e) => write!(f, "{e}"),
            NotListener::NotSocket => f.write_str("not a socket"),
            NotListener::NotInet => f.write_str("not an IPv4 or IPv6 socket"),
            NotListener::NotStream => f.write_str("not a stream (TCP) socket"),
            NotListener::NotListening => {
                f.write_str("not listening (set Accept=no and ListenStream= in the socket unit)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_variables_are_checked() {
        let me = std::process::id().to_string();
        for (pid, fds) in [
            (None, Some("1")),
            (Some("1"), Some("1")),
            (Some(me.as_str()), None),
            (Some(me.as_str()), Some("0")),
            (Some(me.as_str()), Some("-1")),
            (Some(me.as_str()), Some("x")),
        ] {
            assert!(
                matches!(from_systemd(pid, fds), Err(ListenError::Usage(_))),
                "{pid:?} {fds:?}"
            );
        }
    }

    #[test]
    fn only_listening_tcp_sockets_pass() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(check_passed(l.as_fd()).is_ok());
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            check_passed(u.as_fd()),
            Err(NotListener::NotStream)
        ));
        let unlistened =
            rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        assert!(check_passed(unlistened.as_fd())
            .unwrap_err()
            .to_string()
            .starts_with("not listening"));
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            check_passed(f.as_fd()),
            Err(NotListener::NotSocket)
        ));
    }

    #[test]
    fn any_port_takes_both_families() {
        let l = any(0).unwrap_or_else(|_| panic!("cannot listen"));
        let port = l.socket.local_addr().unwrap().port();
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        if ipv6_present() {
            std::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap();
        }
    }
}
