//! Running a gather over every namespace asked for and delivering it: events
//! and errors to stderr, the encoded metrics to stdout in one write, and the
//! exit code.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use rustix::io::Errno;
use telegraf_netstat::collector::Buffers;
use telegraf_netstat::log::Logger;
use telegraf_netstat::netns::{self, NsId, Target};
use telegraf_netstat::sink::OutputFile;
use telegraf_netstat::{ByFamily, Collector, Counts, Error, Event, Metric, Options};

use crate::config::{Config, Namespaces};
use crate::throttle::{say, ErrorThrottle};

/// Exit codes, documented in the README and `--help`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_GATHER_FAILED: u8 = 1;
pub const EXIT_NAMESPACE_FAILED: u8 = 3;

/// Why output could not be delivered.
pub enum Delivery {
    /// The reader went away (EPIPE): stop quietly.
    Closed,
    Failed(std::io::Error),
}

/// Writes all of `buf` to stdout, normally with a single `write`, so a
/// reader never sees part of a line.
pub fn write_stdout(buf: &[u8]) -> Result<(), Delivery> {
    let stdout = rustix::stdio::stdout();
    let mut rest = buf;
    while !rest.is_empty() {
        match rustix::io::write(stdout, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::INTR) => {}
            Err(Errno::PIPE) => return Err(Delivery::Closed),
            Err(e) => return Err(Delivery::Failed(e.into())),
        }
    }
    Ok(())
}

/// Delivers one gather's bytes: stdout in one write, or the `--output` file
/// replaced atomically.
fn deliver(output: Option<&OutputFile>, bytes: &[u8]) -> Result<(), Delivery> {
    match output {
        None => write_stdout(bytes),
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
}

/// One namespace: its collector, its tag, and the memory of its failures.
struct Slot {
    /// `None` while a `--netns` path does not resolve.
    collector: Option<Collector>,
    /// The `netns` tag; `None` for the own namespace without namespace
    /// options.
    tag: Option<String>,
    throttle: ErrorThrottle,
}

impl Slot {
    fn new(collector: Option<Collector>, tag: Option<String>) -> Slot {
        Slot {
            collector,
            tag,
            throttle: ErrorThrottle::default(),
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
/// gather: `--all-netns` drops it without a word.
fn vanished(e: &Error) -> bool {
    match e {
        Error::NetnsOpen { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::NetnsNoProcess { .. } => true,
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
    /// This gather's counts, by slot index.
    results: Vec<(usize, ByFamily)>,
    /// One receive buffer (and /proc buffer) for every namespace.
    bufs: Buffers,
    out: Vec<u8>,
}

impl Gatherer {
    pub fn new(config: Config) -> Self {
        let options = Options {
            source: config.source,
            proc_root: config.proc_root.clone(),
            include_unix: config.include_unix,
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
            results: Vec::new(),
            bufs: Buffers::default(),
            out: Vec::with_capacity(1024),
            config,
        }
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// One gather over every namespace, encoded into the reused buffer and
    /// delivered unless nothing could be counted.
    pub fn gather(&mut self) -> Outcome {
        let time =
            (self.config.timestamp || self.config.format.always_stamped()).then(SystemTime::now);
        self.results.clear();
        let failed = match self.resolve() {
            Ok(failed) => failed + self.count(),
            Err(()) => return Outcome::GatherFailed,
        };
        if failed > 0 && self.results.is_empty() {
            return Outcome::GatherFailed;
        }
        self.encode(time);
        match deliver(self.config.output.as_ref(), &self.out) {
            Ok(()) => Outcome::Delivered { failed },
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
                    Ok(targets) => {
                        say(&self.log, self.scan_throttle.succeeded(""));
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

    /// Gathers in every resolved slot; returns how many failed (each said).
    fn count(&mut self) -> usize {
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
            } = slot
            else {
                continue;
            };
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
            let events = &mut |event: Event<'_>| report(&log, &prefix, include_unix, event);
            match collector.gather(&mut self.bufs, events) {
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
        failed
    }

    /// Encodes this gather's results into the reused output buffer.
    fn encode(&mut self, time: Option<SystemTime>) {
        let by_family = self.config.by_family;
        // Counts, up to two tags, how many of them are set.
        type Row<'t> = (Counts, [(&'t str, &'t str); 2], usize);
        let mut rows: Vec<Row<'_>> = Vec::new();
        for (i, counts) in &self.results {
            let netns = self.slots[*i].tag.as_deref();
            let mut push = |family: Option<&'static str>, c: Counts| {
                let mut tags = [("", ""); 2];
                let mut n = 0;
                // Keys in sorted order, as Telegraf writes them.
                if let Some(f) = family {
                    tags[n] = ("family", f);
                    n += 1;
                }
                if let Some(t) = netns {
                    tags[n] = ("netns", t);
                    n += 1;
                }
                rows.push((c, tags, n));
            };
            if by_family {
                push(Some("ipv4"), counts.ipv4);
                push(Some("ipv6"), counts.ipv6);
                if self.config.include_unix {
                    push(Some("unix"), counts.unix);
                }
            } else {
                push(None, counts.total());
            }
        }
        let metrics: Vec<Metric<'_>> = rows
            .iter()
            .map(|(counts, tags, n)| Metric {
                tags: &tags[..*n],
                counts,
                time,
            })
            .collect();
        self.out.clear();
        self.config.format.encode(&metrics, &mut self.out);
    }
}

fn report(log: &Logger, prefix: &str, include_unix: bool, event: Event<'_>) {
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
    }
}

/// One-shot mode: gather once, print, exit.
pub fn run(config: Config) -> ExitCode {
    let mut g = Gatherer::new(config);
    let log = *g.log();
    match g.gather() {
        Outcome::Delivered { failed: 0 } | Outcome::NotDelivered(Delivery::Closed) => {
            ExitCode::from(EXIT_OK)
        }
        Outcome::Delivered { .. } => ExitCode::from(EXIT_NAMESPACE_FAILED),
        Outcome::NotDelivered(Delivery::Failed(e)) => {
            log.error(format_args!("cannot write the output: {e}"));
            ExitCode::from(EXIT_GATHER_FAILED)
        }
        Outcome::GatherFailed => ExitCode::from(EXIT_GATHER_FAILED),
    }
}
