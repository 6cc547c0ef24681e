//! One gather over every namespace asked for: brings the namespaces up to
//! date ([`namespaces`]), counts each with its collector, and hands each
//! result, with the namespace's tags, forward to [`Rows`]; what a collector
//! reports goes to the log ([`report`]). Printing and delivering the rows
//! are the caller's (`deliver`, `serve`).

mod bpf;
mod namespaces;
mod report;

use std::time::{Duration, Instant, SystemTime};

use crate::log::Logger;
use telegraf_netstat::collector::Buffers;
use telegraf_netstat::measure::netstat::count::{Queued, TcpStates};
use telegraf_netstat::measure::tcpinfo::count::Destination;
use telegraf_netstat::measure::Gathered;
use telegraf_netstat::measure::{Measurements, Shape};
use telegraf_netstat::netns::{NsId, Target};
use telegraf_netstat::rows::Rows;
use telegraf_netstat::{Collector, Error, Event, Format, Options, Source};

use crate::cli::Config;
use crate::signals::Interrupt;
use crate::throttle::{say, Reminder};
use namespaces::{CountedNamespace, NamespaceSet};
use report::{context, report, vanished};

/// What the gather loop needs of a collector: [`Collector`] in the program,
/// a fake in the tests below.
pub trait Count {
    /// A collector for `target`, or for the own namespace when `None`.
    fn for_namespace(options: &Options, target: Option<Target>) -> Self;
    fn target(&self) -> Option<&Target>;
    /// A fresher description of the namespace it already counts.
    fn retarget(&mut self, target: Target);
    /// The namespace shares the host's TCP hash tables (known to).
    fn shares_host_tcp_hash(&mut self) -> bool;
    /// TCP counted elsewhere (`--source bpf`), for the next gather only.
    fn supply_tcp(&mut self, tcp: Option<(&TcpStates, &[Queued; 2])>);
    /// The destinations `--tcp-info`'s next main pass keeps.
    fn tcp_info_destinations(&self) -> Vec<Destination>;
    /// Before the first gather: those another run kept (`--state-file`).
    fn recall_tcp_info_destinations(&mut self, last: &mut dyn Iterator<Item = Destination>);
    /// Counts the namespace's sockets; `stop` is asked as it goes.
    fn gather(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Gathered<'_>, Error>;
}

impl Count for Collector {
    fn for_namespace(options: &Options, target: Option<Target>) -> Self {
        Collector::in_namespace(options.clone(), target)
    }

    fn target(&self) -> Option<&Target> {
        Collector::target(self)
    }

    fn retarget(&mut self, target: Target) {
        Collector::retarget(self, target)
    }

    fn shares_host_tcp_hash(&mut self) -> bool {
        Collector::shares_host_tcp_hash(self)
    }

    fn supply_tcp(&mut self, tcp: Option<(&TcpStates, &[Queued; 2])>) {
        Collector::supply_tcp(self, tcp)
    }

    fn tcp_info_destinations(&self) -> Vec<Destination> {
        Collector::tcp_info_destinations(self).collect()
    }

    fn recall_tcp_info_destinations(&mut self, last: &mut dyn Iterator<Item = Destination>) {
        Collector::recall_tcp_info_destinations(self, last)
    }

    fn gather(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Gathered<'_>, Error> {
        Collector::gather(self, bufs, events, stop)
    }
}

/// How one gather's counting ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Collected {
    /// The rows are ready; `failed` namespaces could not be counted (each
    /// said).
    Counted { failed: usize },
    /// Nothing could be counted (said on stderr).
    Failed,
    /// `Interrupt::stop_requested` said so; the rest of the gather was
    /// dropped.
    Stopped,
}

/// The collectors of every namespace counted and the rows of the last
/// gather.
pub struct Gatherer<C: Count = Collector> {
    namespaces: NamespaceSet<C>,
    shape: Shape,
    include_unix: bool,
    /// Rows carry the gather time (`--timestamp`, or a format that always
    /// does).
    stamped: bool,
    log: Logger,
    /// One receive buffer (and /proc buffer) for every namespace.
    bufs: Buffers,
    rows: Rows,
    /// When namespaces sharing the host's TCP hash table were last said.
    shared_hash: Reminder,
    /// `--source bpf`: the walker and its self-test.
    bpf: Option<bpf::Bpf>,
    /// `--state-file`: the `--tcp-info` destinations a previous run
    /// kept, by namespace (this process's own as its `NsId`), sorted;
    /// each collector is told its own before it first counts.
    recalled: Vec<(NsId, Destination)>,
}

/// Said when at least this many namespaces share the host's TCP hash
/// table...
const SHARED_HASH_NAMESPACES: usize = 10;
/// ...and the gather took at least this much CPU;
const SHARED_HASH_CPU: Duration = Duration::from_millis(50);
/// at most this often.
const SHARED_HASH_EVERY: Duration = Duration::from_secs(6 * 3600);

/// CPU time of the whole process so far.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

impl<C: Count> Gatherer<C> {
    pub fn new(config: &Config) -> Self {
        let p = &config.print;
        // Only listeners are asked for when netstat_listen is all that is
        // printed.
        let listeners_only = config.listen_queues
            && *p
                == Measurements {
                    listen: true,
                    ..Measurements::default()
                };
        let options = Options {
            source: config.source,
            proc_root: config.proc_root.clone(),
            include_unix: config.include_unix,
            ports: config.ports.clone(),
            listen_queues: config.listen_queues,
            listeners_only,
            print: *p,
            health: config.health,
            tcp_info: config.tcp_info && (p.port || p.destination),
            tcp_info_destinations: match (config.tcp_info, p.destination) {
                (true, true) => config.destinations.unwrap_or(0),
                _ => 0,
            },
            counters: config.counters.clone().filter(|_| p.counters),
            counters_only: *p
                == Measurements {
                    counters: true,
                    ..Measurements::default()
                },
        };
        Gatherer {
            namespaces: NamespaceSet::new(config.namespaces.clone(), options, config.netns_labels),
            shape: Shape {
                by_family: config.by_family,
                include_unix: config.include_unix,
                print: config.print,
                syn_recv: !listeners_only,
                top: config.destinations.unwrap_or(0),
            },
            include_unix: config.include_unix,
            stamped: config.timestamp || config.format.always_stamped(),
            log: config.log,
            bufs: Buffers::default(),
            rows: Rows::default(),
            shared_hash: Reminder::default(),
            bpf: (config.source == Source::Bpf).then(|| {
                // Native names print the bytes queued: the walk reads them too.
                load_bpf(&config.log, config.format == Format::PrometheusNative)
            }),
            recalled: Vec::new(),
        }
    }

    /// Before the first gather (`--state-file`): the `--tcp-info`
    /// destinations a previous run kept, by namespace.
    pub fn recall_tcp_info(&mut self, mut recalled: Vec<(NsId, Destination)>) {
        recalled.sort_unstable();
        self.recalled = recalled;
    }

    /// After a gather (`--state-file`): each counted namespace's
    /// `--tcp-info` destinations, this process's own under its `NsId`.
    pub fn tcp_info_destinations(&self) -> Vec<(NsId, Destination)> {
        let own = NsId::own();
        let counted = self.namespaces.list.iter();
        let collectors = counted.filter_map(|ns| ns.collector.as_ref());
        let with_id = collectors.filter_map(|c| Some((c.target().map(|t| t.id).or(own)?, c)));
        with_id
            .flat_map(|(id, c)| c.tcp_info_destinations().into_iter().map(move |d| (id, d)))
            .collect()
    }

    /// Tells `collector` the destinations a previous run kept in its
    /// namespace, once (`--state-file`).
    fn recall(recalled: &mut Vec<(NsId, Destination)>, collector: &mut C) {
        if recalled.is_empty() {
            return;
        }
        let Some(id) = collector.target().map(|t| t.id).or_else(NsId::own) else {
            return;
        };
        let from = recalled.partition_point(|r| r.0 < id);
        let to = from + recalled[from..].partition_point(|r| r.0 == id);
        collector.recall_tcp_info_destinations(&mut recalled.drain(from..to).map(|r| r.1));
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// The rows of the last gather that counted something.
    pub fn rows(&self) -> &Rows {
        &self.rows
    }

    /// One gather over every namespace, into `rows()`; what failed is said
    /// on stderr.
    pub fn collect(&mut self, interrupt: &mut dyn Interrupt) -> Collected {
        let started = Instant::now();
        let cpu = process_cpu();
        self.rows.start(self.stamped.then(SystemTime::now));
        self.bufs.start_gather();
        let failed = match self.namespaces.resolve(&self.log) {
            Some(failed) => match self.count(interrupt) {
                Some((counted, n)) if counted == 0 && failed + n > 0 => return Collected::Failed,
                Some((_, n)) => failed + n,
                None => return Collected::Stopped,
            },
            None => return Collected::Failed,
        };
        if let Some(n) = self.namespaces.unreadable_processes {
            self.rows.unreadable(n);
        }
        self.rows.finish(started.elapsed());
        self.say_shared_hash(process_cpu().saturating_sub(cpu));
        Collected::Counted { failed }
    }

    /// Says, rarely, that many namespaces walk the host's TCP hash table at
    /// every dump, with what the gather cost, when that cost is felt; not
    /// while `--source bpf` walks it once for them instead.
    fn say_shared_hash(&mut self, cpu: Duration) {
        let (shared, known) = self.rows.tcp_hash_shared();
        if self.bpf.as_ref().is_some_and(bpf::Bpf::walking)
            || shared < SHARED_HASH_NAMESPACES
            || cpu < SHARED_HASH_CPU
            || !self
                .shared_hash
                .due_every(Instant::now(), SHARED_HASH_EVERY)
        {
            return;
        }
        self.log.info(format_args!(
            "{shared} of the {known} network namespaces counted share the host's TCP hash table, \
             so every TCP dump in them walks all of it: this gather took {} ms of CPU. \
             Namespaces made after net.ipv4.tcp_child_ehash_entries is set (Linux 6.1+, \
             e.g. in /etc/sysctl.d) get a table of their own; see docs/performance.md",
            cpu.as_millis()
        ));
    }

    /// Names the namespaces, then gathers in each resolved one, its rows
    /// added as it is counted. Returns how many were counted and how many
    /// failed (each said), or `None` when `interrupt` asked to stop.
    fn count(&mut self, interrupt: &mut dyn Interrupt) -> Option<(usize, usize)> {
        self.namespaces.name(&self.log, interrupt)?;
        let log = self.log;
        let scanned = self.namespaces.scanned();
        let include_unix = self.include_unix;
        let now = Instant::now();
        let (mut counted, mut failed) = (0, 0);
        if let Some(b) = &mut self.bpf {
            let counted = self
                .namespaces
                .list
                .iter()
                .filter_map(|ns| ns.collector.as_ref());
            let inos = counted.map(|c| c.target().map(|t| t.id.ino));
            if !b.start(&log, &mut || interrupt.stop_requested(), inos)
                || !self.with_redump(&log, interrupt, bpf::Bpf::compare_pair)
            {
                return None;
            }
        }
        // `--netns` paths that name one namespace twice count it once.
        let mut seen: Vec<NsId> = Vec::new();
        for ns in self.namespaces.list.iter_mut() {
            // The namespace's own tags: `netns`, then its labels.
            let mut tags: Vec<(&'static str, &str)> = Vec::with_capacity(4);
            if let Some(t) = ns.tag.as_deref() {
                tags.push(("netns", t));
            }
            if let Some(n) = ns.naming.as_ref() {
                tags.extend(n.labels.tags());
            }
            let tag = ns.tag.as_deref();
            let CountedNamespace {
                collector: Some(collector),
                throttle,
                caps,
                ..
            } = ns
            else {
                // A `--netns` path that does not resolve (said).
                self.rows.failed(&tags);
                continue;
            };
            if interrupt.stop_requested() {
                return None;
            }
            if let Some(t) = collector.target() {
                if seen.contains(&t.id) {
                    continue;
                }
                seen.push(t.id);
            }
            let context = context(tag);
            let prefix = tag
                .map(|t| format!("network namespace {t}: "))
                .unwrap_or_default();
            let events =
                &mut |event: Event<'_>| report(&log, &prefix, include_unix, caps, now, event);
            let ino = collector.target().map(|t| t.id.ino);
            Self::recall(&mut self.recalled, collector);
            let expected = self.bpf.as_mut().and_then(|b| b.supply(collector));
            match collector.gather(&mut self.bufs, events, &mut || interrupt.stop_requested()) {
                Err(Error::Stopped) => return None,
                Ok(gathered) => {
                    if let (Some(e), Some(b)) = (expected, &mut self.bpf) {
                        b.compare(
                            &log,
                            ino,
                            tag.unwrap_or("of this process"),
                            &e,
                            &gathered.by_family,
                        );
                    }
                    self.rows.add(&self.shape, &tags, &gathered);
                    counted += 1;
                    say(&log, throttle.succeeded(&context));
                }
                Err(e) if scanned && vanished(&e) => {
                    // Gone since the scan: not said (it is not an error),
                    // but attempted, so its success gauge is 0 this once.
                    self.rows.failed(&tags);
                    ns.collector = None;
                }
                Err(e) => {
                    failed += 1;
                    self.rows.failed(&tags);
                    say(&log, throttle.failed(&context, e.to_string(), now));
                }
            }
        }
        if !self.with_redump(&log, interrupt, bpf::Bpf::finish) {
            return None;
        }
        Some((counted, failed))
    }

    /// `--source bpf`: `then` with a way to count a namespace over netlink
    /// again, or this process's when the gather does not count it: right
    /// after the walk, the self-test of this process's namespace holding the
    /// loopback pair (`bpf::Bpf::compare_pair`); after the namespaces, the
    /// self-test's confirmation (`bpf::Bpf::finish`). `false` when
    /// `interrupt` asked to stop.
    fn with_redump(
        &mut self,
        log: &Logger,
        interrupt: &mut dyn Interrupt,
        then: fn(&mut bpf::Bpf, &Logger, &mut dyn FnMut() -> bool, &mut bpf::Redump<'_>) -> bool,
    ) -> bool {
        let Some(b) = &mut self.bpf else {
            return true;
        };
        let (list, bufs, own) = (&mut self.namespaces.list, &mut self.bufs, b.own());
        let options = &self.namespaces.options;
        // This process's namespace when the gather does not count it (a
        // cheap self-test may compare it).
        let mut outside: Option<C> = None;
        let redump = &mut |ino: u64, stop: &mut dyn FnMut() -> bool| {
            let mut collectors = list.iter_mut().filter_map(|ns| ns.collector.as_mut());
            let c = match collectors.find(|c| c.target().map(|t| t.id.ino).or(own) == Some(ino)) {
                Some(c) => c,
                None if own == Some(ino) => {
                    outside.get_or_insert_with(|| C::for_namespace(options, None))
                }
                None => return Ok(None),
            };
            c.supply_tcp(None);
            match c.gather(bufs, &mut |_| {}, stop) {
                Ok(g) => Ok(Some(g.by_family)),
                Err(Error::Stopped) => Err(bpf::Stopped),
                Err(_) => Ok(None),
            }
        };
        then(b, log, &mut || interrupt.stop_requested(), redump)
    }
}

/// `--source bpf`, loading on its own thread once the quick checks passed;
/// else an `E!` line naming what is missing and exit 1 (docs/reference.md).
fn load_bpf(log: &Logger, queues: bool) -> bpf::Bpf {
    match crate::bpf::Walker::prepare(queues) {
        Ok(p) => bpf::Bpf::new(p),
        Err(why) => bpf::cannot_run(log, &why),
    }
}

#[cfg(test)]
mod tests;
