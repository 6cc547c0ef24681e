//! Aggregations: what a gather computes from the socket records it reads,
//! in one pass. The sources (`netlink`, `procfs`) turn each socket into a
//! [`Record`] (defined in [`crate::record`], below both) and hand it to
//! [`Aggregations::add`]; each measurement's aggregation (its `count`
//! module) is a small type of its own that reads the fields it needs, so
//! adding one touches neither source:
//!
//! - `netstat::count`: the 13 fields of `netstat`, per address family;
//! - `port::count`: the same fields per chosen local and remote port
//!   (`netstat_port`), when asked for;
//! - `listen::count`: accept queues per listening address
//!   (`netstat_listen`), when asked for;
//! - `destination::count`: outbound sockets per destination and the
//!   namespace's ephemeral ports (`netstat_destination`,
//!   `netstat_ephemeral`), when asked for;
//! - `cgroup::count`: the same 13 fields per cgroup (`netstat_cgroup`),
//!   when asked for;
//! - `health::count`: sockets failing now and UDP drops (`--health`): the
//!   namespace's totals (`netstat_health`), and the same fields on each row
//!   above, kept by the aggregation that owns the row;
//! - the aggregations of the measurements that plug in whole (their
//!   [`Plug`](super::Plug)), made from the registry and fed in turn, so
//!   that adding one does not touch this file.

use super::cgroup::count::CgroupCounts;
use super::destination::count::Outbound;
use super::health::count::{self as health, Failure, Signals};
use super::listen::count::ListenCounts;
use super::netstat::count::{ByFamily, Queued, StateCounts};
use super::port::count::{PortConfig, PortCounts};
use super::tcpinfo::count::TcpInfoCounts;
use super::{Aggregation, Measurements, ALL};
use crate::counters::Counters;
use crate::record::{Kind, Record, LISTEN};

/// What the last gather of one namespace computed: every aggregation's
/// result, borrowed from the collector and handed forward to `rows`
/// (`tcp_info` comes from the collector's own dump, not from the pass).
/// Outside this crate it is made by [`Gathered::counts`], so that a new
/// aggregation's field is added here and in the collector only.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Gathered<'a> {
    pub by_family: ByFamily,
    /// Bytes queued on TCP sockets other than listeners: IPv4, IPv6.
    pub queued: [Queued; 2],
    /// `netstat_port`, when asked for.
    pub ports: Option<&'a PortCounts>,
    /// `netstat_listen`, when asked for.
    pub listen: Option<&'a ListenCounts>,
    /// `netstat_destination` and `netstat_ephemeral`, when asked for.
    pub outbound: Option<&'a Outbound>,
    /// `netstat_cgroup`, when asked for.
    pub cgroups: Option<&'a CgroupCounts>,
    /// `netstat_health`: the namespace's totals, with `--health`.
    pub health: Option<&'a Signals>,
    /// `netstat_port_tcp_info` and `netstat_destination_tcp_info`: RTT and
    /// loss per selected port and top destination, with `--tcp-info` over
    /// netlink.
    pub tcp_info: Option<&'a TcpInfoCounts>,
    /// `netstat_counters`: the namespace's SNMP MIB counters, when asked
    /// for (read from its files, not from the records).
    pub counters: Option<&'a Counters>,
    /// Whether the namespace's TCP dumps walk the host's shared hash table
    /// (`None`: the kernel does not say).
    pub tcp_hash_shared: Option<bool>,
    /// The aggregations of the plugged measurements printed; each one's
    /// rows find their own with [`Gathered::plugged`].
    pub plugged: &'a [Box<dyn Aggregation>],
}

impl Gathered<'_> {
    /// The 13 fields per family and the queued bytes; no breakdown, no
    /// counters, and whether the TCP hash is shared unknown.
    pub fn counts(by_family: ByFamily, queued: [Queued; 2]) -> Self {
        Gathered {
            by_family,
            queued,
            ports: None,
            listen: None,
            outbound: None,
            cgroups: None,
            health: None,
            tcp_info: None,
            counters: None,
            tcp_hash_shared: None,
            plugged: &[],
        }
    }

    /// The plugged aggregation of type `T`, when its measurement is
    /// printed.
    pub fn plugged<T: Aggregation>(&self) -> Option<&T> {
        self.plugged.iter().find_map(|a| {
            let a: &dyn std::any::Any = &**a;
            a.downcast_ref()
        })
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
    pub outbound: Option<Outbound>,
    pub cgroups: Option<CgroupCounts>,
    /// `--health`: the namespace's totals. The other aggregations keep
    /// their rows' health fields whenever `add_health` feeds them.
    pub health: Option<Signals>,
    /// The plugged measurements' aggregations, in registry order.
    pub plugged: Vec<Box<dyn Aggregation>>,
}

impl Aggregations {
    /// The aggregations asked for besides `states`: `ports` (if not empty),
    /// `listen` (`--listen-queues`), `health` (`--health`, whose fields
    /// join the other rows), and those of the measurements printed:
    /// `outbound` for `netstat_ephemeral` and `netstat_destination`,
    /// `cgroups` for `netstat_cgroup`, and each plugged measurement's own.
    pub fn new(
        ports: &PortConfig,
        print: &Measurements,
        listen: bool,
        health: bool,
    ) -> Aggregations {
        Aggregations {
            states: StateCounts::default(),
            ports: (!ports.is_empty()).then(|| PortCounts::new(ports)),
            listen: listen.then(ListenCounts::default),
            outbound: (print.prints(&super::ephemeral::MEASUREMENT) || print.destination)
                .then(Outbound::default),
            cgroups: print.cgroup.then(CgroupCounts::default),
            health: health.then(Signals::default),
            plugged: ALL
                .iter()
                .filter(|m| print.prints(m))
                .filter_map(|m| m.plug.as_ref()?.aggregation)
                .map(|make| make())
                .collect(),
        }
    }

    /// What the last pass computed, with what the namespace's files gave
    /// (`counters`, whether the TCP hash is shared).
    pub fn gathered<'a>(
        &'a self,
        include_unix: bool,
        counters: Option<&'a Counters>,
        tcp_hash_shared: Option<bool>,
    ) -> Gathered<'a> {
        Gathered {
            by_family: self.states.by_family(include_unix),
            queued: self.states.queued(),
            ports: self.ports.as_ref(),
            listen: self.listen.as_ref(),
            outbound: self.outbound.as_ref(),
            cgroups: self.cgroups.as_ref(),
            health: self.health.as_ref(),
            tcp_info: None,
            counters,
            tcp_hash_shared,
            plugged: &self.plugged,
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
        if let Some(o) = &mut self.outbound {
            o.add(r);
        }
        if let Some(c) = &mut self.cgroups {
            c.add(r);
        }
        for p in &mut self.plugged {
            p.add(r);
        }
    }

    /// Counts one socket of the main pass with `--health`: as [`Self::add`],
    /// then, for a socket that is failing or a UDP socket with drops or a
    /// receive queue (few: the rest cost one test of its timer), its health
    /// fields in the totals and in every row that counted it. The collector
    /// calls this instead of `add` for the whole pass, so a run without
    /// `--health` never asks.
    #[inline(always)]
    pub fn add_health(&mut self, r: &Record) {
        self.add(r);
        let f = health::failure(r);
        if health::worth_adding(r, f) {
            self.add_signals(r, f);
        }
    }

    fn add_signals(&mut self, r: &Record, f: Option<Failure>) {
        if let Some(h) = &mut self.health {
            h.add_record(r, f);
        }
        if let Some(p) = &mut self.ports {
            p.add_health(r, f);
        }
        if let (Some(Failure::SynackRetrying), Some(l)) = (f, &mut self.listen) {
            l.add_synack_retrying(r);
        }
        if let Some(o) = &mut self.outbound {
            o.add_health(r, f);
        }
        if let Some(c) = &mut self.cgroups {
            c.add_health(r, f);
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
        if let (LISTEN, Some(o)) = (r.state, &mut self.outbound) {
            o.listener(r.local_port);
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
        if let Some(o) = &mut self.outbound {
            o.reset(kind);
        }
        if let Some(c) = &mut self.cgroups {
            c.reset(kind);
        }
        if let Some(h) = &mut self.health {
            h.reset(kind);
        }
        for p in &mut self.plugged {
            p.reset(kind);
        }
    }

    /// Whether the main pass needs every listening port before the
    /// sockets that use them.
    pub fn needs_listeners_first(&self) -> bool {
        self.listen.is_some()
            || self.outbound.is_some()
            || self.ports.as_ref().is_some_and(|p| p.listening())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::testing::record;

    /// A plugged measurement's aggregation: what it was fed.
    #[derive(Debug, Default)]
    struct Fed {
        added: usize,
        reset: Vec<Kind>,
    }

    impl Aggregation for Fed {
        fn add(&mut self, _: &Record) {
            self.added += 1;
        }
        fn reset(&mut self, kind: Kind) {
            self.reset.push(kind);
        }
    }

    #[test]
    fn the_one_pass_feeds_a_plugged_aggregation_and_its_rows_find_it() {
        let mut a = Aggregations::new(&PortConfig::default(), &Measurements::all(), false, false);
        a.plugged.push(Box::new(Fed::default()));
        a.reset(Kind::Tcp);
        for port in [80, 443] {
            a.add(&record(crate::wire::AF_INET, 1, port, None));
        }
        let g = a.gathered(false, None, None);
        let fed = g.plugged::<Fed>().expect("found by its type");
        assert_eq!((fed.added, fed.reset.as_slice()), (2, &[Kind::Tcp][..]));
    }
}
