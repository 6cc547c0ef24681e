//! The long-running loops for Telegraf's `inputs.execd`: a gather per stdin
//! line (`signal = "STDIN"`), on a timer (`--interval`, `signal = "none"`),
//! or both; clean exit on stdin EOF, SIGTERM and SIGINT.
//!
//! The loop hears those within milliseconds in every state: idle in
//! `poll(2)`, overdue (the signal pipe and stdin are looked at before every
//! gather), mid-gather (`Interrupt::stop_requested`, asked between namespaces
//! and every few hundred sockets, polls them at most every
//! `CHECK_EVERY`), and blocked on a stdout reader that stopped reading
//! (the write waits in the same `poll`).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::sink::{Delivery, Sink};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::cli::Config;
use crate::deliver::{Outcome, Printer};
use crate::exit::{EXIT_GATHER_FAILED, EXIT_OK};
use crate::gather::Gatherer;
use crate::signals::{signal_pipe, Interrupt, StdinRead, StdinRole, STDIN_PAUSE};
use crate::throttle::{say, ErrorThrottle};

/// How often a running gather looks at the signal pipe and stdin.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// The next tick strictly after `now` on the grid `first + k * interval`:
/// the schedule never drifts, and ticks missed by an overrun are skipped.
/// Wide arithmetic: no tick count or duration the config allows overflows.
pub fn next_tick(first: Instant, interval: Duration, now: Instant) -> Instant {
    let iv = interval.as_nanos().max(1);
    let elapsed = now.saturating_duration_since(first).as_nanos();
    let offset = (elapsed / iv + 1) * iv;
    let offset = Duration::new(
        u64::try_from(offset / 1_000_000_000).unwrap_or(u64::MAX),
        (offset % 1_000_000_000) as u32,
    );
    first.checked_add(offset).unwrap_or_else(|| now + interval)
}

/// The loop's ears: the signal pipe and stdin.
struct Control {
    signals: OwnedFd,
    stdin: StdinRole,
    /// A stdin line arrived that no gather has answered yet.
    tick: bool,
    /// SIGTERM or SIGINT was seen, or stdin EOF without --execd.
    exit: bool,
    /// stdin EOF with --execd: lines read before it are answered, then the
    /// loop ends.
    eof: bool,
    last_check: Instant,
    buf: Box<[u8]>,
    /// Stdin is not looked at until then (it flooded the last look).
    stdin_paused: Option<Instant>,
}

impl Control {
    /// Polls the signal pipe, stdin (per its role) and `extra`, waiting at
    /// most `timeout` (`None`: forever). Records ticks and the exit request;
    /// returns whether `extra` is ready.
    fn poll(
        &mut self,
        extra: Option<(BorrowedFd<'_>, PollFlags)>,
        timeout: Option<Duration>,
    ) -> rustix::io::Result<bool> {
        let stdin = rustix::stdio::stdin();
        let mut fds = [
            PollFd::new(&self.signals, PollFlags::IN),
            PollFd::from_borrowed_fd(stdin, PollFlags::IN),
            PollFd::from_borrowed_fd(stdin, PollFlags::empty()),
        ];
        let mut n = 1;
        let now = Instant::now();
        if self.stdin_paused.is_some_and(|t| now >= t) {
            self.stdin_paused = None;
        }
        let mut timeout = timeout;
        match self.stdin_paused {
            Some(t) => {
                let left = t.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |d| d.min(left)));
            }
            None if self.stdin != StdinRole::Ignored => n = 2,
            None => {}
        }
        let polled_stdin = n == 2;
        let extra_at = n;
        if let Some((fd, flags)) = extra {
            fds[n] = PollFd::from_borrowed_fd(fd, flags);
            n += 1;
        }
        let timeout = timeout.map(|d| Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        match poll(&mut fds[..n], timeout.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.last_check = Instant::now();
        if !fds[0].revents().is_empty() {
            self.exit = true;
        }
        let stdin_ready = polled_stdin && !fds[1].revents().is_empty();
        let extra_ready = extra.is_some() && !fds[extra_at].revents().is_empty();
        if stdin_ready {
            self.drain_stdin()?;
        }
        Ok(extra_ready)
    }

    /// Reads what stdin holds now, a bounded amount (`StdinRead`): any
    /// number of queued lines is one tick (one gather), as Telegraf means
    /// them; EOF is the exit request; a flood pauses the looking.
    fn drain_stdin(&mut self) -> rustix::io::Result<()> {
        let r = StdinRead::bounded(&mut self.buf)?;
        if self.stdin == StdinRole::Ticks && r.newline {
            self.tick = true;
        }
        if r.eof {
            // Not looked at again. With --execd every line read is answered,
            // the last one too (`echo | telegraf-netstat --execd`, or one
            // that came just before Telegraf closed stdin): the gather for it
            // runs to its end, then the loop ends. Otherwise EOF ends the
            // loop at once.
            if self.stdin == StdinRole::Ticks {
                self.eof = true;
            } else {
                self.exit = true;
            }
            self.stdin = StdinRole::Ignored;
        }
        if r.more {
            self.stdin_paused = Some(Instant::now() + STDIN_PAUSE);
        }
        Ok(())
    }

    /// Sleeps until a gather is due (the timer, or a stdin line) or the loop
    /// must end. Looks at signals and stdin first, even when overdue.
    fn wait(&mut self, due: Option<Instant>) -> rustix::io::Result<Wake> {
        self.poll(None, Some(Duration::ZERO))?;
        loop {
            if self.exit {
                return Ok(Wake::Exit);
            }
            if self.tick {
                self.tick = false;
                return Ok(Wake::Gather);
            }
            if self.eof {
                return Ok(Wake::Exit);
            }
            let timeout = due.map(|t| t.saturating_duration_since(Instant::now()));
            if timeout == Some(Duration::ZERO) {
                return Ok(Wake::Gather);
            }
            self.poll(None, timeout)?;
        }
    }
}

impl Interrupt for Control {
    fn stop_requested(&mut self) -> bool {
        if !self.exit && self.last_check.elapsed() >= CHECK_EVERY {
            // An error here is met again, and reported, by the next wait.
            let _ = self.poll(None, Some(Duration::ZERO));
        }
        self.exit
    }

    fn wait_writable(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool> {
        loop {
            let ready = self.poll(Some((fd, PollFlags::OUT)), None)?;
            if self.exit {
                return Ok(false);
            }
            if ready {
                return Ok(true);
            }
        }
    }
}

/// What woke the loop.
enum Wake {
    Gather,
    Exit,
}

pub fn run(config: Config, sink: Sink, execd: bool, interval: Option<Duration>) -> ExitCode {
    let log = config.log;
    let signals = match signal_pipe() {
        Ok(r) => r,
        Err(e) => {
            log.error(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
    let mut control = Control {
        signals,
        stdin: StdinRole::of(execd),
        tick: false,
        exit: false,
        eof: false,
        last_check: Instant::now(),
        buf: vec![0u8; 4096].into_boxed_slice(),
        stdin_paused: None,
    };
    let first = Instant::now();
    let mut due = interval.map(|_| first);
    let mut gatherer: Gatherer = Gatherer::new(&config);
    let mut printer = Printer::new(config.format, sink);
    let to_file = printer.to_file();
    let mut throttle = ErrorThrottle::default();

    loop {
        match control.wait(due) {
            Ok(Wake::Gather) => {}
            Ok(Wake::Exit) => return ExitCode::from(EXIT_OK),
            Err(e) => {
                log.error(format_args!(
                    "cannot wait for stdin or the timer: {}",
                    std::io::Error::from(e)
                ));
                return ExitCode::from(EXIT_GATHER_FAILED);
            }
        }
        match printer.gather(&mut gatherer, &mut control) {
            Outcome::Delivered { .. } => say(&log, throttle.succeeded("")),
            Outcome::Stopped | Outcome::NotDelivered(Delivery::Closed | Delivery::Stopped) => {
                return ExitCode::from(EXIT_OK)
            }
            // A file that cannot be written now may be writable at the next
            // interval: logged like a failed gather.
            Outcome::NotDelivered(Delivery::Failed(e)) if to_file => say(
                &log,
                throttle.failed("", format!("cannot write the output: {e}"), Instant::now()),
            ),
            Outcome::NotDelivered(Delivery::Failed(e)) => {
                log.error(format_args!("cannot write to stdout: {e}"));
                return ExitCode::from(EXIT_GATHER_FAILED);
            }
            // Said by the gatherer, per namespace.
            Outcome::GatherFailed => {}
        }
        if let (Some(iv), Some(_)) = (interval, due) {
            due = Some(next_tick(first, iv, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_on_the_grid_and_skip_missed_ones() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(100);
        assert_eq!(next_tick(t0, iv, t0), t0 + iv);
        assert_eq!(next_tick(t0, iv, t0 + Duration::from_millis(30)), t0 + iv);
        // A gather that overran to 350 ms: the next tick is 400 ms, not 200.
        assert_eq!(
            next_tick(t0, iv, t0 + Duration::from_millis(350)),
            t0 + 4 * iv
        );
        // Exactly on a tick: the one after it.
        assert_eq!(next_tick(t0, iv, t0 + 2 * iv), t0 + 3 * iv);
    }

    #[test]
    fn ticks_past_2_to_the_32_do_not_saturate() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(1);
        // 2^32 + 5 ms after the start: 49.7 days of 1 ms ticks.
        let later = t0 + Duration::from_millis((1u64 << 32) + 5);
        assert_eq!(
            next_tick(t0, iv, later),
            t0 + Duration::from_millis((1u64 << 32) + 6)
        );
        let iv = Duration::from_secs(24 * 3600);
        let later = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        assert!(next_tick(t0, iv, later) > later);
    }
}
