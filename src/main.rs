//! The `telegraf-netstat` binary: parse flags into a `Config`, then run.

mod app;
mod config;
mod execd;
mod throttle;

use std::process::ExitCode;

fn main() -> ExitCode {
    match config::Config::parse(std::env::args_os()) {
        Ok(config) if config.execd || config.interval.is_some() => execd::run(config),
        Ok(config) => app::run(config),
        Err(e) => e.exit(),
    }
}
