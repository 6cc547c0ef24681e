//! What the long-running modes listen to besides their work: SIGTERM and
//! SIGINT through a pipe, and what stdin means (ticks, end only, nothing).

use std::os::fd::OwnedFd;

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
