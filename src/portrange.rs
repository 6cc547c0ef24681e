//! The ephemeral port range of one network namespace: the ports `connect()`
//! picks a local port from, `net.ipv4.ip_local_port_range` minus
//! `net.ipv4.ip_local_reserved_ports`, read from the namespace itself.
//!
//! Both are per-namespace sysctls: `ipv4_sysctl_init_net()`
//! (net/ipv4/sysctl_net_ipv4.c) gives every namespace its own copy of the
//! table, whose `data` points into that namespace's `struct net`
//! (`net->ipv4.ip_local_ports.range`, `net->ipv4.sysctl_local_reserved_ports`),
//! and /proc/sys/net resolves names in the namespace of the thread that
//! looks them up (`net_ctl_header_lookup()` takes
//! `current->nsproxy->net_ns`). So the files are opened on a thread that has
//! joined the namespace (`netns::inside`), and kept: an open file keeps the
//! table it was opened on, and each read shows that table's value of the
//! moment (measured on Linux 6.18: a file opened inside a namespace reads
//! that namespace's range from any thread, and sees it change); see
//! [`crate::kept`].
//!
//! `connect()` without `bind()` (`__inet_hash_connect()`,
//! net/ipv4/inet_hashtables.c) tries the ports of the range and skips the
//! reserved ones (`inet_is_local_reserved_port()`); a port is usable toward a
//! destination when no socket holds the same 4-tuple. So toward one
//! (local address, remote address, remote port) at most `size()` sockets
//! can exist.

use std::path::Path;

use crate::error::{Error, Malformed};
use crate::kept::KeptFile;

/// One bit per port.
#[derive(Debug, Clone)]
pub struct PortBits(Box<[u64; 1024]>);

impl Default for PortBits {
    fn default() -> Self {
        PortBits(Box::new([0; 1024]))
    }
}

impl PortBits {
    #[inline(always)]
    pub fn set(&mut self, port: u16) {
        self.0[port as usize >> 6] |= 1 << (port & 63);
    }

    #[inline(always)]
    pub fn get(&self, port: u16) -> bool {
        self.0[port as usize >> 6] & (1 << (port & 63)) != 0
    }

    pub fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Ports set in `self`, inside `low..=high`, and not set in `minus`.
    pub fn count_in(&self, low: u16, high: u16, minus: Option<&PortBits>) -> u64 {
        let mut n = 0;
        for (i, &w) in self.0.iter().enumerate() {
            let m = minus.map_or(0, |b| b.0[i]);
            let (first, last) = (i as u32 * 64, i as u32 * 64 + 63);
            if last < u32::from(low) || first > u32::from(high) {
                continue;
            }
            let mut mask = !0u64;
            if first < u32::from(low) {
                mask &= !0u64 << (u32::from(low) - first);
            }
            if last > u32::from(high) {
                mask &= !0u64 >> (last - u32::from(high));
            }
            n += u64::from((w & !m & mask).count_ones());
        }
        n
    }
}

/// A namespace's ephemeral range.
#[derive(Debug, Clone, Default)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
    /// `ip_local_reserved_ports`.
    reserved: PortBits,
}

impl PortRange {
    /// Whether `connect()` may pick `port`: inside the range and not
    /// reserved.
    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        port >= self.low && port <= self.high && !self.reserved.get(port)
    }

    /// How many ports `connect()` may pick from: the range minus the
    /// reserved ports inside it.
    pub fn size(&self) -> u64 {
        let all = u64::from(self.high) + 1 - u64::from(self.low);
        all - self.reserved.count_in(self.low, self.high, None)
    }

    /// Ports of `used` that `connect()` could have picked.
    pub fn count_used(&self, used: &PortBits) -> u64 {
        used.count_in(self.low, self.high, Some(&self.reserved))
    }

    /// Takes the sysctls' text: `range` as the kernel prints
    /// `ip_local_port_range` (`32768\t60999\n`), `reserved` as it prints
    /// `ip_local_reserved_ports` (`8080,9000-9010\n`, or an empty line).
    /// Keeps its memory. The error says which of the two was malformed.
    pub fn parse(&mut self, range: &[u8], reserved: &[u8]) -> Result<(), (Which, Malformed)> {
        let range = std::str::from_utf8(range).map(str::trim).map_err(|_| {
            let text = String::from_utf8_lossy(range).into_owned();
            (Which::Range, Malformed::NotText(Some(text)))
        })?;
        let mut it = range.split_ascii_whitespace().map(str::parse::<u16>);
        let (low, high) = match (it.next(), it.next(), it.next()) {
            (Some(Ok(l)), Some(Ok(h)), None) if l <= h => (l, h),
            _ => return Err((Which::Range, Malformed::PortRange(range.into()))),
        };
        self.parse_reserved(reserved)
            .map_err(|e| (Which::Reserved, e))?;
        self.low = low;
        self.high = high;
        Ok(())
    }

    fn parse_reserved(&mut self, reserved: &[u8]) -> Result<(), Malformed> {
        let list = std::str::from_utf8(reserved).map(str::trim).map_err(|_| {
            Malformed::NotText(Some(String::from_utf8_lossy(reserved).into_owned()))
        })?;
        self.reserved.clear();
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let bad = || Malformed::ReservedPorts(list.into());
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b) = (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            for p in a..=b {
                self.reserved.set(p);
            }
        }
        Ok(())
    }
}

/// Which of the two sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Range,
    Reserved,
}

/// The two sysctl files of one namespace, open, and the buffer they are
/// read into.
#[derive(Debug)]
pub struct PortRangeFiles {
    range: KeptFile,
    reserved: KeptFile,
    buf: Vec<u8>,
}

/// The longest `ip_local_reserved_ports` can print: every other port
/// reserved, `0,2,4,...,65534` (32 768 numbers of up to 5 digits).
const RESERVED_MAX: usize = 32_768 * 6;

impl PortRangeFiles {
    /// Opens `<proc root>/sys/net/ipv4/ip_local_port_range` and
    /// `ip_local_reserved_ports`, in the namespace of the calling thread.
    pub fn open(proc_root: &Path) -> Result<PortRangeFiles, Error> {
        Ok(PortRangeFiles {
            range: KeptFile::open(proc_root, "sys/net/ipv4/ip_local_port_range")?,
            reserved: KeptFile::open(proc_root, "sys/net/ipv4/ip_local_reserved_ports")?,
            buf: vec![0; 4096],
        })
    }

    /// Reads both files afresh into `range`.
    ///
    /// A sysctl is printed whole by one read: `proc_do_large_bitmap()`
    /// (kernel/sysctl.c) answers a read at a non-zero offset with nothing,
    /// and truncates what does not fit the reader's buffer. So a read that
    /// fills the buffer is repeated with a larger one (kept for later
    /// gathers) until the text ends before the buffer does.
    pub fn read(&mut self, range: &mut PortRange) -> Result<(), Error> {
        let mut a = [0u8; 64];
        let n = self.range.read_start(&mut a)?;
        let m = loop {
            let m = self.reserved.read_start(&mut self.buf)?;
            if m < self.buf.len() || self.buf.len() > RESERVED_MAX {
                break m;
            }
            self.buf.resize(self.buf.len() * 4, 0);
        };
        range
            .parse(&a[..n], &self.buf[..m])
            .map_err(|(which, detail)| Error::SysctlParse {
                path: match which {
                    Which::Range => self.range.path().to_owned(),
                    Which::Reserved => self.reserved.path().to_owned(),
                },
                detail,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_minus_the_reserved_ports_inside_it() {
        let mut r = PortRange::default();
        r.parse(b"40000\t40009\n", b"39000-40001,40005,50000\n")
            .unwrap();
        assert_eq!((r.low, r.high), (40000, 40009));
        assert_eq!(r.size(), 7);
        assert!(!r.contains(40000) && !r.contains(40001) && r.contains(40002));
        assert!(!r.contains(40005) && r.contains(40009) && !r.contains(40010));
        let mut used = PortBits::default();
        for p in [39999, 40000, 40002, 40005, 40009, 40010] {
            used.set(p);
        }
        assert_eq!(r.count_used(&used), 2);
        // Kept memory, fresh values.
        r.parse(b"1 65535\n", b"\n").unwrap();
        assert_eq!(r.size(), 65535);
        assert!(r.contains(40000) && !r.contains(0));
        r.parse(b"0 65535\n", b"").unwrap();
        assert_eq!(r.size(), 65536);
    }

    #[test]
    fn word_edges_are_counted_once() {
        let mut used = PortBits::default();
        for p in [63, 64, 127, 128, 65535] {
            used.set(p);
        }
        assert_eq!(used.count_in(64, 127, None), 2);
        assert_eq!(used.count_in(63, 128, None), 4);
        assert_eq!(used.count_in(0, 65535, None), 5);
        assert_eq!(used.count_in(65535, 65535, None), 1);
        let mut minus = PortBits::default();
        minus.set(64);
        assert_eq!(used.count_in(63, 128, Some(&minus)), 3);
    }

    #[test]
    fn malformed_text_is_said() {
        let mut r = PortRange::default();
        for (range, reserved) in [
            (&b"40009 40000"[..], &b""[..]),
            (b"1", b""),
            (b"1 2 3", b""),
            (b"1 70000", b""),
            (b"1 2", b"5-4"),
            (b"1 2", b"x"),
        ] {
            assert!(r.parse(range, reserved).is_err(), "{range:?} {reserved:?}");
        }
    }
}
