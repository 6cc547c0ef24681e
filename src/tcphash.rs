//! Whether a network namespace's TCP dumps walk the host's established hash
//! table or one of its own.
//!
//! Every sock_diag TCP dump walks the whole established hash its namespace
//! uses, skipping other namespaces' sockets one by one. By default every
//! namespace shares the host's (sized by RAM: 262 144 buckets here), so a
//! dump in an empty namespace costs as much as a walk of the host's table,
//! and `--all-netns` pays it once per namespace. A namespace created after
//! `net.ipv4.tcp_child_ehash_entries` was set (Linux 6.1+) gets a table of
//! its own of that size. Read inside a namespace, the read-only
//! `net.ipv4.tcp_ehash_entries` tells which: `proc_tcp_ehash_entries()`
//! (net/ipv4/sysctl_net_ipv4.c) prints the table's size, negated when the
//! namespace is not the initial one and shares the initial one's table
//! (`!net_eq(net, &init_net) && !hinfo->pernet`). Before Linux 6.1 the file
//! does not exist and every namespace shares the one table.

use std::path::Path;

use crate::error::{Error, Malformed};
use crate::kept::KeptFile;

/// A namespace's TCP established hash table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHash {
    /// Its buckets.
    pub entries: u64,
    /// It is the host's, and this is not the host's namespace.
    pub shared: bool,
}

impl TcpHash {
    /// Reads it in the namespace of the calling thread; `None` where the
    /// kernel does not say (before Linux 6.1: every namespace shares).
    pub fn read(proc_root: &Path) -> Result<Option<TcpHash>, Error> {
        let file = match KeptFile::open(proc_root, "sys/net/ipv4/tcp_ehash_entries") {
            Ok(f) => f,
            Err(Error::ProcRead { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut buf = [0u8; 32];
        let n = file.read_start(&mut buf)?;
        TcpHash::parse(&buf[..n])
            .map(Some)
            .map_err(|detail| Error::SysctlParse {
                path: file.path().to_owned(),
                detail,
            })
    }

    /// The sysctl's text: `262144\n`, or `-262144\n` when shared.
    pub fn parse(text: &[u8]) -> Result<TcpHash, Malformed> {
        let text = std::str::from_utf8(text).map(str::trim);
        match text.map(str::parse::<i64>) {
            Ok(Ok(n)) if n != 0 => Ok(TcpHash {
                entries: n.unsigned_abs(),
                shared: n < 0,
            }),
            _ => Err(Malformed::TableSize(format!("{text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_means_shared() {
        assert_eq!(
            TcpHash::parse(b"-262144\n"),
            Ok(TcpHash {
                entries: 262_144,
                shared: true
            })
        );
        assert_eq!(
            TcpHash::parse(b"128\n"),
            Ok(TcpHash {
                entries: 128,
                shared: false
            })
        );
        for bad in [&b""[..], b"0", b"x", b"1 2", b"\xff"] {
            assert!(TcpHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn this_namespace_is_read() {
        let root = Path::new("/proc");
        match TcpHash::read(root).unwrap() {
            Some(h) => assert!(h.entries > 0),
            None => assert!(!root.join("sys/net/ipv4/tcp_ehash_entries").exists()),
        }
    }
}
