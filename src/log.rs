//! Diagnostics on stderr in the form Telegraf's exec and execd inputs parse:
//! one line per message, prefixed `E! `, `W! `, `I! ` or `D! `.

use std::fmt;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Error => "E! ",
            Level::Warn => "W! ",
            Level::Info => "I! ",
            Level::Debug => "D! ",
        }
    }
}

/// Writes a line to stderr with one `write` so lines from a long-running
/// process never interleave. Debug lines only when `verbose`.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    pub verbose: bool,
}

impl Logger {
    pub fn log(&self, level: Level, msg: fmt::Arguments<'_>) {
        if level == Level::Debug && !self.verbose {
            return;
        }
        let line = format!("{}{}\n", level.prefix(), msg);
        // Nothing sensible is left to do if stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    pub fn error(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Error, msg)
    }

    pub fn warn(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Warn, msg)
    }

    pub fn info(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Info, msg)
    }

    pub fn debug(&self, msg: fmt::Arguments<'_>) {
        self.log(Level::Debug, msg)
    }
}
