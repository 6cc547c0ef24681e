//! The library's one error type: which step of a gather failed, on what, and
//! the OS error behind it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::wire::{Dump, WireError};

#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG)` failed.
    NetlinkOpen(io::Error),
    NetlinkSend {
        dump: Dump,
        source: io::Error,
    },
    NetlinkRecv {
        dump: Dump,
        source: io::Error,
    },
    /// The kernel answered the request with an error code.
    NetlinkRefused {
        dump: Dump,
        source: io::Error,
    },
    /// A reply did not fit the receive buffer.
    NetlinkTruncated {
        dump: Dump,
        len: usize,
        capacity: usize,
    },
    NetlinkMalformed {
        dump: Dump,
        detail: WireError,
    },
    ProcRead {
        path: PathBuf,
        source: io::Error,
    },
    ProcParse {
        path: PathBuf,
        line: u64,
        detail: Malformed,
    },
    /// A sysctl file (the ephemeral port range) did not read as the kernel
    /// writes it.
    SysctlParse {
        path: PathBuf,
        detail: Malformed,
    },
    /// The namespace file could not be opened (gone, or another user's
    /// `/proc/PID/ns/net`).
    NetnsOpen {
        path: PathBuf,
        source: io::Error,
    },
    /// `setns(2)` into the namespace failed (no CAP_SYS_ADMIN over it).
    NetnsEnter {
        path: PathBuf,
        source: io::Error,
    },
    /// The /proc source needs a process inside the namespace and found none.
    NetnsNoProcess {
        path: PathBuf,
    },
    /// The path is not a network namespace file (a FIFO, a regular file, a
    /// mount namespace, ...).
    NotNetns {
        path: PathBuf,
    },
    /// The caller asked to stop (SIGTERM, stdin EOF) while the gather ran.
    Stopped,
}

impl Error {
    /// The OS error behind this error, if there is one. (The message
    /// already says it, so it is not also the error's `source()`.)
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::NetlinkOpen(e)
            | Error::NetlinkSend { source: e, .. }
            | Error::NetlinkRecv { source: e, .. }
            | Error::NetlinkRefused { source: e, .. }
            | Error::ProcRead { source: e, .. }
            | Error::NetnsOpen { source: e, .. }
            | Error::NetnsEnter { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// The OS error number behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// True when the kernel or a sandbox refuses sock_diag as such (seccomp,
    /// a missing `tcp_diag`/`udp_diag` module, gVisor), as opposed to a
    /// failure of one attempt. These are the errors `--source auto` answers
    /// by reading /proc instead.
    pub fn is_refusal(&self) -> bool {
        use rustix::io::Errno;
        let refusals = [
            Errno::PERM,
            Errno::ACCESS,
            Errno::NOENT,
            Errno::OPNOTSUPP,
            Errno::PROTONOSUPPORT,
            Errno::AFNOSUPPORT,
            Errno::NOSYS,
        ];
        matches!(
            self,
            Error::NetlinkOpen(_) | Error::NetlinkSend { .. } | Error::NetlinkRefused { .. }
        ) && self
            .raw_os_error()
            .is_some_and(|n| refusals.iter().any(|e| e.raw_os_error() == n))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NetlinkOpen(e) => write!(f, "cannot open a netlink sock_diag socket: {e}"),
            Error::NetlinkSend { dump, source } => {
                write!(f, "cannot send the netlink {dump} dump request: {source}")
            }
            Error::NetlinkRecv { dump, source } => {
                write!(f, "cannot receive the netlink {dump} dump: {source}")
            }
            Error::NetlinkRefused { dump, source } => {
                write!(f, "the kernel refused the netlink {dump} dump: {source}")
            }
            Error::NetlinkTruncated {
                dump,
                len,
                capacity,
            } => write!(
                f,
                "netlink {dump} dump reply of {len} bytes does not fit the {capacity}-byte buffer"
            ),
            Error::NetlinkMalformed { dump, detail } => {
                write!(f, "malformed netlink {dump} dump reply: {detail}")
            }
            Error::ProcRead { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Error::ProcParse { path, line, detail } => {
                write!(f, "malformed line {line} of {}: {detail}", path.display())
            }
            Error::SysctlParse { path, detail } => {
                write!(f, "malformed {}: {detail}", path.display())
            }
            Error::NetnsOpen { path, source } => {
                write!(f, "cannot open network namespace {}: {source}", path.display())?;
                if denied(source) {
                    f.write_str("; opening another process's /proc/PID/ns/net needs ptrace access to it (CAP_SYS_PTRACE)")?;
                }
                Ok(())
            }
            Error::NetnsEnter { path, source } => {
                write!(f, "cannot enter network namespace {}: {source}", path.display())?;
                if denied(source) {
                    f.write_str("; joining another network namespace needs CAP_SYS_ADMIN over it")?;
                }
                Ok(())
            }
            Error::NotNetns { path } => {
                write!(f, "{} is not a network namespace", path.display())
            }
            Error::Stopped => f.write_str("the gather was stopped"),
            Error::NetnsNoProcess { path } => write!(
                f,
                "no process runs in network namespace {}, so the proc source has no /proc/PID/net to read; use the netlink source",
                path.display()
            ),
        }
    }
}

/// EPERM or EACCES: a missing capability.
fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(1) | Some(13))
}

/// The message carries the cause (the OS error is in it), so there is no
/// `source()` to print it twice; [`Error::io_error`] gives it.
impl std::error::Error for Error {}

/// What is wrong with a file the kernel writes (a /proc table, a sysctl,
/// the SNMP counters), each with the text it is about (quoted lossily in
/// the message).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The line has fewer columns than the one read.
    Columns {
        want: usize,
        line: String,
    },
    State(String),
    Address(String),
    Queues(String),
    /// A number column (`--health`'s retransmissions, probes, drops).
    Number(String),
    /// A `tr:tm->when` column (`--health`'s timer).
    Timer(String),
    /// A /proc/net/unix line that is no socket record.
    NotUnix(String),
    /// The first line is not the table's header.
    Header {
        want: String,
        found: String,
    },
    /// The file has no line at all.
    Empty {
        header: String,
    },
    /// A line longer than the read buffer.
    TooLong(usize),
    /// Bytes that are not UTF-8 (quoted lossily when given).
    NotText(Option<String>),
    /// `net.ipv4.ip_local_port_range`.
    PortRange(String),
    /// `net.ipv4.ip_local_reserved_ports`.
    ReservedPorts(String),
    /// `net.ipv4.tcp_ehash_entries`, as read (quoted).
    TableSize(String),
    /// /proc/net/snmp or netstat: a line of names and its line of values.
    Unpaired {
        names: String,
        values: String,
    },
    /// /proc/net/snmp or netstat: a line of names last.
    NoValues,
    /// /proc/net/snmp or netstat: this prefix's names and values differ in
    /// number.
    Unequal(String),
    /// /proc/net/snmp6: a line that is not a name and a value.
    Pair(String),
    CounterName(String),
    NotANumber {
        name: String,
        value: String,
    },
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Columns { want, line } => {
                write!(f, "expected at least {want} columns in {line:?}")
            }
            Malformed::State(s) => write!(f, "bad state {s:?}"),
            Malformed::Address(s) => write!(f, "bad address {s:?}"),
            Malformed::Queues(s) => write!(f, "bad queues {s:?}"),
            Malformed::Number(s) => write!(f, "bad number {s:?}"),
            Malformed::Timer(s) => write!(f, "bad timer {s:?}"),
            Malformed::NotUnix(s) => write!(f, "not a unix socket record: {s:?}"),
            Malformed::Header { want, found } => {
                write!(f, "expected the {want:?} header, found {found:?}")
            }
            Malformed::Empty { header } => write!(f, "empty file: expected the {header:?} header"),
            Malformed::TooLong(n) => write!(f, "line longer than {n} bytes"),
            Malformed::NotText(Some(s)) => write!(f, "not text: {s:?}"),
            Malformed::NotText(None) => f.write_str("not text"),
            Malformed::PortRange(s) => write!(f, "bad port range {s:?}"),
            Malformed::ReservedPorts(s) => write!(f, "bad reserved ports {s:?}"),
            Malformed::TableSize(s) => write!(f, "not a table size: {s}"),
            Malformed::Unpaired { names, values } => {
                write!(f, "lines that do not pair: {names:?}, {values:?}")
            }
            Malformed::NoValues => f.write_str("a line of names without values"),
            Malformed::Unequal(prefix) => write!(f, "{prefix}: names and values differ in number"),
            Malformed::Pair(line) => write!(f, "not a name and a value: {line:?}"),
            Malformed::CounterName(name) => write!(f, "not a counter name: {name:?}"),
            Malformed::NotANumber { name, value } => {
                write!(f, "counter {name} is not a number: {value:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_and_the_os_error() {
        let e = Error::NetlinkRefused {
            dump: Dump::Udp6,
            source: io::Error::from_raw_os_error(2),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("the kernel refused the netlink udp ipv6 dump: "),
            "{s}"
        );
        assert!(s.contains("os error 2"), "{s}");
        assert!(e.is_refusal());

        let e = Error::ProcRead {
            path: "/nope/net/tcp".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert!(e.to_string().starts_with("cannot read /nope/net/tcp: "));
        assert!(!e.is_refusal(), "a /proc failure is not a netlink refusal");

        let e = Error::NetlinkRecv {
            dump: Dump::Tcp,
            source: io::Error::from_raw_os_error(rustix::io::Errno::NOBUFS.raw_os_error()),
        };
        assert!(
            !e.is_refusal(),
            "a failed receive is retried, not answered by /proc"
        );
    }

    #[test]
    fn namespace_errors_name_the_missing_capability() {
        let e = Error::NetnsEnter {
            path: "/run/netns/blue".into(),
            source: io::Error::from_raw_os_error(1),
        };
        assert_eq!(
            e.to_string(),
            "cannot enter network namespace /run/netns/blue: Operation not permitted (os error 1); \
             joining another network namespace needs CAP_SYS_ADMIN over it"
        );
        let e = Error::NetnsOpen {
            path: "/proc/1/ns/net".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert!(
            e.to_string()
                .ends_with("needs ptrace access to it (CAP_SYS_PTRACE)"),
            "{e}"
        );
        let e = Error::NetnsOpen {
            path: "/run/netns/gone".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            e.to_string(),
            "cannot open network namespace /run/netns/gone: No such file or directory (os error 2)"
        );
        assert!(
            !e.is_refusal(),
            "no /proc fallback for a namespace we cannot enter"
        );
    }
}
