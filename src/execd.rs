//! The long-running loops for Telegraf's `inputs.execd`: a gather per stdin
//! line (`signal = "STDIN"`), on a timer (`--interval`, `signal = "none"`),
//! or both; clean exit on stdin EOF, SIGTERM and SIGINT.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use telegraf_netstat::log::Logger;

use crate::app::{Delivery, Gatherer, Outcome, EXIT_GATHER_FAILED, EXIT_OK};
use crate::config::Config;
use crate::throttle::{say, ErrorThrottle};

/// The next tick strictly after `now` on the grid `first + k * interval`:
/// the schedule never drifts, and ticks missed by an overrun are skipped.
pub fn next_tick(first: Instant, interval: Duration, now: Instant) -> Instant {
    let elapsed = now.saturating_duration_since(first).as_nanos();
    let k = elapsed / interval.as_nanos() + 1;
    first + interval * u32::try_from(k).unwrap_or(u32::MAX)
}

/// What woke the loop.
enum Wake {
    Gather,
    Exit,
}

pub fn run(config: Config) -> ExitCode {
    let log = Logger {
        verbose: config.verbose,
    };
    // Signals only write to a pipe; the loop reads it between gathers, so a
    // line is never cut short.
    let signals = (|| -> std::io::Result<_> {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let w2 = w.try_clone()?;
        for (sig, fd) in [
            (signal_hook::consts::SIGTERM, w),
            (signal_hook::consts::SIGINT, w2),
        ] {
            signal_hook::low_level::pipe::register(sig, fd)?;
        }
        Ok(r)
    })();
    let signals = match signals {
        Ok(r) => r,
        Err(e) => {
            log.error(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_GATHER_FAILED);
        }
    };
    let read_stdin = config.execd;
    let interval = config.interval;
    let first = Instant::now();
    let mut due = interval.map(|_| first);
    let to_file = config.output.is_some();
    let mut gatherer = Gatherer::new(config);
    let mut throttle = ErrorThrottle::default();
    let mut line_buf = [0u8; 4096];

    loop {
        let wake = match due {
            Some(t) if Instant::now() >= t => Wake::Gather,
            _ => match wait(&signals, read_stdin, due, &mut line_buf) {
                Ok(w) => w,
                Err(e) => {
                    log.error(format_args!("cannot wait for stdin or the timer: {e}"));
                    return ExitCode::from(EXIT_GATHER_FAILED);
                }
            },
        };
        match wake {
            Wake::Exit => return ExitCode::from(EXIT_OK),
            Wake::Gather => {}
        }
        match gatherer.gather() {
            Outcome::Delivered { .. } => say(&log, throttle.succeeded("")),
            Outcome::NotDelivered(Delivery::Closed) => return ExitCode::from(EXIT_OK),
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

/// Sleeps until the timer is due, a stdin line arrives, stdin ends, or a
/// signal comes. Lines already queued are read together: one gather.
fn wait(
    signals: &std::os::fd::OwnedFd,
    read_stdin: bool,
    due: Option<Instant>,
    buf: &mut [u8],
) -> rustix::io::Result<Wake> {
    let stdin = rustix::stdio::stdin();
    loop {
        let timeout = due.map(|t| {
            let d = t.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: d.as_secs() as _,
                tv_nsec: d.subsec_nanos() as _,
            }
        });
        if timeout.is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0) {
            return Ok(Wake::Gather);
        }
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::from_borrowed_fd(stdin, PollFlags::IN),
        ];
        let n = if read_stdin { 2 } else { 1 };
        match poll(&mut fds[..n], timeout.as_ref()) {
            Ok(0) => return Ok(Wake::Gather),
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
        if !fds[0].revents().is_empty() {
            return Ok(Wake::Exit);
        }
        if read_stdin && !fds[1].revents().is_empty() {
            match rustix::io::read(stdin, &mut *buf) {
                Ok(0) => return Ok(Wake::Exit),
                Ok(k) if buf[..k].contains(&b'\n') => return Ok(Wake::Gather),
                // Part of a line: wait for its end.
                Ok(_) => {}
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                Err(e) => return Err(e),
            }
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
}
