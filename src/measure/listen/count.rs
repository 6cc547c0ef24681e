//! The `netstat_listen` aggregation: per TCP listening address and port,
//! how many listeners, how full their accept queues are, their limits,
//! their handshakes in progress and their drop counters.
//!
//! Listeners come from their own dump (netlink: `TCPDIAG_GETSOCK` asking
//! only for `TCP_LISTEN`, with `INET_DIAG_SKMEMINFO` for the drop counter;
//! /proc: the listeners that head /proc/net/tcp and tcp6), made before the
//! main pass, so that each request socket (SYN_RECV) the main pass meets can
//! be given to its listener the way the kernel routes a SYN: the listener
//! bound to the exact local address first, else the wildcard on that port
//! (`inet_lhash2_lookup()` scores an exact address above a wildcard), an
//! IPv4 handshake also reaching an IPv6 wildcard (dual-stack) listener.
//!
//! For a listener, `idiag_rqueue` is its accept queue length
//! (`sk_ack_backlog`) and `idiag_wqueue` its limit (`sk_max_ack_backlog`),
//! filled by `inet_sk_diag_fill()` even without extensions. /proc shows the
//! length only (`rx_queue`), so with the /proc source `backlog` and `drops`
//! are not printed.

use std::collections::HashMap;

use crate::record::{Record, LISTEN, SYN_RECV};
use crate::wire::{AF_INET, AF_INET6};

/// At most this many listening addresses per namespace.
pub const MAX_LISTENERS: usize = 1024;

/// (family, local address, port).
type Key = (u8, [u8; 16], u16);

/// One listening address and port: the sums over its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub family: u8,
    pub addr: [u8; 16],
    pub port: u16,
    /// Listening sockets bound there (more than one with SO_REUSEPORT).
    pub sockets: u64,
    /// Connections waiting in their accept queues.
    pub queue: u64,
    /// Their accept-queue limits; `None` where the source does not say.
    pub backlog: Option<u64>,
    /// Their drop counters; `None` where the source does not say.
    pub drops: Option<u64>,
    /// Handshakes in progress routed to this address and port.
    pub syn_recv: u64,
    /// Of those, how many have resent their SYN-ACK (`--health`).
    pub synack_retrying: u64,
}

/// Per-listener counts of one namespace.
#[derive(Debug, Default)]
pub struct ListenCounts {
    listeners: Vec<Listener>,
    index: HashMap<Key, usize>,
    capped: bool,
}

fn add(sum: &mut Option<u64>, v: Option<u32>) {
    *sum = match (*sum, v) {
        (Some(s), Some(v)) => Some(s + u64::from(v)),
        _ => None,
    };
}

impl ListenCounts {
    /// Forgets the last gather's listeners (keeping the memory).
    pub fn reset(&mut self) {
        self.listeners.clear();
        self.index.clear();
        self.capped = false;
    }

    /// A listening socket, from the listeners' own dump or the head of the
    /// /proc tables.
    pub fn add_listener(&mut self, r: &Record) {
        let Some(info) = r.listen.filter(|_| r.state == LISTEN) else {
            return;
        };
        let key = (r.family, r.local_addr, r.local_port);
        match self.index.get(&key) {
            Some(&i) => {
                let l = &mut self.listeners[i];
                l.sockets += 1;
                l.queue += u64::from(info.queue);
                add(&mut l.backlog, info.backlog);
                add(&mut l.drops, info.drops);
            }
            None if self.listeners.len() >= MAX_LISTENERS => self.capped = true,
            None => {
                self.index.insert(key, self.listeners.len());
                self.listeners.push(Listener {
                    family: r.family,
                    addr: r.local_addr,
                    port: r.local_port,
                    sockets: 1,
                    queue: u64::from(info.queue),
                    backlog: info.backlog.map(u64::from),
                    drops: info.drops.map(u64::from),
                    syn_recv: 0,
                    synack_retrying: 0,
                });
            }
        }
    }

    /// A socket of the main pass: a handshake (SYN_RECV) is given to the
    /// listener the kernel would route it to; anything else is not ours.
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        if r.state != SYN_RECV {
            return;
        }
        if let Some(i) = self.route(r.family, r.local_addr, r.local_port) {
            self.listeners[i].syn_recv += 1;
        }
    }

    /// `--health`: a handshake whose SYN-ACK was resent, given to its
    /// listener as [`Self::add`] gives it.
    pub fn add_synack_retrying(&mut self, r: &Record) {
        if let Some(i) = self.route(r.family, r.local_addr, r.local_port) {
            self.listeners[i].synack_retrying += 1;
        }
    }

    /// Exact address, then the wildcard of the family, then (IPv4, or an
    /// IPv4-mapped IPv6 address) the IPv6 wildcard or the plain IPv4 one.
    fn route(&self, family: u8, addr: [u8; 16], port: u16) -> Option<usize> {
        let any = [0u8; 16];
        let mapped = family == AF_INET6 && addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let mut v4 = [0u8; 16];
        if mapped {
            v4[..4].copy_from_slice(&addr[12..]);
        }
        let candidates = [
            (family, addr),
            (family, any),
            if family == AF_INET {
                (AF_INET6, any)
            } else {
                (AF_INET, v4)
            },
            (AF_INET, any),
        ];
        candidates
            .into_iter()
            .filter(|&(f, _)| f == family || family == AF_INET || mapped)
            .find_map(|(f, a)| self.index.get(&(f, a, port)).copied())
    }

    /// More than `MAX_LISTENERS` listening addresses were found this gather.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// The listeners, by family, address and port.
    pub fn rows(&self) -> Vec<&Listener> {
        let mut v: Vec<&Listener> = self.listeners.iter().collect();
        v.sort_unstable_by_key(|l| (l.family, l.addr, l.port));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::address_text;
    use crate::record::{Kind, ListenInfo};

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    fn listener(
        family: u8,
        addr: [u8; 16],
        port: u16,
        queue: u32,
        backlog: u32,
        drops: u32,
    ) -> Record {
        Record::inet(Kind::Tcp, family, LISTEN, (addr, port), ([0; 16], 0))
            .with_listen(Some(ListenInfo {
                queue,
                backlog: Some(backlog),
                drops: Some(drops),
            }))
            .with_queues(queue, backlog)
    }

    fn request(family: u8, addr: [u8; 16], port: u16) -> Record {
        Record::inet(Kind::Tcp, family, SYN_RECV, (addr, port), ([0; 16], 40000)).with_listen(Some(
            ListenInfo {
                queue: 0,
                backlog: None,
                drops: None,
            },
        ))
    }

    #[test]
    fn reuseport_groups_add_up() {
        let mut c = ListenCounts::default();
        c.add_listener(&listener(AF_INET, v4([0; 4]), 80, 3, 128, 1));
        c.add_listener(&listener(AF_INET, v4([0; 4]), 80, 5, 128, 2));
        let rows = c.rows();
        assert_eq!(rows.len(), 1);
        let l = rows[0];
        assert_eq!(
            (l.sockets, l.queue, l.backlog, l.drops),
            (2, 8, Some(256), Some(3))
        );
    }

    #[test]
    fn handshakes_go_to_the_exact_address_then_the_wildcard() {
        let mut c = ListenCounts::default();
        let lo = v4([127, 0, 0, 1]);
        c.add_listener(&listener(AF_INET, lo, 443, 0, 16, 0));
        c.add_listener(&listener(AF_INET, v4([0; 4]), 443, 0, 16, 0));
        c.add_listener(&listener(AF_INET6, [0; 16], 443, 0, 16, 0));
        c.add_listener(&listener(AF_INET6, [0; 16], 8443, 0, 16, 0));
        c.add(&request(AF_INET, lo, 443));
        c.add(&request(AF_INET, v4([10, 0, 0, 1]), 443));
        c.add(&request(AF_INET, v4([10, 0, 0, 1]), 443));
        let mut one6 = [0u8; 16];
        one6[15] = 1;
        c.add(&request(AF_INET6, one6, 443));
        // IPv4 to a port only an IPv6 wildcard listens on (dual stack).
        c.add(&request(AF_INET, lo, 8443));
        // No listener at all: counted nowhere.
        c.add(&request(AF_INET, lo, 9));
        let got: Vec<(String, u16, u64)> = c
            .rows()
            .iter()
            .map(|l| (address_text(l.family, &l.addr), l.port, l.syn_recv))
            .collect();
        assert_eq!(
            got,
            [
                ("0.0.0.0".to_string(), 443, 2),
                ("127.0.0.1".to_string(), 443, 1),
                ("::".to_string(), 443, 1),
                ("::".to_string(), 8443, 1),
            ]
        );
    }

    #[test]
    fn the_proc_source_has_no_backlog_or_drops() {
        let mut c = ListenCounts::default();
        let mut r = listener(AF_INET, v4([0; 4]), 22, 1, 0, 0);
        r.listen = r.listen.map(|i| ListenInfo {
            backlog: None,
            drops: None,
            ..i
        });
        c.add_listener(&r);
        c.add_listener(&r);
        let l = c.rows()[0];
        assert_eq!((l.sockets, l.queue, l.backlog, l.drops), (2, 2, None, None));
    }

    #[test]
    fn capped_and_reset() {
        let mut c = ListenCounts::default();
        for port in 1..=(MAX_LISTENERS as u16 + 3) {
            c.add_listener(&listener(AF_INET, v4([0; 4]), port, 0, 1, 0));
        }
        assert!(c.capped());
        assert_eq!(c.rows().len(), MAX_LISTENERS);
        c.reset();
        assert!(!c.capped() && c.rows().is_empty());
    }

    #[test]
    fn addresses_print_as_ss_prints_them() {
        assert_eq!(address_text(AF_INET, &v4([0; 4])), "0.0.0.0");
        assert_eq!(address_text(AF_INET6, &[0; 16]), "::");
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(address_text(AF_INET6, &mapped), "::ffff:10.0.0.1");
    }
}
