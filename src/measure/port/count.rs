//! The `netstat_port` aggregation: the 13 `netstat` fields for chosen local
//! and remote ports (`--local-port`, `--remote-port`) and for every local
//! port with a TCP listener (`--listening-ports`).
//!
//! A socket counts toward local port N only by its own (local) port and
//! toward remote port N only by its peer's: a loopback connection to 443 is
//! one socket with local port 443 and one with remote port 443. UDP sockets
//! count under their bound port and, once connected, their peer's.
//!
//! Per socket this is two table lookups: each direction has a 64 Ki-entry
//! table from port to slot (allocated zeroed, so only the pages of ports in
//! use are ever touched), and a slot holds a small state histogram per
//! address family. Nothing is allocated per socket; a listening port's slot
//! is allocated when the port is first seen and reused afterwards.
//!
//! Listening ports are known before the sockets that use them: a TCP
//! netlink dump walks the listening hash before the established one
//! (`inet_diag_dump_icsk()`, net/ipv4/inet_diag.c), UDP is dumped after TCP,
//! and the /proc source first reads the listeners at the head of
//! /proc/net/tcp and tcp6 (`tcp_seq_start()` begins with
//! `TCP_SEQ_STATE_LISTENING`).

use crate::measure::health::count::{Failure, Signals};
use crate::measure::netstat::count::{counts_from_states, StateHistogram};
use crate::measure::netstat::count::{Counts, Queued};
use crate::record::{Kind, Record, LISTEN};

/// At most this many ports in all on the command line, and this many
/// listening ports per namespace.
pub const MAX_PORTS: usize = 1024;

/// Which ports to count, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortConfig {
    /// Sorted, without duplicates.
    pub local: Vec<u16>,
    pub remote: Vec<u16>,
    /// Also every local port with a TCP LISTEN socket.
    pub listening: bool,
}

impl PortConfig {
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty() && !self.listening
    }
}

/// Which end of a socket a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Local,
    Remote,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Local => "local",
            Direction::Remote => "remote",
        }
    }
}

/// One port's row: direction, port, counts, queued bytes and `--health`'s
/// fields by family.
pub type PortRow = (Direction, u16, [Counts; 2], [Queued; 2], [Signals; 2]);

/// The counts of one port and family: TCP states 0..16 (a state number
/// this program knows is below 16), UDP sockets, and the bytes queued on
/// its TCP sockets other than listeners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    tcp: [u64; 16],
    udp: u64,
    queued: Queued,
    /// `--health`'s fields of the same sockets.
    health: Signals,
}

impl Cell {
    fn counts(&self) -> Counts {
        let mut h = StateHistogram::default();
        for (state, &n) in self.tcp.iter().enumerate() {
            h.add_n(state as u8, n);
        }
        counts_from_states(&h, self.udp)
    }
}

#[derive(Debug, Clone)]
struct Slot {
    port: u16,
    /// By family: 0 IPv4, 1 IPv6.
    cells: [Cell; 2],
}

/// One direction: the port-to-slot table and the slots.
#[derive(Debug)]
struct Side {
    /// `slot + 1` by port; 0: not counted.
    index: Box<[u16]>,
    slots: Vec<Slot>,
    /// The first `fixed` slots are the command line's; the rest were found
    /// listening during this gather.
    fixed: usize,
}

impl Side {
    fn new(ports: &[u16]) -> Side {
        let mut s = Side {
            index: vec![0u16; 1 << 16].into_boxed_slice(),
            slots: Vec::with_capacity(ports.len()),
            fixed: 0,
        };
        for &p in ports {
            s.insert(p);
        }
        s.fixed = s.slots.len();
        s
    }

    fn insert(&mut self, port: u16) {
        if self.index[port as usize] == 0 {
            self.slots.push(Slot {
                port,
                cells: Default::default(),
            });
            self.index[port as usize] = self.slots.len() as u16;
        }
    }

    #[inline(always)]
    fn cell(&mut self, port: u16, family: usize) -> Option<&mut Cell> {
        match self.index[port as usize] {
            0 => None,
            i => Some(&mut self.slots[i as usize - 1].cells[family]),
        }
    }
}

/// Per-port counts of one namespace.
#[derive(Debug)]
pub struct PortCounts {
    local: Side,
    remote: Side,
    listening: bool,
    /// A listening port was left out this gather: `MAX_PORTS` were found.
    capped: bool,
}

impl PortCounts {
    pub fn new(config: &PortConfig) -> PortCounts {
        PortCounts {
            local: Side::new(&config.local),
            remote: Side::new(&config.remote),
            listening: config.listening,
            capped: false,
        }
    }

    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        let family = r.family_slot();
        let bump = |c: &mut Cell| match r.kind {
            Kind::Tcp => {
                if let Some(n) = c.tcp.get_mut(r.state as usize) {
                    *n += 1;
                }
                if r.state != LISTEN {
                    c.queued.receive += u64::from(r.rqueue);
                    c.queued.send += u64::from(r.wqueue);
                }
            }
            Kind::Udp => c.udp += 1,
            Kind::Unix => {}
        };
        if r.kind == Kind::Unix {
            return;
        }
        if self.listening && r.kind == Kind::Tcp && r.state == LISTEN {
            self.listener(r.local_port);
        }
        if let Some(c) = self.local.cell(r.local_port, family) {
            bump(c);
        }
        if r.remote_port != 0 {
            if let Some(c) = self.remote.cell(r.remote_port, family) {
                bump(c);
            }
        }
    }

    /// `--health`: a socket the main pass counted that is failing
    /// (`f`) or is a UDP socket with drops or a receive queue, added to the
    /// same rows as its states.
    pub fn add_health(&mut self, r: &Record, f: Option<Failure>) {
        let family = r.family_slot();
        if let Some(c) = self.local.cell(r.local_port, family) {
            c.health.add_record(r, f);
        }
        if r.remote_port != 0 {
            if let Some(c) = self.remote.cell(r.remote_port, family) {
                c.health.add_record(r, f);
            }
        }
    }

    /// A TCP listener on local port `port`: count that port from now on.
    pub fn listener(&mut self, port: u16) {
        if self.local.index[port as usize] != 0 {
            return;
        }
        if self.local.slots.len() - self.local.fixed >= MAX_PORTS {
            self.capped = true;
            return;
        }
        self.local.insert(port);
    }

    /// Forgets the counts of `kind`. TCP also forgets the listening ports
    /// found, which the next TCP pass finds again.
    pub fn reset(&mut self, kind: Kind) {
        for side in [&mut self.local, &mut self.remote] {
            for slot in &mut side.slots {
                for c in &mut slot.cells {
                    match kind {
                        Kind::Tcp => {
                            c.tcp = [0; 16];
                            c.queued = Queued::default();
                        }
                        Kind::Udp => c.udp = 0,
                        Kind::Unix => {}
                    }
                    c.health.reset(kind);
                }
            }
        }
        if kind == Kind::Tcp {
            let side = &mut self.local;
            for slot in side.slots.drain(side.fixed..) {
                side.index[slot.port as usize] = 0;
            }
            self.capped = false;
        }
    }

    /// Whether listening ports are counted (`--listening-ports`).
    pub fn listening(&self) -> bool {
        self.listening
    }

    /// Whether listening ports were left out this gather (`MAX_PORTS`).
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Every counted (direction, port) with its counts and queued bytes
    /// per family (IPv4, IPv6): local ports first, each direction by port.
    pub fn rows(&self) -> impl Iterator<Item = PortRow> + '_ {
        fn side(d: Direction, s: &Side) -> impl Iterator<Item = PortRow> + '_ {
            let mut order: Vec<&Slot> = s.slots.iter().collect();
            order.sort_unstable_by_key(|slot| slot.port);
            order.into_iter().map(move |slot| {
                (
                    d,
                    slot.port,
                    [slot.cells[0].counts(), slot.cells[1].counts()],
                    [slot.cells[0].queued, slot.cells[1].queued],
                    [slot.cells[0].health, slot.cells[1].health],
                )
            })
        }
        side(Direction::Local, &self.local).chain(side(Direction::Remote, &self.remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AF_INET, AF_INET6};

    fn tcp(family: u8, state: u8, local: u16, remote: u16) -> Record {
        Record::inet(
            Kind::Tcp,
            family,
            state,
            ([0; 16], local),
            ([0; 16], remote),
        )
    }

    fn udp(family: u8, local: u16, remote: u16) -> Record {
        let state = if remote == 0 { 7 } else { 1 };
        Record::inet(
            Kind::Udp,
            family,
            state,
            ([0; 16], local),
            ([0; 16], remote),
        )
    }

    fn rows(p: &PortCounts) -> Vec<(Direction, u16, [Counts; 2])> {
        p.rows().map(|(d, port, c, ..)| (d, port, c)).collect()
    }

    #[test]
    fn counts_each_end_by_its_own_port() {
        let config = PortConfig {
            local: vec![443, 5432],
            remote: vec![443, 5432],
            listening: false,
        };
        let mut p = PortCounts::new(&config);
        for r in [
            tcp(AF_INET, LISTEN, 443, 0),
            // A loopback connection to 443: the server end and the client end.
            tcp(AF_INET, 1, 443, 40000),
            tcp(AF_INET, 1, 40000, 443),
            tcp(AF_INET6, 6, 41000, 443),
            tcp(AF_INET6, 2, 42000, 5432),
            udp(AF_INET, 443, 0),
            udp(AF_INET6, 43000, 443),
            tcp(AF_INET, 1, 8080, 9090),
        ] {
            p.add(&r);
        }
        let r = rows(&p);
        assert_eq!(r.len(), 4, "explicit ports are always there");
        let (d, port, [v4, v6]) = r[0];
        assert_eq!((d, port), (Direction::Local, 443));
        assert_eq!(
            (v4.tcp_listen, v4.tcp_established, v4.udp_socket),
            (1, 1, 1)
        );
        assert_eq!(v6, Counts::default());
        let (d, port, [v4, v6]) = r[1];
        assert_eq!((d, port), (Direction::Local, 5432));
        assert_eq!((v4, v6), (Counts::default(), Counts::default()));
        let (d, port, [v4, v6]) = r[2];
        assert_eq!((d, port), (Direction::Remote, 443));
        assert_eq!(v4.tcp_established, 1);
        assert_eq!((v6.tcp_time_wait, v6.udp_socket), (1, 1));
        let (_, port, [_, v6]) = r[3];
        assert_eq!((port, v6.tcp_syn_sent), (5432, 1));
    }

    #[test]
    fn listening_ports_are_found_and_forgotten_per_gather() {
        let config = PortConfig {
            local: vec![22],
            remote: vec![],
            listening: true,
        };
        let mut p = PortCounts::new(&config);
        p.reset(Kind::Tcp);
        p.add(&tcp(AF_INET6, LISTEN, 8443, 0));
        p.add(&tcp(AF_INET6, 1, 8443, 50000));
        p.add(&tcp(AF_INET, 1, 50000, 8443));
        p.reset(Kind::Udp);
        p.add(&udp(AF_INET, 8443, 0));
        let r = rows(&p);
        assert_eq!(r.iter().map(|r| r.1).collect::<Vec<_>>(), [22, 8443]);
        assert_eq!(r[1].2[1].tcp_listen, 1);
        assert_eq!(r[1].2[1].tcp_established, 1);
        assert_eq!(r[1].2[0].udp_socket, 1);
        assert_eq!(r[1].2[0].tcp_established, 0, "the client end is remote");
        // Next gather: the listener is gone, and so is its port.
        p.reset(Kind::Tcp);
        p.reset(Kind::Udp);
        assert_eq!(rows(&p).iter().map(|r| r.1).collect::<Vec<_>>(), [22]);
    }

    #[test]
    fn listening_ports_are_capped() {
        let config = PortConfig {
            listening: true,
            ..PortConfig::default()
        };
        let mut p = PortCounts::new(&config);
        for port in 1..=(MAX_PORTS as u16 + 5) {
            p.add(&tcp(AF_INET, LISTEN, port, 0));
        }
        assert!(p.capped());
        assert_eq!(rows(&p).len(), MAX_PORTS);
        p.reset(Kind::Tcp);
        assert!(!p.capped());
    }

    #[test]
    fn unix_and_unknown_states_count_nowhere() {
        let config = PortConfig {
            local: vec![80],
            ..PortConfig::default()
        };
        let mut p = PortCounts::new(&config);
        p.add(&Record::inet(Kind::Unix, 1, 1, ([0; 16], 80), ([0; 16], 0)));
        p.add(&tcp(AF_INET, 200, 80, 1));
        assert_eq!(rows(&p)[0].2, [Counts::default(), Counts::default()]);
    }
}
