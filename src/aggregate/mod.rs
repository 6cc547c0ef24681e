//! Aggregations: what a gather computes from the socket records it reads,
//! in one pass. The sources (`netlink`, `procfs`) turn each socket into a
//! [`Record`] and hand it to [`Aggregations::add`]; each aggregation is a
//! small type of its own that reads the fields it needs, so adding one
//! touches neither source.
//!
//! - [`states`]: the 13 fields of `netstat`, per address family;
//! - [`ports`]: the same fields per chosen local and remote port
//!   (`netstat_port`), when asked for.

pub mod ports;
pub mod states;

use crate::wire::AF_INET6;
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
}

impl Aggregations {
    /// The aggregations `ports` asks for besides `states`.
    pub fn new(ports: Option<&PortConfig>) -> Aggregations {
        Aggregations {
            states: StateCounts::default(),
            ports: ports.filter(|p| !p.is_empty()).map(PortCounts::new),
        }
    }

    /// Counts one socket in every aggregation.
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        self.states.add(r);
        if let Some(p) = &mut self.ports {
            p.add(r);
        }
    }

    /// Forgets what was counted of `kind` (before a dump or a /proc read of
    /// it, which may follow a failed attempt).
    pub fn reset(&mut self, kind: Kind) {
        self.states.reset(kind);
        if let Some(p) = &mut self.ports {
            p.reset(kind);
        }
    }
}
