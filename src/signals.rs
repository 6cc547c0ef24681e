//! What interrupts a gather or a loop: SIGTERM and SIGINT through a pipe,
//! what stdin means (ticks, end only, nothing), and the `Interrupt` a
//! gather asks between namespaces and while waiting for a slow reader.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use rustix::fs::FileType;
use rustix::pipe::PipeFlags;

/// What stdin means to the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StdinRole {
    /// `--execd`: each line asks for a gather; EOF ends the loop.
    Ticks,
    /// `--interval` with stdin on a pipe or socket (Telegraf's execd with
    /// `signal = "none"`): what arrives is ignored; EOF ends the loop.
    EndOnly,
    /// `--interval` with stdin on a terminal, `/dev/null` or a file (a
    /// shell, systemd): not looked at.
    Ignored,
}

impl StdinRole {
    pub(crate) fn of(execd: bool) -> StdinRole {
        if execd {
            return StdinRole::Ticks;
        }
        match rustix::fs::fstat(rustix::stdio::stdin()).map(|s| FileType::from_raw_mode(s.st_mode))
        {
            Ok(FileType::Fifo | FileType::Socket) => StdinRole::EndOnly,
            _ => StdinRole::Ignored,
        }
    }
}

/// The most stdin bytes read per look. A writer that floods stdin (a pipe
/// that never stops, `/dev/zero`) costs one such read per [`STDIN_PAUSE`],
/// and the loop hears signals in between.
pub(crate) const STDIN_BUDGET: usize = 64 * 1024;
/// How long stdin is not looked at after a look that used the budget.
pub(crate) const STDIN_PAUSE: Duration = Duration::from_millis(10);

/// What one look at stdin found.
pub(crate) struct StdinRead {
    /// Its end: the loop exits.
    pub eof: bool,
    /// A line ended (an `--execd` tick).
    pub newline: bool,
    /// The budget was used and more is waiting: pause looking.
    pub more: bool,
}

impl StdinRead {
    /// Reads what stdin holds now, at most [`STDIN_BUDGET`] bytes in
    /// `buf`-sized reads. Called when `poll` said stdin is readable, and
    /// reads again only if `poll` says so again: stdin may be a blocking
    /// descriptor, shared with others, that is not ours to make
    /// non-blocking.
    pub(crate) fn bounded(buf: &mut [u8]) -> rustix::io::Result<StdinRead> {
        let stdin = rustix::stdio::stdin();
        let mut r = StdinRead {
            eof: false,
            newline: false,
            more: false,
        };
        let mut read = 0;
        loop {
            match rustix::io::read(stdin, &mut *buf) {
                Ok(0) => {
                    r.eof = true;
                    return Ok(r);
                }
                Ok(k) => {
                    r.newline |= buf[..k].contains(&b'\n');
                    read += k;
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(r),
                Err(e) => return Err(e),
            }
            let mut fds = [PollFd::from_borrowed_fd(stdin, PollFlags::IN)];
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match poll(&mut fds, Some(&zero)) {
                Ok(0) => return Ok(r),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
            if read >= STDIN_BUDGET {
                r.more = true;
                return Ok(r);
            }
        }
    }
}

/// Signals only write to a pipe, read by `poll`: a line is never cut short
/// by a handler, and a blocked loop still hears them.
pub(crate) fn signal_pipe() -> std::io::Result<OwnedFd> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let w2 = w.try_clone()?;
    for (sig, fd) in [
        (signal_hook::consts::SIGTERM, w),
        (signal_hook::consts::SIGINT, w2),
    ] {
        signal_hook::low_level::pipe::register(sig, fd)?;
    }
    Ok(r)
}

/// What a gather consults besides the kernel: whether to stop now, and how
/// to wait for a stdout reader that is behind. The loops answer from their
/// signal pipe and stdin; a one-shot run never stops.
pub trait Interrupt {
    /// Whether to drop the gather and exit (SIGTERM, stdin EOF). Asked
    /// between namespaces and every few hundred sockets, so it must be cheap.
    fn stop_requested(&mut self) -> bool;
    /// Blocks until `fd` takes more bytes (`true`) or the program must exit
    /// (`false`).
    fn wait_writable(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool>;
}

/// A one-shot run, or a scrape's gather: nothing interrupts it.
pub struct Uninterrupted;

impl Interrupt for Uninterrupted {
    fn stop_requested(&mut self) -> bool {
        false
    }

    fn wait_writable(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool> {
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
        loop {
            match poll(&mut fds, None) {
                Ok(_) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
