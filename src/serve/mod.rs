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
//! format), `web` (loading it, again for every connection), `auth` (rate
//! limit and basic authentication, with its bcrypt thread); this one owns
//! the loop (`Exporter`) and the gather thread.
//!
//! Limits: a request line and headers of at most 8 KiB (414/431 beyond),
//! `REQUEST_TIMEOUT` to send them and `WRITE_TIMEOUT` to take the answer
//! (closed beyond: a slowloris client is cut off), `GATHER_TIMEOUT` for a
//! gather (503 beyond), at most `MAX_CONNECTIONS` connections. When they are
//! all taken, a new connection evicts the oldest one still sending its
//! request, so no number of idle or slow clients can lock scrapers out
//! (Prometheus sends its request as soon as it connects); only when every
//! connection is a scrape in progress is the new one answered 503. When
//! `accept` fails for lack of descriptors (EMFILE), listening pauses for
//! 100 ms and one `E! ` line says so. Every answer closes its connection
//! (`Connection: close`).
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

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::Config;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use telegraf_netstat::log::Logger;

use crate::exit::{EXIT_GATHER_FAILED, EXIT_OK, EXIT_USAGE};
use crate::gather::{Collected, Gatherer};
use crate::signals::{signal_pipe, StdinRole, Uninterrupted};
use auth::Gate;
use conn::{Conn, Ctx, Next};
use http::{Answer, CONTENT_TYPE};
use listeners::ListenError;
use web::{Web, WebFile};

/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 1024;
/// How long listening pauses when `accept` finds no free descriptor.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

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

/// Drops the oldest connection still sending its request; `false` if none.
fn evict_idle(conns: &mut Vec<Conn>) -> bool {
    let oldest = conns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_idle())
        .min_by_key(|(_, c)| c.accepted)
        .map(|(i, _)| i);
    match oldest {
        Some(i) => {
            let c = conns.swap_remove(i);
            c.reset();
            true
        }
        None => false,
    }
}

pub fn run(config: Config) -> ExitCode {
    match Exporter::start(&config) {
        Ok(mut exporter) => exporter.serve(),
        Err(code) => code,
    }
}

/// The gather thread: one gather per request on the returned sender (the
/// number of scrapes waiting), its result in `Shared`, then a byte on
/// `wake`. With `--web.config.file`, the exposition ends with whether the
/// file's last change loaded (`web_loaded`, kept by `WebFile`).
fn spawn_gatherer(
    config: &Config,
    wake: OwnedFd,
    web_loaded: Option<Arc<AtomicBool>>,
) -> (mpsc::Sender<usize>, Arc<Shared>) {
    let shared = Arc::new(Shared {
        result: Mutex::new(None),
    });
    let (go, requests) = mpsc::channel::<usize>();
    let theirs = Arc::clone(&shared);
    let mut gatherer: Gatherer = Gatherer::new(config);
    let format = config.format;
    let mut out = Vec::with_capacity(1024);
    std::thread::Builder::new()
        .name("gather".into())
        .spawn(move || {
            for waiting in requests {
                let started = Instant::now();
                let result = match gatherer.collect(&mut Uninterrupted) {
                    Collected::Counted { .. } => {
                        gatherer.rows().encode(format, &mut out);
                        if let Some(loaded) = &web_loaded {
                            web::encode_loaded(loaded.load(Ordering::Relaxed), &mut out);
                        }
                        (200, Arc::new(out.clone()))
                    }
                    // The detail (paths, OS errors) is on stderr, not for
                    // any client that asks.
                    Collected::Failed | Collected::Stopped => (
                        500,
                        Arc::new(b"gather failed: see the exporter's log\n".to_vec()),
                    ),
                };
                gatherer.log().debug(format_args!(
                    "gathered for {waiting} scrapes in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                ));
                *theirs.result.lock().unwrap() = Some(result);
                let _ = rustix::io::write(&wake, b"x");
            }
        })
        .expect("cannot start the gather thread");
    (go, shared)
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
    /// `--web.config.file`, read again for every connection.
    web: Option<WebFile>,
    /// Plain HTTP without authentication, when there is no such file.
    plain: Arc<Web>,
    gate: Gate,
}

impl Exporter {
    /// Binds (or takes) the listening sockets, installs the signal pipe and
    /// starts the gather thread; `Err` is the exit code, the reason said.
    fn start(config: &Config) -> Result<Exporter, ExitCode> {
        let log = config.log;
        let fail = |what: &str, e: &dyn std::fmt::Display, code: u8| {
            log.error(format_args!("{what}{e}"));
            ExitCode::from(code)
        };
        let serve = config.serve.clone().expect("serve mode");
        // Checked before binding: a usage error opens nothing.
        let web = match &serve.web_config {
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
        // The start-up line, one per socket, in every --log.format.
        let web_said = web.as_ref().map_or_else(
            || "TLS off, basic auth off".to_string(),
            |w| format!("{} (--web.config.file)", w.describe()),
        );
        for l in &listeners {
            if let Ok(a) = l.socket.local_addr() {
                let chosen = match l.port_chosen {
                    true => format!(" (port 0 asked: the kernel chose {})", a.port()),
                    false => String::new(),
                };
                let from = if serve.systemd_socket {
                    ", from systemd"
                } else {
                    ""
                };
                log.info(format_args!(
                    "listening on {a}{chosen}{from}: serving {}, {web_said} (telegraf-netstat {})",
                    serve.path,
                    env!("CARGO_PKG_VERSION")
                ));
            }
        }
        let signals = signal_pipe()
            .map_err(|e| fail("cannot install signal handlers: ", &e, EXIT_GATHER_FAILED))?;
        let (wake, wake_w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| fail("cannot create a pipe: ", &e, EXIT_GATHER_FAILED))?;
        let auth_wake = rustix::io::fcntl_dupfd_cloexec(&wake_w, 0)
            .map_err(|e| fail("cannot duplicate a pipe: ", &e, EXIT_GATHER_FAILED))?;
        let gate = Gate::new(web.as_ref().and_then(WebFile::rate_limit), auth_wake);
        let (go, shared) = spawn_gatherer(config, wake_w, web.as_ref().map(WebFile::loaded));
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
            if !revents[1].is_empty() {
                self.answer_waiting(&mut close, now);
            }
            self.service(&revents[layout.first_conn..], &mut close, now);
            let mut i = 0;
            self.conns.retain(|_| {
                let keep = !close[i];
                i += 1;
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
        let mut fds: Vec<PollFd<'_>> =
            Vec::with_capacity(3 + self.listeners.len() + self.conns.len());
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        let mut stdin = None;
        if self.stdin == StdinRole::EndOnly {
            stdin = Some(fds.len());
            fds.push(PollFd::from_borrowed_fd(
                rustix::stdio::stdin(),
                PollFlags::IN,
            ));
        }
        let first_listener = fds.len();
        let listening = if self.accept_paused.is_some() {
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
            .min();
        let timeout = wake_at.map(|t| timespec(t.saturating_duration_since(now)));
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

    /// Whether stdin (a pipe whose end means exit) reached its end.
    fn stdin_ended(&self, revents: &[PollFlags], layout: &Layout) -> bool {
        if layout.stdin.is_none_or(|i| revents[i].is_empty()) {
            return false;
        }
        let mut b = [0u8; 512];
        matches!(
            rustix::io::read(rustix::stdio::stdin(), &mut b),
            Ok(0) | Err(_)
        )
    }

    /// The auth thread or the gather thread finished something: waiting
    /// requests go on, waiting scrapes get the gather's result.
    fn answer_waiting(&mut self, close: &mut [bool], now: Instant) {
        let mut b = [0u8; 64];
        while matches!(rustix::io::read(&self.wake, &mut b), Ok(n) if n > 0) {}
        for (key, ok) in self.gate.finished() {
            for (i, c) in self.conns.iter_mut().enumerate() {
                match c.checked(&key, ok, now) {
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

    /// Accepts what is pending on listener `i`, evicting the oldest idle
    /// connection when full. `Err` when descriptors ran out.
    fn accept_from(&mut self, i: usize) -> std::io::Result<()> {
        let l = &self.listeners[i].socket;
        loop {
            let stream = match l.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_descriptors(&e) => {
                    // Free one descriptor for the next try.
                    evict_idle(&mut self.conns);
                    return Err(e);
                }
                // The peer gave up before we took it (ECONNABORTED) and the like.
                Err(_) => continue,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let web = match &mut self.web {
                Some(w) => w.current(&self.log),
                None => Arc::clone(&self.plain),
            };
            let now = Instant::now();
            if self.conns.len() >= MAX_CONNECTIONS && !evict_idle(&mut self.conns) {
                // Every slot is a scrape in progress. Over TLS, no answer
                // can be written before a handshake: the close says it.
                if web.tls.is_some() {
                    let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
                    continue;
                }
                let Ok(mut c) = Conn::new(stream, web, now) else {
                    continue;
                };
                let refusal = Answer::text(
                    "503 Service Unavailable",
                    "too many scrapes at once\n",
                    false,
                    "",
                );
                if c.answer(refusal, now) == Next::Keep {
                    c.reset_if_unsent();
                }
                continue;
            }
            let Ok(mut c) = Conn::new(stream, web, now) else {
                continue;
            };
            let mut ctx = Ctx {
                path: &self.path,
                gate: &mut self.gate,
                log: &self.log,
            };
            // The request (or the TLS hello) is often there already.
            match c.ready(PollFlags::IN, &mut ctx, now) {
                Next::Close => {}
                Next::Scrape => {
                    self.pending += 1;
                    self.conns.push(c);
                }
                Next::Keep => self.conns.push(c),
            }
        }
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
