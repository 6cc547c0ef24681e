//! `--tcp-info`: round-trip time and loss of the TCP connections on the
//! selected ports (`--local-port`, `--remote-port`) and to the top
//! destinations of `--destinations` (this gather's), read from each
//! socket's `struct tcp_info` (`INET_DIAG_INFO`), so that only the
//! selected sockets are filled and sent: each looked up by itself when the
//! main pass found them all ([`TcpInfoCounts::remember`]: on the selected
//! ports, and to the destinations kept at the last gather, its top ones and
//! a margin below them; few beside the namespace's sockets), else one
//! extra dump that the kernel filters (`crate::bytecode`).
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
use crate::wire::{
    InetDiagMsg, INET_DIAG_INFO, SOCKID_DPORT, SOCKID_DST, SOCKID_IF, SOCKID_LEN, SOCKID_SPORT,
    SOCKID_SRC,
};

/// The states whose sockets have a `tcp_info` worth reading: every full
/// connection (ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT,
/// LAST_ACK, CLOSING). Listeners, TIME_WAIT and request sockets have none.
pub const STATES: u32 = 1 << 1 | 1 << 2 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9 | 1 << 11;

/// The most selected connections looked up one by one
/// ([`TcpInfoCounts::remember`]): 49 bytes each, at most 196 KiB. With
/// more, the kernel walks its table once more with the filter instead.
pub const MAX_LOOKUPS: usize = 4096;

/// Lookups are chosen only while each has at least this many TCP sockets
/// of the namespace to its name: a lookup cost 2.4–3.8 µs of CPU, its
/// record included, the filtered walk 0.25–0.3 µs per socket of the
/// namespace besides the records (BENCHMARKS.md, 200 000 sockets): at one
/// lookup per ten sockets the two cost about the same.
pub const SOCKETS_PER_LOOKUP: u64 = 10;

/// The next main pass keeps the sockets of the last gather's top
/// destinations and, within [`MARGIN_SOCKETS`], of up to as many again
/// just below them ([`TcpInfoCounts::select`]): a destination that moves up
/// into the top ones is then looked up too, not walked for.
pub const KEPT_PER_SELECTED: usize = 2;

/// The destinations below the top ones are kept only while all the kept
/// ones had at most this many TCP sockets at the last gather: half of
/// [`MAX_LOOKUPS`], so that their sockets rarely crowd out the top ones'.
pub const MARGIN_SOCKETS: u64 = MAX_LOOKUPS as u64 / 2;

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

/// Whether `port` has a row among `rows` (sorted by port).
#[inline]
fn on_port(rows: &[(u16, Stats)], port: u16) -> bool {
    rows.binary_search_by_key(&port, |r| r.0).is_ok()
}

/// Makes `set` hold `items`, sorted, each once (its allocation reused).
fn refill_sorted(set: &mut Vec<Destination>, items: impl Iterator<Item = Destination>) {
    set.clear();
    set.extend(items);
    set.sort_unstable();
    set.dedup();
}

/// The rows of one namespace: one per selected port and direction, in the
/// order of the command line's sorted lists (local, then remote), and one
/// per selected destination, sorted.
#[derive(Debug, Clone, Default)]
pub struct TcpInfoCounts {
    local: Vec<(u16, Stats)>,
    remote: Vec<(u16, Stats)>,
    destinations: Vec<(Destination, Stats)>,
    /// The destinations whose sockets the next main pass keeps, sorted:
    /// the last gather's top ones and a margin ([`KEPT_PER_SELECTED`]), or
    /// those another run kept ([`Self::recall`]).
    kept: Vec<Destination>,
    /// Scratch for [`Self::select`].
    wanted: Vec<Destination>,
    ranked: Vec<(Destination, u64)>,
    /// Records read in the last gather.
    pub records: u64,
    /// The sockets the main pass found on the selected ports or to the
    /// kept destinations (after [`Self::select`], the selected ones only);
    /// whether there were more than [`MAX_LOOKUPS`]; the TCP sockets the
    /// pass saw.
    pub lookups: Vec<Lookup>,
    lookups_overflow: bool,
    seen: u64,
    /// This gather's main pass hands its records to [`Self::remember`].
    remembering: bool,
    /// This gather's destinations were all kept, so the main pass kept
    /// their sockets.
    destinations_kept: bool,
    /// The kernel filter selecting these sockets (`bytecode::compile`),
    /// and the request that carries it, reused.
    pub filter: Vec<u8>,
    pub request: Vec<u8>,
}

impl TcpInfoCounts {
    /// Rows for the ports of `config` (`--listening-ports` are not
    /// selected: they are known only during the walk).
    pub fn new(config: &PortConfig) -> TcpInfoCounts {
        let rows = |ports: &[u16]| ports.iter().map(|&p| (p, Stats::default())).collect();
        let mut t = TcpInfoCounts {
            local: rows(&config.local),
            remote: rows(&config.remote),
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

    /// Selects the first `n` of `ranked` (this gather's busiest
    /// destinations, busiest first, with their TCP sockets) besides the
    /// ports, compiling the filter again when they changed, and drops the
    /// lookups of sockets no longer selected; then keeps those `n` for the
    /// next pass, and after them, up to [`KEPT_PER_SELECTED`] times `n` in
    /// all, the next ones while the kept ones' sockets stay within
    /// [`MARGIN_SOCKETS`]. Once per gather, not per socket.
    pub fn select(&mut self, ranked: impl Iterator<Item = (Destination, u64)>, n: usize) {
        self.ranked.clear();
        self.ranked.extend(ranked.take(n * KEPT_PER_SELECTED));
        let n = n.min(self.ranked.len());
        refill_sorted(&mut self.wanted, self.ranked[..n].iter().map(|r| r.0));
        let kept = |d| self.kept.binary_search(d).is_ok();
        self.destinations_kept = self.wanted.iter().all(kept);
        if !self
            .wanted
            .iter()
            .eq(self.destinations.iter().map(|r| &r.0))
        {
            self.destinations.clear();
            let rows = self.wanted.iter().map(|&d| (d, Stats::default()));
            self.destinations.extend(rows);
            self.compile();
        }
        let (local, remote, rows) = (&self.local, &self.remote, &self.destinations);
        self.lookups.retain(|(family, id)| {
            let port = |at: usize| u16::from_be_bytes([id[at], id[at + 1]]);
            let addr: [u8; 16] = std::array::from_fn(|i| id[SOCKID_DST + i]);
            let d = (v6_form(*family, &addr), port(SOCKID_DPORT));
            on_port(local, port(SOCKID_SPORT))
                || on_port(remote, port(SOCKID_DPORT))
                || rows.binary_search_by_key(&d, |r| r.0).is_ok()
        });
        let mut sockets = 0;
        let margin = self.ranked.iter().enumerate();
        let within = margin.take_while(|(i, r)| {
            sockets += r.1;
            *i < n || sockets <= MARGIN_SOCKETS
        });
        refill_sorted(&mut self.kept, within.map(|(_, r)| r.0));
    }

    /// Before a first gather: the destinations another run kept
    /// (`--state-file`), whose sockets this gather's main pass keeps.
    pub fn recall(&mut self, last: impl Iterator<Item = Destination>) {
        refill_sorted(&mut self.kept, last);
    }

    /// The destinations whose sockets the next main pass keeps, sorted:
    /// what a one-shot run leaves for the next one to [`Self::recall`].
    pub fn kept(&self) -> impl Iterator<Item = Destination> + '_ {
        self.kept.iter().copied()
    }

    /// Whether anything is selected (if not, nothing is dumped).
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty() && self.destinations.is_empty()
    }

    /// Whether the main pass hands its TCP records to [`Self::remember`]
    /// (set by [`Self::forget`]): ports are selected, or destinations are
    /// kept.
    pub fn remembers(&self) -> bool {
        self.remembering
    }

    /// Before the main pass: forgets the last gather's sockets, and
    /// whether this pass should keep any.
    pub fn forget(&mut self) {
        self.lookups.clear();
        self.lookups_overflow = false;
        self.seen = 0;
        self.destinations_kept = true;
        self.remembering =
            !self.local.is_empty() || !self.remote.is_empty() || !self.kept.is_empty();
    }

    /// Keeps a record of the main pass to look up (a connection with a
    /// `tcp_info`, on a selected port or to a kept destination), up to
    /// [`MAX_LOOKUPS`].
    #[inline]
    pub fn remember(&mut self, r: &Record) {
        self.seen += 1;
        if STATES & (1 << (r.state & 31)) == 0 {
            return;
        }
        if !on_port(&self.local, r.local_port)
            && !on_port(&self.remote, r.remote_port)
            && !self.to_kept(r)
        {
            return;
        }
        if self.lookups.len() == MAX_LOOKUPS {
            self.lookups_overflow = true;
            return;
        }
        let mut id = [0u8; SOCKID_LEN];
        id[SOCKID_SPORT..][..2].copy_from_slice(&r.local_port.to_be_bytes());
        id[SOCKID_DPORT..][..2].copy_from_slice(&r.remote_port.to_be_bytes());
        id[SOCKID_SRC..][..16].copy_from_slice(&r.local_addr);
        id[SOCKID_DST..][..16].copy_from_slice(&r.remote_addr);
        id[SOCKID_IF..].copy_from_slice(&r.sock_ref);
        self.lookups.push((r.family, id));
    }

    /// Whether `r` goes to a kept destination (an IPv4 one matches
    /// IPv4-mapped IPv6 sockets too, as the filter's `D_COND` does).
    #[inline]
    fn to_kept(&self, r: &Record) -> bool {
        let d = (v6_form(r.family, &r.remote_addr), r.remote_port);
        !self.kept.is_empty() && self.kept.binary_search(&d).is_ok()
    }

    /// Whether this gather's sockets are looked up one by one (the main
    /// pass found them all, and they are few beside the namespace's)
    /// rather than by the filtered walk.
    pub fn looks_up(&self) -> bool {
        self.remembering
            && self.destinations_kept
            && !self.lookups_overflow
            && self.lookups.len() as u64 * SOCKETS_PER_LOOKUP <= self.seen
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

    /// A batch of the main pass: one ESTABLISHED record from 127.0.0.1
    /// port 40000 to 127.0.0.1 port 5000, one LISTEN and eight TIME_WAIT
    /// (neither has a `tcp_info`), through the parser into `t`.
    fn main_pass(t: &mut TcpInfoCounts) {
        t.forget();
        pass(t);
    }

    /// [`main_pass`] without forgetting first.
    fn pass(t: &mut TcpInfoCounts) {
        use crate::netlink::read_batch;
        use crate::wire::tests::{captured_record, push_msg};
        use crate::wire::{Dump, NLM_F_MULTI, TCPDIAG_GETSOCK};
        let mut b = Vec::new();
        for state in [1, 10, 6, 6, 6, 6, 6, 6, 6, 6] {
            let record = captured_record(state);
            push_msg(&mut b, TCPDIAG_GETSOCK, NLM_F_MULTI, 3, &record);
        }
        if t.remembers() {
            let mut keep = |r: &Record| t.remember(r);
            read_batch(&b, Dump::Tcp, 3, false, false, &mut keep).unwrap();
        }
    }

    #[test]
    fn a_remembered_socket_is_asked_for_by_the_id_of_its_record() {
        use crate::wire::tests::captured_record;
        let config = PortConfig {
            local: vec![40000],
            ..PortConfig::default()
        };
        let mut t = TcpInfoCounts::new(&config);
        main_pass(&mut t);
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
                                                             // Past the cap the walk takes over.
        let kept = t.lookups[0];
        t.forget();
        t.lookups.resize(MAX_LOOKUPS, kept);
        pass(&mut t);
        assert!(!t.looks_up());
        // So it does when the lookups are many beside the namespace's
        // sockets: 2 for 10 sockets.
        main_pass(&mut t);
        t.lookups.push(t.lookups[0]);
        assert!(!t.looks_up());
        // Nothing selected: nothing kept.
        let mut none = TcpInfoCounts::new(&PortConfig::default());
        main_pass(&mut none);
        assert!(!none.remembers() && none.lookups.is_empty());
    }

    /// The destination of [`pass`]'s connection, 127.0.0.1 port 5000, and
    /// one beside it that no socket goes to.
    fn destinations() -> (Destination, Destination) {
        let addr = v6_form(2, &[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ((addr, 5000), (addr, 5001))
    }

    #[test]
    fn the_last_gathers_destinations_are_kept_and_looked_up_if_still_selected() {
        let mut t = TcpInfoCounts::new(&PortConfig::default());
        let (five_thousand, other) = destinations();
        // The first gather selects after its pass: the walk.
        main_pass(&mut t);
        assert!(!t.remembers());
        t.select([(five_thousand, 1)].into_iter(), 1);
        assert!(!t.looks_up());
        // The next pass keeps the socket to it, and it is still selected.
        main_pass(&mut t);
        assert_eq!(t.lookups.len(), 1);
        t.select([(other, 2), (five_thousand, 1)].into_iter(), 2);
        assert!(
            !t.looks_up(),
            "a destination new to the selection: the walk"
        );
        main_pass(&mut t);
        t.select([(other, 2)].into_iter(), 1);
        assert!(t.looks_up(), "one the pass kept: looked up");
    }

    #[test]
    fn a_margin_below_the_top_is_kept_and_only_the_selected_are_looked_up() {
        let mut t = TcpInfoCounts::new(&PortConfig::default());
        let (five_thousand, other) = destinations();
        let kept = |t: &TcpInfoCounts| t.kept().collect::<Vec<_>>();
        // 5000 is second: not selected, but kept.
        main_pass(&mut t);
        t.select([(other, 9), (five_thousand, 1)].into_iter(), 1);
        let rows: Vec<_> = t.destinations.iter().map(|r| r.0).collect();
        assert_eq!(rows, [other]);
        assert_eq!(kept(&t), [five_thousand, other]);
        // It moves up: its socket was kept, and is looked up.
        main_pass(&mut t);
        assert_eq!(t.lookups.len(), 1);
        t.select([(five_thousand, 9), (other, 1)].into_iter(), 1);
        assert!(t.looks_up() && t.lookups.len() == 1);
        // It moves down again: kept, but not looked up.
        main_pass(&mut t);
        t.select([(other, 9), (five_thousand, 1)].into_iter(), 1);
        assert!(t.looks_up() && t.lookups.is_empty(), "{:?}", t.lookups);
        // Below the top, only while the kept ones' sockets stay within
        // MARGIN_SOCKETS; the top ones always.
        t.select(
            [(other, MARGIN_SOCKETS - 1), (five_thousand, 1)].into_iter(),
            1,
        );
        assert_eq!(kept(&t), [five_thousand, other], "within");
        t.select([(other, MARGIN_SOCKETS), (five_thousand, 1)].into_iter(), 1);
        assert_eq!(kept(&t), [other], "one past");
        t.select([(other, MARGIN_SOCKETS * 9)].into_iter(), 1);
        assert_eq!(kept(&t), [other]);
        // What another run kept is what the first pass keeps.
        let mut fresh = TcpInfoCounts::new(&PortConfig::default());
        fresh.recall([five_thousand].into_iter());
        main_pass(&mut fresh);
        assert_eq!(fresh.lookups.len(), 1);
        fresh.select([(five_thousand, 1)].into_iter(), 1);
        assert!(fresh.looks_up());
    }
}
