//! One gather over every namespace asked for: the `Gatherer` keeps a
//! collector per namespace (`CountedNamespace`), resolves `--netns` and
//! `--all-netns` anew each time, names new namespaces, counts, encodes the
//! rows of every measurement, and delivers them (stdout, `--output`) or
//! hands them over (`--listen`); events and errors go to stderr. Also the
//! one-shot run and its exit code.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use telegraf_netstat::collector::Buffers;
use telegraf_netstat::log::Logger;
use telegraf_netstat::netns::names::{self, Labels, Representative};
use telegraf_netstat::netns::{self, NsId, Target};
use telegraf_netstat::sink::{Delivery, OutputFile, Stdout};
use telegraf_netstat::{ByFamily, Collector, Error, Event, Metric, Options};

use crate::signals::{Interrupt, Uninterrupted};
use crate::throttle::{say, ErrorThrottle, Reminder};
use std::fmt::Write as _;
use std::ops::Range;
use telegraf_netstat::aggregate::listen::address_text;
use telegraf_netstat::cli::{Config, Namespaces};
use telegraf_netstat::output::{Field, LISTEN_MEASUREMENT, MEASUREMENT, PORT_MEASUREMENT};
use telegraf_netstat::wire::AF_INET;

/// Exit codes, documented in the README and `--help`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_GATHER_FAILED: u8 = 1;
pub const EXIT_NAMESPACE_FAILED: u8 = 3;

/// Delivers one gather's bytes: to stdout, or the `--output` file replaced
/// atomically.
fn deliver(
    output: Option<&OutputFile>,
    stdout: &Stdout,
    bytes: &[u8],
    interrupt: &mut dyn Interrupt,
) -> Result<(), Delivery> {
    match output {
        None => stdout.write_all(bytes, &mut |fd| interrupt.wait_writable(fd)),
        Some(file) => file.replace(bytes).map_err(|e| {
            Delivery::Failed(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", file.path().display()),
            ))
        }),
    }
}

/// How one gather's counting ended (before delivery).
pub enum Collected {
    /// Encoded; `failed` namespaces could not be counted (each said).
    Counted {
        failed: usize,
    },
    /// Nothing could be counted (said on stderr).
    Failed,
    Stopped,
}

/// How one gather ended.
pub enum Outcome {
    /// The metrics were delivered; `failed` namespaces could not be counted
    /// (each said on stderr).
    Delivered {
        failed: usize,
    },
    /// Nothing could be counted (said on stderr); nothing was delivered.
    GatherFailed,
    NotDelivered(Delivery),
    /// `Interrupt::stop_requested` said so; the rest of the gather was dropped.
    Stopped,
}

/// One namespace counted: its collector, its tag and labels, and the memory
/// of its failures and warnings.
struct CountedNamespace {
    /// `None` while a `--netns` path does not resolve.
    collector: Option<Collector>,
    /// The `netns` tag; `None` for the own namespace without namespace
    /// options.
    tag: Option<String>,
    throttle: ErrorThrottle,
    /// More listening ports (addresses) than the cap: said, then reminded.
    ports_capped: Reminder,
    listeners_capped: Reminder,
    /// The container, pod and hostname tags of the namespace and how they
    /// were found (see `netns::names`).
    naming: Option<Naming>,
    /// The last label problem said, not repeated while it lasts.
    label_problem: Option<String>,
}

/// The labels of one namespace identity and the process to check they
/// still hold.
struct Naming {
    id: NsId,
    labels: Labels,
    representative: Option<Representative>,
    /// Some process could not be read: try again at the next gather.
    incomplete: bool,
}

impl CountedNamespace {
    fn new(collector: Option<Collector>, tag: Option<String>) -> CountedNamespace {
        CountedNamespace {
            collector,
            tag,
            throttle: ErrorThrottle::default(),
            ports_capped: Reminder::default(),
            listeners_capped: Reminder::default(),
            naming: None,
            label_problem: None,
        }
    }

    fn id(&self) -> Option<NsId> {
        self.collector.as_ref()?.target().map(|t| t.id)
    }

    fn labels(&self) -> Option<&Labels> {
        self.naming.as_ref().map(|n| &n.labels)
    }

    /// Whether the namespace `id` needs its labels derived (again): never
    /// derived, another namespace now, a failed lookup, or the process that
    /// named it is gone.
    fn needs_naming(&self, proc_root: &Path, id: NsId) -> bool {
        match &self.naming {
            Some(n) if n.id == id && !n.incomplete => n
                .representative
                .is_some_and(|r| !names::still_there(proc_root, r, id)),
            _ => true,
        }
    }

    /// Takes the labels derived from the namespace's processes; what could
    /// not be read or decided is said with `W! `, once while it lasts.
    fn name(&mut self, id: NsId, named: names::Named, log: &Logger) {
        let tag = self.tag.as_deref().unwrap_or_default();
        let problem = named.problems.first().map(|p| {
            format!(
                "network namespace {tag}: no container, pod or hostname tags until its \
                 processes can be read (tried again at every gather): {p}"
            )
        });
        match &problem {
            Some(p) if self.label_problem.as_ref() != Some(p) => log.warn(format_args!("{p}")),
            _ => {}
        }
        self.label_problem = problem;
        if let Some(a) = &named.ambiguous {
            log.warn(format_args!("network namespace {tag}: {a}"));
        }
        self.naming = Some(Naming {
            id,
            labels: named.labels,
            representative: named.representative,
            incomplete: !named.problems.is_empty(),
        });
    }

    /// Points the slot at `target`, keeping its socket if the namespace is
    /// the one it already counts.
    fn point_at(&mut self, options: &Options, target: Target) {
        self.tag = Some(target.tag.clone());
        match &mut self.collector {
            Some(c) if c.target().is_some_and(|t| t.id == target.id) => c.retarget(target),
            _ => self.collector = Some(Collector::in_namespace(options.clone(), Some(target))),
        }
    }
}

/// Where, for log lines: empty, or " in network namespace NAME".
fn context(tag: Option<&str>) -> String {
    tag.map(|t| format!(" in network namespace {t}"))
        .unwrap_or_default()
}

/// An error that means the namespace went away between the scan and the
/// gather: `--all-netns` drops it without a word. (A named namespace
/// without a process, which the proc source cannot read, has not gone: it
/// is an error like any other.)
fn vanished(e: &Error) -> bool {
    match e {
        Error::NetnsOpen { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The collectors of every namespace counted, the reusable output buffer
/// and the logger.
pub struct Gatherer {
    config: Config,
    options: Options,
    log: Logger,
    /// `Namespaces::Own`: one slot. `Listed`: one per path, in order.
    /// `All`: the namespaces of the last scan, in its order.
    slots: Vec<CountedNamespace>,
    /// Failures to list the namespaces for `--all-netns`.
    scan_throttle: ErrorThrottle,
    /// `--all-netns` found no process to look at.
    no_processes: Reminder,
    /// `--all-netns` could not look at some processes' namespaces.
    unreadable: Reminder,
    /// This gather's counts, by slot index.
    results: Vec<(usize, ByFamily)>,
    /// One receive buffer (and /proc buffer) for every namespace.
    bufs: Buffers,
    out: Vec<u8>,
    stdout: Stdout,
}

impl Gatherer {
    pub fn new(config: Config) -> Self {
        let options = Options {
            source: config.source,
            proc_root: config.proc_root.clone(),
            include_unix: config.include_unix,
            ports: config.ports.clone(),
            listen_queues: config.listen_queues,
            listeners_only: config.listen_queues && !config.print.netstat && !config.print.port,
        };
        let slots = match &config.namespaces {
            Namespaces::Own => vec![CountedNamespace::new(
                Some(Collector::new(options.clone())),
                None,
            )],
            Namespaces::Listed(paths) => paths
                .iter()
                .map(|p| CountedNamespace::new(None, Some(netns::tag_for(p))))
                .collect(),
            Namespaces::All => Vec::new(),
        };
        Gatherer {
            log: Logger {
                verbose: config.verbose,
            },
            options,
            slots,
            scan_throttle: ErrorThrottle::default(),
            no_processes: Reminder::default(),
            unreadable: Reminder::default(),
            results: Vec::new(),
            bufs: Buffers::default(),
            out: Vec::with_capacity(1024),
            stdout: Stdout::new(),
            config,
        }
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// One gather over every namespace, encoded into the reused buffer and
    /// delivered unless nothing could be counted.
    pub fn gather(&mut self, interrupt: &mut dyn Interrupt) -> Outcome {
        let failed = match self.collect(interrupt) {
            Collected::Counted { failed } => failed,
            Collected::Failed => return Outcome::GatherFailed,
            Collected::Stopped => return Outcome::Stopped,
        };
        match deliver(
            self.config.output.as_ref(),
            &self.stdout,
            &self.out,
            interrupt,
        ) {
            Ok(()) => Outcome::Delivered { failed },
            Err(Delivery::Stopped) => Outcome::Stopped,
            Err(d) => Outcome::NotDelivered(d),
        }
    }

    /// One gather over every namespace, encoded into `encoded()`; what
    /// failed is said on stderr.
    pub fn collect(&mut self, interrupt: &mut dyn Interrupt) -> Collected {
        let time =
            (self.config.timestamp || self.config.format.always_stamped()).then(SystemTime::now);
        self.results.clear();
        let failed = match self.resolve() {
            Ok(failed) => match self.count(interrupt) {
                Some(n) => failed + n,
                None => return Collected::Stopped,
            },
            Err(()) => return Collected::Failed,
        };
        if failed > 0 && self.results.is_empty() {
            return Collected::Failed;
        }
        self.encode(time);
        Collected::Counted { failed }
    }

    /// The last gather's encoded metrics.
    pub fn encoded(&self) -> &[u8] {
        &self.out
    }

    /// Brings the slots up to date with the namespaces that exist now.
    /// Returns how many `--netns` paths do not resolve (each said), or
    /// `Err` when `--all-netns` cannot list the namespaces (said).
    fn resolve(&mut self) -> Result<usize, ()> {
        let now = Instant::now();
        match &self.config.namespaces {
            Namespaces::Own => Ok(0),
            Namespaces::Listed(paths) => {
                let mut failed = 0;
                for (slot, path) in self.slots.iter_mut().zip(paths) {
                    match Target::at(path) {
                        Ok(t) => slot.point_at(&self.options, t),
                        Err(e) => {
                            // Let go of the namespace; keep the failure memory.
                            slot.collector = None;
                            slot.tag = Some(netns::tag_for(path));
                            failed += 1;
                            let said = slot.throttle.failed(
                                &context(slot.tag.as_deref()),
                                e.to_string(),
                                now,
                            );
                            say(&self.log, said);
                        }
                    }
                }
                Ok(failed)
            }
            Namespaces::All => {
                let dirs = netns::NAMED_DIRS.map(Path::new);
                match netns::scan(&self.options.proc_root, &dirs) {
                    Ok(netns::Scan {
                        targets,
                        processes,
                        unreadable,
                    }) => {
                        say(&self.log, self.scan_throttle.succeeded(""));
                        let mut failed = 0;
                        if unreadable > 0 {
                            // Incomplete: the namespaces only those processes
                            // are in are missing, so the gather is a partial one.
                            failed = 1;
                            if self.unreadable.due(now) {
                                let why = if netns::holds_cap_sys_ptrace() {
                                    "refused although CAP_SYS_PTRACE is held: they are in a user namespace \
                                     above this program's, or a security module refuses"
                                } else {
                                    "CAP_SYS_PTRACE is missing"
                                };
                                self.log.error(format_args!(
                                    "cannot look at the network namespace of {unreadable} processes under {} \
                                     ({why}): namespaces that only they are in are not counted",
                                    self.options.proc_root.display()
                                ));
                            }
                        } else {
                            self.unreadable = Reminder::default();
                        }
                        let none = processes == 0;
                        if none && self.no_processes.due(now) {
                            self.log.warn(format_args!(
                                "found no process under {} whose network namespace can be looked at: \
                                 only the namespaces named in /run/netns are counted",
                                self.options.proc_root.display()
                            ));
                        } else if !none {
                            self.no_processes = Reminder::default();
                        }
                        let mut old: HashMap<NsId, CountedNamespace> = self
                            .slots
                            .drain(..)
                            .filter_map(|s| Some((s.id()?, s)))
                            .collect();
                        for t in targets {
                            let mut slot = old
                                .remove(&t.id)
                                .unwrap_or_else(|| CountedNamespace::new(None, None));
                            slot.point_at(&self.options, t);
                            self.slots.push(slot);
                        }
                        Ok(failed)
                    }
                    Err(e) => {
                        let msg = format!("cannot list the network namespaces: {e}");
                        let said = self.scan_throttle.failed("", msg, now);
                        say(&self.log, said);
                        Err(())
                    }
                }
            }
        }
    }

    /// Gives every namespace seen for the first time its labels, and
    /// derives them again where they may no longer hold (see
    /// `CountedNamespace::needs_naming`): one walk over the processes finds
    /// the members of those namespaces, then one lookup each. `None` when
    /// `listen` asked to stop.
    fn name_namespaces(&mut self, interrupt: &mut dyn Interrupt) -> Option<()> {
        if !self.config.netns_labels || self.config.namespaces == Namespaces::Own {
            return Some(());
        }
        let root = &self.options.proc_root;
        let stale: Vec<(usize, NsId)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let id = s.collector.as_ref()?.target()?.id;
                s.needs_naming(root, id).then_some((i, id))
            })
            .collect();
        if stale.is_empty() {
            return Some(());
        }
        let ids: Vec<NsId> = stale.iter().map(|n| n.1).collect();
        let members = names::members(root, &ids);
        let host = names::Host::look(root);
        for (i, id) in stale {
            if interrupt.stop_requested() {
                return None;
            }
            let pids = members.get(&id).map(Vec::as_slice).unwrap_or_default();
            let named = names::derive(root, id, pids, &host);
            self.slots[i].name(id, named, &self.log);
        }
        Some(())
    }

    /// Gathers in every resolved slot; returns how many failed (each said),
    /// or `None` when `listen` asked to stop.
    fn count(&mut self, interrupt: &mut dyn Interrupt) -> Option<usize> {
        self.name_namespaces(interrupt)?;
        let log = self.log;
        let all = self.config.namespaces == Namespaces::All;
        let include_unix = self.config.include_unix;
        let now = Instant::now();
        let mut failed = 0;
        // `--netns` paths that name one namespace twice count it once.
        let mut seen: Vec<NsId> = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let CountedNamespace {
                collector: Some(collector),
                tag,
                throttle,
                ports_capped,
                listeners_capped,
                ..
            } = slot
            else {
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
            let context = context(tag.as_deref());
            let prefix = tag
                .as_ref()
                .map(|t| format!("network namespace {t}: "))
                .unwrap_or_default();
            let events = &mut |event: Event<'_>| {
                let caps = Caps {
                    ports: &mut *ports_capped,
                    listeners: &mut *listeners_capped,
                };
                report(&log, &prefix, include_unix, caps, now, event)
            };
            match collector.gather(&mut self.bufs, events, &mut || interrupt.stop_requested()) {
                Err(Error::Stopped) => return None,
                Ok(counts) => {
                    self.results.push((i, counts));
                    say(&log, throttle.succeeded(&context));
                }
                Err(e) if all && vanished(&e) => slot.collector = None,
                Err(e) => {
                    failed += 1;
                    say(&log, throttle.failed(&context, e.to_string(), now));
                }
            }
        }
        Some(failed)
    }

    /// Encodes this gather's results into the reused output buffer:
    /// every `netstat` metric, then every `netstat_port` one, then every
    /// `netstat_listen` one (those `--only` lets through).
    fn encode(&mut self, time: Option<SystemTime>) {
        let by_family = self.config.by_family;
        let print = self.config.print;
        // Tag values made up here (ports, addresses), in one string; the
        // fields of every row, in one vector.
        let mut text = String::new();
        let mut fields: Vec<Field> = Vec::new();
        // Measurement, where its fields are, up to four tags (keys sorted,
        // as Telegraf writes them) as ranges of `text` or borrowed strings.
        let mut rows: Vec<(&'static str, Range<usize>, [Tag; 4], usize)> = Vec::new();
        let span = |text: &mut String, key: &'static str, s: std::fmt::Arguments<'_>| {
            let start = text.len();
            let _ = text.write_fmt(s);
            Tag::Text(key, start..text.len())
        };
        let mut push = |slot: usize, measurement, values: &[Field], tags: [Tag; 4]| {
            let start = fields.len();
            fields.extend_from_slice(values);
            rows.push((measurement, start..fields.len(), tags, slot));
        };
        let families: [(&'static str, usize); 2] = [("ipv4", 0), ("ipv6", 1)];
        for &(i, counts) in self.results.iter().filter(|_| print.netstat) {
            let netns = Tag::netns(i);
            if by_family {
                push(
                    i,
                    MEASUREMENT,
                    &Field::of(&counts.ipv4),
                    [
                        Tag::kv("family", "ipv4"),
                        netns.clone(),
                        Tag::None,
                        Tag::None,
                    ],
                );
                push(
                    i,
                    MEASUREMENT,
                    &Field::of(&counts.ipv6),
                    [Tag::kv("family", "ipv6"), netns, Tag::None, Tag::None],
                );
                if self.config.include_unix {
                    push(
                        i,
                        MEASUREMENT,
                        &Field::of(&counts.unix),
                        [
                            Tag::kv("family", "unix"),
                            Tag::netns(i),
                            Tag::None,
                            Tag::None,
                        ],
                    );
                }
            } else {
                push(
                    i,
                    MEASUREMENT,
                    &Field::of(&counts.total()),
                    [netns, Tag::None, Tag::None, Tag::None],
                );
            }
        }
        let aggs = |i: usize| self.slots[i].collector.as_ref().map(|c| c.aggregations());
        for &(i, _) in self.results.iter().filter(|_| print.port) {
            let Some(ports) = aggs(i).and_then(|a| a.ports.as_ref()) else {
                continue;
            };
            for (direction, port, counts) in ports.rows() {
                let direction = Tag::kv("direction", direction.as_str());
                let port = span(&mut text, "port", format_args!("{port}"));
                if by_family {
                    for (name, f) in families {
                        push(
                            i,
                            PORT_MEASUREMENT,
                            &Field::of(&counts[f]),
                            [
                                direction.clone(),
                                Tag::kv("family", name),
                                Tag::netns(i),
                                port.clone(),
                            ],
                        );
                    }
                } else {
                    let mut total = counts[0];
                    total.add(&counts[1]);
                    push(
                        i,
                        PORT_MEASUREMENT,
                        &Field::of(&total),
                        [direction, Tag::netns(i), port, Tag::None],
                    );
                }
            }
        }
        let syn_recv = !self.options.listeners_only;
        for &(i, _) in self.results.iter().filter(|_| print.listen) {
            let Some(listen) = aggs(i).and_then(|a| a.listen.as_ref()) else {
                continue;
            };
            for l in listen.rows() {
                let address = span(
                    &mut text,
                    "address",
                    format_args!("{}", address_text(l.family, &l.addr)),
                );
                let port = span(&mut text, "port", format_args!("{}", l.port));
                let family = if l.family == AF_INET { "ipv4" } else { "ipv6" };
                let family = if by_family {
                    Tag::kv("family", family)
                } else {
                    Tag::None
                };
                // Sorted by name; what the source does not know is left out.
                let mut f: Vec<Field> = Vec::with_capacity(5);
                if let Some(b) = l.backlog {
                    f.push(Field::gauge("backlog", b));
                }
                if let Some(d) = l.drops {
                    f.push(Field {
                        name: "drops",
                        value: d,
                        counter: true,
                    });
                }
                f.push(Field::gauge("queue", l.queue));
                f.push(Field::gauge("sockets", l.sockets));
                if syn_recv {
                    f.push(Field::gauge("syn_recv", l.syn_recv));
                }
                push(
                    i,
                    LISTEN_MEASUREMENT,
                    &f,
                    [address, family, Tag::netns(i), port],
                );
            }
        }
        // Every row's tags, with its namespace's labels, sorted by key.
        let tag_sets: Vec<Vec<(&str, &str)>> = rows
            .iter()
            .map(|(_, _, tags, slot)| {
                let mut t: Vec<(&str, &str)> = tags
                    .iter()
                    .filter_map(|tag| match tag {
                        Tag::None => None,
                        Tag::Kv(k, v) => Some((*k, *v)),
                        Tag::Netns(slot) => self.slots[*slot].tag.as_deref().map(|v| ("netns", v)),
                        Tag::Text(k, range) => Some((*k, &text[range.clone()])),
                    })
                    .collect();
                if let Some(labels) = self.slots[*slot].labels() {
                    t.extend(labels.tags());
                }
                t.sort_unstable_by_key(|kv| kv.0);
                t
            })
            .collect();
        let metrics: Vec<Metric<'_>> = rows
            .iter()
            .zip(&tag_sets)
            .map(|((measurement, range, _, _), tags)| Metric {
                measurement,
                tags,
                fields: &fields[range.clone()],
                time,
            })
            .collect();
        self.out.clear();
        self.config.format.encode(&metrics, &mut self.out);
    }
}

/// A tag of a row being built: nothing, a fixed pair, the `netns` tag of a
/// slot, or a value in the row text buffer.
#[derive(Clone)]
enum Tag {
    None,
    Kv(&'static str, &'static str),
    Netns(usize),
    Text(&'static str, Range<usize>),
}

impl Tag {
    fn kv(k: &'static str, v: &'static str) -> Tag {
        Tag::Kv(k, v)
    }

    fn netns(slot: usize) -> Tag {
        Tag::Netns(slot)
    }
}

/// The warnings about caps of one namespace, each said at most every few
/// minutes.
struct Caps<'a> {
    ports: &'a mut Reminder,
    listeners: &'a mut Reminder,
}

/// Logs what a collector tells.
fn report(
    log: &Logger,
    prefix: &str,
    include_unix: bool,
    caps: Caps<'_>,
    now: Instant,
    event: Event<'_>,
) {
    match event {
        Event::Fallback { proto, error } => {
            let what = match proto {
                Some(p) => p.to_string(),
                None if include_unix => "tcp, udp and unix".to_string(),
                None => "tcp and udp".to_string(),
            };
            log.warn(format_args!(
                "{prefix}{error}; reading {what} sockets from /proc from now on"
            ))
        }
        Event::UnknownState { state, count } => log.debug(format_args!(
            "{prefix}ignored {count} tcp sockets in unknown state {state}"
        )),
        Event::ListenersCapped { cap } => {
            if caps.listeners.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} TCP listening addresses; \
                     --listen-queues reports the first {cap} found"
                ));
            }
        }
        Event::PortsCapped { cap } => {
            if caps.ports.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} ports have TCP listeners; \
                     --listening-ports breaks down the first {cap} found"
                ));
            }
        }
    }
}

/// One-shot mode: gather once, print, exit.
pub fn run(config: Config) -> ExitCode {
    let mut g = Gatherer::new(config);
    let log = *g.log();
    match g.gather(&mut Uninterrupted) {
        Outcome::Delivered { failed: 0 }
        | Outcome::NotDelivered(Delivery::Closed | Delivery::Stopped)
        | Outcome::Stopped => ExitCode::from(EXIT_OK),
        Outcome::Delivered { .. } => ExitCode::from(EXIT_NAMESPACE_FAILED),
        Outcome::NotDelivered(Delivery::Failed(e)) => {
            log.error(format_args!("cannot write the output: {e}"));
            ExitCode::from(EXIT_GATHER_FAILED)
        }
        Outcome::GatherFailed => ExitCode::from(EXIT_GATHER_FAILED),
    }
}
