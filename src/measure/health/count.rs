//! `--health`: which sockets are failing now, from two bytes every socket
//! record carries (`idiag_timer`, `idiag_retrans`; /proc's `tr`,
//! `retrnsmt` and `timeout` columns, see `procfs::inet_record_health`),
//! and each UDP socket's drop counter and receive queue.
//!
//! A socket is *failing* in one of five ways ([`Failure`]), read from its
//! timer as `inet_sk_diag_fill()` (net/ipv4/inet_diag.c) and
//! `get_tcp4_sock()` (net/ipv4/tcp_ipv4.c) fill it, checked in Linux 6.18:
//!
//! - timer 1 (retransmit, `ICSK_TIME_RETRANS`, `REO_TIMEOUT` or
//!   `LOSS_PROBE`) with at least one retransmission (`icsk_retransmits`;
//!   a tail loss probe alone has none): in SYN_SENT a connect whose SYN is
//!   unanswered ([`Failure::SynRetrying`]); in SYN_RECV a handshake whose
//!   SYN-ACK is unanswered ([`Failure::SynackRetrying`]: request sockets,
//!   `tcp_req_diag_fill()`, and Fast Open children); in any later state data
//!   or a FIN unacknowledged ([`Failure::Retransmitting`]);
//! - timer 4 (`ICSK_TIME_PROBE0`): the peer advertises a zero window and
//!   data waits ([`Failure::ZeroWindow`]), however many probes were sent;
//! - timer 2 (keepalive, `sk_timer`) with at least one probe unanswered
//!   (`icsk_probes_out`): the peer has gone quiet
//!   ([`Failure::KeepaliveProbing`]).
//!
//! A socket is in at most one (the kernel reports one timer). What this
//! cannot see: a connection that failed and closed between two gathers,
//! TIME_WAIT (timer 3, no retransmissions), and a retransmission already
//! acknowledged. The namespace's own counters (`--counters`) count those
//! events; these gauges say *where* it is happening now.
//!
//! This module owns the namespace's totals (`netstat_health`); the rows
//! that break sockets down (`netstat_port`, `netstat_destination`,
//! `netstat_cgroup`, `netstat_listen`) keep a [`Signals`] (or, per
//! listener, a count) next to their sockets, fed by
//! [`crate::measure::Aggregations::add_health`] only for sockets that have something
//! to add.

use crate::record::{Kind, Record, LISTEN, SYN_RECV};

/// `TCP_SYN_SENT`.
const SYN_SENT: u8 = 2;
/// `TCP_TIME_WAIT` and `TCP_CLOSE`: with LISTEN, states with no
/// retransmission to speak of.
const TIME_WAIT: u8 = 6;
const CLOSE: u8 = 7;

/// How a socket is failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    SynRetrying = 0,
    Retransmitting = 1,
    ZeroWindow = 2,
    KeepaliveProbing = 3,
    SynackRetrying = 4,
}

/// The field of handshakes whose SYN-ACK is resent (`netstat_listen` has
/// it too).
pub const SYNACK_RETRYING: &str = NAMES[Failure::SynackRetrying as usize];
/// The field of UDP drops, the one counter.
pub const UDP_DROPS: &str = "udp_drops";
/// The field of bytes in UDP receive queues.
pub const UDP_RECEIVE_QUEUE: &str = "udp_receive_queue";

/// The field names, by `Failure as usize`.
const NAMES: [&str; 5] = [
    "syn_retrying",
    "retransmitting",
    "zero_window",
    "keepalive_probing",
    "synack_retrying",
];

/// How the socket is failing, if it is (see the module's doc).
#[inline(always)]
pub fn failure(r: &Record) -> Option<Failure> {
    if r.kind != Kind::Tcp {
        return None;
    }
    let h = r.health;
    match (h.timer, h.retrans) {
        (1, 1..) => match r.state {
            SYN_SENT => Some(Failure::SynRetrying),
            SYN_RECV => Some(Failure::SynackRetrying),
            LISTEN | TIME_WAIT | CLOSE => None,
            _ => Some(Failure::Retransmitting),
        },
        (4, _) => Some(Failure::ZeroWindow),
        (2, 1..) => Some(Failure::KeepaliveProbing),
        _ => None,
    }
}

/// What a group of sockets shows: how many are failing in each way, and
/// its UDP sockets' drops and receive queues. Small enough to keep one per
/// port, destination and cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    failing: [u32; 5],
    /// UDP datagrams dropped, summed over the sockets' lifetimes.
    pub udp_drops: u64,
    /// Bytes held in UDP receive queues.
    pub udp_receive_queue: u64,
}

impl Signals {
    /// One socket that has something to add (see
    /// [`crate::measure::Aggregations::add_health`]).
    #[inline(always)]
    pub fn add_record(&mut self, r: &Record, f: Option<Failure>) {
        if let Some(f) = f {
            self.failing[f as usize] += 1;
        }
        if r.kind == Kind::Udp {
            self.udp_drops += u64::from(r.health.drops);
            self.udp_receive_queue += u64::from(r.rqueue);
        }
    }

    pub fn add(&mut self, o: &Signals) {
        for (a, b) in self.failing.iter_mut().zip(o.failing) {
            *a += b;
        }
        self.udp_drops += o.udp_drops;
        self.udp_receive_queue += o.udp_receive_queue;
    }

    /// Forgets what was counted of `kind`.
    pub fn reset(&mut self, kind: Kind) {
        match kind {
            Kind::Tcp => self.failing = [0; 5],
            Kind::Udp => {
                self.udp_drops = 0;
                self.udp_receive_queue = 0;
            }
            Kind::Unix => {}
        }
    }

    /// Sockets failing in this way.
    pub fn failing(&self, f: Failure) -> u64 {
        u64::from(self.failing[f as usize])
    }

    /// The seven fields, by name, and whether each is a counter (only
    /// `udp_drops`, which grows until a socket closes).
    pub fn fields(&self) -> [(&'static str, u64, bool); 7] {
        let f = |i: usize| (NAMES[i], u64::from(self.failing[i]), false);
        [
            f(Failure::KeepaliveProbing as usize),
            f(Failure::Retransmitting as usize),
            f(Failure::SynRetrying as usize),
            f(Failure::SynackRetrying as usize),
            (UDP_DROPS, self.udp_drops, true),
            (UDP_RECEIVE_QUEUE, self.udp_receive_queue, false),
            f(Failure::ZeroWindow as usize),
        ]
    }
}

/// Whether a socket has anything for the health fields: failing, or a UDP
/// socket with drops or a receive queue. Sockets without skip every
/// lookup.
#[inline(always)]
pub fn worth_adding(r: &Record, f: Option<Failure>) -> bool {
    f.is_some() || (r.kind == Kind::Udp && (r.health.drops | r.rqueue) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::HealthInfo;
    use crate::wire::AF_INET;

    fn sock(kind: Kind, state: u8, timer: u8, retrans: u8) -> Record {
        Record::inet(kind, AF_INET, state, ([0; 16], 1), ([0; 16], 2)).with_health(HealthInfo {
            timer,
            retrans,
            drops: 0,
        })
    }

    #[test]
    fn timers_and_states_give_the_failure() {
        use Failure::*;
        let tcp = |state, timer, retrans| failure(&sock(Kind::Tcp, state, timer, retrans));
        assert_eq!(tcp(SYN_SENT, 1, 3), Some(SynRetrying));
        assert_eq!(tcp(SYN_SENT, 1, 0), None, "the first SYN's timer");
        assert_eq!(tcp(SYN_RECV, 1, 1), Some(SynackRetrying));
        assert_eq!(tcp(1, 1, 4), Some(Retransmitting));
        assert_eq!(tcp(8, 1, 1), Some(Retransmitting), "CLOSE_WAIT");
        assert_eq!(tcp(1, 1, 0), None, "a loss probe alone");
        assert_eq!(tcp(1, 4, 0), Some(ZeroWindow));
        assert_eq!(tcp(1, 2, 0), None, "keepalive armed, nothing unanswered");
        assert_eq!(tcp(1, 2, 2), Some(KeepaliveProbing));
        assert_eq!(tcp(TIME_WAIT, 3, 0), None);
        assert_eq!(tcp(LISTEN, 1, 1), None);
        assert_eq!(failure(&sock(Kind::Udp, 7, 1, 1)), None);
    }

    #[test]
    fn signals_add_up_and_reset_by_kind() {
        let mut s = Signals::default();
        let r = sock(Kind::Tcp, SYN_SENT, 1, 2);
        s.add_record(&r, failure(&r));
        let mut u = sock(Kind::Udp, 7, 0, 0);
        u.health.drops = 997;
        u.rqueue = 2304;
        assert!(worth_adding(&u, None));
        assert!(!worth_adding(&sock(Kind::Udp, 7, 0, 0), None));
        s.add_record(&u, None);
        let mut t = s;
        t.add(&s);
        assert_eq!(t.failing(Failure::SynRetrying), 2);
        let f = t.fields();
        assert!(f.windows(2).all(|w| w[0].0 < w[1].0), "sorted by name");
        assert!(f.contains(&("udp_drops", 1994, true)));
        assert!(f.contains(&("udp_receive_queue", 4608, false)));
        t.reset(Kind::Udp);
        assert_eq!((t.udp_drops, t.failing(Failure::SynRetrying)), (0, 2));
        t.reset(Kind::Tcp);
        assert_eq!(t, Signals::default());
    }
}
