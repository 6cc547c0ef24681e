//! `--listen`: a Prometheus exporter. Serves `/metrics` (a fresh gather per
//! scrape) and a landing page over HTTP/1.x, on a small blocking server
//! built on `poll(2)`: no async runtime; requests are parsed by `httparse`.
//!
//! One thread owns every connection and never blocks on one: sockets are
//! non-blocking and `poll` watches them all, the listening sockets, the
//! signal pipe and stdin. A slow or silent client costs a slot, never time
//! for the others. Gathers run on a second thread that owns the `Gatherer`;
//! a scrape that arrives while a gather runs waits for that gather's result
//! instead of starting another, so any number of concurrent scrapes cost one
//! dump. A gather is never stopped half way (`Uninterrupted`): the main thread
//! exits the process on SIGTERM.
//!
//! Modules: `listeners` (binding, socket activation), `http` (parsing a
//! request, building answers), `conn` (one connection's states and
//! deadlines, over TCP or TLS), `webconfig` (the `--web.config.file`
//! format), `web` (loading it, again on a change, on its own thread),
//! `auth` (rate limit and basic authentication, with its bcrypt thread);
//! this one owns the loop (`Exporter`) and the gather thread.
//!
//! Limits: a request line and headers of at most 8 KiB (414/431 beyond),
//! `REQUEST_TIMEOUT` to send them and `WRITE_TIMEOUT` to take the answer
//! (closed beyond: a slowloris client is cut off), `GATHER_TIMEOUT` for a
//! gather (503 beyond), at most `MAX_CONNECTIONS` connections. When they are
//! all taken, a new connection evicts one: an answered one first (lingering
//! for the client's close), then one that never sent a byte, then a request
//! in progress, then an answer being written, each time from the peer
//! holding the most connections and the oldest of those; so no number of
//! idle, slow or answered-but-open clients can lock scrapers out, and a
//! flood from one address takes its slots from itself. Only when every
//! connection is a scrape waiting for its gather is the new one answered
//! 503. When `accept` fails for lack of descriptors (EMFILE), listening
//! pauses for 100 ms and one `E! ` line says so. Every answer closes its
//! connection (`Connection: close`).
//! Responses are never compressed: gzip would need a new dependency, and an
//! exposition of a few KiB gains little. TLS and basic authentication come
//! from `--web.config.file` (the exporter-toolkit's format); under TLS the
//! same limits hold, the handshake counting as part of the request.

mod auth;
mod conn;
mod http;
mod listeners;
mod web;
mod webconfig;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log::Logger;
use foldhash::fast::RandomState;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use telegraf_netstat::values::ListenAddr;

use crate::exit::{EXIT_GATHER_FAILED, EXIT_OK, EXIT_USAGE};
use crate::signals::{signal_pipe, StdinRead, StdinRole, STDIN_PAUSE};
use auth::Gate;
use conn::{source_of, Conn, Ctx, Next};
use http::{Answer, CONTENT_TYPE};
use listeners::ListenError;
use web::{Web, WebFile};

/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 1024;
/// How long listening pauses when `accept` finds no free descriptor.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections taken from one listener per wake-up, at most.
const ACCEPT_BATCH: usize = 64;

/// The result of one gather: status and body.
type GatherResult = (u16, Arc<Vec<u8>>);

/// The gather thread's side: what it last produced.
struct Shared {
    result: Mutex<Option<GatherResult>>,
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// EMFILE, ENFILE and the memory errors `accept` may give: retrying at
/// once cannot work.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// One connection less held by `source`.
fn forget(sources: &mut HashMap<IpAddr, u32, RandomState>, source: IpAddr) {
    if let Some(n) = sources.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            sources.remove(&source);
        }
    }
}

/// Every slot is a scrape waiting for its gather: the new connection is
/// answered 503 at once (to a `HEAD`, if its request is there already,
/// without the body). Over TLS no answer can be written before a
/// handshake: the close (a reset) says it.
fn refuse(stream: std::net::TcpStream, source: IpAddr, web: Arc<Web>, now: Instant) {
    if web.tls.is_some() {
        let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
        return;
    }
    let mut first = [0u8; 5];
    let head_only = matches!(
        rustix::net::recv(&stream, &mut first, rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT),
        Ok((5, _)) if &first == b"HEAD "
    );
    let Ok(mut c) = Conn::new(stream, source, web, now) else {
        return;
    };
    let refusal = Answer::text(
        "503 Service Unavailable",
        "too many scrapes at once\n",
        head_only,
        "",
    );
    if c.answer(refusal, now) == Next::Keep {
        c.reset_if_unsent();
    }
}

/// Says once where the exporter listens, and whether with TLS.
/// The start-up line, one per socket, in every `--log.format`: where
/// (and whether that is every address), what, and TLS and auth on or off.
fn say_listening(log: &Logger, listeners: &[listeners::Listener], serve: &Serve, web: &str) {
    for l in listeners {
        let Ok(a) = l.socket.local_addr() else {
            continue;
        };
        let mut how = Vec::new();
        if l.port_chosen {
            how.push(format!("port 0 asked: the kernel chose {}", a.port()));
        }
        if serve.systemd_socket {
            how.push("passed by systemd".to_string());
        }
        if a.ip().is_unspecified() {
            how.push(if a.is_ipv6() {
                "every address, IPv6 and IPv4".to_string()
            } else {
                "every IPv4 address".to_string()
            });
        }
        let how = match how.is_empty() {
            true => String::new(),
            false => format!(" ({})", how.join("; ")),
        };
        log.info(format_args!(
            "listening on {a}{how}: serving {}, {web} (telegraf-netstat {})",
            serve.path,
            env!("CARGO_PKG_VERSION")
        ));
    }
}

/// What the exporter needs of a gather, and nothing else of how one is
/// made: the binary's `main` hands it the gather loop over namespaces.
pub trait Scrape: Send + 'static {
    /// Gathers once and encodes the exposition into `out` (cleared first);
    /// `false` when nothing could be counted (the reason said on stderr).
    fn scrape(&mut self, out: &mut Vec<u8>) -> bool;
}

/// `--listen`: HTTP serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// Addresses to bind (empty with `systemd_socket`).
    pub listen: Vec<ListenAddr>,
    /// The metrics page, starting with `/`.
    pub path: String,
    /// Take the listening sockets systemd passes.
    pub systemd_socket: bool,
    /// `--web.config.file`: TLS and authentication.
    pub web_config: Option<PathBuf>,
}

/// Serves until SIGTERM, SIGINT or stdin EOF; each scrape is a call of
/// `scrape` on the gather thread.
pub fn run(log: Logger, serve: Serve, scrape: impl Scrape) -> ExitCode {
    match Exporter::start(log, serve, scrape) {
        Ok(mut exporter) => exporter.serve(),
        Err(code) => code,
    }
}

/// The gather thread: one gather per request on the returned sender (the
/// number of scrapes waiting), its result in `Shared`, then a byte on
/// `wake`. With `--web.config.file`, the exposition ends with whether the
/// file's last change loaded (`web_loaded`, kept by `WebFile`).
fn spawn_gatherer(
    mut scrape: impl Scrape,
    log: Logger,
    wake: OwnedFd,
    web_loaded: Option<Arc<AtomicBool>>,
) -> std::io::Result<(mpsc::Sender<usize>, Arc<Shared>)> {
    let shared = Arc::new(Shared {
        result: Mutex::new(None),
    });
    let (go, requests) = mpsc::channel::<usize>();
    let theirs = Arc::clone(&shared);
    let mut out = Vec::with_capacity(1024);
    std::thread::Builder::new()
        .name("gather".into())
        .spawn(move || {
            for waiting in requests {
                let started = Instant::now();
                let result = if scrape.scrape(&mut out) {
                    if let Some(loaded) = &web_loaded {
                        web::encode_loaded(loaded.load(Ordering::Relaxed), &mut out);
                    }
                    (200, Arc::new(out.clone()))
                } else {
                    // The detail (paths, OS errors) is on stderr, not for
                    // any client that asks.
                    (
                        500,
                        Arc::new(b"gather failed: see the exporter's log\n".to_vec()),
                    )
                };
                log.debug(format_args!(
                    "gathered for {waiting} scrapes in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                ));
                *theirs.result.lock().unwrap() = Some(result);
                let _ = rustix::io::write(&wake, b"x");
            }
        })?;
    Ok((go, shared))
}

/// Where each kind of descriptor sits in one round's poll set.
struct Layout {
    stdin: Option<usize>,
    first_listener: usize,
    first_conn: usize,
}

/// The main thread's state: what it polls and the connections it serves.
struct Exporter {
    log: Logger,
    path: String,
    listeners: Vec<listeners::Listener>,
    signals: OwnedFd,
    /// Readable when the gather thread has a result.
    wake: OwnedFd,
    stdin: StdinRole,
    go: mpsc::Sender<usize>,
    shared: Arc<Shared>,
    conns: Vec<Conn>,
    gathering: bool,
    /// Scrapes that arrived since the last gather started.
    pending: usize,
    accept_paused: Option<Instant>,
    emfile_said: bool,
    /// Connections held per peer (`conn::source_of`).
    sources: HashMap<IpAddr, u32, RandomState>,
    /// Stdin is not looked at until then (it flooded the last look).
    stdin_paused: Option<Instant>,
    /// When a version 1 client certificate was last said.
    v1_said: Option<Instant>,
    /// `--web.config.file`, loaded again when it changes.
    web: Option<WebFile>,
    /// Plain HTTP without authentication, when there is no such file.
    plain: Arc<Web>,
    gate: Gate,
}

impl Exporter {
    /// Binds (or takes) the listening sockets, installs the signal pipe and
    /// starts the gather thread; `Err` is the exit code, the reason said.
    fn start(log: Logger, serve: Serve, scrape: impl Scrape) -> Result<Exporter, ExitCode> {
        let fail = |what: &str, e: &dyn std::fmt::Display, code: u8| {
            log.error(format_args!("{what}{e}"));
            ExitCode::from(code)
        };
        // Checked before binding: a usage error opens nothing.
        let mut web = match &serve.web_config {
            Some(path) => Some(WebFile::open(path, &log).map_err(|e| {
                fail(
                    &format!("invalid --web.config.file {}: ", path.display()),
                    &e,
                    EXIT_USAGE,
                )
            })?),
            None => None,
        };
        let listeners = listeners::open(&serve).map_err(|e| match e {
            ListenError::Usage(e) => fail("", &e, EXIT_USAGE),
            ListenError::Bind(e) => fail("", &e, EXIT_GATHER_FAILED),
        })?;
        let web_said = web.as_ref().map_or_else(
            || "TLS off, basic auth off".to_string(),
            |w| format!("{} (--web.config.file)", w.describe()),
        );
        say_listening(&log, &listeners, &serve, &web_said);
        let signals = signal_pipe()
            .map_err(|e| fail("cannot install signal handlers: ", &e, EXIT_GATHER_FAILED))?;
        let (wake, wake_w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| fail("cannot create a pipe: ", &e, EXIT_GATHER_FAILED))?;
        let dup = || {
            rustix::io::fcntl_dupfd_cloexec(&wake_w, 0)
                .map_err(|e| fail("cannot duplicate a pipe: ", &e, EXIT_GATHER_FAILED))
        };
        if let Some(w) = &mut web {
            w.start(dup()?).map_err(|e| {
                fail(
                    "cannot start the web config thread: ",
                    &e,
                    EXIT_GATHER_FAILED,
                )
            })?;
        }
        let gate = Gate::new(web.as_ref().and_then(WebFile::rate_limit), dup()?);
        let (go, shared) =
            spawn_gatherer(scrape, log, wake_w, web.as_ref().map(WebFile::loaded))
                .map_err(|e| fail("cannot start the gather thread: ", &e, EXIT_GATHER_FAILED))?;
        Ok(Exporter {
            log,
            path: serve.path,
            listeners,
            signals,
            wake,
            stdin: StdinRole::of(false),
            go,
            shared,
            conns: Vec::new(),
            gathering: false,
            pending: 0,
            accept_paused: None,
            emfile_said: false,
            sources: HashMap::default(),
            stdin_paused: None,
            v1_said: None,
            web,
            plain: Web::plain(),
            gate,
        })
    }

    /// Serves until SIGTERM or stdin EOF (exit 0) or `poll` fails.
    fn serve(&mut self) -> ExitCode {
        loop {
            let (revents, layout) = match self.wait() {
                Ok(r) => r,
                Err(e) => {
                    self.log
                        .error(format_args!("cannot wait for connections: {e}"));
                    return ExitCode::from(EXIT_GATHER_FAILED);
                }
            };
            if !revents[0].is_empty() || self.stdin_ended(&revents, &layout) {
                return ExitCode::from(EXIT_OK);
            }
            let now = Instant::now();
            let mut close = vec![false; self.conns.len()];
            // Checks displaced from the auth queue are answered too.
            if !revents[1].is_empty() || self.gate.displaced() {
                self.answer_waiting(&mut close, now);
            }
            self.service(&revents[layout.first_conn..], &mut close, now);
            let mut i = 0;
            let sources = &mut self.sources;
            self.conns.retain(|c| {
                let keep = !close[i];
                i += 1;
                if !keep {
                    forget(sources, c.source);
                }
                keep
            });
            self.accept(&revents[layout.first_listener..layout.first_conn]);
            self.start_gather();
        }
    }

    /// One `poll` over signals, the wake pipe, stdin (when its end
    /// matters), the listeners (unless paused) and every connection, until
    /// the nearest deadline. Returns what each descriptor reported.
    fn wait(&mut self) -> std::io::Result<(Vec<PollFlags>, Layout)> {
        let now = Instant::now();
        if self.accept_paused.is_some_and(|t| now >= t) {
            self.accept_paused = None;
        }
        if self.stdin_paused.is_some_and(|t| now >= t) {
            self.stdin_paused = None;
        }
        // Nothing is accepted while a changed web config loads.
        let loading = self.web.as_ref().and_then(WebFile::wait_until);
        let mut fds: Vec<PollFd<'_>> =
            Vec::with_capacity(3 + self.listeners.len() + self.conns.len());
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        let mut stdin = None;
        if self.stdin == StdinRole::EndOnly && self.stdin_paused.is_none() {
            stdin = Some(fds.len());
            fds.push(PollFd::from_borrowed_fd(
                rustix::stdio::stdin(),
                PollFlags::IN,
            ));
        }
        let first_listener = fds.len();
        let listening = if self.accept_paused.is_some() || loading.is_some_and(|t| now < t) {
            PollFlags::empty()
        } else {
            PollFlags::IN
        };
        for l in &self.listeners {
            fds.push(PollFd::new(&l.socket, listening));
        }
        let first_conn = fds.len();
        for c in &self.conns {
            fds.push(PollFd::new(c.stream(), c.interest()));
        }
        let wake_at = self
            .conns
            .iter()
            .map(Conn::deadline)
            .chain(self.accept_paused)
            .chain(self.stdin_paused)
            .chain(loading)
            .min();
        let timeout = match wake_at {
            _ if self.gate.displaced() => Some(timespec(Duration::ZERO)),
            Some(t) => Some(timespec(t.saturating_duration_since(now))),
            None => None,
        };
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let revents = fds.iter().map(|f| f.revents()).collect();
        let layout = Layout {
            stdin,
            first_listener,
            first_conn,
        };
        Ok((revents, layout))
    }

    /// Whether stdin (a pipe whose end means exit) reached its end. What
    /// arrives on it is read and dropped, a bounded amount per look; a
    /// flood pauses the looking for `STDIN_PAUSE`.
    fn stdin_ended(&mut self, revents: &[PollFlags], layout: &Layout) -> bool {
        if layout.stdin.is_none_or(|i| revents[i].is_empty()) {
            return false;
        }
        let mut b = [0u8; 4096];
        match StdinRead::bounded(&mut b) {
            Ok(r) if r.eof => true,
            Ok(r) => {
                if r.more {
                    self.stdin_paused = Some(Instant::now() + STDIN_PAUSE);
                }
                false
            }
            Err(_) => true,
        }
    }

    /// The auth thread or the gather thread finished something: waiting
    /// requests go on, waiting scrapes get the gather's result.
    fn answer_waiting(&mut self, close: &mut [bool], now: Instant) {
        let mut b = [0u8; 64];
        while matches!(rustix::io::read(&self.wake, &mut b), Ok(n) if n > 0) {}
        if let Some(w) = &mut self.web {
            w.finished();
        }
        for (key, verdict) in self.gate.finished() {
            for (i, c) in self.conns.iter_mut().enumerate() {
                match c.checked(&key, &verdict, now) {
                    Next::Close => close[i] = true,
                    Next::Scrape => self.pending += 1,
                    Next::Keep => {}
                }
            }
        }
        let Some((status, body)) = self.shared.result.lock().unwrap().take() else {
            return;
        };
        self.gathering = false;
        for (i, c) in self.conns.iter_mut().enumerate() {
            let answer = |head_only| {
                if status == 200 {
                    Answer::new("200 OK", CONTENT_TYPE, Arc::clone(&body), head_only, "")
                } else {
                    Answer::new(
                        "500 Internal Server Error",
                        "text/plain; charset=utf-8",
                        Arc::clone(&body),
                        head_only,
                        "",
                    )
                }
            };
            close[i] |= c.gathered(answer, now) == Next::Close;
        }
    }

    /// Moves every polled connection on: what it sent or can take, or its
    /// deadline passing.
    fn service(&mut self, revents: &[PollFlags], close: &mut [bool], now: Instant) {
        let mut ctx = Ctx {
            path: &self.path,
            gate: &mut self.gate,
            log: &self.log,
            v1_said: &mut self.v1_said,
        };
        for (i, c) in self.conns.iter_mut().enumerate() {
            if close[i] {
                continue;
            }
            let ev = revents[i];
            let next = if !ev.is_empty() {
                c.ready(ev, &mut ctx, now)
            } else if now >= c.deadline() {
                c.expired(now)
            } else {
                Next::Keep
            };
            match next {
                Next::Close => close[i] = true,
                Next::Scrape => self.pending += 1,
                Next::Keep => {}
            }
        }
    }

    /// Takes new connections from every listener that has some; pauses
    /// listening, said once, when descriptors run out.
    fn accept(&mut self, revents: &[PollFlags]) {
        for (i, ev) in revents.iter().enumerate() {
            if ev.is_empty() {
                continue;
            }
            if let Err(e) = self.accept_from(i) {
                self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                if !self.emfile_said {
                    self.emfile_said = true;
                    self.log.error(format_args!(
                        "cannot accept connections: {e}; pausing {} ms each time (said once)",
                        ACCEPT_PAUSE.as_millis()
                    ));
                }
            }
        }
    }

    /// Accepts what is pending on listener `i`, taking a slot back
    /// (`evict`) when all are used. `Err` when descriptors ran out. With a
    /// web config, nothing is accepted while a change to it loads.
    fn accept_from(&mut self, i: usize) -> std::io::Result<()> {
        let web = match &mut self.web {
            Some(w) => {
                if !w.ready(Instant::now()) {
                    return Ok(());
                }
                w.current()
            }
            None => Arc::clone(&self.plain),
        };
        // A bounded batch: clients that reconnect as fast as they are
        // answered must not keep the loop from the connections it holds.
        for _ in 0..ACCEPT_BATCH {
            let (stream, peer) = match self.listeners[i].socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_descriptors(&e) => {
                    // Free one descriptor for the next try.
                    self.evict();
                    return Err(e);
                }
                // The peer gave up before we took it (ECONNABORTED) and the like.
                Err(_) => continue,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let source = source_of(peer.ip());
            let now = Instant::now();
            if self.conns.len() >= MAX_CONNECTIONS && !self.evict() {
                refuse(stream, source, Arc::clone(&web), now);
                continue;
            }
            let Ok(mut c) = Conn::new(stream, source, Arc::clone(&web), now) else {
                continue;
            };
            let mut ctx = Ctx {
                path: &self.path,
                gate: &mut self.gate,
                log: &self.log,
                v1_said: &mut self.v1_said,
            };
            // The request (or the TLS hello) is often there already.
            let next = c.ready(PollFlags::IN, &mut ctx, now);
            match next {
                Next::Close => continue,
                Next::Scrape => self.pending += 1,
                Next::Keep => {}
            }
            *self.sources.entry(source).or_default() += 1;
            self.conns.push(c);
        }
        Ok(())
    }

    /// Takes a slot back: the connection with the lowest
    /// [`Conn::eviction_class`], from the peer holding the most
    /// connections, the oldest of those. `false` if every one is a scrape
    /// waiting for its gather.
    fn evict(&mut self) -> bool {
        let sources = &self.sources;
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let class = c.eviction_class()?;
                let held = sources.get(&c.source).copied().unwrap_or(0);
                Some(((class, Reverse(held), c.accepted), i))
            })
            .min()
            .map(|(_, i)| i);
        let Some(i) = victim else {
            return false;
        };
        let c = self.conns.swap_remove(i);
        forget(&mut self.sources, c.source);
        c.evict();
        true
    }

    /// Scrapes waiting and no gather running: starts one for all of them.
    fn start_gather(&mut self) {
        if self.pending > 0 && !self.gathering {
            let waiting = self.conns.iter().filter(|c| c.is_waiting()).count();
            if waiting > 0 && self.go.send(waiting).is_ok() {
                self.gathering = true;
            }
            self.pending = 0;
        }
    }
}
