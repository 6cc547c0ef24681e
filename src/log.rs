//! Diagnostics on stderr, one line per message, written with one `write` so
//! lines from a long-running process never interleave. Three formats:
//!
//! - `telegraf` (the default): prefixed `E! `, `W! `, `I! ` or `D! `, the form
//!   Telegraf's exec and execd inputs read and log at that level (Telegraf
//!   stamps them itself);
//! - `logfmt` and `json`: timestamped, the shape of the Prometheus exporters'
//!   `--log.format` (Go's log/slog through prometheus/common's promslog):
//!   `time=2026-01-02T03:04:05.678Z level=INFO msg="..."` and
//!   `{"time":"...","level":"INFO","msg":"..."}`, UTC to the millisecond.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How much is logged: a message is written when its level is at most the
/// logger's (`Error` < `Warn` < `Info` < `Debug`).
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

    /// slog's level names.
    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// The shape of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Telegraf,
    Logfmt,
    Json,
}

/// Writes lines at `level` and below, in `format`.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    pub level: Level,
    pub format: LogFormat,
}

impl Logger {
    pub fn log(&self, level: Level, msg: fmt::Arguments<'_>) {
        if level > self.level {
            return;
        }
        let line = self.line(level, msg, SystemTime::now());
        // Nothing sensible is left to do if stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// The line for `msg` logged at `now`, newline included.
    pub fn line(&self, level: Level, msg: fmt::Arguments<'_>, now: SystemTime) -> String {
        let mut line = String::new();
        match self.format {
            LogFormat::Telegraf => {
                let _ = writeln!(line, "{}{}", level.prefix(), msg);
                return line;
            }
            LogFormat::Logfmt => line.push_str("time="),
            LogFormat::Json => line.push_str("{\"time\":\""),
        }
        rfc3339_millis(&mut line, now);
        let text = msg.to_string();
        if self.format == LogFormat::Logfmt {
            let _ = write!(line, " level={} msg=", level.name());
            quoted(&mut line, &text, false);
        } else {
            let _ = write!(line, "\",\"level\":\"{}\",\"msg\":", level.name());
            quoted(&mut line, &text, true);
            line.push('}');
        }
        line.push('\n');
        line
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

/// `s` in double quotes, `"` and `\` escaped, and every control character
/// (a newline in a path, a terminal escape) as `\n`, `\t` or `\u00XX` (JSON)
/// / `\x..` (logfmt): one line, whatever the message holds.
fn quoted(out: &mut String, s: &str, json: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && json => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `2026-01-02T03:04:05.678Z`: UTC, milliseconds. Before the epoch
/// (a clock set wrong), the epoch. (The man page's date is its first ten.)
pub fn rfc3339_millis(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's
    // days_from_civil, inverted), in u64: no date this clock gives overflows.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn dates_are_utc_to_the_millisecond() {
        let mut s = String::new();
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            // date -u -d @951782400: the leap day of a century leap year.
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_798_761_599, "2026-12-31T23:59:59.000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000Z"),
        ] {
            s.clear();
            rfc3339_millis(&mut s, at(secs, 0));
            assert_eq!(s, want);
        }
        s.clear();
        rfc3339_millis(&mut s, at(1_767_225_600, 7));
        assert_eq!(s, "2026-01-01T00:00:00.007Z");
    }

    #[test]
    fn each_format_writes_one_line() {
        let t = at(1_767_225_600, 250);
        let msg = "cannot open \"/tmp/a\nb\x1b[31m\\\"";
        let of = |format| {
            Logger {
                level: Level::Debug,
                format,
            }
            .line(Level::Warn, format_args!("{msg}"), t)
        };
        assert_eq!(of(LogFormat::Telegraf), format!("W! {msg}\n"));
        assert_eq!(
            of(LogFormat::Logfmt),
            "time=2026-01-01T00:00:00.250Z level=WARN msg=\"cannot open \\\"/tmp/a\\nb\\x1b[31m\\\\\\\"\"\n"
        );
        assert_eq!(
            of(LogFormat::Json),
            "{\"time\":\"2026-01-01T00:00:00.250Z\",\"level\":\"WARN\",\"msg\":\"cannot open \\\"/tmp/a\\nb\\u001b[31m\\\\\\\"\"}\n"
        );
    }
}
