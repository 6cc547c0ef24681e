//! `--state-file`: what a one-shot run leaves for the next one, so that a
//! run of `inputs.exec` can do what a loop does from its second gather on.
//!
//! Today that is each namespace's kept `--tcp-info` destinations (its top
//! `--destinations N` and up to N just below them). Without them a one-shot run learns its top
//! destinations only at the end of its main pass, when the sockets have
//! gone by, and asks the kernel for their `tcp_info` with a second, filtered
//! walk of the TCP table (a quarter to a third of the main pass at 200 000
//! sockets); told the last run's, its main pass keeps the sockets to those
//! and, when they are still the top ones, asks for each by itself
//! (`Collector::recall_tcp_info_destinations`).
//! A loop does the same from its second gather on, in memory.
//!
//! The file is the program's own: written as `--output` is (a new file
//! with a random hidden name in the same directory, then `rename`, never
//! following or reusing what is there), mode 0600, and read back only if
//! it is a regular file owned by this user and writable by nobody else, at
//! most [`MAX_BYTES`] long, looked at before it is opened
//! (`OutputFile::read_own`), and every line one this module writes. Whatever
//! else is there (another program's file, a symbolic link, a FIFO, a file
//! another user planted) is said (`W!`), ignored and left as it is: only a
//! file read back whole, or none, is replaced. A directory that cannot take
//! the file is said too, and the run goes on without it: the file changes
//! the cost, never the output. Nothing in it can change what is counted: a
//! namespace's lookups are taken only when its main pass kept every socket
//! of this gather's top destinations, else the filtered walk runs as
//! without the file; its bytes are bounded, and each namespace takes at
//! most 2N destinations from it.
//!
//! The format, one destination per line after a header, in namespace order:
//!
//! ```text
//! telegraf-netstat state 1
//! tcp-info-destination <netns dev> <netns inode> <address: 32 hex digits, IPv6 form> <port>
//! ```

use std::fmt::Write as _;
use std::path::Path;

use telegraf_netstat::measure::tcpinfo::count::Destination;
use telegraf_netstat::netns::NsId;

use crate::log::Logger;
use crate::sink::{OutputError, OutputFile, ReadBackError};

/// The first line of the file.
const HEADER: &str = "telegraf-netstat state 1";
/// The first word of a destination's line.
const DESTINATION: &str = "tcp-info-destination";
/// The most bytes read back or written: about 45 000 lines (2 250
/// namespaces with `--destinations 10`, each keeping 20).
pub const MAX_BYTES: usize = 4 << 20;

/// The `--state-file`, its directory opened at startup.
#[derive(Debug)]
pub struct StateFile {
    file: OutputFile,
    /// What is at the path is this program's file, or nothing: it may be
    /// replaced (known once [`Self::recall`] has looked).
    ours: bool,
}

impl StateFile {
    /// Opens `path`'s directory and checks that it takes new files; what
    /// is at `path` is looked at only when read.
    pub fn open(path: &Path) -> Result<StateFile, OutputError> {
        let file = OutputFile::in_directory(path, 0o600)?;
        Ok(StateFile { file, ours: false })
    }

    /// Whether `output` is this same file.
    pub fn is(&self, output: &OutputFile) -> bool {
        self.file.same_target(output)
    }

    /// The destinations the last run kept, by namespace; none when there
    /// is no file, and none with a `W!` line when what is there is not
    /// this program's file (then it is left as it is).
    pub fn recall(&mut self, log: &Logger) -> Vec<(NsId, Destination)> {
        let path = self.file.path().display();
        let bytes = match self.file.read_own(MAX_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => {
                log.debug(format_args!(
                    "--state-file {path}: none yet; --tcp-info walks for its destinations"
                ));
                self.ours = true;
                return Vec::new();
            }
            Err(ReadBackError::Io(e)) => {
                self.left(log, &format_args!("cannot read it ({e})"));
                return Vec::new();
            }
            Err(e) => {
                self.left(log, &format_args!("not this program's file ({e})"));
                return Vec::new();
            }
        };
        match parse(&bytes) {
            Ok(v) => {
                self.ours = true;
                v
            }
            Err(line) => {
                self.left(
                    log,
                    &format_args!("not this program's file (its line {line} is not one it writes)"),
                );
                Vec::new()
            }
        }
    }

    /// Says that what is at the path is not used, nor replaced.
    fn left(&self, log: &Logger, why: &dyn std::fmt::Display) {
        log.warn(format_args!(
            "--state-file {}: {why}: left as it is, and this run walks for --tcp-info's \
             destinations; remove it, or name a file of its own",
            self.file.path().display()
        ));
    }

    /// Replaces the file with `kept` (sorted and deduplicated here) if
    /// [`Self::recall`] found it to be this program's, or none; a `W!` line
    /// when it cannot be written, or when namespaces past [`MAX_BYTES`]
    /// were left out.
    pub fn keep(&self, log: &Logger, mut kept: Vec<(NsId, Destination)>) {
        if !self.ours {
            return;
        }
        kept.sort_unstable();
        kept.dedup();
        let (text, left_out) = format(&kept);
        let path = self.file.path().display();
        if left_out > 0 {
            log.warn(format_args!(
                "--state-file {path}: {left_out} destinations past {MAX_BYTES} bytes left out; \
                 their namespaces walk for them at the next run"
            ));
        }
        if let Err(e) = self.file.replace(text.as_bytes()) {
            log.warn(format_args!(
                "--state-file {path}: cannot replace it: {e}; the next run walks for --tcp-info's destinations"
            ));
        }
    }
}

/// The file's text for `kept`, whole namespaces only up to
/// [`MAX_BYTES`], and how many destinations were left out.
fn format(kept: &[(NsId, Destination)]) -> (String, usize) {
    let mut text = format!("{HEADER}\n");
    let mut line = String::new();
    let (mut namespace_start, mut written) = (text.len(), 0);
    for (i, (id, (addr, port))) in kept.iter().enumerate() {
        if i > 0 && kept[i - 1].0 != *id {
            (namespace_start, written) = (text.len(), i);
        }
        line.clear();
        let _ = write!(line, "{DESTINATION} {} {} ", id.dev, id.ino);
        for b in addr {
            let _ = write!(line, "{b:02x}");
        }
        let _ = writeln!(line, " {port}");
        if text.len() + line.len() > MAX_BYTES {
            // This namespace's lines so far go too: a namespace is told all
            // of its destinations or none.
            text.truncate(namespace_start);
            return (text, kept.len() - written);
        }
        text.push_str(&line);
    }
    (text, 0)
}

/// The destinations in `bytes`, or the number of the first line that is
/// not one [`format`] writes.
fn parse(bytes: &[u8]) -> Result<Vec<(NsId, Destination)>, usize> {
    let text = std::str::from_utf8(bytes).map_err(|_| 1usize)?;
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(HEADER) {
        return Err(1);
    }
    lines
        .enumerate()
        .map(|(i, l)| parse_line(l).ok_or(i + 2))
        .collect()
}

fn parse_line(line: &str) -> Option<(NsId, Destination)> {
    let mut words = line.split(' ');
    let mut next = || words.next();
    if next()? != DESTINATION {
        return None;
    }
    let (dev, ino) = (number(next()?)?, number(next()?)?);
    let hex = next()?.as_bytes();
    let port = number(next()?)?;
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if hex.len() != 32 || !hex.iter().all(lower_hex) || next().is_some() {
        return None;
    }
    let mut addr = [0u8; 16];
    for (b, pair) in addr.iter_mut().zip(hex.chunks(2)) {
        *b = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some((NsId { dev, ino }, (addr, port)))
}

/// A decimal number as [`format`] writes it: digits only, no sign.
fn number<T: std::str::FromStr>(word: &str) -> Option<T> {
    match !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
        true => word.parse().ok(),
        false => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> NsId {
        NsId { dev: 4, ino }
    }

    fn v4(last: u8, port: u16) -> Destination {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&[10, 0, 0, last]);
        (a, port)
    }

    #[test]
    fn what_is_written_is_read_back() {
        let kept = vec![
            (id(7), v4(1, 5432)),
            (id(7), v4(2, 443)),
            (id(9), ([0xfe; 16], 80)),
        ];
        let (text, left_out) = format(&kept);
        assert_eq!(left_out, 0);
        assert_eq!(
            text.lines().nth(1),
            Some("tcp-info-destination 4 7 00000000000000000000ffff0a000001 5432")
        );
        assert_eq!(parse(text.as_bytes()), Ok(kept));
        assert_eq!(parse(b"telegraf-netstat state 1\n"), Ok(vec![]));
    }

    #[test]
    fn anything_else_is_refused_by_its_line() {
        let good = "tcp-info-destination 4 7 00000000000000000000ffff0a000001 5432";
        let with = |line: &str| format!("{HEADER}\n{good}\n{line}\n");
        assert_eq!(parse(b""), Err(1));
        assert_eq!(parse(b"telegraf-netstat state 2\n"), Err(1));
        assert_eq!(parse(b"\xff\n"), Err(1));
        for bad in [
            "",
            "tcp-info-destination 4 7 00000000000000000000ffff0a000001",
            "tcp-info-destination 4 7 00000000000000000000ffff0a000001 5432 1",
            "tcp-info-destination 4 7 00000000000000000000ffff0a00001 5432",
            "tcp-info-destination 4 7 00000000000000000000ffff0a0000zz 5432",
            "tcp-info-destination 4 7 00000000000000000000ffff0a000001 65536",
            "tcp-info-destination -4 7 00000000000000000000ffff0a000001 5432",
            "tcp-info-destination  4 7 00000000000000000000ffff0a000001 5432",
            "tcp-info-destination +4 7 00000000000000000000ffff0a000001 5432",
            "tcp-info-destination 4 7 00000000000000000000ffff0a000001 +5432",
            "tcp-info-destination 4 7 00000000000000000000FFFF0a000001 5432",
            "other 4 7 00000000000000000000ffff0a000001 5432",
        ] {
            assert_eq!(parse(with(bad).as_bytes()), Err(3), "{bad:?}");
        }
    }

    #[test]
    fn past_the_cap_whole_namespaces_are_left_out() {
        // 70-odd bytes a line: far more than MAX_BYTES in all.
        let per = 1000;
        let kept: Vec<_> = (0..100u64)
            .flat_map(|ns| (0..per).map(move |p| (id(ns), v4(1, p as u16))))
            .collect();
        let (text, left_out) = format(&kept);
        assert!(text.len() <= MAX_BYTES);
        let back = parse(text.as_bytes()).unwrap();
        assert_eq!(back.len() + left_out, kept.len());
        assert_eq!(back.len() % per, 0, "whole namespaces only");
        assert!(!back.is_empty());
        assert_eq!(back[..], kept[..back.len()]);
    }
}
