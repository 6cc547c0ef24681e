//! Running a gather over every namespace asked for and delivering it: events
//! and errors to stderr, the encoded metrics to stdout in one write, and the
//! exit code.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use std::os::fd::BorrowedFd;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use telegraf_netstat::collector::Buffers;
use telegraf_netstat::log::Logger;
use telegraf_netstat::netns::{self, NsId, Target};
use telegraf_netstat::sink::{Delivery, OutputFile, Stdout};
use telegraf_netstat::{ByFamily, Collector, Counts, Error, Event, Metric, Options};

use crate::throttle::{say, ErrorThrottle, WarnOnce};
use std::fmt::Write as _;
use telegraf_netstat::aggregate::ports::{Direction, PortCounts};
use telegraf_netstat::cli::{Config, Namespaces};
use telegraf_netstat::output::{MEASUREMENT, PORT_MEASUREMENT};

/// Exit codes, documented in the README and `--help`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_GATHER_FAILED: u8 = 1;
pub const EXIT_NAMESPACE_FAILED: u8 = 3;

/// What a gather consults besides the kernel: whether to stop now, and how
/// to wait for a stdout reader that is behind. The loops answer from their
/// signal pipe and stdin; a one-shot run never stops.
pub trait Listen {
    /// Whether to drop the gather and exit (SIGTERM, stdin EOF). Asked
    /// between namespaces and every few hundred sockets, so it must be cheap.
    fn stop_requested(&mut self) -> bool;
    /// Blocks until `fd` takes more bytes (`true`) or the program must exit
    /// (`false`).
    fn wait_writable(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool>;
}

/// A one-shot run: nothing to listen to.
pub struct OneShot;

impl Listen for OneShot {
    fn stop_requested(&mut self) -> bool {
        false
    }

    fn wait_writable(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool> {
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
        loop {
            match poll(&mut fds, None) {
                Ok(_) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Delivers one gather's bytes: to stdout, or the `--output` file replaced
/// atomically.
fn deliver(
    output: Option<&OutputFile>,
    stdout: &Stdout,
    bytes: &[u8],
    listen: &mut dyn Listen,
) -> Result<(), Delivery> {
    match output {
        None => stdout.write_all(bytes, &mut |fd| listen.wait_writable(fd)),
        Some(file) => file.replace(bytes).map_err(|e| {
            Delivery::Failed(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", file.path().display()),
            ))
        }),
    }
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
    /// `Listen::stop_requested` said so; the rest of the gather was dropped.
    Stopped,
}

/// One namespace: its collector, its tag, and the memory of its failures.
struct Slot {
    /// `None` while a `--netns` path does not resolve.
    collector: Option<Collector>,
    /// The `netns` tag; `None` for the own namespace without namespace
    /// options.
    tag: Option<String>,
    throttle: ErrorThrottle,
    /// More listening ports than the cap: said, then reminded.
    ports_capped: WarnOnce,
}

impl Slot {
    fn new(collector: Option<Collector>, tag: Option<String>) -> Slot {
        Slot {
            collector,
            tag,
            throttle: ErrorThrottle::default(),
            ports_capped: WarnOnce::default(),
        }
    }

    fn id(&self) -> Option<NsId> {
        self.collector.as_ref()?.target().map(|t| t.id)
    }

    /// Points the slot at `target`, keeping its socket if the namespace is
    /// the one it already counts.
    fn aim(&mut self, options: &Options, target: Target) {
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
    slots: Vec<Slot>,
    /// Failures to list the namespaces for `--all-netns`.
    scan_throttle: ErrorThrottle,
    /// `--all-netns` found no process to look at.
    no_processes: WarnOnce,
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
        };
        let slots = match &config.namespaces {
            Namespaces::Own => vec![Slot::new(Some(Collector::new(options.clone())), None)],
            Namespaces::Listed(paths) => paths
                .iter()
                .map(|p| Slot::new(None, Some(netns::tag_for(p))))
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
            no_processes: WarnOnce::default(),
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
    pub fn gather(&mut self, listen: &mut dyn Listen) -> Outcome {
        let time =
            (self.config.timestamp || self.config.format.always_stamped()).then(SystemTime::now);
        self.results.clear();
        let failed = match self.resolve() {
            Ok(failed) => match self.count(listen) {
                Some(n) => failed + n,
                None => return Outcome::Stopped,
            },
            Err(()) => return Outcome::GatherFailed,
        };
        if failed > 0 && self.results.is_empty() {
            return Outcome::GatherFailed;
        }
        self.encode(time);
        match deliver(self.config.output.as_ref(), &self.stdout, &self.out, listen) {
            Ok(()) => Outcome::Delivered { failed },
            Err(Delivery::Stopped) => Outcome::Stopped,
            Err(d) => Outcome::NotDelivered(d),
        }
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
                        Ok(t) => slot.aim(&self.options, t),
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
                    Ok(netns::Scan { targets, processes }) => {
                        say(&self.log, self.scan_throttle.succeeded(""));
                        let none = processes == 0;
                        if none && self.no_processes.warn(now) {
                            self.log.warn(format_args!(
                                "found no process under {} whose network namespace can be looked at: \
                                 only the namespaces named in /run/netns are counted",
                                self.options.proc_root.display()
                            ));
                        } else if !none {
                            self.no_processes = WarnOnce::default();
                        }
                        let mut old: HashMap<NsId, Slot> = self
                            .slots
                            .drain(..)
                            .filter_map(|s| Some((s.id()?, s)))
                            .collect();
                        for t in targets {
                            let mut slot =
                                old.remove(&t.id).unwrap_or_else(|| Slot::new(None, None));
                            slot.aim(&self.options, t);
                            self.slots.push(slot);
                        }
                        Ok(0)
                    }
                    Err(e) => {
                        let said = self.scan_throttle.failed(
                            "",
                            format!("cannot list the network namespaces: {e}"),
                            now,
                        );
                        say(&self.log, said);
                        Err(())
                    }
                }
            }
        }
    }

    /// Gathers in every resolved slot; returns how many failed (each said),
    /// or `None` when `listen` asked to stop.
    fn count(&mut self, listen: &mut dyn Listen) -> Option<usize> {
        let log = self.log;
        let all = self.config.namespaces == Namespaces::All;
        let include_unix = self.config.include_unix;
        let now = Instant::now();
        let mut failed = 0;
        // `--netns` paths that name one namespace twice count it once.
        let mut seen: Vec<NsId> = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Slot {
                collector: Some(collector),
                tag,
                throttle,
                ports_capped,
            } = slot
            else {
                continue;
            };
            if listen.stop_requested() {
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
                report(&log, &prefix, include_unix, ports_capped, now, event)
            };
            match collector.gather(&mut self.bufs, events, &mut || listen.stop_requested()) {
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
    /// every `netstat` metric, then every `netstat_port` one.
    fn encode(&mut self, time: Option<SystemTime>) {
        let by_family = self.config.by_family;
        // The port tag's text for every port row, in one string.
        let mut port_text = String::new();
        let mut port_rows: Vec<(usize, Direction, std::ops::Range<usize>, [Counts; 2])> =
            Vec::new();
        for (i, _) in &self.results {
            let ports = self.slots[*i]
                .collector
                .as_ref()
                .and_then(|c| c.aggregations().ports.as_ref());
            for (direction, port, counts) in ports.into_iter().flat_map(PortCounts::rows) {
                let start = port_text.len();
                let _ = write!(port_text, "{port}");
                port_rows.push((*i, direction, start..port_text.len(), counts));
            }
        }
        // Measurement, counts, up to four tags, how many of them are set.
        type Row<'t> = (&'static str, Counts, [(&'t str, &'t str); 4], usize);
        let mut rows: Vec<Row<'_>> = Vec::new();
        // Tag keys in sorted order, as Telegraf writes them.
        fn row<'t>(
            measurement: &'static str,
            c: Counts,
            tags: [Option<(&'static str, &'t str)>; 4],
        ) -> Row<'t> {
            let mut t = [("", ""); 4];
            let mut n = 0;
            for tag in tags.into_iter().flatten() {
                t[n] = tag;
                n += 1;
            }
            (measurement, c, t, n)
        }
        let mut push = |measurement, c, tags| rows.push(row(measurement, c, tags));
        let families: &[(&str, usize)] = &[("ipv4", 0), ("ipv6", 1)];
        for (i, counts) in &self.results {
            let netns = self.slots[*i].tag.as_deref().map(|t| ("netns", t));
            if by_family {
                push(
                    MEASUREMENT,
                    counts.ipv4,
                    [Some(("family", "ipv4")), netns, None, None],
                );
                push(
                    MEASUREMENT,
                    counts.ipv6,
                    [Some(("family", "ipv6")), netns, None, None],
                );
                if self.config.include_unix {
                    push(
                        MEASUREMENT,
                        counts.unix,
                        [Some(("family", "unix")), netns, None, None],
                    );
                }
            } else {
                push(MEASUREMENT, counts.total(), [netns, None, None, None]);
            }
        }
        for (i, direction, range, counts) in &port_rows {
            let netns = self.slots[*i].tag.as_deref().map(|t| ("netns", t));
            let direction = Some(("direction", direction.as_str()));
            let port = Some(("port", &port_text[range.clone()]));
            if by_family {
                for &(name, f) in families {
                    push(
                        PORT_MEASUREMENT,
                        counts[f],
                        [direction, Some(("family", name)), netns, port],
                    );
                }
            } else {
                let mut total = counts[0];
                total.add(&counts[1]);
                push(PORT_MEASUREMENT, total, [direction, netns, port, None]);
            }
        }
        let metrics: Vec<Metric<'_>> = rows
            .iter()
            .map(|(measurement, counts, tags, n)| Metric {
                measurement,
                tags: &tags[..*n],
                counts,
                time,
            })
            .collect();
        self.out.clear();
        self.config.format.encode(&metrics, &mut self.out);
    }
}

/// Logs what a collector tells; the port cap at most every few minutes.
fn report(
    log: &Logger,
    prefix: &str,
    include_unix: bool,
    ports_capped: &mut WarnOnce,
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
        Event::PortsCapped { cap } => {
            if ports_capped.warn(now) {
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
    match g.gather(&mut OneShot) {
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
