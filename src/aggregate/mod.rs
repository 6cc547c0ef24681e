//! Aggregations: what a gather computes from the socket records it reads,
//! in one pass. The sources (`netlink`, `procfs`) turn each socket into a
//! [`Record`] and hand it to [`Aggregations::add`]; each aggregation is a
//! small type of its own that reads the fields it needs, so adding one
//! touches neither source.
//!
//! - [`states`]: the 13 fields of `netstat`, per address family;
//! - [`ports`]: the same fields per chosen local and remote port
//!   (`netstat_port`), when asked for;
//! - [`listen`]: accept queues per listening address (`netstat_listen`),
//!   when asked for.

pub mod listen;
pub mod ports;
pub mod states;

use crate::wire::AF_INET6;
use listen::ListenCounts;
use ports::{PortConfig, PortCounts};
use states::StateCounts;

/// What kind of socket a record describes (which dump or table it came
/// from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
    Unix,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Unix => "unix",
        })
    }
}

/// One socket as either source reports it: the fixed fields of a netlink
/// record's header or of a /proc line. Built on the stack, never allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// `AF_INET`, `AF_INET6` (`AF_UNIX` for unix sockets).
    pub family: u8,
    /// The TCP state number (UDP sockets: `TCP_ESTABLISHED` when connected,
    /// else `TCP_CLOSE`); for unix sockets, the socket type.
    pub state: u8,
    /// Host byte order; 0 for unix sockets.
    pub local_port: u16,
    /// 0 when not connected.
    pub remote_port: u16,
    /// For TCP listeners and handshakes (state LISTEN or SYN_RECV) only:
    /// what `netstat_listen` needs.
    pub listen: Option<ListenInfo>,
}

/// `TCP_LISTEN`.
pub const LISTEN: u8 = 10;
/// `TCP_SYN_RECV`: request sockets are reported in this state by both
/// sources (`inet_diag_req_fill()`; /proc's `get_openreq4()` prints 03).
pub const SYN_RECV: u8 = 3;

/// The parts of a listener's (or a handshake's) record that
/// `netstat_listen` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenInfo {
    /// The local address, 16 bytes; IPv4 uses the first 4.
    pub addr: [u8; 16],
    /// A listener's accept queue length.
    pub queue: u32,
    /// A listener's accept queue limit (netlink only: /proc does not show it).
    pub backlog: Option<u32>,
    /// A listener's drop counter (netlink's listen dump only).
    pub drops: Option<u32>,
}

impl Record {
    /// Index of the address family in per-family arrays: 0 IPv4, 1 IPv6.
    #[inline(always)]
    pub fn family_slot(&self) -> usize {
        (self.family == AF_INET6) as usize
    }
}

/// Every aggregation one collector keeps, fed by one pass over the records.
/// Without a breakdown option only `states` runs: one histogram increment
/// per socket, as before there were others.
#[derive(Debug, Default)]
pub struct Aggregations {
    pub states: StateCounts,
    pub ports: Option<PortCounts>,
    pub listen: Option<ListenCounts>,
}

impl Aggregations {
    /// The aggregations asked for besides `states`: `ports` (if not empty)
    /// and `listen`.
    pub fn new(ports: &PortConfig, listen: bool) -> Aggregations {
        Aggregations {
            states: StateCounts::default(),
            ports: (!ports.is_empty()).then(|| PortCounts::new(ports)),
            listen: listen.then(ListenCounts::default),
        }
    }

    /// Counts one socket of the main pass in every aggregation.
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        self.states.add(r);
        if let Some(p) = &mut self.ports {
            p.add(r);
        }
        if let Some(l) = &mut self.listen {
            l.add(r);
        }
    }

    /// A listening socket from the listeners' own pass (made before the main
    /// one): known to `netstat_listen` and, as a listening port, to
    /// `netstat_port`.
    pub fn add_listener(&mut self, r: &Record) {
        if let Some(l) = &mut self.listen {
            l.add_listener(r);
        }
        if let Some(p) = &mut self.ports {
            if r.state == LISTEN && p.listening() {
                p.listener(r.local_port);
            }
        }
    }

    /// Forgets what was counted of `kind` (before a dump or a /proc read of
    /// it, which may follow a failed attempt); TCP includes the listeners.
    pub fn reset(&mut self, kind: Kind) {
        self.states.reset(kind);
        if let Some(p) = &mut self.ports {
            p.reset(kind);
        }
        if let (Kind::Tcp, Some(l)) = (kind, &mut self.listen) {
            l.reset();
        }
    }
}
