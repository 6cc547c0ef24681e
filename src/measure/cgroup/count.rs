//! The `netstat_cgroup` aggregation: the 13 `netstat` fields per cgroup
//! v2, from the cgroup id the kernel attaches to every full socket
//! (`INET_DIAG_CGROUP_ID`, see `wire`). An accepted connection carries its
//! listener's cgroup, even when `accept()` runs elsewhere, so inbound
//! connections are charged to the service that owns the port.
//!
//! Sockets without an id go to one *unattributed* tally, so the rows
//! always add up to the namespace's `netstat` counts: TIME_WAIT and
//! FIN_WAIT2 timewait entries and request sockets (the kernel keeps no
//! cgroup for them), every socket read from /proc (its tables carry no
//! cgroup), unix sockets (`unix_diag` reports none), and everything on a
//! kernel before 5.8.
//!
//! One entry per distinct id, at most [`MAX_CGROUPS`] per namespace,
//! grown to the largest number seen and reused; sockets of further ids are
//! counted in an *other* tally (a `W!` line says so). The ids are turned
//! into paths by the collector (`cgroupfs`), which stores them here.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::measure::health::count::Failure;
use crate::measure::netstat::count::{Tally, TcpState};
use crate::record::{Kind, Record};

/// At most this many cgroups are told apart per namespace.
pub const MAX_CGROUPS: usize = 4096;

/// One cgroup's sockets, and its path once resolved.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub id: u64,
    pub sockets: Tally,
    /// Below the cgroup v2 root (`/system.slice/nginx.service`); `None`
    /// when no directory has this id (a removed cgroup whose sockets live
    /// on, or a cgroup outside the mount this program sees).
    pub path: Option<String>,
}

/// The aggregation.
#[derive(Debug, Default)]
pub struct CgroupCounts {
    index: HashMap<u64, u32, RandomState>,
    cgroups: Vec<Cgroup>,
    /// Sockets without a cgroup id.
    pub unattributed: Tally,
    /// Sockets of cgroups past `MAX_CGROUPS`.
    pub other: Tally,
    capped: bool,
    /// Full sockets seen (which carry an id on Linux 5.8+), and how many
    /// of them carried one: to tell a kernel without the attribute.
    full: u64,
    attributed: u64,
}

/// TCP states of full sockets: those the kernel reports a cgroup for (not
/// TIME_WAIT and FIN_WAIT2, which may be timewait entries, nor SYN_RECV,
/// the state request sockets are reported in).
fn full_socket(r: &Record) -> bool {
    match r.kind {
        Kind::Tcp => {
            use TcpState::*;
            matches!(
                TcpState::from(r.state),
                Established | SynSent | FinWait1 | Close | CloseWait | LastAck | Listen | Closing
            )
        }
        Kind::Udp => true,
        Kind::Unix => false,
    }
}

impl CgroupCounts {
    /// Forgets what was counted of `kind` (TCP, counted first, starts the
    /// gather afresh).
    pub fn reset(&mut self, kind: Kind) {
        if kind == Kind::Tcp {
            self.index.clear();
            self.cgroups.clear();
            self.unattributed = Tally::default();
            self.other = Tally::default();
            self.capped = false;
            self.full = 0;
            self.attributed = 0;
            return;
        }
        for c in &mut self.cgroups {
            c.sockets.reset(kind);
        }
        self.unattributed.reset(kind);
        self.other.reset(kind);
    }

    /// One socket of the main pass.
    #[inline(always)]
    pub fn add(&mut self, r: &Record) {
        if full_socket(r) {
            self.full += 1;
        }
        let Some(id) = r.cgroup else {
            return self.unattributed.add_record(r);
        };
        self.attributed += 1;
        self.tally(id).add_record(r);
    }

    /// `--health`: a socket the main pass counted ([`Self::add`] first)
    /// that is failing (`f`) or is a UDP socket with drops or a receive
    /// queue, added to its cgroup's row.
    pub fn add_health(&mut self, r: &Record, f: Option<Failure>) {
        match r.cgroup {
            None => self.unattributed.health.add_record(r, f),
            Some(id) => self.tally(id).health.add_record(r, f),
        }
    }

    /// The tally of cgroup `id`: found, made, or past the cap `other`.
    #[inline(always)]
    fn tally(&mut self, id: u64) -> &mut Tally {
        match self.index.get(&id) {
            Some(&i) => &mut self.cgroups[i as usize].sockets,
            None if self.cgroups.len() >= MAX_CGROUPS => {
                self.capped = true;
                &mut self.other
            }
            None => {
                self.index.insert(id, self.cgroups.len() as u32);
                self.cgroups.push(Cgroup {
                    id,
                    sockets: Tally::default(),
                    path: None,
                });
                &mut self.cgroups.last_mut().expect("just pushed").sockets
            }
        }
    }

    /// Full sockets were counted and none carried a cgroup id: the kernel
    /// does not report them (before Linux 5.8, or without
    /// `CONFIG_SOCK_CGROUP_DATA`).
    pub fn kernel_reports_none(&self) -> bool {
        self.full > 0 && self.attributed == 0
    }

    /// More than `MAX_CGROUPS` ids were found this gather.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// The cgroups with sockets this gather, for the collector to name.
    pub fn cgroups_mut(&mut self) -> &mut [Cgroup] {
        &mut self.cgroups
    }

    /// Counts every cgroup's sockets as unattributed (no cgroup2 mount
    /// gives their ids a path).
    pub fn unattribute_all(&mut self) {
        for c in self.cgroups.drain(..) {
            self.unattributed.add(&c.sockets);
        }
        self.unattributed.add(&self.other);
        self.other = Tally::default();
        self.index.clear();
    }

    /// Drops cgroups left without sockets (a UDP pass read again), and
    /// sorts the rest by path (unresolved ones last, by id).
    pub fn finish(&mut self) {
        self.cgroups.retain(|c| c.sockets.total() > 0);
        self.cgroups.sort_unstable_by(|a, b| {
            (a.path.is_none(), &a.path, a.id).cmp(&(b.path.is_none(), &b.path, b.id))
        });
    }

    /// Every cgroup with sockets (after `finish`).
    pub fn cgroups(&self) -> &[Cgroup] {
        &self.cgroups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AF_INET;

    fn sock(kind: Kind, state: u8, cgroup: Option<u64>) -> Record {
        Record::inet(kind, AF_INET, state, ([0; 16], 1), ([0; 16], 2)).with_cgroup(cgroup)
    }

    #[test]
    fn per_cgroup_and_unattributed_add_up() {
        let mut c = CgroupCounts::default();
        c.reset(Kind::Tcp);
        c.add(&sock(Kind::Tcp, 10, Some(7)));
        c.add(&sock(Kind::Tcp, 1, Some(7)));
        c.add(&sock(Kind::Tcp, 1, Some(9)));
        c.add(&sock(Kind::Tcp, 6, None));
        c.add(&sock(Kind::Udp, 7, Some(9)));
        c.add(&sock(Kind::Unix, 2, None));
        for g in c.cgroups_mut() {
            g.path = (g.id == 9).then(|| "/a.service".into());
        }
        c.finish();
        assert!(!c.kernel_reports_none() && !c.capped());
        let rows: Vec<(u64, u64)> = c
            .cgroups()
            .iter()
            .map(|g| (g.id, g.sockets.total()))
            .collect();
        assert_eq!(rows, [(9, 2), (7, 2)], "named first");
        let u = c.unattributed.counts();
        assert_eq!((u.tcp_time_wait, u.udp_socket), (1, 1));
        // A UDP pass read again is not counted twice; a cgroup left empty
        // goes.
        c.reset(Kind::Udp);
        c.finish();
        assert_eq!(c.cgroups()[0].sockets.counts().udp_socket, 0);
        c.reset(Kind::Tcp);
        c.finish();
        assert!(c.cgroups().is_empty());
    }

    #[test]
    fn a_kernel_without_ids_and_the_cap_are_told() {
        let mut c = CgroupCounts::default();
        c.add(&sock(Kind::Tcp, 6, None));
        assert!(!c.kernel_reports_none(), "TIME_WAIT carries none anyway");
        c.add(&sock(Kind::Tcp, 1, None));
        assert!(c.kernel_reports_none());
        c.reset(Kind::Tcp);
        for id in 0..MAX_CGROUPS as u64 + 3 {
            c.add(&sock(Kind::Tcp, 1, Some(id)));
        }
        assert!(c.capped());
        assert_eq!(c.other.total(), 3);
        assert_eq!(c.cgroups().len(), MAX_CGROUPS);
        // Without a cgroup2 mount, everything is unattributed.
        c.unattribute_all();
        assert!(c.cgroups().is_empty());
        assert_eq!(c.unattributed.total(), MAX_CGROUPS as u64 + 3);
    }
}
