//! `--listen`: a Prometheus exporter. Serves `/metrics` (a fresh gather per
//! scrape) and a landing page over HTTP/1.x, on a small blocking server
//! built on `poll(2)`: no async runtime, no HTTP crate.
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
//! deadlines); this one owns the loop and the gather thread.
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
//! exposition of a few KiB gains little. No TLS, no authentication: bind to
//! loopback behind a reverse proxy where those are needed.

mod conn;
mod http;
mod listeners;

use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::Config;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use telegraf_netstat::log::Logger;

use crate::exit::{EXIT_GATHER_FAILED, EXIT_OK};
use crate::gather::{Collected, Gatherer};
use crate::signals::{signal_pipe, StdinRole, Uninterrupted};
use conn::{Conn, Next};
use http::{Answer, CONTENT_TYPE};
use listeners::ListenError;

/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 1024;
/// How long listening pauses when `accept` finds no free descriptor.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The usage exit code (clap's), for sockets systemd passed that are unusable.
const EXIT_USAGE: u8 = 2;

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

/// Accepts what is pending on `l` into `conns`, evicting the oldest idle
/// connection when full. `Err` when descriptors ran out.
fn accept_all(
    l: &std::net::TcpListener,
    conns: &mut Vec<Conn>,
    path: &str,
    pending: &mut usize,
) -> Result<(), std::io::Error> {
    loop {
        let stream = match l.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if out_of_descriptors(&e) => {
                // Free one descriptor for the next try.
                evict_idle(conns);
                return Err(e);
            }
            // The peer gave up before we took it (ECONNABORTED) and the like.
            Err(_) => continue,
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let now = Instant::now();
        if conns.len() >= MAX_CONNECTIONS && !evict_idle(conns) {
            // Every slot is a scrape in progress.
            let mut c = Conn::new(stream, now);
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
        let mut c = Conn::new(stream, now);
        // The request is often there already.
        match c.ready(PollFlags::IN, path, now) {
            Next::Close => {}
            Next::Scrape => {
                *pending += 1;
                conns.push(c);
            }
            Next::Keep => conns.push(c),
        }
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
    let log = Logger {
        verbose: config.verbose,
    };
    let serve = config.serve.clone().expect("serve mode");
    let listeners = match listeners::open(&serve) {
        Ok(l) => l,
        Err(ListenError::Usage(e)) => {
            log.error(format_args!("{e}"));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(ListenError::Bind(e)) => {
            log.error(format_args!("{e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
    for l in listeners.iter().filter(|l| l.port_chosen) {
        if let Ok(a) = l.socket.local_addr() {
            log.info(format_args!(
                "listening on {a} (port 0 asked: the kernel chose {})",
                a.port()
            ));
        }
    }
    let signals = match signal_pipe() {
        Ok(r) => r,
        Err(e) => {
            log.error(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
    let (wake_r, wake_w) = match rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    ) {
        Ok(p) => p,
        Err(e) => {
            log.error(format_args!("cannot create a pipe: {e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
    let stdin = StdinRole::of(false);

    // The gather thread: one gather per request on `go`, result in `shared`.
    let shared = Arc::new(Shared {
        result: Mutex::new(None),
    });
    let (go, requests) = mpsc::channel::<usize>();
    {
        let shared = Arc::clone(&shared);
        let mut gatherer: Gatherer = Gatherer::new(&config);
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
                            (200, Arc::new(out.clone()))
                        }
                        // The detail (paths, OS errors) is on stderr, not
                        // for any client that asks.
                        Collected::Failed | Collected::Stopped => (
                            500,
                            Arc::new(b"gather failed: see the exporter's log\n".to_vec()),
                        ),
                    };
                    gatherer.log().debug(format_args!(
                        "gathered for {waiting} scrapes in {:.1} ms",
                        started.elapsed().as_secs_f64() * 1e3
                    ));
                    *shared.result.lock().unwrap() = Some(result);
                    let _ = rustix::io::write(&wake_w, b"x");
                }
            })
            .expect("cannot start the gather thread");
    }

    let mut conns: Vec<Conn> = Vec::new();
    let mut gathering = false;
    let mut pending = 0usize;
    let mut accept_paused: Option<Instant> = None;
    let mut emfile_said = false;
    loop {
        // Poll set: signals, wake pipe, stdin?, listeners, connections.
        let now = Instant::now();
        if accept_paused.is_some_and(|t| now >= t) {
            accept_paused = None;
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3 + listeners.len() + conns.len());
        fds.push(PollFd::new(&signals, PollFlags::IN));
        fds.push(PollFd::new(&wake_r, PollFlags::IN));
        let stdin_fd = rustix::stdio::stdin();
        if stdin == StdinRole::EndOnly {
            fds.push(PollFd::from_borrowed_fd(stdin_fd, PollFlags::IN));
        }
        let first_listener = fds.len();
        for l in &listeners {
            let flags = if accept_paused.is_some() {
                PollFlags::empty()
            } else {
                PollFlags::IN
            };
            fds.push(PollFd::new(&l.socket, flags));
        }
        let first_conn = fds.len();
        for c in &conns {
            fds.push(PollFd::new(c.stream(), c.interest()));
        }
        let wake_at = conns.iter().map(Conn::deadline).chain(accept_paused).min();
        let timeout = wake_at.map(|t| timespec(t.saturating_duration_since(now)));
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                log.error(format_args!(
                    "cannot wait for connections: {}",
                    std::io::Error::from(e)
                ));
                return ExitCode::from(EXIT_GATHER_FAILED);
            }
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
        drop(fds);
        if !revents[0].is_empty() {
            return ExitCode::from(EXIT_OK);
        }
        if stdin == StdinRole::EndOnly && !revents[2].is_empty() {
            let mut b = [0u8; 512];
            if matches!(rustix::io::read(stdin_fd, &mut b), Ok(0) | Err(_)) {
                return ExitCode::from(EXIT_OK);
            }
        }
        let now = Instant::now();
        let mut close = vec![false; conns.len()];
        // A gather finished: every waiting scrape gets its result.
        if !revents[1].is_empty() {
            let mut b = [0u8; 64];
            while matches!(rustix::io::read(&wake_r, &mut b), Ok(n) if n > 0) {}
            if let Some((status, body)) = shared.result.lock().unwrap().take() {
                gathering = false;
                for (i, c) in conns.iter_mut().enumerate() {
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
        }
        // Existing connections (those accepted below have no poll entry).
        for (i, c) in conns.iter_mut().enumerate() {
            let ev = revents[first_conn + i];
            if close[i] {
                continue;
            }
            let next = if !ev.is_empty() {
                c.ready(ev, &serve.path, now)
            } else if now >= c.deadline() {
                c.expired(now)
            } else {
                Next::Keep
            };
            match next {
                Next::Close => close[i] = true,
                Next::Scrape => pending += 1,
                Next::Keep => {}
            }
        }
        let mut i = 0;
        conns.retain(|_| {
            let keep = !close[i];
            i += 1;
            keep
        });
        // New connections.
        for (i, l) in listeners.iter().enumerate() {
            if revents[first_listener + i].is_empty() {
                continue;
            }
            if let Err(e) = accept_all(&l.socket, &mut conns, &serve.path, &mut pending) {
                accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                if !emfile_said {
                    emfile_said = true;
                    log.error(format_args!(
                        "cannot accept connections: {e}; pausing {} ms each time (said once)",
                        ACCEPT_PAUSE.as_millis()
                    ));
                }
            }
        }
        // Scrapes waiting and no gather running: start one for all of them.
        if pending > 0 && !gathering {
            let waiting = conns.iter().filter(|c| c.is_waiting()).count();
            if waiting > 0 && go.send(waiting).is_ok() {
                gathering = true;
            }
            pending = 0;
        }
    }
}
