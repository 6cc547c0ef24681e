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
//! the answer in flight. A client that takes neither its answer nor the
//! close within the deadline is reset (`SO_LINGER` 0): the kernel then
//! frees the unsent bytes at once instead of retrying them for minutes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::http::{self, Answer, Parsed, Route};

/// To send the whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// To take the whole answer and close.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// To wait for a gather (Prometheus's scrape timeouts are shorter).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(60);

enum State {
    Reading,
    /// Waiting for the running gather (`HEAD` if true).
    Waiting(bool),
    /// Writing the answer, `done` bytes so far.
    Writing {
        answer: Answer,
        done: usize,
    },
    /// Answer sent and sending side shut: reading until the client closes.
    Lingering,
}

/// What the loop must do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    /// The request is a scrape: the connection now waits for a gather.
    Scrape,
    Close,
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    state: State,
    deadline: Instant,
    /// When it was accepted: the oldest idle connection is evicted first.
    pub accepted: Instant,
}

impl Conn {
    pub fn new(stream: TcpStream, now: Instant) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            state: State::Reading,
            deadline: now + REQUEST_TIMEOUT,
            accepted: now,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// What to poll for.
    pub fn interest(&self) -> PollFlags {
        match self.state {
            State::Writing { .. } => PollFlags::OUT,
            _ => PollFlags::IN,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Still reading its request: the connection a new one may evict.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Reading)
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.state, State::Waiting(_))
    }

    /// Handles a poll event (or a first look right after `accept`).
    pub fn ready(&mut self, revents: PollFlags, metrics_path: &str, now: Instant) -> Next {
        match &mut self.state {
            State::Reading => self.read_request(metrics_path, now),
            State::Waiting(_) | State::Lingering => {
                // Whatever arrives is not ours to answer: drained, so the
                // close is not a reset; end of stream or an error closes.
                if self.drain() || revents.intersects(PollFlags::HUP | PollFlags::ERR) {
                    Next::Close
                } else {
                    Next::Keep
                }
            }
            State::Writing { .. } => self.write(now),
        }
    }

    fn read_request(&mut self, metrics_path: &str, now: Instant) -> Next {
        let mut chunk = [0u8; 4096];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    match http::parse(&self.buf, metrics_path) {
                        Parsed::Partial => {}
                        Parsed::Done(Route::Metrics(head_only)) => {
                            self.buf = Vec::new();
                            self.state = State::Waiting(head_only);
                            self.deadline = now + GATHER_TIMEOUT;
                            return Next::Scrape;
                        }
                        Parsed::Done(Route::Answer(a)) => {
                            self.buf = Vec::new();
                            return self.answer(a, now);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// Reads and drops what is readable; `true` at end of stream or error.
    fn drain(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// The scrape's gather is done: starts writing `a` if still waiting.
    pub fn gathered(&mut self, a: impl FnOnce(bool) -> Answer, now: Instant) -> Next {
        match self.state {
            State::Waiting(head_only) => self.answer(a(head_only), now),
            _ => Next::Keep,
        }
    }

    /// Starts writing `answer`, writing what the socket takes at once (also
    /// for a connection refused before its request is read).
    pub fn answer(&mut self, answer: Answer, now: Instant) -> Next {
        self.state = State::Writing { answer, done: 0 };
        self.deadline = now + WRITE_TIMEOUT;
        self.write(now)
    }

    fn write(&mut self, now: Instant) -> Next {
        let State::Writing { answer, done } = &mut self.state else {
            return Next::Keep;
        };
        while *done < answer.len() {
            match (&self.stream).write(answer.rest(*done)) {
                Ok(n) => *done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Keep,
                Err(_) => return Next::Close,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = State::Lingering;
        // The client reads the rest of the answer and closes; a short
        // answer's close comes at once.
        self.deadline = self.deadline.max(now + Duration::from_secs(2));
        if self.drain() {
            Next::Close
        } else {
            Next::Keep
        }
    }

    /// The deadline passed: a request that did not arrive is dropped, a
    /// gather that did not end answers 503, a client that does not take its
    /// answer is reset.
    pub fn expired(&mut self, now: Instant) -> Next {
        match self.state {
            State::Reading => Next::Close,
            State::Waiting(head_only) => self.answer(
                Answer::text(
                    "503 Service Unavailable",
                    "the gather did not end in time\n",
                    head_only,
                    "",
                ),
                now,
            ),
            State::Writing { .. } | State::Lingering => {
                self.reset();
                Next::Close
            }
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
