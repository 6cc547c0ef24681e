//! Counting: kernel TCP state numbers to the built-in plugin's 13 fields.
//!
//! The sources only bump a histogram indexed by the raw state byte (one
//! increment per socket, no branch); turning that into fields is a pure
//! function here, testable without sockets.

use crate::measure::health::count::Signals;
use crate::record::{Kind, Record, LISTEN};

/// A TCP state as the kernel numbers it (`include/net/tcp_states.h`).
///
/// Total: a value this program does not know is `Other`, so a new kernel
/// never fails a gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A pending handshake (request socket); counted as SYN_RECV like
    /// `/proc/net/tcp` and the built-in do.
    NewSynRecv,
    /// Bound but neither listening nor connected (Linux 6.x); never requested
    /// and never counted.
    BoundInactive,
    Other(u8),
}

impl From<u8> for TcpState {
    fn from(v: u8) -> Self {
        match v {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            other => TcpState::Other(other),
        }
    }
}

/// Sockets seen per raw byte value in one gather: the TCP state, or for unix
/// sockets the socket type.
#[derive(Clone)]
pub struct StateHistogram([u64; 256]);

impl Default for StateHistogram {
    fn default() -> Self {
        StateHistogram([0; 256])
    }
}

impl std::fmt::Debug for StateHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().enumerate().filter(|(_, &n)| n != 0))
            .finish()
    }
}

impl StateHistogram {
    #[inline(always)]
    pub fn add(&mut self, state: u8) {
        self.0[state as usize] += 1;
    }

    /// Adds `n` sockets in `state` at once.
    pub fn add_n(&mut self, state: u8, n: u64) {
        self.0[state as usize] += n;
    }

    pub fn get(&self, state: u8) -> u64 {
        self.0[state as usize]
    }

    pub fn clear(&mut self) {
        self.0 = [0; 256];
    }

    /// Sockets counted, whatever their state.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// States this program does not map to a field, with their counts.
    pub fn unknown(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|&(s, &n)| n != 0 && matches!(TcpState::from(s as u8), TcpState::Other(_)))
            .map(|(s, &n)| (s as u8, n))
    }
}

/// The 13 fields of the built-in `netstat` measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tcp_established: u64,
    pub tcp_syn_sent: u64,
    pub tcp_syn_recv: u64,
    pub tcp_fin_wait1: u64,
    pub tcp_fin_wait2: u64,
    pub tcp_time_wait: u64,
    pub tcp_close: u64,
    pub tcp_close_wait: u64,
    pub tcp_last_ack: u64,
    pub tcp_listen: u64,
    pub tcp_closing: u64,
    pub tcp_none: u64,
    pub udp_socket: u64,
}

/// The field of UDP sockets.
pub const UDP_SOCKET: &str = "udp_socket";
/// The field inputs.netstat names NONE, which has no kernel state.
pub const TCP_NONE: &str = "tcp_none";

impl Counts {
    /// Field names and values, sorted by name as Telegraf's serializer writes
    /// them.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("tcp_close", self.tcp_close),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_closing", self.tcp_closing),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait1", self.tcp_fin_wait1),
            ("tcp_fin_wait2", self.tcp_fin_wait2),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_listen", self.tcp_listen),
            (TCP_NONE, self.tcp_none),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_time_wait", self.tcp_time_wait),
            (UDP_SOCKET, self.udp_socket),
        ]
    }

    /// Adds another gather's counts field by field (used to merge sources).
    pub fn add(&mut self, o: &Counts) {
        self.tcp_established += o.tcp_established;
        self.tcp_syn_sent += o.tcp_syn_sent;
        self.tcp_syn_recv += o.tcp_syn_recv;
        self.tcp_fin_wait1 += o.tcp_fin_wait1;
        self.tcp_fin_wait2 += o.tcp_fin_wait2;
        self.tcp_time_wait += o.tcp_time_wait;
        self.tcp_close += o.tcp_close;
        self.tcp_close_wait += o.tcp_close_wait;
        self.tcp_last_ack += o.tcp_last_ack;
        self.tcp_listen += o.tcp_listen;
        self.tcp_closing += o.tcp_closing;
        self.tcp_none += o.tcp_none;
        self.udp_socket += o.udp_socket;
    }
}

/// Turns a TCP state histogram and a UDP socket count into the 13 fields.
/// Unknown and bound-inactive states are counted nowhere.
pub fn counts_from_states(tcp: &StateHistogram, udp_sockets: u64) -> Counts {
    let mut c = Counts {
        udp_socket: udp_sockets,
        ..Counts::default()
    };
    for (state, &n) in tcp.0.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let field = match TcpState::from(state as u8) {
            TcpState::Established => &mut c.tcp_established,
            TcpState::SynSent => &mut c.tcp_syn_sent,
            TcpState::SynRecv | TcpState::NewSynRecv => &mut c.tcp_syn_recv,
            TcpState::FinWait1 => &mut c.tcp_fin_wait1,
            TcpState::FinWait2 => &mut c.tcp_fin_wait2,
            TcpState::TimeWait => &mut c.tcp_time_wait,
            TcpState::Close => &mut c.tcp_close,
            TcpState::CloseWait => &mut c.tcp_close_wait,
            TcpState::LastAck => &mut c.tcp_last_ack,
            TcpState::Listen => &mut c.tcp_listen,
            TcpState::Closing => &mut c.tcp_closing,
            TcpState::BoundInactive | TcpState::Other(_) => continue,
        };
        *field += n;
    }
    c
}

/// Unix socket types as the built-in's fields end up counting them:
/// `SOCK_DGRAM` (2) in `udp_socket`, `SOCK_STREAM` (1) and `SOCK_SEQPACKET`
/// (5) in `tcp_none`. No other type exists for unix sockets.
pub fn counts_from_unix_types(types: &StateHistogram) -> Counts {
    Counts {
        udp_socket: types.get(2),
        tcp_none: types.get(1) + types.get(5),
        ..Counts::default()
    }
}

/// The sockets of one group (a destination, a cgroup), small enough to keep
/// one per group: TCP states below 16 (every state this program knows), UDP
/// sockets, and unix sockets by type (datagram; stream and seqpacket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    tcp: [u32; 16],
    udp: u32,
    unix: [u32; 2],
    /// `--health`'s fields of these sockets (fed by the aggregation that
    /// owns the tally, only with `--health`).
    pub health: Signals,
}

impl Tally {
    #[inline(always)]
    pub fn add_record(&mut self, r: &Record) {
        match r.kind {
            Kind::Tcp => {
                if let Some(n) = self.tcp.get_mut(r.state as usize) {
                    *n += 1;
                }
            }
            Kind::Udp => self.udp += 1,
            // SOCK_DGRAM; SOCK_STREAM, SOCK_SEQPACKET.
            Kind::Unix => self.unix[usize::from(r.state != 2)] += 1,
        }
    }

    /// Forgets what was counted of `kind`.
    pub fn reset(&mut self, kind: Kind) {
        match kind {
            Kind::Tcp => self.tcp = [0; 16],
            Kind::Udp => self.udp = 0,
            Kind::Unix => self.unix = [0; 2],
        }
        self.health.reset(kind);
    }

    pub fn tcp_total(&self) -> u64 {
        self.tcp.iter().map(|&n| u64::from(n)).sum()
    }

    pub fn total(&self) -> u64 {
        self.tcp_total() + u64::from(self.udp) + u64::from(self.unix[0] + self.unix[1])
    }

    pub fn add(&mut self, o: &Tally) {
        for (a, b) in self.tcp.iter_mut().zip(o.tcp) {
            *a += b;
        }
        self.udp += o.udp;
        self.unix[0] += o.unix[0];
        self.unix[1] += o.unix[1];
        self.health.add(&o.health);
    }

    /// The 13 `netstat` fields, unix sockets counted as `--include-unix`
    /// counts them.
    pub fn counts(&self) -> Counts {
        let mut h = StateHistogram::default();
        for (state, &n) in self.tcp.iter().enumerate() {
            h.add_n(state as u8, u64::from(n));
        }
        let mut c = counts_from_states(&h, u64::from(self.udp));
        c.udp_socket += u64::from(self.unix[0]);
        c.tcp_none += u64::from(self.unix[1]);
        c
    }
}

/// One namespace's TCP sockets counted without records: per family (IPv4,
/// IPv6) and raw state (12, a request socket, is counted as SYN_RECV); the
/// last slot, `UNKNOWN_STATE`, collects sockets in no state this program
/// knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStates(pub [[u64; 16]; 2]);

/// `TcpStates`' slot of sockets in an unknown state (counted as state 255).
pub const UNKNOWN_STATE: usize = 15;

/// The `netstat` aggregation: TCP states and UDP sockets per address
/// family, unix socket types.
#[derive(Debug, Clone, Default)]
pub struct StateCounts {
    tcp: [StateHistogram; 2],
    /// Bytes queued on TCP sockets other than listeners, per family.
    queued: [Queued; 2],
    udp: [u64; 2],
    unix: StateHistogram,
}

/// Bytes queued on TCP sockets other than listeners (whose two numbers are
/// connections, not bytes: their accept queue's length and limit), what
/// node_exporter's tcpstat calls `rx_queued_bytes` and `tx_queued_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    /// Received, not yet read by the application.
    pub receive: u64,
    /// Sent, not yet acknowledged by the peer.
    pub send: u64,
}

impl Queued {
    pub fn add(&mut self, o: &Queued) {
        self.receive += o.receive;
        self.send += o.send;
    }
}

impl StateCounts {
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        match r.kind {
            Kind::Tcp => {
                let family = r.family_slot();
                self.tcp[family].add(r.state);
                if r.state != LISTEN {
                    let q = &mut self.queued[family];
                    q.receive += u64::from(r.rqueue);
                    q.send += u64::from(r.wqueue);
                }
            }
            Kind::Udp => self.udp[r.family_slot()] += 1,
            Kind::Unix => self.unix.add(r.state),
        }
    }

    /// Adds TCP sockets counted elsewhere (`--source bpf`'s walk), per
    /// family (IPv4, IPv6) and raw state; the bytes queued stay unknown.
    pub fn add_tcp_states(&mut self, states: &TcpStates) {
        for (h, family) in self.tcp.iter_mut().zip(&states.0) {
            for (state, &n) in family.iter().enumerate() {
                let state = if state == UNKNOWN_STATE {
                    255
                } else {
                    state as u8
                };
                h.add_n(state, n);
            }
        }
    }

    /// Adds bytes queued counted elsewhere (`--source bpf`'s walk), IPv4
    /// and IPv6, listeners left out.
    pub fn add_queued(&mut self, queued: &[Queued; 2]) {
        for (q, o) in self.queued.iter_mut().zip(queued) {
            q.add(o);
        }
    }

    pub fn reset(&mut self, kind: Kind) {
        match kind {
            Kind::Tcp => {
                self.tcp.iter_mut().for_each(StateHistogram::clear);
                self.queued = Default::default();
            }
            Kind::Udp => self.udp = [0; 2],
            Kind::Unix => self.unix.clear(),
        }
    }

    /// Bytes queued on TCP sockets other than listeners: IPv4, IPv6.
    pub fn queued(&self) -> [Queued; 2] {
        self.queued
    }

    /// The 13 fields per family (unix sockets only if `include_unix`).
    pub fn by_family(&self, include_unix: bool) -> ByFamily {
        ByFamily {
            ipv4: counts_from_states(&self.tcp[0], self.udp[0]),
            ipv6: counts_from_states(&self.tcp[1], self.udp[1]),
            unix: if include_unix {
                counts_from_unix_types(&self.unix)
            } else {
                Counts::default()
            },
        }
    }

    /// TCP states this program does not know, with their counts.
    pub fn unknown(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        self.tcp.iter().flat_map(StateHistogram::unknown)
    }
}

/// One namespace's counts, split by address family. Unix sockets are only
/// counted with `--include-unix`; otherwise `unix` stays zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByFamily {
    pub ipv4: Counts,
    pub ipv6: Counts,
    pub unix: Counts,
}

impl ByFamily {
    /// All families together: what one metric without a `family` tag holds.
    pub fn total(&self) -> Counts {
        let mut c = self.ipv4;
        c.add(&self.ipv6);
        c.add(&self.unix);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AF_INET, AF_INET6, AF_UNIX};

    fn rec(kind: Kind, family: u8, state: u8) -> Record {
        Record::inet(kind, family, state, ([0; 16], 443), ([0; 16], 50000))
    }

    #[test]
    fn state_counts_split_families_and_reset_per_kind() {
        let mut c = StateCounts::default();
        for r in [
            rec(Kind::Tcp, AF_INET, 1),
            rec(Kind::Tcp, AF_INET6, 1),
            rec(Kind::Tcp, AF_INET6, 12),
            rec(Kind::Udp, AF_INET, 7),
            rec(Kind::Udp, AF_INET6, 1),
            rec(Kind::Unix, AF_UNIX, 2),
            rec(Kind::Unix, AF_UNIX, 5),
        ] {
            c.add(&r);
        }
        let f = c.by_family(true);
        assert_eq!((f.ipv4.tcp_established, f.ipv4.udp_socket), (1, 1));
        assert_eq!(
            (
                f.ipv6.tcp_established,
                f.ipv6.tcp_syn_recv,
                f.ipv6.udp_socket
            ),
            (1, 1, 1)
        );
        assert_eq!((f.unix.udp_socket, f.unix.tcp_none), (1, 1));
        assert_eq!(c.by_family(false).unix, Counts::default());
        c.reset(Kind::Tcp);
        let f = c.by_family(true);
        assert_eq!(f.total().tcp_established, 0);
        assert_eq!(f.total().udp_socket, 3);
    }

    fn hist(states: &[(u8, u64)]) -> StateHistogram {
        let mut h = StateHistogram::default();
        for &(s, n) in states {
            for _ in 0..n {
                h.add(s);
            }
        }
        h
    }

    #[test]
    fn maps_every_kernel_state_to_its_field() {
        let h = hist(&[
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (6, 6),
            (7, 7),
            (8, 8),
            (9, 9),
            (10, 10),
            (11, 11),
            (12, 12),
        ]);
        let c = counts_from_states(&h, 99);
        assert_eq!(
            c,
            Counts {
                tcp_established: 1,
                tcp_syn_sent: 2,
                tcp_syn_recv: 3 + 12,
                tcp_fin_wait1: 4,
                tcp_fin_wait2: 5,
                tcp_time_wait: 6,
                tcp_close: 7,
                tcp_close_wait: 8,
                tcp_last_ack: 9,
                tcp_listen: 10,
                tcp_closing: 11,
                tcp_none: 0,
                udp_socket: 99,
            }
        );
    }

    #[test]
    fn unknown_and_bound_inactive_states_count_nowhere() {
        let h = hist(&[(0, 1), (13, 2), (14, 3), (200, 4), (1, 5)]);
        let c = counts_from_states(&h, 0);
        assert_eq!(c.fields().iter().map(|f| f.1).sum::<u64>(), 5);
        assert_eq!(c.tcp_established, 5);
        // 13 is known (bound-inactive) and not reported as unknown.
        assert_eq!(h.unknown().collect::<Vec<_>>(), [(0, 1), (14, 3), (200, 4)]);
    }

    #[test]
    fn fields_are_sorted_and_complete() {
        let f = Counts::default().fields();
        let names: Vec<_> = f.iter().map(|f| f.0).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 13);
    }

    #[test]
    fn add_sums_every_field() {
        let a = counts_from_states(&hist(&[(1, 2), (10, 1)]), 3);
        let mut b = a;
        b.add(&a);
        for ((_, x), (_, y)) in a.fields().iter().zip(b.fields().iter()) {
            assert_eq!(*y, 2 * x);
        }
    }

    #[test]
    fn unix_types_go_where_the_built_in_puts_them() {
        let c = counts_from_unix_types(&hist(&[(1, 4), (2, 3), (5, 2), (3, 9)]));
        assert_eq!(
            c,
            Counts {
                tcp_none: 6,
                udp_socket: 3,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn total_adds_the_families() {
        let f = ByFamily {
            ipv4: counts_from_states(&hist(&[(1, 2), (10, 1)]), 3),
            ipv6: counts_from_states(&hist(&[(1, 1)]), 2),
            unix: counts_from_unix_types(&hist(&[(1, 5), (2, 1)])),
        };
        let t = f.total();
        assert_eq!(t.tcp_established, 3);
        assert_eq!(t.tcp_listen, 1);
        assert_eq!(t.udp_socket, 6);
        assert_eq!(t.tcp_none, 5);
    }
}
