//! One exporter connection as a state machine: reading the request,
//! waiting for a gather, writing the answer, lingering before the close.
//!
//! Every state has a deadline and every state that polls asks for an event
//! it consumes, so no connection can make the loop spin (a client that
//! resets while it waits is read, sees the error and is closed) or hold a
//! slot for ever. After the answer, the connection shuts down its sending
//! side and reads until the client closes (a lingering close, RFC 9112
//! §9.6): request bytes left unread (a body, a pipelined request) would
//! otherwise make the kernel answer the close with a reset that destroys
//! the answer in flight. It lingers [`LINGER`] from the end of the answer,
//! as Go's server does (`rstAvoidanceDelay` in net/http), then closes: the
//! answer is the kernel's to deliver, within `TCP_USER_TIMEOUT` (set to
//! [`WRITE_TIMEOUT`] at accept, so a client that never reads costs kernel
//! memory for 30 s at most: `tcp_probe_timer()` in net/ipv4/tcp_timer.c
//! aborts zero-window probing past it, Linux 5.1 and later). A client that
//! does not take its answer within [`WRITE_TIMEOUT`] while it is still
//! being written is reset (`SO_LINGER` 0): the kernel then frees the
//! unsent bytes at once.
//!
//! When every slot is taken, a new connection evicts one: which one is
//! [`Conn::eviction_class`]'s choice (answered ones first, then those that
//! never sent a byte, then requests in progress; never a scrape waiting
//! for its gather), among the peers holding the most slots (`mod.rs`).
//!
//! Under TLS the same states carry a rustls `ServerConnection`: the
//! handshake runs while the request is read (so `REQUEST_TIMEOUT` cuts off
//! a client that stalls in it, and the connection can be evicted like any
//! other still sending its request), records are read and written only as
//! the socket allows, and the answer ends with a `close_notify`. A request
//! that passes the rate limit and names credentials not seen before waits
//! in `Checking` while the auth thread checks them (`auth`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustls::ServerConnection;

use super::auth::{Gate, Key, Verdict};
use super::http::{self, Answer, Parsed, Route};
use super::web::Web;
use crate::log::Logger;

/// To send the whole request (and, under TLS, finish the handshake).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// To take the whole answer and close.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// To wait for a gather (Prometheus's scrape timeouts are shorter).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection lingers after its answer for the client's close:
/// Go's `rstAvoidanceDelay`. Prometheus closes at once.
pub const LINGER: Duration = Duration::from_millis(500);

enum State {
    Reading,
    /// Credentials being checked; then `route` is served or 401.
    Checking {
        route: Route,
        key: Key,
    },
    /// Waiting for the running gather; `ended` once the client shut its
    /// sending side (a half-close, RFC 9112 §9.6: the answer still goes).
    Waiting {
        head_only: bool,
        ended: bool,
    },
    /// Writing the answer, `done` bytes so far.
    Writing {
        answer: Answer,
        done: usize,
    },
    /// Answer sent and sending side shut: reading until the client closes.
    Lingering,
}

/// What draining found.
enum Drained {
    Open,
    /// The client shut its sending side.
    Ended,
    Failed,
}

/// What the loop must do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    /// The request is a scrape: the connection now waits for a gather.
    Scrape,
    Close,
}

/// What serving a request needs besides the connection.
pub struct Ctx<'a> {
    pub path: &'a str,
    pub gate: &'a mut Gate,
    /// For a `D! ` line when a TLS session fails (only with `-v`: a flood of
    /// bad clients must not flood the log).
    pub log: &'a Logger,
    /// When a client certificate of X.509 version 1 was last said (`W! `,
    /// at most once per [`SAY_EVERY`]).
    pub v1_said: &'a mut Option<Instant>,
}

/// How often a refused version 1 client certificate is said, at most.
pub const SAY_EVERY: Duration = Duration::from_secs(60);

pub struct Conn {
    stream: TcpStream,
    /// The TLS session, when the port speaks TLS.
    tls: Option<Box<ServerConnection>>,
    /// The web configuration it was accepted under.
    web: Arc<Web>,
    buf: Vec<u8>,
    state: State,
    deadline: Instant,
    /// When it was accepted: the oldest of a kind is evicted first.
    pub accepted: Instant,
    /// The peer's address (an IPv6 one cut to its /64): slots are taken
    /// back from the peers holding the most.
    pub source: IpAddr,
    /// Whether the client sent anything yet.
    received: bool,
}

/// The peer `addr` as slots are counted: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 /64 (what one host is usually given).
pub fn source_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// Sends what rustls has queued; `Ok(false)` if the socket took not all.
fn flush(tls: &mut ServerConnection, mut stream: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Conn {
    /// A connection served under `web`; `Err` if its TLS session cannot be
    /// made (rustls refuses the configuration, which it checked when built).
    pub fn new(
        stream: TcpStream,
        source: IpAddr,
        web: Arc<Web>,
        now: Instant,
    ) -> Result<Conn, rustls::Error> {
        let tls = match &web.tls {
            Some(config) => Some(Box::new(ServerConnection::new(Arc::clone(config))?)),
            None => None,
        };
        // Bounds what an unread answer costs the kernel once it is ours to
        // deliver (see the module's doc).
        let _ =
            rustix::net::sockopt::set_tcp_user_timeout(&stream, WRITE_TIMEOUT.as_millis() as u32);
        Ok(Conn {
            stream,
            tls,
            web,
            buf: Vec::new(),
            state: State::Reading,
            deadline: now + REQUEST_TIMEOUT,
            accepted: now,
            source,
            received: false,
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// What to poll for.
    pub fn interest(&self) -> PollFlags {
        // Handshake records the socket did not take yet.
        let unsent = self.tls.as_ref().is_some_and(|t| t.wants_write());
        match self.state {
            State::Writing { .. } => PollFlags::OUT,
            // Nothing to read until the verdict.
            State::Checking { .. } if unsent => PollFlags::OUT,
            State::Checking { .. } => PollFlags::empty(),
            // Half-closed: nothing more to read (hang-ups are reported
            // anyway).
            State::Waiting { ended: true, .. } => PollFlags::empty(),
            _ if unsent => PollFlags::IN | PollFlags::OUT,
            _ => PollFlags::IN,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How readily the connection gives its slot to a new one when all
    /// are taken, lowest first: 0 answered (lingering), 1 nothing received
    /// yet, 2 a request (or handshake) in progress or its credentials
    /// being checked, 3 an answer being written; `None` for a scrape
    /// waiting for its gather.
    pub fn eviction_class(&self) -> Option<u8> {
        match self.state {
            State::Lingering => Some(0),
            State::Reading if !self.received => Some(1),
            State::Reading | State::Checking { .. } => Some(2),
            State::Writing { .. } => Some(3),
            State::Waiting { .. } => None,
        }
    }

    /// Gives up the slot for a new connection: an answered one closes as
    /// at the end of its linger, any other is reset.
    pub fn evict(self) {
        if !matches!(self.state, State::Lingering) {
            self.reset();
        }
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.state, State::Waiting { .. })
    }

    /// Handles a poll event (or a first look right after `accept`).
    pub fn ready(&mut self, revents: PollFlags, ctx: &mut Ctx<'_>, now: Instant) -> Next {
        if !matches!(self.state, State::Writing { .. }) {
            if let Some(Err(_)) = self.tls.as_deref_mut().map(|t| flush(t, &self.stream)) {
                return Next::Close;
            }
        }
        match self.state {
            State::Reading => self.read_request(ctx, now),
            // A hang-up or error (reported whatever was asked) closes.
            _ if revents.intersects(PollFlags::HUP | PollFlags::ERR) => Next::Close,
            // Polled for nothing but what the handshake has left to send.
            State::Checking { .. } => Next::Keep,
            // Whatever arrives is not ours to answer: drained, so the close
            // is not a reset. A client that shut its side still gets its
            // answer.
            State::Waiting { .. } => match self.drain() {
                Drained::Open => Next::Keep,
                Drained::Ended => {
                    if let State::Waiting { ended, .. } = &mut self.state {
                        *ended = true;
                    }
                    Next::Keep
                }
                Drained::Failed => Next::Close,
            },
            State::Lingering => match self.drain() {
                Drained::Open => Next::Keep,
                Drained::Ended | Drained::Failed => Next::Close,
            },
            State::Writing { .. } => self.write(now),
        }
    }

    /// Reads what the client sent (decrypted under TLS, the handshake's
    /// replies sent on the way): `Ok(0)` at its end, `WouldBlock` when
    /// nothing more is there now.
    fn read_some(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            let n = (&self.stream).read(chunk)?;
            self.received |= n > 0;
            return Ok(n);
        };
        loop {
            match tls.reader().read(chunk) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if tls.read_tls(&mut &self.stream)? == 0 {
                return Ok(0);
            }
            self.received = true;
            match tls.process_new_packets() {
                // The handshake's next records.
                Ok(_) => {
                    flush(tls, &self.stream)?;
                }
                // Bytes that are not TLS records (a plain-HTTP request):
                // closed without a word, since an alert would only reach a
                // client that does not speak TLS.
                Err(e @ rustls::Error::InvalidMessage(_)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e))
                }
                // A TLS client refused (no client certificate, a protocol
                // it does not share): it gets the alert saying why.
                Err(e) => {
                    let _ = flush(tls, &self.stream);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    fn read_request(&mut self, ctx: &mut Ctx<'_>, now: Instant) -> Next {
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    match http::parse(&self.buf, ctx.path) {
                        Parsed::Partial => {}
                        Parsed::Done(route, basic) => {
                            self.buf = Vec::new();
                            if let Route::Refused(a) = route {
                                return self.answer(a, now);
                            }
                            let verdict =
                                ctx.gate.admit(&self.web, basic.as_ref(), self.source, now);
                            return self.admitted(route, verdict, now);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        let peer = self.stream.peer_addr().map(|a| a.to_string());
                        let peer = peer.as_deref().unwrap_or("a client");
                        ctx.log
                            .debug(format_args!("TLS with {peer}: {e}; connection closed"));
                        // webpki's refusal, only named in its debug form.
                        let v1 = format!("{e:?}").contains("UnsupportedCertVersion");
                        if v1 && ctx.v1_said.is_none_or(|t| now >= t + SAY_EVERY) {
                            *ctx.v1_said = Some(now);
                            ctx.log.warn(format_args!(
                                "TLS with {peer}: refused a client certificate of X.509 version 1 (what openssl x509 -req makes without -extfile); this exporter verifies version 3 only: see docs/tls.md (said at most once a minute)"
                            ));
                        }
                    }
                    return Next::Close;
                }
            }
        }
    }

    /// Serves `route` as `verdict` says.
    fn admitted(&mut self, route: Route, verdict: Verdict, now: Instant) -> Next {
        let head_only = route.head_only();
        let refuse = |status, body: &str, extra| Answer::text(status, body, head_only, extra);
        match verdict {
            Verdict::Pass => match route {
                Route::Metrics(head_only) => {
                    self.state = State::Waiting {
                        head_only,
                        ended: false,
                    };
                    self.deadline = now + GATHER_TIMEOUT;
                    Next::Scrape
                }
                Route::Answer(a) | Route::Refused(a) => self.answer(a, now),
            },
            Verdict::Checking(key) => {
                self.state = State::Checking { route, key };
                self.deadline = now + REQUEST_TIMEOUT;
                Next::Keep
            }
            Verdict::Denied => self.answer(
                refuse(
                    "401 Unauthorized",
                    "Unauthorized\n",
                    "WWW-Authenticate: Basic\r\n",
                ),
                now,
            ),
            Verdict::Limited => self.answer(
                refuse("429 Too Many Requests", "Too Many Requests\n", ""),
                now,
            ),
            Verdict::Busy => self.answer(
                refuse(
                    "503 Service Unavailable",
                    "too many credentials to check at once\n",
                    "",
                ),
                now,
            ),
        }
    }

    /// The auth thread's verdict on `key`: a connection waiting for it
    /// goes on.
    pub fn checked(&mut self, key: &Key, verdict: &Verdict, now: Instant) -> Next {
        match std::mem::replace(&mut self.state, State::Reading) {
            State::Checking { route, key: k } if k == *key => {
                self.admitted(route, verdict.clone(), now)
            }
            other => {
                self.state = other;
                Next::Keep
            }
        }
    }

    /// Reads and drops what is readable, at most 64 KiB a call (a client
    /// sending without end cannot hold the loop). Raw bytes even under
    /// TLS: nothing more will be read from the session.
    fn drain(&mut self) -> Drained {
        let mut chunk = [0u8; 4096];
        for _ in 0..16 {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return Drained::Ended,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Drained::Failed,
            }
        }
        Drained::Open
    }

    /// The scrape's gather is done: starts writing `a` if still waiting.
    pub fn gathered(&mut self, a: impl FnOnce(bool) -> Answer, now: Instant) -> Next {
        match self.state {
            State::Waiting { head_only, .. } => self.answer(a(head_only), now),
            _ => Next::Keep,
        }
    }

    /// Starts writing `answer` with the configured headers, writing what
    /// the socket takes at once (also for a connection refused before its
    /// request is read).
    pub fn answer(&mut self, mut answer: Answer, now: Instant) -> Next {
        answer.add_headers(&self.web.headers);
        self.state = State::Writing { answer, done: 0 };
        self.deadline = now + WRITE_TIMEOUT;
        self.write(now)
    }

    fn write(&mut self, now: Instant) -> Next {
        let State::Writing { answer, done } = &mut self.state else {
            return Next::Keep;
        };
        match self.tls.as_deref_mut() {
            None => {
                while *done < answer.len() {
                    match (&self.stream).write(answer.rest(*done)) {
                        Ok(n) => *done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                        Err(_) => return Next::Close,
                    }
                }
            }
            Some(tls) => loop {
                // rustls takes plaintext up to its buffer limit; what it
                // encrypted goes out as the socket takes it.
                match flush(tls, &self.stream) {
                    Ok(true) => {}
                    Ok(false) => return Next::Keep,
                    Err(_) => return Next::Close,
                }
                if *done == answer.len() {
                    tls.send_close_notify();
                    if !tls.wants_write() {
                        break;
                    }
                    continue;
                }
                // After a full flush rustls takes at least one byte; none
                // would mean a closed session.
                match tls.writer().write(answer.rest(*done)) {
                    Ok(0) | Err(_) => return Next::Close,
                    Ok(n) => *done += n,
                }
            },
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = State::Lingering;
        // From the end of the answer, whatever the write took.
        self.deadline = now + LINGER;
        match self.drain() {
            Drained::Open => Next::Keep,
            Drained::Ended | Drained::Failed => Next::Close,
        }
    }

    /// The deadline passed: a request (or handshake) that did not arrive
    /// is dropped, a check or gather that did not end answers 503, a
    /// client that does not take its answer is reset, a linger ends.
    pub fn expired(&mut self, now: Instant) -> Next {
        let unavailable =
            |why: &str, head_only| Answer::text("503 Service Unavailable", why, head_only, "");
        match self.state {
            State::Reading => Next::Close,
            State::Checking { ref route, .. } => {
                let head_only = route.head_only();
                self.answer(
                    unavailable("the credentials' check did not end in time\n", head_only),
                    now,
                )
            }
            State::Waiting { head_only, .. } => self.answer(
                unavailable("the gather did not end in time\n", head_only),
                now,
            ),
            State::Writing { .. } => {
                self.reset();
                Next::Close
            }
            // The answer is the kernel's to deliver.
            State::Lingering => Next::Close,
        }
    }

    /// For a connection dropped right after its answer: a reset if the
    /// answer is not all sent (nothing waits for the rest).
    pub fn reset_if_unsent(&self) {
        if matches!(self.state, State::Writing { .. }) {
            self.reset();
        }
    }

    /// Makes the close a reset, which frees unsent bytes at once.
    pub fn reset(&self) {
        let _ = rustix::net::sockopt::set_socket_linger(&self.stream, Some(Duration::ZERO));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots are counted per IPv4 address (mapped ones too) and per IPv6
    /// /64.
    #[test]
    fn peers_are_addresses_and_ipv6_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:bbbb::9")),
            source_of(ip("2001:db8:1:2:aaaa::1"))
        );
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }
}
