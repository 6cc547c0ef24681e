//! One gather in one network namespace: picks the source per protocol
//! (netlink, or /proc where netlink is refused) and tallies the result by
//! address family. Keeps its socket between
//! gathers, and reads into buffers the caller owns and shares between
//! collectors, so a long-running process allocates nothing per socket and
//! memory does not grow with gathers.
//!
//! Every gather dumps every table it counts. An earlier version skipped the
//! TCP and UDP dumps when `/proc/net/sockstat{,6}` said a table was empty;
//! that is unsound for TCP: the kernel's `TCP: inuse` counts only hashed full
//! sockets (`sock_prot_inuse_add()` in `inet_hash()`/`inet_unhash()`) and
//! `tw` only TIME_WAIT entries, while request sockets (`NEW_SYN_RECV`) sit in
//! the established hash uncounted (`inet_ehash_insert()` from
//! `reqsk_queue_hash_req()` touches no counter) and outlive a closed listener
//! until `reqsk_timer_handler()` drops them. No per-namespace counter covers
//! them, so no rule can prove a skipped TCP dump exact; the UDP half saved
//! ~9 µs per dump here and went with it.

use std::path::PathBuf;

use crate::cgroupfs::{CgroupPaths, Unusable};
use crate::counters::{CounterFiles, Counters, Selection, MAX_NAMES};
use crate::error::Error;
use crate::measure::cgroup::count::MAX_CGROUPS;
use crate::measure::destination::count::MAX_TRACKED;
use crate::measure::listen::count::{ListenCounts, MAX_LISTENERS};
use crate::measure::netstat::count::{Queued, TcpStates};
use crate::measure::port::count::{PortConfig, PortCounts, MAX_PORTS};
use crate::measure::tcpinfo::count::{self as tcpinfo, Destination, TcpInfoCounts};
use crate::measure::Gathered;
use crate::measure::{Aggregations, Measurements};
use crate::netlink::DiagSocket;
use crate::netns::{self, Target};
use crate::portrange::PortRangeFiles;
use crate::procfs::{self, ProcPaths, Table};
use crate::record::{Kind, Record, LISTEN};
use crate::tcphash::TcpHash;
use crate::wire::{Dump, AF_INET, AF_INET6};

/// Where socket states come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Netlink; /proc for a protocol whose netlink dump is refused.
    Auto,
    Netlink,
    Proc,
    /// TCP counted by a walk of the kernel's hash tables (the program's
    /// `--source bpf`), handed to each collector with
    /// [`Collector::supply_tcp`]; everything else, and TCP where no count
    /// was handed, over netlink as `Netlink`.
    Bpf,
}

/// What a collector counts, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// The proc filesystem: its `net/` tables for the own namespace, its
    /// `PID/net/` tables for another one.
    pub proc_root: PathBuf,
    /// Also count unix-domain sockets (`--include-unix`).
    pub include_unix: bool,
    /// Per-port counts (`--local-port`, `--remote-port`,
    /// `--listening-ports`); empty: none.
    pub ports: PortConfig,
    /// Accept queues per listener (`--listen-queues`).
    pub listen_queues: bool,
    /// Only `netstat_listen` is printed (`--only listen`): only listeners
    /// are asked for, and the established table is not walked.
    pub listeners_only: bool,
    /// The measurements printed: each one's aggregation runs
    /// ([`Aggregations::new`]).
    pub print: Measurements,
    /// Failing sockets and UDP drops (`--health`): `netstat_health`, and
    /// the same fields on every row above.
    pub health: bool,
    /// The namespace's SNMP MIB counters, these of them (`--counters`).
    pub counters: Option<Selection>,
    /// RTT and loss of the connections on the ports of `ports` and to the
    /// top destinations (`--tcp-info`): those sockets looked up one by one,
    /// or one extra TCP dump filtered in the kernel.
    pub tcp_info: bool,
    /// With `tcp_info`, also this many top destinations of `outbound`
    /// (`--destinations N`); 0: none.
    pub tcp_info_destinations: usize,
    /// Only `netstat_counters` is printed (`--only counters`): no socket
    /// is asked for.
    pub counters_only: bool,
}

/// Something worth telling the operator that did not fail the gather.
#[derive(Debug)]
pub enum Event<'a> {
    /// `Source::Auto` found netlink refused for `kind` (for every protocol
    /// it counts when `None`: the socket itself was refused) and reads /proc
    /// for it from now on. Sent once per collector and protocol.
    Fallback {
        kind: Option<Kind>,
        error: &'a Error,
    },
    /// Sockets in a state number this program does not know; counted nowhere.
    UnknownState { state: u8, count: u64 },
    /// More listening ports than `MAX_PORTS` were found; the rest are not
    /// broken down.
    PortsCapped { cap: usize },
    /// More listening addresses than `MAX_LISTENERS` were found.
    ListenersCapped { cap: usize },
    /// More than `MAX_TRACKED` (local address, remote address, remote port)
    /// were found: the rest count only in totals and the `other` row.
    DestinationsCapped { cap: usize },
    /// More than `MAX_CGROUPS` cgroups were found: the rest count in the
    /// `other` row.
    CgroupsCapped { cap: usize },
    /// `--tcp-info`: TCP was read from /proc, which has no `tcp_info`, so
    /// its rows are left out. Sent once per collector.
    TcpInfoMissing,
    /// `--tcp-info`'s filtered dump or lookups: the records and bytes
    /// they returned.
    TcpInfoDumped {
        /// The sockets looked up one by one, or `None`: the filtered walk.
        looked_up: Option<u64>,
        records: u64,
        bytes: u64,
    },
    /// `--by-cgroup` could not tell sockets' cgroups: every socket (or
    /// every one of a protocol read from /proc) is counted as unattributed.
    CgroupsUnknown { why: NoCgroups },
    /// More than `counters::MAX_NAMES` counter names outside the default
    /// set were met: the rest are left out.
    CountersCapped { cap: usize },
}

/// Why `--by-cgroup` counted sockets as unattributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCgroups {
    /// The /proc tables were read (for `kind`, or every protocol).
    Proc,
    /// The kernel reports no cgroup ids (before Linux 5.8).
    Kernel,
    /// No cgroup2 filesystem is mounted here (a cgroup v1-only host).
    NoMount,
}

/// Scratch memory for gathers, owned by the caller and shared by all its
/// collectors, however many namespaces they count: one netlink receive
/// buffer, and one /proc read buffer once a /proc table is read.
pub struct Buffers {
    recv: Box<[u8]>,
    proc: Option<Box<[u8]>>,
    /// The inodes of /proc/net/unix, to count each once.
    unix_inodes: std::collections::HashSet<u64>,
    /// The host's cgroup v2 paths by id (`--by-cgroup`): one hierarchy for
    /// every namespace, walked at most once per namespace per gather, for that namespace's new ids.
    cgroup_paths: CgroupPaths,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            recv: crate::netlink::recv_buffer(),
            proc: None,
            unix_inodes: Default::default(),
            cgroup_paths: CgroupPaths::default(),
        }
    }
}

impl Buffers {
    /// A new gather starts: the cgroup paths may be walked again.
    pub fn start_gather(&mut self) {
        self.cgroup_paths.start_gather();
    }

    /// The /proc read buffer, allocated on first use and kept.
    fn proc(&mut self) -> &mut [u8] {
        self.proc
            .get_or_insert_with(|| vec![0u8; procfs::CHUNK_LEN].into_boxed_slice())
    }
}

pub struct Collector {
    options: Options,
    /// `None`: the namespace this process runs in.
    target: Option<Target>,
    own_paths: ProcPaths,
    socket: Option<DiagSocket>,
    /// The namespace's ephemeral port range sysctls, opened inside it.
    port_range: Option<PortRangeFiles>,
    /// The namespace's counter files, opened inside it, and what the last
    /// read found.
    counter_files: Option<CounterFiles>,
    counters: Counters,
    /// The namespace's TCP hash table, read once (it is chosen when the
    /// namespace is made): `None` until read.
    tcp_hash: Option<Option<TcpHash>>,
    tcp_via_proc: bool,
    udp_via_proc: bool,
    unix_via_proc: bool,
    /// What the last gather counted.
    agg: Aggregations,
    /// `--tcp-info` with ports or destinations to select; `None` dumps
    /// nothing extra.
    tcp_info: Option<TcpInfoCounts>,
    /// `Event::TcpInfoMissing` was sent.
    tcp_info_missing: bool,
    /// The next gather's TCP counts and bytes queued, counted elsewhere
    /// ([`Source::Bpf`]): no TCP dump then.
    supplied: Option<(TcpStates, [Queued; 2])>,
}

impl Collector {
    /// A collector for the namespace this process runs in.
    pub fn new(options: Options) -> Self {
        Self::in_namespace(options, None)
    }

    /// A collector for `target`, or for the own namespace when `None`. A
    /// socket for another namespace is opened on the first gather and kept.
    pub fn in_namespace(options: Options, target: Option<Target>) -> Self {
        let proc = options.source == Source::Proc;
        Collector {
            own_paths: ProcPaths::new(&options.proc_root),
            target,
            socket: None,
            port_range: None,
            counter_files: None,
            counters: Counters::default(),
            tcp_hash: None,
            tcp_via_proc: proc,
            udp_via_proc: proc,
            unix_via_proc: proc,
            agg: Aggregations::new(
                &options.ports,
                &options.print,
                options.listen_queues,
                options.health,
            ),
            tcp_info: Some(TcpInfoCounts::new(&options.ports)).filter(|t| {
                options.tcp_info && (!t.is_empty() || options.tcp_info_destinations > 0)
            }),
            tcp_info_missing: false,
            supplied: None,
            options,
        }
    }

    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Whether the namespace is known to share the host's TCP hash tables
    /// (`net.ipv4.tcp_ehash_entries` negative, read inside it on first
    /// use): `false` for the host's namespace, one with tables of its own,
    /// and where it is unknown (unreadable, or before Linux 6.1).
    pub fn shares_host_tcp_hash(&mut self) -> bool {
        self.read_tcp_hash_once();
        self.tcp_hash.flatten().is_some_and(|h| h.shared)
    }

    fn read_tcp_hash_once(&mut self) {
        if self.tcp_hash.is_none() {
            self.read_tcp_hash();
        }
    }

    /// TCP counted elsewhere, for the next gather only (`None`: dump or
    /// read it): the states and the bytes queued, IPv4 and IPv6. Only the
    /// `netstat` aggregation takes them: the breakdowns see no TCP socket
    /// in that gather (the program refuses them with `--source bpf`).
    pub fn supply_tcp(&mut self, tcp: Option<(&TcpStates, &[Queued; 2])>) {
        self.supplied = tcp.map(|(s, q)| (*s, *q));
    }

    /// The destinations whose sockets `--tcp-info`'s next main pass keeps
    /// (the last gather's top ones and a margin below them: see
    /// `tcpinfo::count::KEPT_PER_SELECTED`), sorted; before the first
    /// gather, what another run kept (`Self::recall_tcp_info_destinations`)
    /// or none; none without `--destinations`.
    pub fn tcp_info_destinations(&self) -> impl Iterator<Item = Destination> + '_ {
        self.tcp_info.iter().flat_map(TcpInfoCounts::kept)
    }

    /// Before a first gather: the destinations another run kept
    /// (`--state-file`), at most `KEPT_PER_SELECTED` times
    /// `--destinations N` of them. The main pass keeps their sockets, so
    /// that when this gather's top ones are among them each is looked up
    /// instead of walked for. What it is told changes what the gather
    /// costs, never what it counts: the lookups are taken only when the
    /// main pass kept every socket of this gather's top destinations
    /// (`TcpInfoCounts::looks_up`).
    pub fn recall_tcp_info_destinations(&mut self, last: &mut dyn Iterator<Item = Destination>) {
        let n = self.options.tcp_info_destinations * tcpinfo::KEPT_PER_SELECTED;
        if let (1.., Some(t)) = (n, &mut self.tcp_info) {
            t.recall(last.take(n));
        }
    }

    /// Takes a fresher description (tag, path, PID) of the namespace this
    /// collector already counts, keeping its socket.
    pub fn retarget(&mut self, mut target: Target) {
        debug_assert_eq!(self.target.as_ref().map(|t| t.id), Some(target.id));
        // A process found inside earlier is still worth checking first.
        if target.pid.is_none() {
            target.pid = self.target.as_ref().and_then(|t| t.pid);
        }
        self.target = Some(target);
    }

    /// Counts the sockets of the collector's namespace into every
    /// aggregation asked for, and returns their results. `stop` is asked
    /// between dumps and every few hundred sockets; when it says so the
    /// gather ends with `Error::Stopped`.
    pub fn gather(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Gathered<'_>, Error> {
        let everything = !self.options.listeners_only;
        self.read_tcp_hash_once();
        if self.agg.outbound.is_some() {
            self.read_port_range()?;
        }
        if self.options.counters.is_some() {
            self.read_counters()?;
            if self.counters.capped() {
                events(Event::CountersCapped { cap: MAX_NAMES });
            }
        }
        if self.options.counters_only {
            return Ok(self.gathered());
        }
        let supplied = self.supplied.take();
        if let Some((states, queued)) = &supplied {
            self.agg.reset(Kind::Tcp);
            self.agg.states.add_tcp_states(states);
            self.agg.states.add_queued(queued);
        } else if !self.tcp_via_proc {
            self.agg.reset(Kind::Tcp);
            if let Some(t) = &mut self.tcp_info {
                t.forget();
            }
            // Listeners first, so that the main pass can route handshakes.
            let mut r = Ok(());
            if self.options.listen_queues {
                r = self.netlink(Dump::Listeners, &mut bufs.recv, stop);
            }
            if everything {
                r = r.and_then(|()| self.netlink(Dump::Tcp, &mut bufs.recv, stop));
            }
            if let Err(e) = r {
                self.fall_back(Kind::Tcp, e, events)?;
            }
        }
        if supplied.is_none() && self.tcp_via_proc {
            self.proc_tcp(bufs.proc(), stop)?;
        }
        if everything && !self.udp_via_proc {
            self.agg.reset(Kind::Udp);
            let r = self
                .netlink(Dump::Udp4, &mut bufs.recv, stop)
                .and_then(|()| self.netlink(Dump::Udp6, &mut bufs.recv, stop));
            if let Err(e) = r {
                self.fall_back(Kind::Udp, e, events)?;
            }
        }
        if everything && self.udp_via_proc {
            self.proc_udp(bufs.proc(), stop)?;
        }
        if everything && self.options.include_unix {
            if !self.unix_via_proc {
                self.agg.reset(Kind::Unix);
                if let Err(e) = self.netlink(Dump::Unix, &mut bufs.recv, stop) {
                    self.fall_back(Kind::Unix, e, events)?;
                }
            }
            if self.unix_via_proc {
                self.proc_unix(bufs, stop)?;
            }
        }
        for (state, count) in self.agg.states.unknown() {
            events(Event::UnknownState { state, count });
        }
        if self.agg.ports.as_ref().is_some_and(PortCounts::capped) {
            events(Event::PortsCapped { cap: MAX_PORTS });
        }
        if self.agg.listen.as_ref().is_some_and(ListenCounts::capped) {
            events(Event::ListenersCapped { cap: MAX_LISTENERS });
        }
        if let Some(o) = &mut self.agg.outbound {
            o.finish();
            if o.capped() {
                events(Event::DestinationsCapped { cap: MAX_TRACKED });
            }
        }
        if self.agg.cgroups.is_some() {
            self.name_cgroups(&mut bufs.cgroup_paths, events);
        }
        self.gather_tcp_info(&mut bufs.recv, events, stop)?;
        Ok(self.gathered())
    }

    /// `--tcp-info`'s dump, when ports or destinations (this gather's top
    /// ones, so after the main pass) are selected and TCP is read over
    /// netlink; with /proc, says once that the fields are missing.
    fn gather_tcp_info(
        &mut self,
        buf: &mut [u8],
        events: &mut dyn FnMut(Event),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        let Some(t) = &mut self.tcp_info else {
            return Ok(());
        };
        t.reset();
        if self.tcp_via_proc || self.options.listeners_only {
            if self.tcp_via_proc && !std::mem::replace(&mut self.tcp_info_missing, true) {
                events(Event::TcpInfoMissing);
            }
            return Ok(());
        }
        if let (n @ 1.., Some(o)) = (self.options.tcp_info_destinations, &self.agg.outbound) {
            let ranked = o.top(n * tcpinfo::KEPT_PER_SELECTED).0.iter();
            t.select(ranked.map(|d| ((d.addr, d.port), d.sockets.tcp_total())), n);
        }
        if t.is_empty() {
            return Ok(());
        }
        if stop() {
            return Err(Error::Stopped);
        }
        let socket = open_socket(&mut self.socket, &self.target)?;
        // Taken out for the dump, whose records `t` counts; no allocation.
        let (filter, mut request) = (
            std::mem::take(&mut t.filter),
            std::mem::take(&mut t.request),
        );
        let mut bytes = 0;
        let looks_up = t.looks_up();
        let lookups = std::mem::take(&mut t.lookups);
        let r = if looks_up {
            socket.lookup_info(buf, &mut request, &lookups, &mut bytes, |m| t.add(m), stop)
        } else {
            let states = tcpinfo::STATES;
            socket.dump_info(
                buf,
                &mut request,
                states,
                &filter,
                &mut bytes,
                |m| t.add(m),
                stop,
            )
        };
        (t.filter, t.request, t.lookups) = (filter, request, lookups);
        r?;
        events(Event::TcpInfoDumped {
            looked_up: looks_up.then_some(t.lookups.len() as u64),
            records: t.records,
            bytes,
        });
        Ok(())
    }

    /// What the last gather found.
    fn gathered(&self) -> Gathered<'_> {
        let mut g = self.agg.gathered(
            self.options.include_unix,
            self.options.counters.is_some().then_some(&self.counters),
            self.tcp_hash.flatten().map(|h| h.shared),
        );
        g.tcp_info = self.tcp_info.as_ref().filter(|_| !self.tcp_via_proc);
        g
    }

    /// Reads whether the namespace shares the host's TCP hash table, inside
    /// it. Advisory: what cannot be read is left unknown and tried again at
    /// the next gather; the gather goes on.
    fn read_tcp_hash(&mut self) {
        let root = &self.options.proc_root;
        let read = || TcpHash::read(root);
        let r = match &self.target {
            None => read(),
            Some(t) => netns::inside(t, read),
        };
        if let Ok(h) = r {
            self.tcp_hash = Some(h);
        }
    }

    /// Gives each cgroup counted its path, and says what kept sockets
    /// unattributed.
    fn name_cgroups(&mut self, paths: &mut CgroupPaths, events: &mut dyn FnMut(Event)) {
        let Some(c) = &mut self.agg.cgroups else {
            return;
        };
        let proc = self.tcp_via_proc || self.udp_via_proc;
        if let Err(u) = paths.usable(&self.options.proc_root) {
            let any = !c.cgroups().is_empty();
            c.unattribute_all();
            // Outside the host's cgroup namespace the program said so once
            // at start, for every namespace (`cgroupfs::join_host_namespace`).
            if any && u == Unusable::NoMount {
                events(Event::CgroupsUnknown {
                    why: NoCgroups::NoMount,
                });
            }
            return;
        }
        paths.resolve(c.cgroups().iter().map(|g| g.id), std::time::Instant::now());
        for g in c.cgroups_mut() {
            g.path = paths.path(g.id).map(str::to_owned);
        }
        c.finish();
        let why = if proc {
            Some(NoCgroups::Proc)
        } else if c.kernel_reports_none() {
            Some(NoCgroups::Kernel)
        } else {
            None
        };
        if let Some(why) = why {
            events(Event::CgroupsUnknown { why });
        }
        if c.capped() {
            events(Event::CgroupsCapped { cap: MAX_CGROUPS });
        }
    }

    /// Reads the namespace's ephemeral port range into the aggregation,
    /// through files opened inside the namespace on the first gather and
    /// kept (opened again after a failed read).
    fn read_port_range(&mut self) -> Result<(), Error> {
        let root = &self.options.proc_root;
        let files = kept(&mut self.port_range, self.target.as_ref(), |_| {
            PortRangeFiles::open(root)
        })?;
        let range = &mut self.agg.outbound.as_mut().expect("asked for").range;
        files.read(range).inspect_err(|_| self.port_range = None)
    }

    /// Reads the namespace's SNMP MIB counters, through files kept as the
    /// port range's are.
    fn read_counters(&mut self) -> Result<(), Error> {
        let root = &self.options.proc_root;
        let files = kept(&mut self.counter_files, self.target.as_ref(), |own| {
            CounterFiles::open(root, own)
        })?;
        let selection = self.options.counters.as_ref().expect("asked for");
        files
            .read(selection, &mut self.counters)
            .inspect_err(|_| self.counter_files = None)
    }

    /// Decides what a failed netlink dump means: a refusal under `auto`
    /// switches the protocol to /proc for good; anything else fails the
    /// gather and drops the socket so the next gather starts on a fresh one.
    fn fall_back(
        &mut self,
        kind: Kind,
        e: Error,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), Error> {
        if self.options.source != Source::Auto || !e.is_refusal() {
            self.socket = None;
            return Err(e);
        }
        // No socket at all means no protocol can use netlink: say it once.
        if matches!(e, Error::NetlinkOpen(_)) {
            events(Event::Fallback {
                kind: None,
                error: &e,
            });
            self.tcp_via_proc = true;
            self.udp_via_proc = true;
            self.unix_via_proc = true;
            return Ok(());
        }
        events(Event::Fallback {
            kind: Some(kind),
            error: &e,
        });
        match kind {
            Kind::Tcp => self.tcp_via_proc = true,
            Kind::Udp => self.udp_via_proc = true,
            Kind::Unix => self.unix_via_proc = true,
        }
        Ok(())
    }

    /// One dump into the aggregations (the caller resets them first).
    fn netlink(
        &mut self,
        dump: Dump,
        buf: &mut [u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        if stop() {
            return Err(Error::Stopped);
        }
        let socket = open_socket(&mut self.socket, &self.target)?;
        let agg = &mut self.agg;
        let cgroups = agg.cgroups.is_some();
        // --tcp-info's sockets to look up, kept from the TCP pass.
        let remember = match &mut self.tcp_info {
            Some(t) if dump == Dump::Tcp && t.remembers() => Some(t),
            _ => None,
        };
        // The pass is chosen once per dump: without --health each record
        // takes exactly the path it took before there was one.
        match (dump, self.options.health, remember) {
            (Dump::Listeners, _, _) => {
                socket.dump(buf, dump, false, false, |r| agg.add_listener(r), stop)
            }
            (_, false, None) => socket.dump(buf, dump, cgroups, false, |r| agg.add(r), stop),
            (_, true, None) => socket.dump(buf, dump, cgroups, true, |r| agg.add_health(r), stop),
            (_, false, Some(t)) => {
                let add = |r: &Record| {
                    agg.add(r);
                    t.remember(r);
                };
                socket.dump(buf, dump, cgroups, false, add, stop)
            }
            (_, true, Some(t)) => {
                let add = |r: &Record| {
                    agg.add_health(r);
                    t.remember(r);
                };
                socket.dump(buf, dump, cgroups, true, add, stop)
            }
        }
    }

    /// For another namespace, the /proc tables of a process inside it,
    /// `<proc root>/PID/net`; `None` for the own namespace, whose tables
    /// are `<proc root>/net`. The process found is kept and checked first
    /// next time, so /proc is walked again only when it has left.
    fn namespace_paths(&mut self) -> Result<Option<ProcPaths>, Error> {
        let Some(t) = &mut self.target else {
            return Ok(None);
        };
        let root = &self.options.proc_root;
        let id = t.id;
        let still_inside = |pid: u32| {
            netns::NsId::of(&root.join(pid.to_string()).join("ns/net")).is_ok_and(|i| i == id)
        };
        let pid = t
            .pid
            .filter(|&p| still_inside(p))
            .or_else(|| netns::find_pid(root, id))
            .ok_or_else(|| Error::NetnsNoProcess {
                path: t.path.clone(),
            })?;
        t.pid = Some(pid);
        Ok(Some(ProcPaths::new(&root.join(pid.to_string()))))
    }

    fn proc_tcp(&mut self, buf: &mut [u8], stop: &mut dyn FnMut() -> bool) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let agg = &mut self.agg;
        agg.reset(Kind::Tcp);
        let (v4, v6) = (
            Table::Inet(Kind::Tcp, AF_INET),
            Table::Inet(Kind::Tcp, AF_INET6),
        );
        if agg.needs_listeners_first() {
            // Listeners before the sockets that use them (see
            // measure::port::count and measure::listen::count): they head
            // each file.
            for (path, table) in [(&paths.tcp, v4), (&paths.tcp6, v6)] {
                let past = std::cell::Cell::new(false);
                let mut stopped = false;
                let r = procfs::scan_optional(
                    path,
                    table,
                    buf,
                    &mut |r| match r.state {
                        LISTEN => agg.add_listener(r),
                        _ => past.set(true),
                    },
                    &mut || {
                        stopped = stop();
                        stopped || past.get()
                    },
                );
                match r {
                    Err(Error::Stopped) if !stopped => {}
                    r => r?,
                }
            }
        }
        if self.options.listeners_only {
            return Ok(());
        }
        main_pass(
            self.options.health,
            Kind::Tcp,
            [&paths.tcp, &paths.tcp6],
            agg,
            buf,
            stop,
        )
    }

    fn proc_udp(&mut self, buf: &mut [u8], stop: &mut dyn FnMut() -> bool) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let agg = &mut self.agg;
        agg.reset(Kind::Udp);
        main_pass(
            self.options.health,
            Kind::Udp,
            [&paths.udp, &paths.udp6],
            agg,
            buf,
            stop,
        )
    }

    fn proc_unix(
        &mut self,
        bufs: &mut Buffers,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let agg = &mut self.agg;
        agg.reset(Kind::Unix);
        bufs.proc();
        let Buffers {
            proc, unix_inodes, ..
        } = bufs;
        let buf = proc.as_deref_mut().expect("allocated above");
        procfs::scan_unix(&paths.unix, buf, unix_inodes, &mut |r| agg.add(r), stop)
    }
}

/// The collector's sock_diag socket, opened (inside `target`'s namespace,
/// or this process's when `None`) if it is not open yet.
fn open_socket<'a>(
    slot: &'a mut Option<DiagSocket>,
    target: &Option<Target>,
) -> Result<&'a mut DiagSocket, Error> {
    Ok(match slot {
        Some(s) => s,
        None => slot.insert(match target {
            None => DiagSocket::open()?,
            Some(t) => netns::open_socket(t)?,
        }),
    })
}

/// The main pass over the /proc tables of `kind` (IPv4, then IPv6, which
/// may be missing). With `--health`, the tables are read with its columns
/// into `Aggregations::add_health`; without, exactly as before there was
/// one. The choice is made once per pass, not per record.
fn main_pass(
    health: bool,
    kind: Kind,
    [v4, v6]: [&std::path::Path; 2],
    agg: &mut Aggregations,
    buf: &mut [u8],
    stop: &mut dyn FnMut() -> bool,
) -> Result<(), Error> {
    if health {
        let add = &mut |r: &Record| agg.add_health(r);
        procfs::scan(v4, Table::InetHealth(kind, AF_INET), buf, add, stop)?;
        procfs::scan_optional(v6, Table::InetHealth(kind, AF_INET6), buf, add, stop)
    } else {
        let add = &mut |r: &Record| agg.add(r);
        procfs::scan(v4, Table::Inet(kind, AF_INET), buf, add, stop)?;
        procfs::scan_optional(v6, Table::Inet(kind, AF_INET6), buf, add, stop)
    }
}

/// The files in `slot`, opened by `open` inside the namespace of `target`
/// (the own one when `None`) if they are not open yet. `open` is told
/// whether that is the namespace this process runs in.
fn kept<'a, T: Send>(
    slot: &'a mut Option<T>,
    target: Option<&Target>,
    open: impl FnOnce(bool) -> Result<T, Error> + Send,
) -> Result<&'a mut T, Error> {
    Ok(match slot {
        Some(files) => files,
        None => slot.insert(match target {
            None => open(true)?,
            Some(t) => netns::inside(t, || open(false))?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::port::count::PortConfig;
    use std::path::Path;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    use crate::testdir::TestDir as Dir;

    /// `<dir>/net/{tcp,udp}` with `established` connections from port 443
    /// and one listener on 443.
    fn tables(dir: &Path, established: usize) {
        std::fs::create_dir_all(dir.join("net")).unwrap();
        let mut tcp = String::from(HEADER);
        tcp.push_str(
            "   0: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
        );
        for i in 0..established {
            tcp.push_str(&format!(
                "{:4}: 0100007F:01BB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
                i + 1
            ));
        }
        std::fs::write(dir.join("net/tcp"), tcp).unwrap();
        std::fs::write(dir.join("net/udp"), HEADER).unwrap();
    }

    fn options(root: &Path) -> Options {
        Options {
            source: Source::Proc,
            proc_root: root.to_owned(),
            include_unix: false,
            ports: PortConfig {
                local: vec![443],
                remote: Vec::new(),
                listening: false,
            },
            listen_queues: true,
            listeners_only: false,
            print: Measurements::default(),
            health: false,
            tcp_info: false,
            tcp_info_destinations: 0,
            counters: None,
            counters_only: false,
        }
    }

    fn gather(c: &mut Collector) -> (u64, u64, usize) {
        let mut bufs = Buffers::default();
        let g = c.gather(&mut bufs, &mut |_| {}, &mut || false).unwrap();
        let ports: u64 = g
            .ports
            .unwrap()
            .rows()
            .map(|(_, _, c, ..)| c[0].tcp_established)
            .sum();
        (
            g.by_family.ipv4.tcp_established,
            ports,
            g.listen.unwrap().rows().len(),
        )
    }

    #[test]
    fn one_gather_feeds_every_aggregation_asked_for() {
        let d = Dir::new("own");
        tables(&d.0, 3);
        let mut c = Collector::new(options(&d.0));
        assert_eq!(gather(&mut c), (3, 3, 1));
        // The next gather starts afresh.
        tables(&d.0, 1);
        assert_eq!(gather(&mut c), (1, 1, 1));
    }

    #[test]
    fn tcp_supplied_replaces_the_tcp_read_for_one_gather() {
        let d = Dir::new("supplied");
        tables(&d.0, 3);
        let mut o = options(&d.0);
        o.ports = PortConfig::default();
        o.listen_queues = false;
        let mut c = Collector::new(o);
        let mut states = TcpStates::default();
        states.0[0][1] = 7; // IPv4 ESTABLISHED
        states.0[1][12] = 2; // IPv6 request sockets: SYN_RECV
        let queued = [
            Queued {
                receive: 5,
                send: 6,
            },
            Queued::default(),
        ];
        c.supply_tcp(Some((&states, &queued)));
        let mut bufs = Buffers::default();
        let g = c.gather(&mut bufs, &mut |_| {}, &mut || false).unwrap();
        assert_eq!(g.queued, queued);
        let b = g.by_family;
        assert_eq!(
            (
                b.ipv4.tcp_established,
                b.ipv4.tcp_listen,
                b.ipv6.tcp_syn_recv
            ),
            (7, 0, 2)
        );
        // The next gather reads the tables again.
        let g = c.gather(&mut bufs, &mut |_| {}, &mut || false).unwrap();
        let b = g.by_family;
        assert_eq!((b.ipv4.tcp_established, b.ipv4.tcp_listen), (3, 1));
    }

    #[test]
    fn another_namespace_is_read_through_a_process_found_once() {
        // A fake proc root whose processes 123 and 122 are in our namespace.
        let d = Dir::new("other");
        let own = Path::new("/proc/self/ns/net");
        let process = |pid: u32, established: usize| {
            let p = d.0.join(pid.to_string());
            tables(&p, established);
            std::fs::create_dir_all(p.join("ns")).unwrap();
            std::os::unix::fs::symlink(own, p.join("ns/net")).unwrap();
        };
        process(123, 1);
        let target = Target {
            tag: "blue".into(),
            path: own.to_owned(),
            id: netns::NsId::of(own).unwrap(),
            pid: None,
        };
        let mut c = Collector::in_namespace(options(&d.0), Some(target.clone()));
        assert_eq!(gather(&mut c).0, 1);
        // Another process appears: 123, found before, is still read; a
        // fresher description without a process keeps it too.
        process(122, 2);
        c.retarget(target);
        assert_eq!(gather(&mut c).0, 1);
        // 123 leaves: /proc is walked again and 122 is found.
        std::fs::remove_dir_all(d.0.join("123")).unwrap();
        assert_eq!(gather(&mut c).0, 2);
        // None left: said, naming the namespace.
        std::fs::remove_dir_all(d.0.join("122")).unwrap();
        let mut bufs = Buffers::default();
        let e = c.gather(&mut bufs, &mut |_| {}, &mut || false).unwrap_err();
        assert!(matches!(e, Error::NetnsNoProcess { .. }), "{e}");
    }
}
