//! One socket as either source reports it ([`Record`]): the type the kernel
//! readers (`netlink`, `procfs`) produce and the aggregations consume,
//! below both so that neither reaches up into the other.

use crate::wire::{AF_INET, AF_INET6, AF_UNIX};

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
    /// The local and remote addresses, 16 bytes each in network order; an
    /// IPv4 address uses the first 4 (the other 12 are 0). All zero for
    /// unix sockets, and the remote one for sockets not connected.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// For TCP listeners and handshakes (state LISTEN or SYN_RECV) only:
    /// what `netstat_listen` needs.
    pub listen: Option<ListenInfo>,
    /// Bytes queued: received and not yet read by the application
    /// (`idiag_rqueue`, /proc's `rx_queue`), and sent and not yet
    /// acknowledged (`idiag_wqueue`, `tx_queue`); both sources compute them
    /// alike (`tcp_diag_get_info()`, `get_tcp4_sock()`). For a listener the
    /// kernel puts its accept queue length and limit here instead. 0 for
    /// unix sockets.
    pub rqueue: u32,
    pub wqueue: u32,
    /// The socket's cgroup v2 id (the inode of its cgroup directory), when
    /// asked for (`--by-cgroup`) and the kernel reported one: netlink only,
    /// full sockets only (not TIME_WAIT, not request sockets), Linux 5.8+.
    pub cgroup: Option<u64>,
    /// What `--health` reads: the socket's timer and retransmit count, and
    /// a UDP socket's drop counter.
    pub health: HealthInfo,
    /// A netlink record's `idiag_if` and `idiag_cookie`, as the kernel sent
    /// them (zero from /proc): with the ports and addresses, what a request
    /// for this one socket names (`--tcp-info`'s lookups).
    pub sock_ref: [u8; 12],
}

/// An address of a record as `ss` prints it: `AF_INET` dotted from the
/// first 4 bytes (`0.0.0.0`, `127.0.0.1`), any other family in RFC 5952
/// form (`::`, `::ffff:10.0.0.1`). The one address formatter.
pub fn address_text(family: u8, addr: &[u8; 16]) -> String {
    if family == AF_INET {
        std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string()
    } else {
        std::net::Ipv6Addr::from(*addr).to_string()
    }
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
    /// A listener's accept queue length.
    pub queue: u32,
    /// A listener's accept queue limit (netlink only: /proc does not show it).
    pub backlog: Option<u32>,
    /// A listener's drop counter (netlink's listen dump only).
    pub drops: Option<u32>,
}

/// A socket's timer, retransmit count and drop counter, as both sources
/// give them (`--health`; see `measure::health::count` for what they mean).
///
/// Netlink fills `timer` and `retrans` from every record's header
/// (`idiag_timer`, `idiag_retrans`: two bytes it reads anyway), and `drops`
/// only for UDP dumps that asked for `INET_DIAG_SKMEMINFO`. /proc fills
/// them only when `--health` asks (its `tr`, `retrnsmt` and `timeout`
/// columns; /proc/net/udp's `drops`), so as not to parse more columns
/// without it. All 0 otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthInfo {
    /// 0 none, 1 retransmit (or loss probe, or a request socket's SYN-ACK
    /// timer), 2 keepalive, 3 TIME_WAIT, 4 zero-window probe.
    pub timer: u8,
    /// With timer 1, the retransmissions so far (a request socket's
    /// SYN-ACKs resent); with 2 and 4, the probes sent unanswered.
    pub retrans: u8,
    /// UDP: datagrams the socket dropped since it was created (`sk_drops`).
    pub drops: u32,
}

/// One end of a socket: its address (16 bytes in network order, an IPv4
/// address in the first 4) and its port (host order).
pub type Endpoint = ([u8; 16], u16);

impl Record {
    /// A TCP or UDP socket in `state` between `local` and `remote`; its
    /// queues, listener parts, cgroup and health unknown until set.
    pub const fn inet(
        kind: Kind,
        family: u8,
        state: u8,
        local: Endpoint,
        remote: Endpoint,
    ) -> Record {
        Record {
            kind,
            family,
            state,
            local_port: local.1,
            remote_port: remote.1,
            local_addr: local.0,
            remote_addr: remote.0,
            listen: None,
            rqueue: 0,
            wqueue: 0,
            cgroup: None,
            health: HealthInfo {
                timer: 0,
                retrans: 0,
                drops: 0,
            },
            sock_ref: [0; 12],
        }
    }

    /// A unix socket of type `ty` (`SOCK_STREAM`, ...): nothing else of it
    /// is read.
    pub const fn unix(ty: u8) -> Record {
        Record::inet(Kind::Unix, AF_UNIX, ty, ([0; 16], 0), ([0; 16], 0))
    }

    /// With the bytes queued to read and to send.
    pub fn with_queues(mut self, rqueue: u32, wqueue: u32) -> Record {
        self.rqueue = rqueue;
        self.wqueue = wqueue;
        self
    }

    /// With a listener's or a handshake's parts.
    pub fn with_listen(mut self, listen: Option<ListenInfo>) -> Record {
        self.listen = listen;
        self
    }

    /// With the cgroup v2 id the kernel reported.
    pub fn with_cgroup(mut self, cgroup: Option<u64>) -> Record {
        self.cgroup = cgroup;
        self
    }

    /// With what `--health` reads.
    pub fn with_health(mut self, health: HealthInfo) -> Record {
        self.health = health;
        self
    }

    /// With the interface index and cookie of a netlink record.
    pub fn with_sock_ref(mut self, sock_ref: [u8; 12]) -> Record {
        self.sock_ref = sock_ref;
        self
    }

    /// Index of the address family in per-family arrays: 0 IPv4, 1 IPv6.
    #[inline(always)]
    pub fn family_slot(&self) -> usize {
        (self.family == AF_INET6) as usize
    }
}
