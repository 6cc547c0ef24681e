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
//! dump. A gather is never stopped half way (`OneShot`): the main thread
//! exits the process on SIGTERM.
//!
//! Limits: a request line and headers of at most `MAX_REQUEST` bytes
//! (431 beyond), `REQUEST_TIMEOUT` to send them and `WRITE_TIMEOUT` to take
//! the answer (closed beyond: a slowloris client is cut off), at most
//! `MAX_CONNECTIONS` connections (more are answered 503 at once and
//! closed). Every answer closes its connection (`Connection: close`).
//! Responses are never compressed: gzip would need a new dependency, and an
//! exposition of a few KiB gains little. No TLS, no authentication: bind to
//! loopback behind a reverse proxy where those are needed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use telegraf_netstat::cli::{Config, Serve};
use telegraf_netstat::log::Logger;

use crate::execd::{signal_pipe, StdinRole};
use crate::gather::{Collected, Gatherer, OneShot, EXIT_GATHER_FAILED, EXIT_OK};

/// Request line and headers, at most.
const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 1024;
/// To send the whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// To take the whole answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An answer: status line and headers, then the body (shared by every
/// scrape of one gather).
struct Answer {
    head: Vec<u8>,
    body: Arc<Vec<u8>>,
}

fn answer(
    status: &str,
    content_type: &str,
    body: Arc<Vec<u8>>,
    head_only: bool,
    extra: &str,
) -> Answer {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    Answer {
        head,
        body: if head_only {
            Arc::new(Vec::new())
        } else {
            body
        },
    }
}

fn text(status: &str, body: &str, head_only: bool, extra: &str) -> Answer {
    answer(
        status,
        "text/plain; charset=utf-8",
        Arc::new(body.as_bytes().to_vec()),
        head_only,
        extra,
    )
}

enum State {
    /// Reading the request, until the deadline.
    Reading,
    /// Waiting for the running gather (`HEAD` if true).
    Waiting(bool),
    /// Writing `answer`, `done` bytes so far.
    Writing { answer: Answer, done: usize },
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    state: State,
    deadline: Instant,
}

/// The result of one gather: status and body.
type GatherResult = (u16, Arc<Vec<u8>>);

/// The gather thread's side: what it last produced.
struct Shared {
    result: Mutex<Option<GatherResult>>,
}

/// The listening sockets: bound from `--listen`, or passed by systemd
/// (`LISTEN_PID` is ours, `LISTEN_FDS` sockets from fd 3).
fn listeners(serve: &Serve) -> Result<Vec<TcpListener>, String> {
    if serve.systemd_socket {
        let pid_ok = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        let n: i32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|_| pid_ok)
            .ok_or("--web.systemd-socket: no sockets passed by systemd (LISTEN_PID, LISTEN_FDS)")?;
        let mut v = Vec::new();
        for fd in 3..3 + n {
            // SAFETY: systemd passes these descriptors to us alone.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)
                .map_err(|e| format!("socket {fd} from systemd: {e}"))?;
            let l = TcpListener::from(owned);
            l.set_nonblocking(true)
                .map_err(|e| format!("socket {fd} from systemd: {e}"))?;
            v.push(l);
        }
        return Ok(v);
    }
    let mut v = Vec::new();
    for addr in &serve.listen {
        let spec = match addr.strip_prefix(':') {
            Some(port) => format!("[::]:{port}"),
            None => addr.clone(),
        };
        let resolved = spec
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve listen address {addr}: {e}"))?
            .collect::<Vec<_>>();
        let l = TcpListener::bind(&resolved[..])
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        v.push(l);
    }
    Ok(v)
}

/// The request line of a complete request head: method and path.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    // The path without a query string.
    Some((method, target.split('?').next().unwrap_or(target)))
}

fn landing(path: &str, head_only: bool) -> Answer {
    let version = env!("CARGO_PKG_VERSION");
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>telegraf-netstat</title></head>\n<body>\n\
         <h1>telegraf-netstat {version}</h1>\n\
         <p>TCP connections by state and UDP sockets, counted over NETLINK_SOCK_DIAG at every scrape.</p>\n\
         <p><a href=\"{path}\">Metrics</a></p>\n</body></html>\n"
    );
    answer(
        "200 OK",
        "text/html; charset=utf-8",
        Arc::new(page.into_bytes()),
        head_only,
        "",
    )
}

pub fn run(config: Config) -> ExitCode {
    let log = Logger {
        verbose: config.verbose,
    };
    let serve = config.serve.clone().expect("serve mode");
    let listeners = match listeners(&serve) {
        Ok(l) => l,
        Err(e) => {
            log.error(format_args!("{e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
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
        let mut gatherer = Gatherer::new(config);
        std::thread::Builder::new()
            .name("gather".into())
            .spawn(move || {
                for waiting in requests {
                    let started = Instant::now();
                    let result = match gatherer.collect(&mut OneShot) {
                        Collected::Counted { .. } => (200, Arc::new(gatherer.encoded().to_vec())),
                        Collected::Failed | Collected::Stopped => {
                            let mut body = String::new();
                            for e in gatherer.errors() {
                                body.push_str("E! ");
                                body.push_str(e);
                                body.push('\n');
                            }
                            (500, Arc::new(body.into_bytes()))
                        }
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
    loop {
        // Poll set: signals, wake pipe, stdin?, listeners, connections.
        let now = Instant::now();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3 + listeners.len() + conns.len());
        fds.push(PollFd::new(&signals, PollFlags::IN));
        fds.push(PollFd::new(&wake_r, PollFlags::IN));
        let stdin_fd = rustix::stdio::stdin();
        if stdin == StdinRole::EndOnly {
            fds.push(PollFd::from_borrowed_fd(stdin_fd, PollFlags::IN));
        }
        let first_listener = fds.len();
        for l in &listeners {
            // Always: past MAX_CONNECTIONS a connection is refused at once.
            fds.push(PollFd::new(l, PollFlags::IN));
        }
        let first_conn = fds.len();
        for c in &conns {
            let flags = match c.state {
                State::Reading => PollFlags::IN,
                State::Waiting(_) => PollFlags::empty(),
                State::Writing { .. } => PollFlags::OUT,
            };
            fds.push(PollFd::new(&c.stream, flags));
        }
        let timeout = conns
            .iter()
            .filter(|c| !matches!(c.state, State::Waiting(_)))
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .map(|d| Timespec {
                tv_sec: d.as_secs() as _,
                tv_nsec: d.subsec_nanos() as _,
            });
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
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            return ExitCode::from(EXIT_OK);
        }
        if stdin == StdinRole::EndOnly && ready[2] {
            let mut b = [0u8; 512];
            if matches!(rustix::io::read(stdin_fd, &mut b), Ok(0)) {
                return ExitCode::from(EXIT_OK);
            }
        }
        // A gather finished: every waiting scrape gets its result.
        if ready[1] {
            let mut b = [0u8; 64];
            while matches!(rustix::io::read(&wake_r, &mut b), Ok(n) if n > 0) {}
            if let Some((status, body)) = shared.result.lock().unwrap().take() {
                gathering = false;
                for c in &mut conns {
                    if let State::Waiting(head_only) = c.state {
                        let a = if status == 200 {
                            answer("200 OK", CONTENT_TYPE, Arc::clone(&body), head_only, "")
                        } else {
                            answer(
                                "500 Internal Server Error",
                                "text/plain; charset=utf-8",
                                Arc::clone(&body),
                                head_only,
                                "",
                            )
                        };
                        c.state = State::Writing { answer: a, done: 0 };
                        c.deadline = Instant::now() + WRITE_TIMEOUT;
                    }
                }
            }
        }
        // New connections.
        for (i, l) in listeners.iter().enumerate() {
            if !ready[first_listener + i] {
                continue;
            }
            loop {
                match l.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if conns.len() >= MAX_CONNECTIONS {
                            // Refused at once, never queued.
                            let a = text(
                                "503 Service Unavailable",
                                "too many connections\n",
                                false,
                                "",
                            );
                            let _ = (&stream).write(&[a.head, a.body.to_vec()].concat());
                            continue;
                        }
                        conns.push(Conn {
                            stream,
                            buf: Vec::new(),
                            state: State::Reading,
                            deadline: Instant::now() + REQUEST_TIMEOUT,
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EMFILE and the like: try again at the next wake-up.
                    Err(_) => break,
                }
            }
        }
        // Existing connections (those accepted above have no poll entry yet).
        let polled = ready.len() - first_conn;
        let mut close = vec![false; conns.len()];
        for (i, c) in conns.iter_mut().enumerate().take(polled) {
            let is_ready = ready[first_conn + i];
            if is_ready {
                match &mut c.state {
                    State::Reading => {
                        let mut chunk = [0u8; 2048];
                        match (&c.stream).read(&mut chunk) {
                            Ok(0) => close[i] = true,
                            Ok(n) => {
                                c.buf.extend_from_slice(&chunk[..n]);
                                if let Some(end) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                    let next = route(&c.buf[..end], &serve.path);
                                    match next {
                                        Route::Metrics(head_only) => {
                                            c.state = State::Waiting(head_only);
                                            pending += 1;
                                        }
                                        Route::Answer(a) => {
                                            c.state = State::Writing { answer: a, done: 0 };
                                            c.deadline = Instant::now() + WRITE_TIMEOUT;
                                        }
                                    }
                                } else if c.buf.len() > MAX_REQUEST {
                                    let a = text(
                                        "431 Request Header Fields Too Large",
                                        "request too large\n",
                                        false,
                                        "",
                                    );
                                    c.state = State::Writing { answer: a, done: 0 };
                                    c.deadline = Instant::now() + WRITE_TIMEOUT;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => close[i] = true,
                        }
                    }
                    State::Writing { answer, done } => {
                        let total = answer.head.len() + answer.body.len();
                        while *done < total {
                            let part = if *done < answer.head.len() {
                                &answer.head[*done..]
                            } else {
                                &answer.body[*done - answer.head.len()..]
                            };
                            match (&c.stream).write(part) {
                                Ok(n) => *done += n,
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    close[i] = true;
                                    break;
                                }
                            }
                        }
                        if *done == total {
                            let _ = c.stream.shutdown(std::net::Shutdown::Write);
                            close[i] = true;
                        }
                    }
                    State::Waiting(_) => {}
                }
            }
            if !matches!(c.state, State::Waiting(_)) && Instant::now() >= c.deadline {
                close[i] = true;
            }
        }
        let mut i = 0;
        conns.retain(|_| {
            let keep = !close.get(i).copied().unwrap_or(false);
            i += 1;
            keep
        });
        // Scrapes waiting and no gather running: start one for all of them.
        if pending > 0 && !gathering {
            let waiting = conns
                .iter()
                .filter(|c| matches!(c.state, State::Waiting(_)))
                .count();
            if waiting > 0 && go.send(waiting).is_ok() {
                gathering = true;
            }
            pending = 0;
        }
    }
}

enum Route {
    /// A scrape: wait for a gather (`HEAD` if true).
    Metrics(bool),
    Answer(Answer),
}

fn route(head: &[u8], metrics_path: &str) -> Route {
    let Some((method, path)) = request_line(head) else {
        return Route::Answer(text("400 Bad Request", "bad request\n", false, ""));
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Route::Answer(text(
            "405 Method Not Allowed",
            "only GET and HEAD\n",
            false,
            "Allow: GET, HEAD\r\n",
        ));
    }
    if path == metrics_path {
        Route::Metrics(head_only)
    } else if path == "/" {
        Route::Answer(landing(metrics_path, head_only))
    } else {
        Route::Answer(text("404 Not Found", "not found\n", head_only, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"HEAD / HTTP/1.0"), Some(("HEAD", "/")));
        assert_eq!(request_line(b"GET /metrics"), None);
        assert_eq!(request_line(b"GET /a b HTTP/1.1"), None);
        assert_eq!(request_line(b"\xff\xfe"), None);
    }

    #[test]
    fn routes() {
        let status = |r: Route| match r {
            Route::Metrics(h) => format!("metrics head={h}"),
            Route::Answer(a) => String::from_utf8_lossy(&a.head)
                .lines()
                .next()
                .unwrap()
                .to_string(),
        };
        for (request, want) in [
            (&b"GET /metrics HTTP/1.1"[..], "metrics head=false"),
            (b"HEAD /metrics HTTP/1.1", "metrics head=true"),
            (b"GET / HTTP/1.1", "HTTP/1.1 200 OK"),
            (b"GET /x HTTP/1.1", "HTTP/1.1 404 Not Found"),
            (b"POST /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed"),
            (b"nonsense", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(route(request, "/metrics")), want);
        }
    }
}
