//! Running a gather and delivering it: events to stderr, the encoded metric
//! to stdout in one write, and the exit code.

use std::process::ExitCode;
use std::time::SystemTime;

use rustix::io::Errno;
use telegraf_netstat::log::Logger;
use telegraf_netstat::{Collector, Event, Metric};

use crate::config::Config;

/// Exit codes, documented in the README and `--help`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_GATHER_FAILED: u8 = 1;

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
fn deliver(output: Option<&std::path::Path>, bytes: &[u8]) -> Result<(), Delivery> {
    match output {
        None => write_stdout(bytes),
        Some(path) => telegraf_netstat::output::replace_file(path, bytes).map_err(|e| {
            Delivery::Failed(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        }),
    }
}

/// How one gather ended.
pub enum Outcome {
    Delivered,
    GatherFailed(telegraf_netstat::Error),
    NotDelivered(Delivery),
}

/// A collector plus the reusable output buffer and the logger.
pub struct Gatherer {
    config: Config,
    collector: Collector,
    log: Logger,
    out: Vec<u8>,
}

impl Gatherer {
    pub fn new(config: Config) -> Self {
        Gatherer {
            collector: Collector::new(config.source, &config.proc_root),
            log: Logger {
                verbose: config.verbose,
            },
            out: Vec::with_capacity(1024),
            config,
        }
    }

    /// One gather, encoded into the reused buffer and delivered.
    pub fn gather(&mut self) -> Outcome {
        match self.encode() {
            Err(e) => Outcome::GatherFailed(e),
            Ok(()) => match deliver(self.config.output.as_deref(), &self.out) {
                Ok(()) => Outcome::Delivered,
                Err(d) => Outcome::NotDelivered(d),
            },
        }
    }

    fn encode(&mut self) -> Result<(), telegraf_netstat::Error> {
        let stamped = self.config.timestamp || self.config.format.always_stamped();
        let time = stamped.then(SystemTime::now);
        let log = self.log;
        let counts = self.collector.gather(&mut |event| report(&log, event))?;
        self.out.clear();
        let metric = Metric {
            tags: &[],
            counts: &counts,
            time,
        };
        self.config.format.encode(&[metric], &mut self.out);
        Ok(())
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }
}

fn report(log: &Logger, event: Event<'_>) {
    match event {
        Event::Fallback { proto, error } => {
            let what = proto.map_or("tcp and udp".to_string(), |p| p.to_string());
            log.warn(format_args!("{error}; reading {what} sockets from /proc from now on"))
        }
        Event::Interrupted { dump, attempts } => log.warn(format_args!(
            "the netlink {dump} dump was interrupted by socket table changes {attempts} times in a row; \
             reporting the last attempt's counts, which may be off by the sockets that changed"
        )),
        Event::UnknownState { state, count } => log.debug(format_args!(
            "ignored {count} tcp sockets in unknown state {state}"
        )),
    }
}

/// One-shot mode: gather once, print, exit.
pub fn run(config: Config) -> ExitCode {
    let mut g = Gatherer::new(config);
    let log = *g.log();
    match g.gather() {
        Outcome::Delivered | Outcome::NotDelivered(Delivery::Closed) => ExitCode::from(EXIT_OK),
        Outcome::NotDelivered(Delivery::Failed(e)) => {
            log.error(format_args!("cannot write the output: {e}"));
            ExitCode::from(EXIT_GATHER_FAILED)
        }
        Outcome::GatherFailed(e) => {
            log.error(format_args!("gather failed: {e}"));
            ExitCode::from(EXIT_GATHER_FAILED)
        }
    }
}
