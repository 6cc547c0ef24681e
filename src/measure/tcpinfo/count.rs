//! `--tcp-info`: round-trip time and loss of the TCP connections on the
//! selected ports (`--local-port`, `--remote-port`) and to the top
//! destinations of `--destinations` (this gather's), read from each
//! socket's `struct tcp_info` (`INET_DIAG_INFO`) in one extra dump that the
//! kernel filters (`crate::bytecode`), so only the selected sockets are
//! filled and sent.
//!
//! Per port row, over the connections that exist at the gather (every
//! field is a snapshot, a gauge): how many there are, their smoothed RTT in
//! fixed buckets with count and sum, the least `min_rtt` among them, how
//! many are in loss recovery (`ca_state` Recovery or Loss) and in RTO
//! backoff, and the bytes they have not sent yet and not had acknowledged.
//! docs/metrics.md says why these and not the rest of `tcp_info`.

use crate::measure::destination::count::v6_form;
use crate::measure::port::count::{Direction, PortConfig};
use crate::record::Record;
use crate::wire::{InetDiagMsg, INET_DIAG_INFO, SOCKID_LEN};

/// The states whose sockets have a `tcp_info` worth reading: every full
/// connection (ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT,
/// LAST_ACK, CLOSING). Listeners, TIME_WAIT and request sockets have none.
pub const STATES: u32 = 1 << 1 | 1 << 2 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9 | 1 << 11;

/// The most connections on the selected ports looked up one by one
/// ([`TcpInfoCounts::remember`]); with more, or with destinations selected,
/// the kernel walks its table once more with the filter instead. A lookup
/// costs about 2 µs of CPU, the filtered walk about 0.2 µs per socket of
/// the namespace (BENCHMARKS.md): 4 096 lookups cost less than one walk of
/// 40 000 sockets. 52 bytes each, at most 208 KiB.
pub const MAX_LOOKUPS: usize = 4096;

/// A socket to look up: its family and `inet_diag_sockid`.
pub type Lookup = (u8, [u8; SOCKID_LEN]);

/// Upper bounds of the RTT buckets, in microseconds (0.1 ms to 1 s: a
/// LAN hop to an intercontinental path), then everything above.
pub const BUCKETS_US: [u32; 13] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// `TCP_CA_Recovery`: fast recovery; `TCP_CA_Loss` (4) is above it
/// (`enum tcp_ca_state`, include/uapi/linux/tcp.h).
const CA_RECOVERY: u8 = 3;

/// The fields of `struct tcp_info` read here, by offset, length-checked.
///
/// ```text
/// struct tcp_info {              offset
///     __u8  tcpi_state;          0
///     __u8  tcpi_ca_state;       1   Open 0, Disorder 1, CWR 2, Recovery 3, Loss 4
///     __u8  tcpi_retransmits;    2
///     __u8  tcpi_probes;         3
///     __u8  tcpi_backoff;        4   icsk_backoff: RTO doublings since the last ACK
///     ...                        5
///     __u32 tcpi_rtt;            68  srtt, microseconds (0: no sample yet)
///     __u32 tcpi_rttvar;         72
///     ...
///     __u32 tcpi_notsent_bytes;  144 write_seq - snd_nxt (Linux 4.6+)
///     __u32 tcpi_min_rtt;        148 microseconds, ~0 without a sample (4.6+)
///     ...                        152 and on, as the kernel grows it
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub ca_state: u8,
    pub backoff: u8,
    /// Smoothed RTT in microseconds, 0 without a sample.
    pub rtt_us: u32,
    pub notsent_bytes: Option<u32>,
    /// `None` without a sample or on a kernel too old to say.
    pub min_rtt_us: Option<u32>,
}

impl TcpInfo {
    const CA_STATE: usize = 1;
    const BACKOFF: usize = 4;
    const RTT: usize = 68;
    const NOTSENT: usize = 144;
    const MIN_RTT: usize = 148;

    /// Reads the attribute's bytes; `None` when too short for the RTT.
    pub fn parse(b: &[u8]) -> Option<TcpInfo> {
        let u32_at = |at: usize| {
            b.get(at..at + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        };
        Some(TcpInfo {
            ca_state: *b.get(Self::CA_STATE)?,
            backoff: *b.get(Self::BACKOFF)?,
            rtt_us: u32_at(Self::RTT)?,
            notsent_bytes: u32_at(Self::NOTSENT),
            min_rtt_us: u32_at(Self::MIN_RTT).filter(|&m| m != 0 && m != u32::MAX),
        })
    }
}

/// One row's fields: the connections on one selected port now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections whose `tcp_info` was read.
    pub connections: u64,
    /// Connections with an RTT sample per bucket of [`BUCKETS_US`] (not
    /// cumulative), the last one above 1 s.
    pub rtt_buckets: [u64; 14],
    /// The sum of their smoothed RTTs, microseconds.
    pub rtt_sum_us: u64,
    pub min_rtt_us: Option<u32>,
    /// `ca_state` Recovery or Loss.
    pub loss_recovery: u64,
    /// `backoff` above 0: retransmission timeouts without an ACK since.
    pub rto_backoff: u64,
    pub notsent_bytes: u64,
    /// `idiag_wqueue` (`write_seq - snd_una`) minus `notsent_bytes`: sent
    /// and not acknowledged (`tcp_diag_get_info()`).
    pub unacked_bytes: u64,
}

impl Stats {
    fn add(&mut self, wqueue: u32, i: &TcpInfo) {
        self.connections += 1;
        if i.rtt_us > 0 {
            let b = BUCKETS_US.partition_point(|&le| le < i.rtt_us);
            self.rtt_buckets[b] += 1;
            self.rtt_sum_us += u64::from(i.rtt_us);
        }
        if let Some(m) = i.min_rtt_us {
            self.min_rtt_us = Some(self.min_rtt_us.map_or(m, |o| o.min(m)));
        }
        self.loss_recovery += u64::from(i.ca_state >= CA_RECOVERY);
        self.rto_backoff += u64::from(i.backoff > 0);
        let notsent = i.notsent_bytes.unwrap_or(0);
        self.notsent_bytes += u64::from(notsent);
        self.unacked_bytes += u64::from(wqueue.saturating_sub(notsent));
    }

    /// Connections with an RTT sample (the count of the distribution).
    pub fn rtt_samples(&self) -> u64 {
        self.rtt_buckets.iter().sum()
    }

    /// Connections with an RTT at most each bound of [`BUCKETS_US`].
    pub fn cumulative(&self) -> [u64; 13] {
        let mut run = 0;
        std::array::from_fn(|i| {
            run += self.rtt_buckets[i];
            run
        })
    }
}

/// A destination: remote address (IPv6 form, IPv4 mapped) and port.
pub type Destination = ([u8; 16], u16);

/// The rows of one namespace: one per selected port and direction, in the
/// order of the command line's sorted lists (local, then remote), and one
/// per selected destination, sorted.
#[derive(Debug, Clone, Default)]
pub struct TcpInfoCounts {
    local: Vec<(u16, Stats)>,
    remote: Vec<(u16, Stats)>,
    destinations: Vec<(Destination, Stats)>,
    /// Scratch for [`Self::select`].
    wanted: Vec<Destination>,
    /// Records read in the last gather.
    pub records: u64,
    /// The sockets on the selected ports the main pass found (not kept
    /// when destinations are selected: the walk then serves both), and
    /// whether there were more than [`MAX_LOOKUPS`].
    pub lookups: Vec<Lookup>,
    lookups_overflow: bool,
    /// Destinations are selected (known only after the main pass).
    destinations_wanted: bool,
    /// The kernel filter selecting these sockets (`bytecode::compile`),
    /// and the request that carries it, reused.
    pub filter: Vec<u8>,
    pub request: Vec<u8>,
}

impl TcpInfoCounts {
    /// Rows for the ports of `config` (`--listening-ports` are not
    /// selected: they are known only during the walk), and for top
    /// destinations when `destinations`.
    pub fn new(config: &PortConfig, destinations: bool) -> TcpInfoCounts {
        let rows = |ports: &[u16]| ports.iter().map(|&p| (p, Stats::default())).collect();
        let mut t = TcpInfoCounts {
            local: rows(&config.local),
            remote: rows(&config.remote),
            destinations_wanted: destinations,
            ..TcpInfoCounts::default()
        };
        t.compile();
        t
    }

    fn compile(&mut self) {
        let ports = |rows: &[(u16, Stats)]| -> Vec<u16> { rows.iter().map(|r| r.0).collect() };
        let dests: Vec<Destination> = self.destinations.iter().map(|r| r.0).collect();
        self.filter.clear();
        let (local, remote) = (ports(&self.local), ports(&self.remote));
        crate::bytecode::compile(&local, &remote, &dests, &mut self.filter);
    }

    /// Selects these destinations (this gather's top ones) besides the
    /// ports, compiling the filter again when they changed. Once per
    /// gather, not per socket.
    pub fn select(&mut self, top: impl Iterator<Item = Destination>) {
        self.wanted.clear();
        self.wanted.extend(top);
        self.wanted.sort_unstable();
        self.wanted.dedup();
        if self
            .wanted
            .iter()
            .eq(self.destinations.iter().map(|r| &r.0))
        {
            return;
        }
        self.destinations.clear();
        let rows = self.wanted.iter().map(|&d| (d, Stats::default()));
        self.destinations.extend(rows);
        self.compile();
    }

    /// Whether anything is selected (if not, nothing is dumped).
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty() && self.destinations.is_empty()
    }

    /// Whether the main pass should hand its TCP records to
    /// [`Self::remember`]: ports and no destinations are selected.
    pub fn remembers(&self) -> bool {
        !self.destinations_wanted && (!self.local.is_empty() || !self.remote.is_empty())
    }

    /// Before the main pass: forgets the last gather's sockets.
    pub fn forget(&mut self) {
        self.lookups.clear();
        self.lookups_overflow = false;
    }

    /// Keeps a record of the main pass to look up (a connection with a
    /// `tcp_info`, on a selected port), up to [`MAX_LOOKUPS`].
    #[inline]
    pub fn remember(&mut self, r: &Record) {
        if STATES & (1 << (r.state & 31)) == 0 {
            return;
        }
        let on =
            |rows: &[(u16, Stats)], port: u16| rows.binary_search_by_key(&port, |r| r.0).is_ok();
        if !on(&self.local, r.local_port) && !on(&self.remote, r.remote_port) {
            return;
        }
        if self.lookups.len() == MAX_LOOKUPS {
            self.lookups_overflow = true;
            return;
        }
        let mut id = [0u8; SOCKID_LEN];
        id[0..2].copy_from_slice(&r.local_port.to_be_bytes());
        id[2..4].copy_from_slice(&r.remote_port.to_be_bytes());
        id[4..20].copy_from_slice(&r.local_addr);
        id[20..36].copy_from_slice(&r.remote_addr);
        id[36..].copy_from_slice(&r.sock_ref);
        self.lookups.push((r.family, id));
    }

    /// Whether this gather's sockets are looked up one by one (the main
    /// pass found them all) rather than by the filtered walk.
    pub fn looks_up(&self) -> bool {
        self.remembers() && !self.lookups_overflow
    }

    pub fn reset(&mut self) {
        for r in self.local.iter_mut().chain(self.remote.iter_mut()) {
            r.1 = Stats::default();
        }
        for r in &mut self.destinations {
            r.1 = Stats::default();
        }
        self.records = 0;
    }

    /// Counts one record of the filtered dump in each row it matches (a
    /// record the filter should not have passed, or without `tcp_info`,
    /// counts in none).
    pub fn add(&mut self, m: &InetDiagMsg<'_>) {
        self.records += 1;
        let Some(info) = m.attr(INET_DIAG_INFO).and_then(TcpInfo::parse) else {
            return;
        };
        let wqueue = m.wqueue();
        for (rows, port) in [(&mut self.local, m.sport()), (&mut self.remote, m.dport())] {
            if let Ok(i) = rows.binary_search_by_key(&port, |r| r.0) {
                rows[i].1.add(wqueue, &info);
            }
        }
        if !self.destinations.is_empty() {
            let d = (v6_form(m.family(), &m.dst()), m.dport());
            if let Ok(i) = self.destinations.binary_search_by_key(&d, |r| r.0) {
                self.destinations[i].1.add(wqueue, &info);
            }
        }
    }

    /// Every destination row: address (IPv6 form), port, fields.
    pub fn destination_rows(&self) -> impl Iterator<Item = (&[u8; 16], u16, &Stats)> {
        self.destinations.iter().map(|((a, p), s)| (a, *p, s))
    }

    /// Every row: direction, port, fields.
    pub fn rows(&self) -> impl Iterator<Item = (Direction, u16, &Stats)> {
        let local = self.local.iter().map(|(p, s)| (Direction::Local, *p, s));
        let remote = self.remote.iter().map(|(p, s)| (Direction::Remote, *p, s));
        local.chain(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ca_state: u8, backoff: u8, rtt: u32, notsent: u32, min_rtt: u32) -> Vec<u8> {
        let mut b = vec![0u8; 232];
        b[1] = ca_state;
        b[4] = backoff;
        b[68..72].copy_from_slice(&rtt.to_ne_bytes());
        b[144..148].copy_from_slice(&notsent.to_ne_bytes());
        b[148..152].copy_from_slice(&min_rtt.to_ne_bytes());
        b
    }

    #[test]
    fn fields_are_read_by_offset_and_short_structs_are_refused() {
        let b = info(4, 2, 1234, 77, 900);
        let i = TcpInfo::parse(&b).unwrap();
        assert_eq!((i.ca_state, i.backoff, i.rtt_us), (4, 2, 1234));
        assert_eq!((i.notsent_bytes, i.min_rtt_us), (Some(77), Some(900)));
        // An old kernel's shorter struct: no notsent, no min_rtt.
        let old = TcpInfo::parse(&b[..104]).unwrap();
        assert_eq!((old.notsent_bytes, old.min_rtt_us), (None, None));
        assert_eq!(TcpInfo::parse(&b[..71]), None);
        assert_eq!(TcpInfo::parse(&[]), None);
        // No sample yet: min_rtt is ~0.
        assert_eq!(
            TcpInfo::parse(&info(0, 0, 0, 0, u32::MAX))
                .unwrap()
                .min_rtt_us,
            None
        );
    }

    #[test]
    fn a_connection_lands_in_the_first_bucket_at_or_above_its_rtt() {
        let mut s = Stats::default();
        for rtt in [1, 100, 101, 1_000_000, 1_000_001, 0] {
            s.add(0, &TcpInfo::parse(&info(0, 0, rtt, 0, u32::MAX)).unwrap());
        }
        assert_eq!(s.connections, 6);
        assert_eq!(s.rtt_samples(), 5);
        assert_eq!(s.rtt_buckets[0], 2);
        assert_eq!(s.rtt_buckets[1], 1);
        assert_eq!(s.rtt_buckets[12], 1);
        assert_eq!(s.rtt_buckets[13], 1);
        assert_eq!(s.cumulative()[12], 4);
        assert_eq!(s.rtt_sum_us, 1 + 100 + 101 + 1_000_000 + 1_000_001);
    }

    #[test]
    fn loss_backoff_and_bytes_are_summed_and_min_rtt_is_the_least() {
        let mut s = Stats::default();
        s.add(1000, &TcpInfo::parse(&info(3, 0, 500, 400, 300)).unwrap());
        s.add(10, &TcpInfo::parse(&info(4, 3, 500, 0, 200)).unwrap());
        s.add(5, &TcpInfo::parse(&info(2, 0, 500, 9, 250)).unwrap());
        assert_eq!((s.loss_recovery, s.rto_backoff), (2, 1));
        assert_eq!((s.notsent_bytes, s.unacked_bytes), (409, 600 + 10));
        assert_eq!(s.min_rtt_us, Some(200));
    }

    #[test]
    fn a_remembered_socket_is_asked_for_by_the_id_of_its_record() {
        use crate::netlink::read_batch;
        use crate::wire::tests::{captured_record, push_msg};
        use crate::wire::{Dump, NLM_F_MULTI, TCPDIAG_GETSOCK};
        let config = PortConfig {
            local: vec![40000],
            ..PortConfig::default()
        };
        let mut t = TcpInfoCounts::new(&config, false);
        assert!(t.remembers());
        let mut b = Vec::new();
        // ESTABLISHED, LISTEN (no tcp_info), TIME_WAIT (none either).
        for state in [1, 10, 6] {
            push_msg(
                &mut b,
                TCPDIAG_GETSOCK,
                NLM_F_MULTI,
                3,
                &captured_record(state),
            );
        }
        read_batch(&b, Dump::Tcp, 3, false, false, &mut |r: &Record| {
            t.remember(r)
        })
        .unwrap();
        assert_eq!(t.lookups.len(), 1);
        assert!(t.looks_up());
        let mut req = Vec::new();
        let (family, id) = &t.lookups[0];
        crate::wire::lookup_request(4, *family, crate::wire::EXT_INFO, id, &mut req);
        // The request names the record's own sockid, cookie and all.
        assert_eq!(&req[16 + 8..], &captured_record(1)[4..52]);
        assert_eq!(req[16..18], [2, 6]); // AF_INET, IPPROTO_TCP
        assert_eq!(req[18], 1 << 1); // INET_DIAG_INFO
        assert_eq!(u16::from_ne_bytes([req[6], req[7]]), 1); // NLM_F_REQUEST, no dump
                                                             // Past the cap the walk takes over; destinations always walk.
        t.lookups.resize(MAX_LOOKUPS, t.lookups[0]);
        read_batch(&b, Dump::Tcp, 3, false, false, &mut |r: &Record| {
            t.remember(r)
        })
        .unwrap();
        assert!(!t.looks_up());
        t.forget();
        assert!(t.looks_up() && t.lookups.is_empty());
        assert!(!TcpInfoCounts::new(&config, true).remembers());
    }
}
