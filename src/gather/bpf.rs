//! `--source bpf` in the gather loop: one walk before the namespaces are
//! counted, each namespace handed its TCP counts when the walk saw all of
//! them, and the self-test.
//!
//! A namespace takes the walk's counts when the tables walked are its own
//! (the program checks each namespace's `tcp_death_row.hashinfo`), or, if
//! the walk met none of its sockets, when the tables walked are the host's
//! and its `net.ipv4.tcp_ehash_entries` says it shares them. Any other
//! namespace (tables of its own, or unknown) dumps TCP over netlink, in the
//! same gather.
//!
//! The self-test compares the walk's counts of some namespaces with
//! netlink's, per family and state. The first (on the first gather, and
//! again at the next until one passes) is cheap: one namespace, the one
//! `Walker::cheapest` picks (small, with a listener and another socket if
//! any has both) among those counted and this process's own (dumped over
//! netlink on the side when the gather does not count it). Then every
//! `SELF_TEST_EVERY`th gather is thorough: the namespace with the most
//! sockets in the walk and `ROTATING` others (the next ones in the list at
//! each self-test). A namespace compared is not handed the walk's counts:
//! it dumps TCP over netlink (so that gather prints netlink's counts for
//! it). If any differs, it walks again after the last namespace, and
//! netlink again, `CONFIRM` rounds in all: sockets that moved (the walks
//! differ) or a netlink count that now agrees are no verdict. A namespace
//! whose walks all agree with each other and never with netlink is a
//! failed self-test: one `W!` naming the namespace and the difference, and
//! netlink for the rest of the run. A self-test in which no compared
//! namespace with sockets agreed runs again at the next gather.
//!
//! A cheap self-test whose namespace holds sockets of one table only (only
//! listeners, or none) proves the walk of that table only, and a one-shot
//! run never reaches the thorough one. So when this process's namespace is
//! not counted, a first self-test opens a connected TCP pair on loopback
//! in it before the walk ([`pair`]: a listener and two ESTABLISHED
//! sockets), and if the pick without the pair would hold one table only
//! (or be the busiest), compares this process's namespace instead, dumped over netlink right
//! after the walk; the pair is closed then (kept through the confirmation
//! rounds if it differed), else right after the walk. Where it cannot be
//! opened (loopback down) the self-test is as before.

mod pair;

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use telegraf_netstat::measure::netstat::count::UNKNOWN_STATE;
use telegraf_netstat::measure::netstat::count::{ByFamily, Counts, Queued, StateCounts, TcpStates};
use telegraf_netstat::netns::NsId;

use super::Count;
use crate::bpf::{BpfError, Prepared, Trailer, Walker};
use crate::log::Logger;
use crate::throttle::Reminder;
use pair::{NoPair, Pair};

/// The self-test runs on the first gather and then every this many (an
/// hour at a 10 s interval). Each costs what a netlink gather costs.
pub const SELF_TEST_EVERY: u64 = 360;
/// Besides the busiest namespace, a self-test compares this many others.
pub const ROTATING: usize = 3;
/// An incomplete walk (its gather then dumps TCP over netlink) is said at
/// most this often.
const INCOMPLETE_EVERY: Duration = Duration::from_secs(3600);

pub struct Bpf {
    /// The program loading, until the first gather takes it.
    loading: Option<Receiver<Result<Walker, BpfError>>>,
    /// `None` once the self-test failed: netlink from then on.
    walker: Option<Walker>,
    /// The last walk, if this gather uses it.
    walk: Option<Trailer>,
    /// Gathers since the last self-test passed; `None`: one is due.
    since_test: Option<u64>,
    /// A self-test passed: the next ones are thorough.
    passed: bool,
    /// This gather is a self-test.
    testing: bool,
    /// The self-test's namespaces that differed from netlink, and how many
    /// with sockets agreed.
    differed: Vec<Differed>,
    agreed: usize,
    /// Namespaces handed the walk's counts in this gather.
    supplied: usize,
    /// Namespaces the walk counted in this gather, handed or tested.
    served: usize,
    /// A cheap self-test: the namespace it compares, whether it holds
    /// sockets in both tables (else a thorough self-test follows at the
    /// next gather), and whether it is this process's, which the gather
    /// does not count.
    cheapest: Option<u64>,
    both: bool,
    outside: bool,
    /// A thorough self-test: the namespace with the most sockets in the
    /// walk, the first of the others it compares (its index among those
    /// served) and how many of them it compared.
    busiest: Option<u64>,
    rotation: usize,
    rotated: usize,
    own: Option<u64>,
    /// The loopback pair of a first self-test, while it is held, and
    /// whether this process's namespace was compared (with it) already.
    pair: Option<Pair>,
    outside_compared: bool,
    incomplete: Reminder,
}

struct Differed {
    ino: u64,
    name: String,
    walked: TcpStates,
    netlink: [Counts; 2],
}

impl Bpf {
    /// Loads `prepared` on a thread of its own: the loops hear a stop
    /// meanwhile, and the first gather waits for it.
    pub fn new(prepared: Prepared) -> Bpf {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let _ = tx.send(prepared.load());
        });
        Bpf {
            loading: Some(rx),
            walker: None,
            walk: None,
            since_test: None,
            passed: false,
            testing: false,
            differed: Vec::new(),
            agreed: 0,
            supplied: 0,
            served: 0,
            cheapest: None,
            both: false,
            outside: false,
            busiest: None,
            rotation: 0,
            rotated: 0,
            own: NsId::own().map(|id| id.ino),
            pair: None,
            outside_compared: false,
            incomplete: Reminder::default(),
        }
    }

    /// The walk counts TCP (the self-test has not failed).
    pub fn walking(&self) -> bool {
        self.walker.is_some()
    }

    /// This process's namespace, by inode.
    pub fn own(&self) -> Option<u64> {
        self.own
    }

    /// The walk before a gather of the namespaces `inos` (`None`: this
    /// process's); `false` when `stop` said so.
    pub fn start(
        &mut self,
        log: &Logger,
        stop: &mut dyn FnMut() -> bool,
        inos: impl Iterator<Item = Option<u64>> + Clone,
    ) -> bool {
        self.walk = None;
        self.pair = None;
        self.outside_compared = false;
        if !self.loaded(log, stop) {
            return false;
        }
        let own = self.own;
        let own_counted = inos
            .clone()
            .any(|i| i.or(own).is_some_and(|i| Some(i) == own));
        // A first self-test's pair, in this process's namespace when the
        // gather does not count it (it would then count the pair).
        let first = self.since_test.is_none() && !self.passed;
        if first
            && self.walker.is_some()
            && own.is_some()
            && !own_counted
            && !self.open_pair(log, stop)
        {
            return false;
        }
        let Some(w) = &mut self.walker else {
            return true;
        };
        match w.walk(stop) {
            Ok(None) => return false,
            Ok(Some(t)) if t.complete() => self.walk = Some(t),
            r => {
                if self.incomplete.due_every(Instant::now(), INCOMPLETE_EVERY) {
                    let why = match r {
                        Err(e) => e.to_string(),
                        Ok(t) => format!("the walk was incomplete ({t:?})"),
                    };
                    log.warn(format_args!(
                        "--source bpf: {why}; this gather counts TCP over netlink (said at most hourly)"
                    ));
                }
            }
        }
        self.testing = self.walk.is_some() && self.since_test.is_none();
        self.choose(inos, own_counted);
        self.differed.clear();
        self.agreed = 0;
        self.supplied = 0;
        self.served = 0;
        self.rotated = 0;
        true
    }

    /// Opens the loopback pair for a first self-test; where it cannot be,
    /// the self-test goes without (said with `-v`). `false` when `stop`
    /// said so.
    fn open_pair(&mut self, log: &Logger, stop: &mut dyn FnMut() -> bool) -> bool {
        match Pair::open(stop) {
            Ok(p) => {
                log.debug(format_args!(
                    "--source bpf: a TCP pair on 127.0.0.1 port {} in this process's network namespace for the self-test",
                    p.port
                ));
                self.pair = Some(p);
            }
            Err(NoPair::Stopped) => return false,
            Err(NoPair::Failed(why)) => log.debug(format_args!(
                "--source bpf: no TCP pair on loopback for the self-test ({why})"
            )),
        }
        true
    }

    /// The namespaces a self-test compares, of `inos` (`None`: this
    /// process's) and, for a cheap one, this process's own: with the
    /// loopback pair, when the pick without it holds one table only or is
    /// the busiest.
    fn choose(&mut self, inos: impl Iterator<Item = Option<u64>>, own_counted: bool) {
        let own = self.own;
        let mut inos = inos.filter_map(|i| i.or(own));
        let pair = self.pair.as_ref().and(own);
        let (cheapest, busiest) = match &self.walker {
            Some(w) if self.testing && !self.passed => {
                (w.cheapest(inos.by_ref().chain(own), pair), None)
            }
            Some(w) if self.testing => (None, w.busiest(inos.by_ref())),
            _ => (None, None),
        };
        (self.cheapest, self.both) = cheapest.map_or((None, false), |(i, b)| (Some(i), b));
        self.busiest = busiest;
        self.outside = self.cheapest.is_some() && self.cheapest == own && !own_counted;
        if !(self.outside && self.cheapest == pair) {
            self.pair = None;
        }
    }

    /// A cheap self-test of this process's namespace holding the loopback
    /// pair: its netlink dump now, right after the walk, and the pair
    /// closed then; if it differed, the confirmation rounds first, the
    /// pair held, so that a failed self-test is known before any namespace
    /// is counted. `false` when `stop` said so.
    pub fn compare_pair(
        &mut self,
        log: &Logger,
        stop: &mut dyn FnMut() -> bool,
        redump: &mut Redump<'_>,
    ) -> bool {
        if self.pair.is_none() {
            return true;
        }
        self.outside_compared = true;
        if !self.compare_outside(log, stop, redump) {
            return false;
        }
        if self.differed.is_empty() {
            self.pair = None;
            return true;
        }
        // A difference is confirmed now, the pair held, before any
        // namespace takes the walk's counts: this gather counts TCP over
        // netlink whatever the verdict (a confirmation walks again).
        let settled = self.settle(log, stop, redump);
        self.pair = None;
        self.differed.clear();
        self.walk = None;
        settled.is_ok()
    }

    /// Waits for the load, asking `stop` every 5 ms; `false` when it said
    /// so. A load that failed is said, and the program exits 1.
    fn loaded(&mut self, log: &Logger, stop: &mut dyn FnMut() -> bool) -> bool {
        let Some(rx) = &self.loading else {
            return true;
        };
        loop {
            if stop() {
                return false;
            }
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Ok(w)) => break self.walker = Some(w),
                Ok(Err(why)) => cannot_run(log, &why),
                Err(RecvTimeoutError::Disconnected) => cannot_run(log, &"its loading thread died"),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.loading = None;
        true
    }

    /// The walk's TCP counts (and bytes queued, if it read them) of `c`'s
    /// namespace, if the walk saw all of its sockets; handed to `c` for its
    /// next gather unless this gather is a self-test. Returns the counts for
    /// `compare` (which leaves the bytes queued out: they change all the
    /// time on a busy connection).
    pub fn supply<C: Count>(&mut self, c: &mut C) -> Option<TcpStates> {
        let Some((ino, expected, queued)) = self.expected(c) else {
            c.supply_tcp(None);
            return None;
        };
        // A cheap self-test compares its one namespace; a thorough one the
        // busiest and `ROTATING` others, the next ones in the list at each.
        let tested = self.testing
            && if self.passed {
                Some(ino) == self.busiest
                    || (self.served >= self.rotation && self.rotated < ROTATING && {
                        self.rotated += 1;
                        true
                    })
            } else {
                Some(ino) == self.cheapest
            };
        self.served += 1;
        if tested {
            c.supply_tcp(None);
            return Some(expected);
        }
        self.supplied += 1;
        c.supply_tcp(Some((&expected, &queued)));
        None
    }

    fn expected<C: Count>(&self, c: &mut C) -> Option<(u64, TcpStates, [Queued; 2])> {
        let (w, t) = (self.walker.as_ref()?, self.walk?);
        let ino = c.target().map(|t| t.id.ino).or(self.own)?;
        match w.found(ino) {
            Some(f) if f.same_tables => Some((ino, f.states, f.queued)),
            Some(_) => None,
            None if !t.pernet && c.shares_host_tcp_hash() => {
                Some((ino, TcpStates::default(), [Queued::default(); 2]))
            }
            None => None,
        }
    }

    /// Self-test: the walk's counts of a namespace against netlink's.
    pub fn compare(
        &mut self,
        log: &Logger,
        ino: Option<u64>,
        name: &str,
        walked: &TcpStates,
        netlink: &ByFamily,
    ) {
        let netlink = [tcp_only(netlink.ipv4), tcp_only(netlink.ipv6)];
        let Some(ino) = ino.or(self.own) else {
            return;
        };
        let agrees = families(walked) == netlink && !has_unknown(walked);
        log.debug(format_args!(
            "--source bpf: the self-test compared network namespace {name} with netlink: {}",
            if agrees { "the same" } else { "a difference" }
        ));
        if agrees {
            if netlink != [Counts::default(); 2] {
                self.agreed += 1;
            }
            return;
        }
        self.differed.push(Differed {
            ino,
            name: name.to_owned(),
            walked: *walked,
            netlink,
        });
    }

    /// After a self-test's namespaces: a namespace that differed is
    /// confirmed (`confirm`), and a confirmed difference falls back to
    /// netlink for good. `redump` counts a namespace (by inode) over netlink
    /// again. `false` when `stop` said so.
    pub fn finish(
        &mut self,
        log: &Logger,
        stop: &mut dyn FnMut() -> bool,
        redump: &mut Redump<'_>,
    ) -> bool {
        if !self.testing {
            if let Some(t) = self.walk {
                log.debug(format_args!(
                    "--source bpf: one walk counted {} TCP sockets; {} namespaces took their TCP counts from it",
                    t.sockets, self.supplied
                ));
            }
            self.since_test = self
                .since_test
                .map(|n| n + 1)
                .filter(|&n| n < SELF_TEST_EVERY);
            return true;
        }
        if self.passed {
            self.rotation = match self.rotated {
                ROTATING => self.rotation + ROTATING,
                _ => 0, // the list ended: from its start next time
            };
        }
        if self.outside && !self.outside_compared && !self.compare_outside(log, stop, redump) {
            return false;
        }
        match self.settle(log, stop, redump) {
            Err(Stopped) => return false,
            Ok(true) => {}
            Ok(false) if self.agreed > 0 => {
                // A cheap self-test that exercised one table only is
                // followed by a thorough one at the next gather.
                if self.passed || self.both {
                    self.since_test = Some(0);
                }
                self.passed = true;
            }
            Ok(false) => {} // no verdict: the self-test runs again
        }
        true
    }

    /// Confirms each namespace that differed (`confirm`) until one
    /// difference holds: then one `W!` and netlink for good (`true`).
    fn settle(
        &mut self,
        log: &Logger,
        stop: &mut dyn FnMut() -> bool,
        redump: &mut Redump<'_>,
    ) -> Result<bool, Stopped> {
        for i in 0..self.differed.len() {
            if self.confirm(i, stop, redump)? {
                let d = &self.differed[i];
                log.warn(format_args!(
                    "--source bpf: the self-test failed in network namespace {}: the walk counted {}, netlink {}; counting TCP over netlink from now on",
                    d.name,
                    describe(&families(&d.walked), unknown(&d.walked)),
                    describe(&d.netlink, 0),
                ));
                self.walker = None;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A cheap self-test's namespace when it is this process's, which the
    /// gather did not count: dumped over netlink now and compared. `false`
    /// when `stop` said so.
    fn compare_outside(
        &mut self,
        log: &Logger,
        stop: &mut dyn FnMut() -> bool,
        redump: &mut Redump<'_>,
    ) -> bool {
        let (Some(own), Some(w)) = (self.own, &self.walker) else {
            return true;
        };
        let Some(walked) = w.found(own).map(|f| f.states) else {
            return true;
        };
        match redump(own, stop) {
            Err(Stopped) => false,
            Ok(None) => true,
            Ok(Some(netlink)) => {
                self.compare(log, Some(own), "of this process", &walked, &netlink);
                true
            }
        }
    }

    /// Whether the difference of `differed[i]` holds: over `CONFIRM`
    /// rounds, a walk again finds the namespace's counts unchanged and
    /// netlink again differs from them. Sockets that moved, or a netlink
    /// count that now agrees, are no verdict (`false`): a listener closed
    /// and opened again between two walks is a move neither walk sees, which
    /// one round alone would take for a wrong walk.
    fn confirm(
        &mut self,
        i: usize,
        stop: &mut dyn FnMut() -> bool,
        redump: &mut Redump<'_>,
    ) -> Result<bool, Stopped> {
        let (ino, walked) = (self.differed[i].ino, self.differed[i].walked);
        for round in 0..CONFIRM {
            if round > 0 {
                match redump(ino, &mut *stop) {
                    Err(Stopped) => return Err(Stopped),
                    Ok(None) => return Ok(false),
                    Ok(Some(b)) if [tcp_only(b.ipv4), tcp_only(b.ipv6)] == families(&walked) => {
                        return Ok(false)
                    }
                    Ok(Some(_)) => {}
                }
            }
            let Some(w) = &mut self.walker else {
                return Ok(false);
            };
            let again = match w.walk(stop) {
                Ok(None) => return Err(Stopped),
                Ok(Some(t)) if t.complete() => t,
                _ => return Ok(false),
            };
            let now = match w.found(ino) {
                Some(f) if f.same_tables => f.states,
                None if !again.pernet => TcpStates::default(),
                _ => return Ok(false),
            };
            if now != walked {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The self-test's confirmation rounds: a walk, then netlink and a walk
/// again, 4 more times. A listener closed and opened again all the time,
/// present half of the time, passes them all with odds of 2^-10.
const CONFIRM: usize = 5;

/// `stop` said so.
pub struct Stopped;

/// Counts the namespace with this inode over netlink again: its TCP and
/// UDP per family, `None` if it cannot (gone, failed), `Err` when `stop`
/// said so.
pub type Redump<'a> =
    dyn FnMut(u64, &mut dyn FnMut() -> bool) -> Result<Option<ByFamily>, Stopped> + 'a;

/// Says why `--source bpf` cannot run, and exits 1 (docs/reference.md).
pub fn cannot_run(log: &Logger, why: &dyn std::fmt::Display) -> ! {
    log.error(format_args!("--source bpf cannot run: {why}"));
    std::process::exit(crate::exit::EXIT_GATHER_FAILED.into())
}

/// A namespace's TCP counts per family, as `Counts` (UDP left at 0).
fn families(s: &TcpStates) -> [Counts; 2] {
    let mut c = StateCounts::default();
    c.add_tcp_states(s);
    let b = c.by_family(false);
    [b.ipv4, b.ipv6]
}

fn tcp_only(c: Counts) -> Counts {
    Counts { udp_socket: 0, ..c }
}

fn unknown(s: &TcpStates) -> u64 {
    s.0[0][UNKNOWN_STATE] + s.0[1][UNKNOWN_STATE]
}

fn has_unknown(s: &TcpStates) -> bool {
    unknown(s) > 0
}

/// `ipv4 tcp_established=3 tcp_listen=1, ipv6 none`.
fn describe(c: &[Counts; 2], unknown: u64) -> String {
    let mut out = String::new();
    for (family, c) in ["ipv4", "ipv6"].iter().zip(c) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(family);
        let mut any = false;
        for (name, n) in c.fields().into_iter().filter(|&(_, n)| n > 0) {
            out.push_str(&format!(" {name}={n}"));
            any = true;
        }
        if !any {
            out.push_str(" none");
        }
    }
    if unknown > 0 {
        out.push_str(&format!(", {unknown} in no known state"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_test_line_names_every_count_that_is_not_zero() {
        let mut s = TcpStates::default();
        s.0[0][1] = 2; // IPv4 ESTABLISHED
        s.0[0][12] = 1; // IPv4 request socket: SYN_RECV
        s.0[1][UNKNOWN_STATE] = 3;
        assert_eq!(
            describe(&families(&s), unknown(&s)),
            "ipv4 tcp_established=2 tcp_syn_recv=1, ipv6 none, 3 in no known state"
        );
        assert!(has_unknown(&s));
        let netlink = ByFamily {
            ipv4: Counts {
                tcp_established: 2,
                tcp_syn_recv: 1,
                udp_socket: 5,
                ..Counts::default()
            },
            ..ByFamily::default()
        };
        // UDP is netlink's in both sources: left out of the comparison.
        assert_eq!(
            [tcp_only(netlink.ipv4), tcp_only(netlink.ipv6)],
            families(&TcpStates([s.0[0], [0; 16]]))
        );
    }
}
