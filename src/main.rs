//! The `telegraf-netstat` binary: flags checked into one `Config`, the sink
//! opened, then one mode runs. The library (`telegraf_netstat`) holds kernel
//! access, aggregation, rows and encoders; the binary holds the command
//! line, the gather loop over namespaces, the modes, its log lines (`log`)
//! and where gathers go (`sink`).

mod bpf;
mod cli;
mod deliver;
mod execd;
mod exit;
mod gather;
mod hostcgroups;
mod log;
mod oneshot;
mod serve;
mod signals;
mod sink;
mod state;
#[cfg(test)]
#[path = "testdir.rs"]
mod testdir;
mod throttle;

use std::process::ExitCode;

use sink::{OutputFile, Sink, Stdout};

/// Each namespace counted keeps one netlink socket open; the common soft
/// limit of 1024 descriptors would cap `--all-netns` well below the hard
/// limit the administrator allows. Raised once, at start.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Staying at the soft limit is not an error worth stopping for.
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn main() -> ExitCode {
    raise_fd_limit();
    let config = match cli::Config::parse(std::env::args_os(), &cli::Env::of_process()) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    // Before any thread starts: they inherit the cgroup namespace.
    hostcgroups::see(&config);
    match config.mode.clone() {
        cli::Mode::Serve(serve) => {
            let scrape = Scraper::new(&config);
            serve::run(config.log, serve, scrape)
        }
        cli::Mode::Loop { execd, interval } => {
            let sink = open_sink(&config);
            execd::run(config, sink, execd, interval)
        }
        cli::Mode::OneShot => {
            let sink = open_sink(&config);
            let state = open_state(&config, &sink);
            oneshot::run(config, sink, state)
        }
    }
}

/// The sink, opened before any gather: a bad `--output` is a usage error
/// (exit 2), not a failed gather.
fn open_sink(config: &cli::Config) -> Sink {
    match &config.output {
        None => Sink::Stdout(Stdout::new()),
        Some(path) => match OutputFile::open(path) {
            Ok(file) => Sink::File(file),
            Err(why) => cli::output_error("--output", path, why).exit(),
        },
    }
}

/// The `--state-file`, its directory opened before any gather: the
/// `--output` file is a usage error; a directory that cannot take the file
/// a `W!` line, and a run without it (it changes the cost, never the
/// output).
fn open_state(config: &cli::Config, sink: &Sink) -> Option<state::StateFile> {
    let path = config.state_file.as_ref()?;
    match state::StateFile::open(path) {
        Ok(s) if matches!(sink, Sink::File(out) if s.is(out)) => {
            cli::output_error("--state-file", path, "it is the --output file").exit()
        }
        Ok(s) => Some(s),
        Err(why) => {
            config.log.warn(format_args!(
                "--state-file {}: {why}; this run walks for --tcp-info's destinations \
                 and keeps none",
                path.display()
            ));
            None
        }
    }
}

/// The exporter's gather: every namespace counted and encoded in the
/// configured format, never stopped half way (the exporter answers every
/// scrape that waits for it).
struct Scraper {
    gatherer: gather::Gatherer,
    format: telegraf_netstat::Format,
}

impl Scraper {
    fn new(config: &cli::Config) -> Scraper {
        Scraper {
            gatherer: gather::Gatherer::new(config),
            format: config.format,
        }
    }
}

impl serve::Scrape for Scraper {
    fn scrape(&mut self, out: &mut Vec<u8>) -> bool {
        match self.gatherer.collect(&mut signals::Uninterrupted) {
            gather::Collected::Counted { .. } => {
                self.gatherer.rows().encode(self.format, out);
                true
            }
            gather::Collected::Failed | gather::Collected::Stopped => false,
        }
    }
}
