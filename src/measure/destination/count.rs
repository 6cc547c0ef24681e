//! The `netstat_destination` and `netstat_ephemeral` aggregations: where a
//! namespace's outbound connections go, and how close each destination is
//! to running out of local ports.
//!
//! **Outbound** sockets are TCP sockets other than listeners, and connected
//! UDP sockets, whose local port `connect()` could have picked (inside the
//! namespace's ephemeral range, not reserved: `PortRange`) and is not a
//! port a TCP listener of the namespace listens on. Without that last rule
//! every accepted connection on a listener inside the range (a common sight:
//! services bound to port 0, or to a port above 32768) would make its client
//! a "destination". Listeners are known before the sockets that use them
//! (see `port::count` for the order of both sources).
//!
//! Exhaustion is per (local address, remote address, remote port):
//! `__inet_hash_connect()` (net/ipv4/inet_hashtables.c) accepts a port when
//! no socket holds the same 4-tuple, so one local port serves many
//! destinations, and toward one destination from one local address at most
//! `range_size` sockets can exist. So the pass counts outbound sockets per
//! such triple (`Tuple`); a destination's figures are the sum over its
//! triples, and its `utilization` the largest TCP count of one triple over
//! `range_size`. An IPv4 address is kept as its IPv4-mapped IPv6 form, the
//! form an IPv6 socket connected to it reports, so both are one destination
//! (the kernel checks both against the same hash).
//!
//! Memory: one hash map entry per distinct triple, at most
//! [`MAX_TRACKED`] per namespace, grown to the largest number seen and
//! reused (cleared, not freed) by later gathers; nothing is allocated per
//! socket. Sockets toward triples past the cap are still counted, in the
//! `other` row and in every total, but not per destination: the top N and
//! `max_per_destination` may then miss a destination (a `W!` line says so).
//! The map is keyed with foldhash's per-process random seed: remote
//! addresses can be chosen by others, and a fixed hash would let them
//! collide every key into one bucket.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::measure::health::count::Failure;
use crate::measure::netstat::count::Tally;
use crate::portrange::{PortBits, PortRange};
use crate::record::{Kind, Record, LISTEN};
use crate::wire::AF_INET;

/// At most this many (local address, remote address, remote port) are
/// tracked per namespace.
pub const MAX_TRACKED: usize = 16_384;

/// `--destinations N` takes N from 1 to this.
pub const MAX_TOP: usize = 1000;

/// `TCP_ESTABLISHED`: a UDP socket in this state is connected.
const CONNECTED: u8 = 1;

/// One triple, addresses in IPv6 form (IPv4 mapped). Ordered by remote
/// address, remote port, local address, so that sorting groups a
/// destination's triples together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tuple {
    remote: [u8; 16],
    port: u16,
    local: [u8; 16],
}

/// The address in IPv6 form: IPv4 as `::ffff:a.b.c.d`.
#[inline(always)]
pub fn v6_form(family: u8, addr: &[u8; 16]) -> [u8; 16] {
    if family != AF_INET {
        return *addr;
    }
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&addr[..4]);
    m
}

/// Whether an address in IPv6 form is an IPv4 one.
pub fn is_v4(addr: &[u8; 16]) -> bool {
    addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

/// A destination's address as text: an IPv4 one (kept mapped) as IPv4,
/// through the one formatter, [`crate::record::address_text`].
pub fn address_text(addr: &[u8; 16]) -> String {
    if is_v4(addr) {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&addr[12..]);
        crate::record::address_text(crate::wire::AF_INET, &v4)
    } else {
        crate::record::address_text(crate::wire::AF_INET6, addr)
    }
}

/// One destination's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// In IPv6 form (IPv4 mapped); see [`address_text`].
    pub addr: [u8; 16],
    pub port: u16,
    pub sockets: Tally,
    /// The most outbound TCP sockets from one local address to it.
    pub max_per_local: u64,
}

/// `netstat_ephemeral`'s fields, but `utilization`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ephemeral {
    pub range_size: u64,
    pub ports_used: u64,
    pub max_per_destination: u64,
    pub destinations: u64,
}

/// `count / range_size`; 1 when the range is empty (every port reserved:
/// no `connect()` without `bind()` can succeed).
pub fn utilization(count: u64, range_size: u64) -> f64 {
    if range_size == 0 {
        1.0
    } else {
        count as f64 / range_size as f64
    }
}

/// The aggregation: fed by one pass, summed up by [`Outbound::finish`].
#[derive(Debug, Default)]
pub struct Outbound {
    /// The namespace's range, read before each gather.
    pub range: PortRange,
    /// Ports with a TCP listener, this gather.
    listening: PortBits,
    /// Local ports held by any TCP socket, this gather.
    used: PortBits,
    index: HashMap<Tuple, u32, RandomState>,
    tuples: Vec<(Tuple, Tally)>,
    /// Outbound sockets toward triples past `MAX_TRACKED`.
    beyond: Tally,
    capped: bool,
    /// What `finish` found: every destination, busiest first.
    destinations: Vec<Destination>,
    summary: Ephemeral,
}

impl Outbound {
    /// Forgets what was counted of `kind` (TCP is counted first in each
    /// gather, so forgetting it starts the gather afresh; UDP's counts are
    /// zeroed in place).
    pub fn reset(&mut self, kind: Kind) {
        match kind {
            Kind::Tcp => {
                self.listening.clear();
                self.used.clear();
                self.index.clear();
                self.tuples.clear();
                self.beyond = Tally::default();
                self.capped = false;
            }
            Kind::Udp => {
                for (_, t) in &mut self.tuples {
                    t.reset(Kind::Udp);
                }
                self.beyond.reset(Kind::Udp);
            }
            Kind::Unix => {}
        }
    }

    /// A listening socket from the listeners' own pass.
    pub fn listener(&mut self, port: u16) {
        self.listening.set(port);
        self.used.set(port);
    }

    /// One socket of the main pass.
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        match r.kind {
            Kind::Tcp if r.state == LISTEN => return self.listener(r.local_port),
            Kind::Tcp => self.used.set(r.local_port),
            Kind::Udp if r.state == CONNECTED => {}
            _ => return,
        }
        if let Some(key) = self.outbound(r) {
            self.tally(key).add_record(r);
        }
    }

    /// `--health`: a socket the main pass counted ([`Self::add`] first)
    /// that is failing (`f`) or is a UDP socket with drops or a receive
    /// queue, added to its destination.
    pub fn add_health(&mut self, r: &Record, f: Option<Failure>) {
        let counted = match r.kind {
            Kind::Tcp => r.state != LISTEN,
            Kind::Udp => r.state == CONNECTED,
            Kind::Unix => false,
        };
        if let Some(key) = self.outbound(r).filter(|_| counted) {
            self.tally(key).health.add_record(r, f);
        }
    }

    /// The socket's triple, if it is outbound (a TCP socket other than a
    /// listener, or a connected UDP one: the caller checks).
    #[inline(always)]
    fn outbound(&self, r: &Record) -> Option<Tuple> {
        if !self.range.contains(r.local_port) || self.listening.get(r.local_port) {
            return None;
        }
        Some(Tuple {
            remote: v6_form(r.family, &r.remote_addr),
            port: r.remote_port,
            local: v6_form(r.family, &r.local_addr),
        })
    }

    /// The tally of `key`: found, made, or past the cap the `other` one.
    #[inline(always)]
    fn tally(&mut self, key: Tuple) -> &mut Tally {
        match self.index.get(&key) {
            Some(&i) => &mut self.tuples[i as usize].1,
            None if self.tuples.len() >= MAX_TRACKED => {
                self.capped = true;
                &mut self.beyond
            }
            None => {
                self.index.insert(key, self.tuples.len() as u32);
                self.tuples.push((key, Tally::default()));
                &mut self.tuples.last_mut().expect("just pushed").1
            }
        }
    }

    /// Sums the pass up: the destinations, busiest first (most sockets,
    /// then address, IPv4 before IPv6, then port), and the namespace's
    /// figures.
    pub fn finish(&mut self) {
        self.tuples.retain(|(_, t)| t.total() > 0);
        self.tuples.sort_unstable_by_key(|(k, _)| *k);
        self.destinations.clear();
        let mut s = Ephemeral {
            range_size: self.range.size(),
            ports_used: self.range.count_used(&self.used),
            ..Ephemeral::default()
        };
        for (k, t) in &self.tuples {
            let tcp = t.tcp_total();
            s.max_per_destination = s.max_per_destination.max(tcp);
            match self.destinations.last_mut() {
                Some(d) if d.addr == k.remote && d.port == k.port => {
                    d.sockets.add(t);
                    d.max_per_local = d.max_per_local.max(tcp);
                }
                _ => self.destinations.push(Destination {
                    addr: k.remote,
                    port: k.port,
                    sockets: *t,
                    max_per_local: tcp,
                }),
            }
        }
        s.destinations = self
            .destinations
            .iter()
            .filter(|d| d.sockets.tcp_total() > 0)
            .count() as u64;
        self.summary = s;
        self.destinations.sort_unstable_by_key(|d| {
            (
                std::cmp::Reverse(d.sockets.total()),
                !is_v4(&d.addr),
                d.addr,
                d.port,
            )
        });
    }

    /// `netstat_ephemeral`'s figures (after `finish`).
    pub fn summary(&self) -> Ephemeral {
        self.summary
    }

    /// The `n` busiest destinations, and the rest summed (`None` when there
    /// is no rest) with the largest `max_per_local` among them (after
    /// `finish`).
    pub fn top(&self, n: usize) -> (&[Destination], Option<(Tally, u64)>) {
        let n = n.min(self.destinations.len());
        let (top, rest) = self.destinations.split_at(n);
        if rest.is_empty() && self.beyond.total() == 0 {
            return (top, None);
        }
        let mut other = self.beyond;
        let mut max = 0;
        for d in rest {
            other.add(&d.sockets);
            max = max.max(d.max_per_local);
        }
        (top, Some((other, max)))
    }

    /// More than `MAX_TRACKED` triples were found this gather.
    pub fn capped(&self) -> bool {
        self.capped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SYN_RECV;
    use crate::wire::AF_INET6;

    const ESTABLISHED: u8 = 1;
    const TIME_WAIT: u8 = 6;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    fn sock(
        kind: Kind,
        family: u8,
        state: u8,
        local: ([u8; 16], u16),
        remote: ([u8; 16], u16),
    ) -> Record {
        Record::inet(kind, family, state, local, remote)
    }

    fn outbound(range: &[u8], reserved: &[u8]) -> Outbound {
        let mut o = Outbound::default();
        o.range.parse(range, reserved).unwrap();
        o.reset(Kind::Tcp);
        o
    }

    #[test]
    fn triples_destinations_and_the_namespace_s_figures() {
        let mut o = outbound(b"40000 40009", b"40009");
        let lo = v4([127, 0, 0, 1]);
        let other_local = v4([127, 0, 0, 2]);
        let db = (v4([10, 0, 0, 5]), 5432);
        // A listener inside the range, with an inbound connection and a
        // handshake: neither is outbound, but the port is used.
        o.add(&sock(Kind::Tcp, AF_INET, LISTEN, (lo, 40001), ([0; 16], 0)));
        o.add(&sock(
            Kind::Tcp,
            AF_INET,
            ESTABLISHED,
            (lo, 40001),
            (lo, 40002),
        ));
        o.add(&sock(
            Kind::Tcp,
            AF_INET,
            SYN_RECV,
            (lo, 40001),
            (lo, 40003),
        ));
        // Three to the database from one address (one in TIME_WAIT), one
        // from another address, one from an IPv6 socket to its mapped
        // address and the same port as the first.
        for (port, state) in [
            (40002, ESTABLISHED),
            (40003, ESTABLISHED),
            (40004, TIME_WAIT),
        ] {
            o.add(&sock(Kind::Tcp, AF_INET, state, (lo, port), db));
        }
        o.add(&sock(
            Kind::Tcp,
            AF_INET,
            ESTABLISHED,
            (other_local, 40002),
            db,
        ));
        o.add(&sock(
            Kind::Tcp,
            AF_INET6,
            ESTABLISHED,
            (v6_form(AF_INET, &lo), 40005),
            (v6_form(AF_INET, &db.0), 5432),
        ));
        // Not outbound: outside the range, reserved, an unconnected UDP
        // socket. A connected UDP socket to DNS is.
        let dns = (v4([10, 0, 0, 53]), 53);
        o.add(&sock(Kind::Tcp, AF_INET, ESTABLISHED, (lo, 39999), db));
        o.add(&sock(Kind::Tcp, AF_INET, ESTABLISHED, (lo, 40009), db));
        o.add(&sock(Kind::Udp, AF_INET, 7, (lo, 40006), ([0; 16], 0)));
        o.add(&sock(Kind::Udp, AF_INET, ESTABLISHED, (lo, 40007), dns));
        o.finish();
        let s = o.summary();
        assert_eq!(s.range_size, 9);
        // 40001 .. 40005 by TCP (39999 is outside, 40009 reserved); UDP
        // ports are not counted.
        assert_eq!(s.ports_used, 5);
        assert_eq!(s.max_per_destination, 4, "127.0.0.1 to the database");
        assert_eq!(s.destinations, 1, "UDP is not a TCP destination");
        let (top, other) = o.top(10);
        assert!(other.is_none());
        assert_eq!(top.len(), 2);
        assert_eq!(address_text(&top[0].addr), "10.0.0.5");
        assert_eq!(top[0].port, 5432);
        let c = top[0].sockets.counts();
        assert_eq!((c.tcp_established, c.tcp_time_wait), (4, 1));
        assert_eq!(top[0].max_per_local, 4);
        assert_eq!(
            (
                address_text(&top[1].addr).as_str(),
                top[1].sockets.counts().udp_socket
            ),
            ("10.0.0.53", 1)
        );
        assert!((utilization(top[0].max_per_local, s.range_size) - 4.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn the_top_n_then_the_rest_summed_ties_by_address() {
        let mut o = outbound(b"1024 65535", b"");
        let lo = v4([127, 0, 0, 1]);
        let mut port = 30000;
        let mut connect = |o: &mut Outbound, to: [u8; 16], n: usize| {
            for _ in 0..n {
                port += 1;
                o.add(&sock(Kind::Tcp, AF_INET, ESTABLISHED, (lo, port), (to, 80)));
            }
        };
        connect(&mut o, v4([10, 0, 0, 9]), 3);
        connect(&mut o, v4([10, 0, 0, 2]), 2);
        connect(&mut o, v4([10, 0, 0, 1]), 2);
        connect(&mut o, v4([10, 0, 0, 3]), 1);
        let mut six = [0u8; 16];
        six[0] = 0x20;
        six[1] = 0x01;
        six[15] = 1;
        for _ in 0..2 {
            port += 1;
            o.add(&sock(
                Kind::Tcp,
                AF_INET6,
                ESTABLISHED,
                (six, port),
                (six, 80),
            ));
        }
        o.finish();
        let (top, other) = o.top(3);
        let names: Vec<String> = top.iter().map(|d| address_text(&d.addr)).collect();
        assert_eq!(names, ["10.0.0.9", "10.0.0.1", "10.0.0.2"]);
        let (rest, max) = other.unwrap();
        assert_eq!((rest.counts().tcp_established, max), (3, 2));
        // Two sockets each: IPv4 addresses before IPv6 ones.
        let all: Vec<String> = o.top(5).0.iter().map(|d| address_text(&d.addr)).collect();
        assert_eq!(all[3..], ["2001::1", "10.0.0.3"]);
        assert!(o.top(5).1.is_none());
    }

    #[test]
    fn past_the_cap_the_totals_stay_exact() {
        let mut o = outbound(b"1024 65535", b"");
        let lo = v4([127, 0, 0, 1]);
        let n = MAX_TRACKED + 10;
        for i in 0..n {
            let to = v4([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            o.add(&sock(
                Kind::Tcp,
                AF_INET,
                ESTABLISHED,
                (lo, 40000),
                (to, 80),
            ));
        }
        assert!(o.capped());
        o.finish();
        let (top, other) = o.top(MAX_TOP);
        let total: u64 =
            top.iter().map(|d| d.sockets.total()).sum::<u64>() + other.unwrap().0.total();
        assert_eq!(total, n as u64);
        // The next gather starts afresh, keeping the memory.
        let capacity = o.tuples.capacity();
        o.reset(Kind::Tcp);
        o.reset(Kind::Udp);
        assert!(!o.capped());
        o.finish();
        assert_eq!(o.top(10), (&[][..], None));
        assert_eq!(o.tuples.capacity(), capacity);
    }

    #[test]
    fn a_udp_pass_read_again_is_not_counted_twice() {
        let mut o = outbound(b"1024 65535", b"");
        let lo = v4([127, 0, 0, 1]);
        let dns = (v4([10, 0, 0, 53]), 53);
        o.add(&sock(Kind::Tcp, AF_INET, ESTABLISHED, (lo, 40000), dns));
        for _ in 0..2 {
            o.reset(Kind::Udp);
            o.add(&sock(Kind::Udp, AF_INET, ESTABLISHED, (lo, 40001), dns));
        }
        o.finish();
        let c = o.top(1).0[0].sockets.counts();
        assert_eq!((c.tcp_established, c.udp_socket), (1, 1));
    }
}
