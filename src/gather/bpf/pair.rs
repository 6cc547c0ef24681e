//! A connected TCP pair on loopback in this process's namespace, held for
//! a first self-test that would otherwise prove one of the kernel's two
//! tables only: a listener (in `lhash2`) and a client connected to it,
//! whose handshake the kernel completes by itself on loopback, so that
//! the client and the listener's child, which waits in the accept queue
//! and is never accepted, are ESTABLISHED sockets in `ehash`. Nothing is
//! read from or written to them. Dropping the pair closes the client with
//! a zero linger (`__tcp_close()` calls `tcp_disconnect()`, which resets an
//! ESTABLISHED socket: no FIN, so no TIME_WAIT), then the listener, which
//! frees the child with it (`inet_csk_listen_stop()`). Another local user
//! may connect to the listener meanwhile: that only adds sockets both the
//! walk and netlink count.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};

/// The handshake is awaited this long at most (on loopback it takes
/// microseconds), asking `stop` every `SLICE`.
const HANDSHAKE: Duration = Duration::from_millis(50);
const SLICE: Duration = Duration::from_millis(5);

pub struct Pair {
    // Declared first: dropped (reset) before the listener.
    client: OwnedFd,
    listener: OwnedFd,
    /// The listener's port on 127.0.0.1.
    pub port: u16,
}

/// Why no pair.
pub enum NoPair {
    /// `stop` said so.
    Stopped,
    Failed(String),
}

impl Pair {
    /// Listens on 127.0.0.1, port 0, backlog 1; connects to it and waits
    /// until the client is connected and the child is in the accept queue.
    /// Fails where loopback is down (no 127.0.0.1 to bind, or no route) or
    /// the handshake does not complete within `HANDSHAKE` (a firewall).
    pub fn open(stop: &mut dyn FnMut() -> bool) -> Result<Pair, NoPair> {
        let failed = |what: &'static str| move |e: Errno| NoPair::Failed(format!("{what}: {e}"));
        let stream = |flags| {
            rustix::net::socket_with(AddressFamily::INET, SocketType::STREAM, flags, None)
                .map_err(failed("socket"))
        };
        let listener = stream(SocketFlags::CLOEXEC)?;
        let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        rustix::net::bind(&listener, &any).map_err(failed("bind 127.0.0.1"))?;
        rustix::net::listen(&listener, 1).map_err(failed("listen"))?;
        let addr = rustix::net::getsockname(&listener).map_err(failed("getsockname"))?;
        let addr = SocketAddrV4::try_from(addr).map_err(failed("getsockname"))?;
        let client = stream(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)?;
        sockopt::set_socket_linger(&client, Some(Duration::ZERO)).map_err(failed("SO_LINGER"))?;
        match rustix::net::connect(&client, &addr) {
            Ok(()) | Err(Errno::INPROGRESS) => {}
            Err(e) => return Err(failed("connect 127.0.0.1")(e)),
        }
        let pair = Pair {
            client,
            listener,
            port: addr.port(),
        };
        pair.established(stop)?;
        Ok(pair)
    }

    /// Waits for the client to be writable (connected) and the listener
    /// readable (a child in its accept queue).
    fn established(&self, stop: &mut dyn FnMut() -> bool) -> Result<(), NoPair> {
        let started = Instant::now();
        let slice = Timespec::try_from(SLICE).expect("5 ms");
        let (mut connected, mut queued) = (false, false);
        while !(connected && queued) {
            if stop() {
                return Err(NoPair::Stopped);
            }
            if started.elapsed() >= HANDSHAKE {
                return Err(NoPair::Failed(format!(
                    "the handshake did not complete within {} ms",
                    HANDSHAKE.as_millis()
                )));
            }
            let mut fds = [
                PollFd::new(&self.client, PollFlags::OUT),
                PollFd::new(&self.listener, PollFlags::IN),
            ];
            let fds = &mut fds[usize::from(connected)..=usize::from(!queued)];
            match poll(fds, Some(&slice)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(NoPair::Failed(format!("poll: {e}"))),
            }
            for fd in fds.iter() {
                let ready = fd.revents();
                if ready.intersects(PollFlags::ERR | PollFlags::HUP) {
                    let why = match sockopt::socket_error(&self.client) {
                        Ok(Err(e)) | Err(e) => e,
                        Ok(Ok(())) => Errno::CONNREFUSED,
                    };
                    return Err(NoPair::Failed(format!("connect 127.0.0.1: {why}")));
                }
                connected |= ready.contains(PollFlags::OUT);
                queued |= ready.contains(PollFlags::IN);
            }
        }
        Ok(())
    }
}
