//! The /proc fallback: streams /proc/net/{tcp,tcp6,udp,udp6} through one
//! fixed buffer, so memory does not grow with the number of sockets.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Read size; /proc/net/tcp lines are 150 bytes (tcp6: 178), so one read
/// carries a few hundred of them.
pub const CHUNK_LEN: usize = 64 * 1024;

/// The kernel state number from one line of /proc/net/{tcp,tcp6,udp,udp6}:
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue ...
///    0: 0100007F:1388 00000000:0000 0A 00000000:00000000 ...
/// ```
///
/// The fourth column, two hex digits.
pub fn line_state(line: &[u8]) -> Result<u8, String> {
    let field = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(3)
        .ok_or_else(|| {
            format!(
                "expected at least 4 columns in {:?}",
                String::from_utf8_lossy(line)
            )
        })?;
    let s = std::str::from_utf8(field).ok();
    match s.and_then(|s| u8::from_str_radix(s, 16).ok()) {
        Some(v) if field.len() == 2 => Ok(v),
        _ => Err(format!("bad state {:?}", String::from_utf8_lossy(field))),
    }
}

/// Feeds complete lines to `on_state`, checking the header on line 1.
struct Lines<'p> {
    path: &'p Path,
    line: u64,
}

impl Lines<'_> {
    fn feed(&mut self, text: &[u8], on_state: &mut dyn FnMut(u8)) -> Result<(), Error> {
        for line in text.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.line += 1;
            let parsed = if self.line == 1 {
                let header = line.trim_ascii_start();
                if header.starts_with(b"sl ") {
                    continue;
                }
                Err(format!(
                    "expected the \"sl\" header, found {:?}",
                    String::from_utf8_lossy(line)
                ))
            } else {
                line_state(line)
            };
            match parsed {
                Ok(state) => on_state(state),
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
pub fn parse(path: &Path, text: &[u8], on_state: &mut dyn FnMut(u8)) -> Result<(), Error> {
    Lines { path, line: 0 }.feed(text, on_state)
}

/// Streams the file at `path` through `buf` and calls `on_state` per socket.
pub fn scan(path: &Path, buf: &mut [u8], on_state: &mut dyn FnMut(u8)) -> Result<(), Error> {
    let read_err = |source: io::Error| Error::ProcRead {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut lines = Lines { path, line: 0 };
    let mut fill = 0;
    loop {
        let n = match file.read(&mut buf[fill..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if n == 0 {
            return lines.feed(&buf[..fill], on_state);
        }
        fill += n;
        match buf[..fill].iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                lines.feed(&buf[..last], on_state)?;
                buf.copy_within(last + 1..fill, 0);
                fill -= last + 1;
            }
            None if fill == buf.len() => {
                return Err(Error::ProcParse {
                    path: path.to_owned(),
                    line: lines.line + 1,
                    detail: format!("line longer than {} bytes", buf.len()),
                })
            }
            None => {}
        }
    }
}

/// Where the four tables live under a proc root.
#[derive(Debug, Clone)]
pub struct ProcPaths {
    pub tcp: PathBuf,
    pub tcp6: PathBuf,
    pub udp: PathBuf,
    pub udp6: PathBuf,
}

impl ProcPaths {
    pub fn new(root: &Path) -> Self {
        let net = root.join("net");
        ProcPaths {
            tcp: net.join("tcp"),
            tcp6: net.join("tcp6"),
            udp: net.join("udp"),
            udp6: net.join("udp6"),
        }
    }
}

/// Like `scan`, but a file that does not exist (IPv6 disabled) holds no
/// sockets.
pub fn scan_optional(
    path: &Path,
    buf: &mut [u8],
    on_state: &mut dyn FnMut(u8),
) -> Result<(), Error> {
    match scan(path, buf, on_state) {
        Err(Error::ProcRead { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        parse(Path::new("/proc/net/tcp"), text.as_bytes(), &mut |s| {
            v.push(s)
        })
        .unwrap();
        v
    }

    #[test]
    fn parses_captured_tables() {
        assert_eq!(states(TCP), [10, 1, 1, 6]);
        assert_eq!(states(TCP6), [10, 3]);
        assert_eq!(states(TCP.lines().next().unwrap()), []);
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        let bad = format!("{TCP}   4: 0100007F:1388 00000000:0000 ZZ 0\n");
        let err = parse(Path::new("/p/net/tcp"), bad.as_bytes(), &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("malformed line 6 of /p/net/tcp: bad state \"ZZ\""),
            "{msg}"
        );
        let err = parse(Path::new("x"), b"   0: 0100007F:1388 0A\n", &mut |_| {}).unwrap_err();
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
        text.push_str("1000: 0100007F:1388 0100007F:9C40 0A 0");
        std::fs::write(&path, &text).unwrap();
        let mut buf = vec![0u8; 300];
        let mut n = [0u32; 16];
        scan(&path, &mut buf, &mut |s| n[s as usize] += 1).unwrap();
        assert_eq!(n.iter().sum::<u32>(), 1001);
        assert_eq!(n[10], 91 + 1);
        // A line longer than the buffer is an error, not a silent skip.
        let mut tiny = vec![0u8; 40];
        assert!(matches!(
            scan(&path, &mut tiny, &mut |_| {}),
            Err(Error::ProcParse { .. })
        ));
        // A missing IPv6 table counts as empty; a missing IPv4 one is an error.
        let missing = dir.join("tcp6");
        assert!(scan_optional(&missing, &mut buf, &mut |_| panic!()).is_ok());
        assert!(matches!(
            scan(&missing, &mut buf, &mut |_| {}),
            Err(Error::ProcRead { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
