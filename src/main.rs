//! The `telegraf-netstat` binary: parse flags into a `Config`, then run.

mod execd;
mod gather;
mod serve;
mod signals;
mod throttle;

use std::process::ExitCode;

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
    match telegraf_netstat::cli::Config::parse(std::env::args_os()) {
        Ok(config) if config.serve.is_some() => serve::run(config),
        Ok(config) if config.execd || config.interval.is_some() => execd::run(config),
        Ok(config) => gather::run(config),
        Err(e) => e.exit(),
    }
}
