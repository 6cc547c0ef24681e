//! The /proc fallback: streams /proc/net/{tcp,tcp6,udp,udp6,unix} through
//! one fixed buffer, so memory does not grow with the number of sockets.
//!
//! Every table must start with its header line: an empty file (a 0-byte
//! `net/tcp` from a broken mount or a fake proc root) is malformed, not
//! "no sockets".
//!
//! /proc/net/unix prints each bound socket's path raw after the fixed
//! columns (`unix_seq_show()` in net/unix/af_unix.c: `"%pK: %08X %08X %08X
//! %04X %02X %5lu"`, then `' '` and the path byte by byte, NUL as `@`, then
//! `'\n'`), and any local user picks those bytes, newlines included. So the
//! path column is never parsed: a record is a line whose fixed columns
//! parse, and a line that does not parse is taken as the continuation of
//! the previous record's path as long as that path could still be that long
//! (at most `UNIX_PATH_PRINTED` bytes); beyond that it is malformed. Each
//! inode counts once, so a name that repeats an existing socket's record
//! adds nothing. A name can still hold a record of an inode that no socket
//! has, at most one (a fixed part is ~60 bytes) per socket that carries it:
//! no more than the user who binds it could add by opening one more socket.
//! The text alone cannot tell such a record from a real one; the netlink
//! source has no such text and is exact.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Malformed};
use crate::record::{HealthInfo, Kind, ListenInfo, Record, LISTEN, SYN_RECV};

/// Read size; /proc/net/tcp lines are 150 bytes (tcp6: 178), so one read
/// carries a few hundred of them.
pub const CHUNK_LEN: usize = 64 * 1024;

/// The first `N` whitespace-separated columns of a line, split once, and
/// how many there are (at most `N`).
fn columns<const N: usize>(line: &[u8]) -> ([&[u8]; N], usize) {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for field in line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .take(N)
    {
        out[n] = field;
        n += 1;
    }
    (out, n)
}

/// Bytes as text for a message.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Column `index` of a line split by `columns`.
fn column<'l, const N: usize>(
    cols: &([&'l [u8]; N], usize),
    index: usize,
    line: &[u8],
) -> Result<&'l [u8], Malformed> {
    if index < cols.1 {
        Ok(cols.0[index])
    } else {
        Err(Malformed::Columns {
            want: index + 1,
            line: lossy(line),
        })
    }
}

/// The state column: two hex digits.
fn field_state(field: &[u8]) -> Result<u8, Malformed> {
    let s = std::str::from_utf8(field).ok();
    match s.and_then(|s| u8::from_str_radix(s, 16).ok()) {
        Some(v) if field.len() == 2 => Ok(v),
        _ => Err(Malformed::State(lossy(field))),
    }
}

/// The kernel state number from one line of /proc/net/{tcp,tcp6,udp,udp6}:
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue ...
///    0: 0100007F:1388 00000000:0000 0A 00000000:00000000 ...
/// ```
///
/// The fourth column, two hex digits.
pub fn line_state(line: &[u8]) -> Result<u8, Malformed> {
    field_state(column(&columns::<5>(line), 3, line)?)
}

/// The port of an `ADDRESS:PORT` column (hex address, four hex digits of
/// port in host order as the kernel prints `ntohs(port)` with `%04X`).
fn field_port(field: &[u8]) -> Result<u16, Malformed> {
    let port = field
        .iter()
        .rposition(|&b| b == b':')
        .map(|i| &field[i + 1..])
        .filter(|p| p.len() == 4)
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| u16::from_str_radix(p, 16).ok());
    port.ok_or_else(|| Malformed::Address(lossy(field)))
}

/// The address of an `ADDRESS:PORT` column: the kernel prints each 32-bit
/// word of the address as a host-order `%08X` (one word for IPv4, four for
/// IPv6), so each word's bytes are its native-endian bytes.
fn field_addr(field: &[u8]) -> Result<[u8; 16], Malformed> {
    let bad = || Malformed::Address(lossy(field));
    let hex = field.split(|&b| b == b':').next().ok_or_else(bad)?;
    if hex.len() != 8 && hex.len() != 32 {
        return Err(bad());
    }
    let mut addr = [0u8; 16];
    for (i, word) in hex.chunks(8).enumerate() {
        let w = std::str::from_utf8(word)
            .ok()
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .ok_or_else(bad)?;
        addr[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Ok(addr)
}

/// A `tx_queue:rx_queue` column as (rx, tx); for a listener the receive
/// queue is its accept queue length (`get_tcp4_sock()`).
fn field_queues(field: &[u8]) -> Result<(u32, u32), Malformed> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|f| f.split_once(':'))
        .and_then(|(tx, rx)| {
            Some((
                u32::from_str_radix(rx, 16).ok()?,
                u32::from_str_radix(tx, 16).ok()?,
            ))
        })
        .ok_or_else(|| Malformed::Queues(lossy(field)))
}

/// One line of /proc/net/{tcp,tcp6,udp,udp6} as a [`Record`]. Listeners
/// and handshakes also get their address and accept queue; /proc does not
/// show a listener's queue limit or drop counter.
pub fn inet_record(line: &[u8], kind: Kind, family: u8) -> Result<Record, Malformed> {
    inet_line::<5>(line, kind, family)
}

/// [`inet_record`] with what `--health` reads (`Record::health`): a TCP
/// line's timer, retransmissions and probes, a UDP line's drops.
pub fn inet_record_health(line: &[u8], kind: Kind, family: u8) -> Result<Record, Malformed> {
    inet_line::<13>(line, kind, family)
}

/// A line split into its first `N` columns: 5 for the fixed fields, 13
/// for `--health`'s as well.
fn inet_line<const N: usize>(line: &[u8], kind: Kind, family: u8) -> Result<Record, Malformed> {
    let cols = columns::<N>(line);
    let state = field_state(column(&cols, 3, line)?)?;
    let local = column(&cols, 1, line)?;
    let remote = column(&cols, 2, line)?;
    let (rqueue, wqueue) = field_queues(column(&cols, 4, line)?)?;
    let listen = if kind == Kind::Tcp && (state == LISTEN || state == SYN_RECV) {
        Some(ListenInfo {
            queue: if state == LISTEN { rqueue } else { 0 },
            backlog: None,
            drops: None,
        })
    } else {
        None
    };
    let health = if N > 5 {
        health_columns(&cols, kind, line)?
    } else {
        HealthInfo::default()
    };
    let local = (field_addr(local)?, field_port(local)?);
    let remote = (field_addr(remote)?, field_port(remote)?);
    Ok(Record::inet(kind, family, state, local, remote)
        .with_listen(listen)
        .with_queues(rqueue, wqueue)
        .with_health(health))
}

/// `--health`'s columns of a line split into 13:
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ... drops
///    1: 0100007F:9C40 0A09000A:1538 02 00000001:00000000 01:00000064 00000003     0        0 2175 ...
/// ```
///
/// TCP (`get_tcp4_sock()`, net/ipv4/tcp_ipv4.c; `get_tcp6_sock()` alike):
/// `tr` is the timer as netlink numbers it, `retrnsmt` (hex)
/// `icsk_retransmits` and `timeout` (decimal) `icsk_probes_out`, which
/// netlink reports instead of the retransmissions for timers 2 and 4
/// (`inet_sk_diag_fill()`); a request socket's line (`get_openreq4()`)
/// has timer 1 and its SYN-ACK timeouts in `retrnsmt`. UDP
/// (`udp4_format_sock()`, net/ipv4/udp.c): `drops`, the 13th column, in
/// decimal. Counts above 255 are taken as 255, netlink's `u8`.
fn health_columns<const N: usize>(
    cols: &([&[u8]; N], usize),
    kind: Kind,
    line: &[u8],
) -> Result<HealthInfo, Malformed> {
    let number = |index: usize, radix: u32| -> Result<u32, Malformed> {
        let f = column(cols, index, line)?;
        std::str::from_utf8(f)
            .ok()
            .and_then(|t| u32::from_str_radix(t, radix).ok())
            .ok_or_else(|| Malformed::Number(lossy(f)))
    };
    let byte = |v: u32| v.min(255) as u8;
    Ok(match kind {
        Kind::Tcp => {
            let tr = column(cols, 5, line)?;
            let timer = tr
                .get(..2)
                .filter(|_| tr.get(2) == Some(&b':'))
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(|| Malformed::Timer(lossy(tr)))?;
            let retrans = match timer {
                2 | 4 => number(8, 10)?,
                _ => number(6, 16)?,
            };
            HealthInfo {
                timer,
                retrans: byte(retrans),
                drops: 0,
            }
        }
        Kind::Udp => HealthInfo {
            drops: number(12, 10)?,
            ..HealthInfo::default()
        },
        Kind::Unix => HealthInfo::default(),
    })
}

/// The longest path /proc/net/unix prints: `sizeof(sun_path)` (108) bytes,
/// an abstract name's leading NUL printed as `@`.
const UNIX_PATH_PRINTED: usize = 108;

/// A /proc/net/unix record's fixed columns, checked to the byte:
///
/// ```text
/// Num       RefCount Protocol Flags    Type St Inode Path
/// 000000003359feef: 00000003 00000000 00000000 0001 03   598 /run/x.sock
/// ```
///
/// Returns the socket type (the fifth column: `SOCK_STREAM` 1, `SOCK_DGRAM`
/// 2, `SOCK_SEQPACKET` 5), how many path bytes follow on this line (`None`:
/// unbound, no path) and the inode.
pub fn unix_record(line: &[u8]) -> Option<(u8, Option<usize>, u64)> {
    let hex = |f: &[u8], width: usize| f.len() == width && f.iter().all(u8::is_ascii_hexdigit);
    let colon = line.iter().position(|&b| b == b':')?;
    // %pK: 16 hex digits on 64-bit kernels, 8 on 32-bit.
    if !(hex(&line[..colon], 16) || hex(&line[..colon], 8)) {
        return None;
    }
    let mut rest = &line[colon + 1..];
    let mut ty = 0u8;
    for (i, width) in [8usize, 8, 8, 4, 2].into_iter().enumerate() {
        let field = rest.strip_prefix(b" ")?.get(..width)?;
        if !hex(field, width) {
            return None;
        }
        if i == 3 {
            ty = u8::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()?;
        }
        rest = &rest[1 + width..];
    }
    // " %5lu": a space, then the inode right-aligned in at least 5 columns.
    let rest = rest.strip_prefix(b" ")?;
    let digits_at = rest.iter().position(|&b| b != b' ')?;
    let tail = &rest[digits_at..];
    let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits_at + digits < 5 {
        return None;
    }
    let inode: u64 = std::str::from_utf8(&tail[..digits]).ok()?.parse().ok()?;
    match &tail[digits..] {
        [] => Some((ty, None, inode)),
        [b' ', path @ ..] if path.len() <= UNIX_PATH_PRINTED => Some((ty, Some(path.len()), inode)),
        _ => None,
    }
}

/// The socket type from one line of /proc/net/unix (see `unix_record`).
pub fn unix_line_type(line: &[u8]) -> Result<u8, Malformed> {
    unix_record(line)
        .map(|(ty, _, _)| ty)
        .ok_or_else(|| Malformed::NotUnix(lossy(line)))
}

/// Which table a file holds: what its header starts with, and how a line
/// becomes a [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// /proc/net/{tcp,tcp6,udp,udp6}: TCP or UDP sockets of one family.
    Inet(Kind, u8),
    /// The same, with what `--health` reads ([`inet_record_health`]).
    InetHealth(Kind, u8),
    /// /proc/net/unix: unix sockets by type.
    Unix,
}

impl Table {
    fn header(self) -> &'static [u8] {
        match self {
            Table::Inet(..) | Table::InetHealth(..) => b"sl ",
            Table::Unix => b"Num ",
        }
    }
}

/// Feeds complete lines to `on_record`, checking the header on line 1.
struct Lines<'p> {
    path: &'p Path,
    table: Table,
    line: u64,
    /// /proc/net/unix: how many more bytes the last record's path may still
    /// hold on the lines after its own.
    path_left: usize,
    /// /proc/net/unix: the inodes seen so far; a record repeating one (a
    /// name imitating an existing socket's line) is not counted twice.
    seen: Option<&'p mut HashSet<u64>>,
}

impl<'p> Lines<'p> {
    fn new(path: &'p Path, table: Table) -> Self {
        Lines {
            path,
            table,
            line: 0,
            path_left: 0,
            seen: None,
        }
    }

    /// The record on one line, or `Ok(None)` for a unix path continuation.
    fn record(&mut self, line: &[u8]) -> Result<Option<Record>, Malformed> {
        match self.table {
            Table::Inet(kind, family) => inet_record(line, kind, family).map(Some),
            Table::InetHealth(kind, family) => inet_record_health(line, kind, family).map(Some),
            Table::Unix => match unix_record(line) {
                Some((ty, path, inode)) => {
                    self.path_left = path.map_or(0, |n| UNIX_PATH_PRINTED - n);
                    let repeated = self.seen.as_mut().is_some_and(|s| !s.insert(inode));
                    Ok((!repeated).then(|| Record::unix(ty)))
                }
                // The newline inside the path, then this line's bytes.
                None if self.path_left > line.len() => {
                    self.path_left -= line.len() + 1;
                    Ok(None)
                }
                None => unix_line_type(line).map(|ty| Some(Record::unix(ty))),
            },
        }
    }

    /// The end of the file: it must at least have had its header.
    fn finish(&self) -> Result<(), Error> {
        if self.line == 0 {
            return Err(Error::ProcParse {
                path: self.path.to_owned(),
                line: 1,
                detail: Malformed::Empty {
                    header: lossy(self.table.header().trim_ascii()),
                },
            });
        }
        Ok(())
    }

    fn feed(&mut self, text: &[u8], on_record: &mut dyn FnMut(&Record)) -> Result<(), Error> {
        for line in text.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                // An empty path line still uses up the newline.
                self.path_left = self.path_left.saturating_sub(line.len() + 1);
                continue;
            }
            self.line += 1;
            let parsed = if self.line == 1 {
                let header = line.trim_ascii_start();
                if header.starts_with(self.table.header()) {
                    continue;
                }
                Err(Malformed::Header {
                    want: lossy(self.table.header().trim_ascii()),
                    found: lossy(line),
                })
            } else {
                self.record(line)
            };
            let parsed = match parsed {
                Ok(None) => continue,
                Ok(Some(v)) => Ok(v),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(record) => on_record(&record),
                Err(detail) => {
                    return Err(Error::ProcParse {
                        path: self.path.to_owned(),
                        line: self.line,
                        detail,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Parses a whole file's text (tests and small inputs).
pub fn parse(
    path: &Path,
    table: Table,
    text: &[u8],
    on_record: &mut dyn FnMut(&Record),
) -> Result<(), Error> {
    let mut lines = Lines::new(path, table);
    lines.feed(text, on_record)?;
    lines.finish()
}

/// Streams /proc/net/unix like `scan`, counting each inode once: `seen`
/// is cleared first and kept by the caller, so its memory is reused.
pub fn scan_unix(
    path: &Path,
    buf: &mut [u8],
    seen: &mut HashSet<u64>,
    on_record: &mut dyn FnMut(&Record),
    stop: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    seen.clear();
    let mut lines = Lines::new(path, Table::Unix);
    lines.seen = Some(seen);
    stream(path, buf, lines, on_record, stop)
}

/// Streams the file at `path` through `buf` and calls `on_record` per
/// socket. `stop` is asked after every read; when it says so the scan ends
/// with `Error::Stopped`.
pub fn scan(
    path: &Path,
    table: Table,
    buf: &mut [u8],
    on_record: &mut dyn FnMut(&Record),
    stop: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    stream(path, buf, Lines::new(path, table), on_record, stop)
}

fn stream(
    path: &Path,
    buf: &mut [u8],
    mut lines: Lines<'_>,
    on_record: &mut dyn FnMut(&Record),
    stop: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    let read_err = |source: io::Error| Error::ProcRead {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut fill = 0;
    loop {
        let n = match file.read(&mut buf[fill..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if n == 0 {
            lines.feed(&buf[..fill], on_record)?;
            return lines.finish();
        }
        if stop() {
            return Err(Error::Stopped);
        }
        fill += n;
        match buf[..fill].iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                lines.feed(&buf[..last], on_record)?;
                buf.copy_within(last + 1..fill, 0);
                fill -= last + 1;
            }
            None if fill == buf.len() => {
                return Err(Error::ProcParse {
                    path: path.to_owned(),
                    line: lines.line + 1,
                    detail: Malformed::TooLong(buf.len()),
                })
            }
            None => {}
        }
    }
}

/// Where the tables live under a proc root (`/proc`, or `/proc/PID` for
/// the namespace of process PID).
#[derive(Debug, Clone)]
pub struct ProcPaths {
    pub tcp: PathBuf,
    pub tcp6: PathBuf,
    pub udp: PathBuf,
    pub udp6: PathBuf,
    pub unix: PathBuf,
}

impl ProcPaths {
    pub fn new(root: &Path) -> Self {
        let net = root.join("net");
        ProcPaths {
            tcp: net.join("tcp"),
            tcp6: net.join("tcp6"),
            udp: net.join("udp"),
            udp6: net.join("udp6"),
            unix: net.join("unix"),
        }
    }
}

/// Like `scan`, but a file that does not exist (IPv6 disabled) holds no
/// sockets.
pub fn scan_optional(
    path: &Path,
    table: Table,
    buf: &mut [u8],
    on_record: &mut dyn FnMut(&Record),
    stop: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    match scan(path, table, buf, on_record, stop) {
        Err(Error::ProcRead { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP4: Table = Table::Inet(Kind::Tcp, crate::wire::AF_INET);

    /// Captured from a Linux 6.18 namespace with a listener, one established
    /// pair and a TIME_WAIT socket (trailing columns shortened).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21751 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1388 01 00000000:00000000 00:00000000 00000000     0        0 21752 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1388 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 21753 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C42 0100007F:1388 06 00000000:00000000 03:000016D0 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21760 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1389 00000000000000000000000001000000:A000 03 00000000:00000000 02:00000064 00000000     0        0 0 0 0000000000000000
";

    fn states(text: &str) -> Vec<u8> {
        let mut v = Vec::new();
        parse(
            Path::new("/proc/net/tcp"),
            TCP4,
            text.as_bytes(),
            &mut |r| v.push(r.state),
        )
        .unwrap();
        v
    }

    #[test]
    fn inet_lines_give_records_with_ports() {
        let line = TCP.lines().nth(2).unwrap().as_bytes();
        assert_eq!(
            inet_record(line, Kind::Tcp, crate::wire::AF_INET),
            Ok(Record::inet(
                Kind::Tcp,
                crate::wire::AF_INET,
                1,
                ([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x9C40),
                ([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x1388),
            ))
        );
        let v6 = TCP6.lines().nth(2).unwrap().as_bytes();
        let r = inet_record(v6, Kind::Tcp, crate::wire::AF_INET6).unwrap();
        assert_eq!((r.state, r.local_port, r.remote_port), (3, 0x1389, 0xA000));
        let mut loopback6 = [0u8; 16];
        loopback6[15] = 1;
        assert_eq!(r.local_addr, loopback6, "::1, a request socket");
        let l = inet_record(TCP.lines().nth(1).unwrap().as_bytes(), Kind::Tcp, 2).unwrap();
        let info = l.listen.unwrap();
        assert_eq!(&l.local_addr[..4], &[127, 0, 0, 1]);
        assert_eq!((info.queue, info.backlog, info.drops), (0, None, None));
        assert!(inet_record(b"   0: 0100007F:13 00000000:0000 0A", Kind::Tcp, 2).is_err());
        assert!(inet_record(b"   0: 0100007F 00000000:0000 0A", Kind::Tcp, 2).is_err());
    }

    #[test]
    fn health_columns_give_the_timer_as_netlink_numbers_it() {
        use crate::wire::AF_INET;
        // In the formats of get_tcp4_sock(), get_openreq4() and
        // get_timewait4_sock(): a connect into a black hole (timer 1,
        // retrnsmt 3), a zero-window probe (timer 4, probes in `timeout`),
        // keepalive probing (timer 2, 2 probes), a request socket (its
        // SYN-ACK timeouts in retrnsmt), TIME_WAIT (as captured above). The
        // UDP line was captured on Linux 6.18.
        let tcp = [
            ("   1: 0100090A:D4E8 0700090A:1538 02 00000001:00000000 01:00000064 00000003     0        0 2175 1 0000000000000000 1000 0 0 10 -1", (1, 3)),
            ("   2: 0100007F:D4EA 0100007F:1B5A 01 0003F000:00000000 04:00000064 00000000     0        5 2176 1 0000000000000000 20 4 30 10 -1", (4, 5)),
            ("   3: 0100007F:D4EC 0100007F:1B5B 01 00000000:00000000 02:00000064 00000000     0        2 2177 1 0000000000000000 20 4 30 10 -1", (2, 2)),
            ("   4: 0100007F:1BBC 0100007F:D4EE 03 00000000:00000000 01:00000064 00000002     0        0 0 0 0000000000000000", (1, 2)),
            ("   5: 0100007F:9C42 0100007F:1388 06 00000000:00000000 03:000016D0 00000000     0        0 0 3 0000000000000000", (3, 0)),
        ];
        for (line, (timer, retrans)) in tcp {
            let r = inet_record_health(line.as_bytes(), Kind::Tcp, AF_INET).unwrap();
            assert_eq!(
                (r.health.timer, r.health.retrans),
                (timer, retrans),
                "{line}"
            );
            assert_eq!(
                inet_record(line.as_bytes(), Kind::Tcp, AF_INET)
                    .unwrap()
                    .health,
                HealthInfo::default()
            );
        }
        let udp = "14956: 0100007F:270F 00000000:0000 07 00000000:00000500 00:00000000 00000000     0        0 34062936 2 0000000052bd9769 999";
        let r = inet_record_health(udp.as_bytes(), Kind::Udp, AF_INET).unwrap();
        assert_eq!((r.health.drops, r.rqueue), (999, 0x500));
        // A line cut before the columns --health reads is malformed.
        let cut = &udp[..udp.len() - 4];
        assert!(inet_record_health(cut.as_bytes(), Kind::Udp, AF_INET).is_err());
        assert!(inet_record_health(
            b"   1: 0100090A:D4E8 0700090A:1538 02 00000001:00000000 1:00000064 00000003 0 0",
            Kind::Tcp,
            AF_INET
        )
        .is_err());
    }

    #[test]
    fn parses_captured_tables() {
        assert_eq!(states(TCP), [10, 1, 1, 6]);
        assert_eq!(states(TCP6), [10, 3]);
        assert!(states(TCP.lines().next().unwrap()).is_empty());
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        let bad = format!("{TCP}   4: 0100007F:1388 00000000:0000 ZZ 0\n");
        let err = parse(Path::new("/p/net/tcp"), TCP4, bad.as_bytes(), &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("malformed line 6 of /p/net/tcp: bad state \"ZZ\""),
            "{msg}"
        );
        let err = parse(
            Path::new("x"),
            TCP4,
            b"   0: 0100007F:1388 0A\n",
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("expected the \"sl\" header"),
            "{err}"
        );
        assert!(line_state(b"   0: a b").is_err());
        assert!(line_state(b"   0: a b 100").is_err());
    }

    #[test]
    fn streams_through_a_small_buffer() {
        let dir = std::env::temp_dir().join(format!("tn-procfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tcp");
        let mut text = String::from(TCP.lines().next().unwrap());
        text.push('\n');
        for i in 0..1000 {
            text.push_str(&format!(
                "{i:4}: 0100007F:1388 0100007F:9C40 {:02X} 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
                1 + i % 11
            ));
        }
        // No trailing newline on the last line: still counted.
        text.push_str("1000: 0100007F:1388 0100007F:9C40 0A 00000000:00000000");
        std::fs::write(&path, &text).unwrap();
        let mut buf = vec![0u8; 300];
        let mut n = [0u32; 16];
        scan(
            &path,
            TCP4,
            &mut buf,
            &mut |r| n[r.state as usize] += 1,
            &mut || false,
        )
        .unwrap();
        assert_eq!(n.iter().sum::<u32>(), 1001);
        assert_eq!(n[10], 91 + 1);
        // A line longer than the buffer is an error, not a silent skip.
        let mut tiny = vec![0u8; 40];
        assert!(matches!(
            scan(&path, TCP4, &mut tiny, &mut |_| {}, &mut || false),
            Err(Error::ProcParse { .. })
        ));
        // A missing IPv6 table counts as empty; a missing IPv4 one is an error.
        let missing = dir.join("tcp6");
        assert!(scan_optional(&missing, TCP4, &mut buf, &mut |_| panic!(), &mut || false).is_ok());
        assert!(matches!(
            scan(&missing, TCP4, &mut buf, &mut |_| {}, &mut || false),
            Err(Error::ProcRead { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Captured from a Linux 6.18 namespace: a listening stream socket with a
    /// path, a datagram socketpair, and an unnamed seqpacket socket.
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
00000000f1d6c2b4: 00000002 00000000 00010000 0001 01 31004 /tmp/x.sock
00000000a5b2f8c1: 00000002 00000000 00000000 0002 03 31005
000000005e3d7a90: 00000002 00000000 00000000 0002 03 31006
0000000012ab34cd: 00000002 00000000 00000000 0005 01 31007
";

    #[test]
    fn parses_the_unix_table_by_socket_type() {
        let mut types = Vec::new();
        parse(
            Path::new("/proc/net/unix"),
            Table::Unix,
            UNIX.as_bytes(),
            &mut |r| types.push(r.state),
        )
        .unwrap();
        assert_eq!(types, [1, 2, 2, 5]);
        // The inet header is not a unix header, and the reverse.
        assert!(parse(Path::new("u"), Table::Unix, TCP.as_bytes(), &mut |_| {}).is_err());
        assert!(parse(Path::new("t"), TCP4, UNIX.as_bytes(), &mut |_| {}).is_err());
        assert!(unix_line_type(b"0000: 00000002 00000000 00010000 01 01 1").is_err());
        assert!(unix_line_type(b"0000: 00000002 00000000").is_err());
    }

    #[test]
    fn unix_paths_with_newlines_are_not_records() {
        // A stream socket bound to "/tmp/a\nb c d" (abstract names print
        // alike), then an unbound datagram socket.
        let text = format!(
            "{}000000000000a001: 00000002 00000000 00010000 0001 01 40001 /tmp/a\nb c d\n\n\
             000000000000a002: 00000002 00000000 00000000 0002 03 40002\n",
            UNIX.lines().next().unwrap().to_string() + "\n"
        );
        let mut types = Vec::new();
        parse(Path::new("u"), Table::Unix, text.as_bytes(), &mut |r| {
            types.push(r.state)
        })
        .unwrap();
        assert_eq!(types, [1, 2]);
        // A name can hold at most what fits in 108 bytes: a longer run of
        // non-record lines is malformed, not silently skipped.
        let long = format!(
            "{}\n000000000000a001: 00000002 00000000 00010000 0001 01 40001 @x\n{}\n",
            UNIX.lines().next().unwrap(),
            "y".repeat(120)
        );
        let e = parse(Path::new("u"), Table::Unix, long.as_bytes(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("not a unix socket record"), "{e}");
        // Without a path before it, a non-record line is malformed.
        let bad = format!("{}\njunk\n", UNIX.lines().next().unwrap());
        assert!(parse(Path::new("u"), Table::Unix, bad.as_bytes(), &mut |_| {}).is_err());
        // Fixed columns are checked to the byte.
        for line in [
            &b"000000000000a001: 00000002 00000000 00010000 0001 01 40001"[..],
            b"0000a001: 00000002 00000000 00010000 0005 01    12",
        ] {
            assert!(
                unix_record(line).is_some(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"000000000000a001: 00000002 00000000 00010000 001 01 40001"[..],
            b"000000000000a001: 00000002 00000000 00010000 0001 01 4000x",
            b"000000000000a001: 00000002 00000000 00010000 0001 01   1",
            b"00a001: 00000002 00000000 00010000 0001 01 40001",
        ] {
            assert!(
                unix_record(line).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_record_repeated_inside_a_name_counts_once() {
        let header = UNIX.lines().next().unwrap();
        // The second socket's name repeats the first one's record.
        let text = format!(
            "{header}\n000000000000a001: 00000002 00000000 00000000 0002 07 41000\n\
             000000000000a002: 00000002 00000000 00010000 0001 01 41001 @x\n\
             000000000000a001: 00000002 00000000 00000000 0002 07 41000\n"
        );
        let dir = std::env::temp_dir().join(format!("tn-unix-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unix");
        std::fs::write(&path, text).unwrap();
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; 4096];
        // Twice: the set is the caller's, cleared at each scan.
        for _ in 0..2 {
            let mut types = Vec::new();
            let record = &mut |r: &Record| types.push(r.state);
            scan_unix(&path, &mut buf, &mut seen, record, &mut || false).unwrap();
            assert_eq!(types, [2, 1]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_and_headerless_tables_are_malformed() {
        for table in [TCP4, Table::Unix] {
            let e = parse(Path::new("/p/net/x"), table, b"", &mut |_| {}).unwrap_err();
            assert!(e.to_string().contains("empty file: expected the"), "{e}");
        }
        let headerless = TCP.lines().skip(1).collect::<Vec<_>>().join("\n");
        let e = parse(Path::new("t"), TCP4, headerless.as_bytes(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("expected the \"sl\" header"), "{e}");
    }
}
