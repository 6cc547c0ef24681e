//! Command line: flags parsed by clap (the library's [`args`]), then
//! checked into one [`Config`] that the rest of the program takes, a
//! function of the arguments and the environment handed in ([`Env`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::log::{Level, LogFormat, Logger};
use clap::{error::ErrorKind, CommandFactory, Parser};
use telegraf_netstat::args::{Args, FormatArg, LevelArg, LogFormatArg, NamesArg, SourceArg};
use telegraf_netstat::counters::Selection;
use telegraf_netstat::measure::port::count::{PortConfig, MAX_PORTS};
use telegraf_netstat::measure::{self, Measurements, ALL};
use telegraf_netstat::values::ListenAddr;
use telegraf_netstat::{Format, Source};

pub use crate::serve::Serve;

/// Which network namespaces a gather counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// The one the program runs in; no `netns` tag.
    Own,
    /// `--netns PATH`..., in the order given.
    Listed(Vec<PathBuf>),
    /// `--all-netns`: found anew at every gather.
    All,
}

/// Everything the program needs to know, checked.
#[derive(Debug)]
pub struct Config {
    pub source: Source,
    pub proc_root: PathBuf,
    pub timestamp: bool,
    /// stderr's level and format (`-v`, `--log.level`, `--log.format`).
    pub log: Logger,
    pub format: Format,
    /// Where each gather goes: stdout, or this file replaced atomically
    /// (opened at startup, see [`output_error`]).
    pub output: Option<PathBuf>,
    /// One gather, the loops, or the exporter.
    pub mode: Mode,
    pub namespaces: Namespaces,
    pub include_unix: bool,
    pub by_family: bool,
    /// `netstat_port`: which ports; empty when not asked for.
    pub ports: PortConfig,
    /// `netstat_listen` (`--listen-queues`).
    pub listen_queues: bool,
    /// `netstat_destination`: how many destinations (`--destinations N`).
    pub destinations: Option<usize>,
    /// `netstat_counters`: which counters (`--counters`).
    pub counters: Option<Selection>,
    /// Failing sockets and UDP drops (`--health`): `netstat_health`, and
    /// its fields on the other rows.
    pub health: bool,
    /// RTT and loss per selected port (`--tcp-info`):
    /// `netstat_port_tcp_info`.
    pub tcp_info: bool,
    /// `--state-file`: where a one-shot run keeps `--tcp-info`'s top
    /// destinations for the next (its directory opened at startup).
    pub state_file: Option<PathBuf>,
    /// Tag namespaces with container, pod and hostname labels.
    pub netns_labels: bool,
    /// Which measurements are printed (`--only`; all asked-for by default).
    pub print: Measurements,
}

/// How the program runs: the flags that choose it exclude each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One gather, then exit.
    OneShot,
    /// Keep running: a gather per stdin line (`--execd`), every `interval`
    /// (`--interval`), or both.
    Loop {
        execd: bool,
        interval: Option<Duration>,
    },
    /// Serve Prometheus metrics over HTTP (`--listen`,
    /// `--web.systemd-socket`).
    Serve(Serve),
}

/// The usage error (exit 2) for an `--output` FILE that startup could not
/// open (see `sink::OutputFile::open`): its directory cannot take new
/// files, or it exists and is not a regular file; and for a `--state-file`
/// that is the `--output` file.
pub fn output_error(
    flag: &str,
    path: &std::path::Path,
    why: impl std::fmt::Display,
) -> clap::Error {
    Args::command().error(
        ErrorKind::InvalidValue,
        format!(
            "invalid value '{}' for '{flag} <FILE>': {why}",
            path.display()
        ),
    )
}

/// What `Config::parse` reads from the environment, handed in so that
/// parsing is a function of its arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `HOST_PROC`, Telegraf's convention for the proc root; an empty
    /// value means unset.
    pub host_proc: Option<OsString>,
}

impl Env {
    /// The process's environment.
    pub fn of_process() -> Env {
        Env {
            host_proc: std::env::var_os("HOST_PROC"),
        }
    }
}

/// A usage error of `kind` saying `why`.
fn usage(kind: ErrorKind, why: impl std::fmt::Display) -> clap::Error {
    Args::command().error(kind, why)
}

impl Config {
    /// Parses and checks the command line; a `clap::Error` carries the
    /// message and exit code (2 for usage errors, 0 for --help/--version).
    pub fn parse<I, T>(args: I, env: &Env) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let a = Args::try_parse_from(args)?;
        conflicts(&a)?;
        bpf_refused(&a)?;
        let mode = mode(&a)?;
        let serving = matches!(mode, Mode::Serve(_));
        let print = print(&a)?;
        if a.state_file.is_some() && !print.destination {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                "--state-file keeps --tcp-info's top destinations, which --only leaves out",
            ));
        }
        Ok(Config {
            source: match a.source {
                SourceArg::Auto => Source::Auto,
                SourceArg::Netlink => Source::Netlink,
                SourceArg::Proc => Source::Proc,
                SourceArg::Bpf => Source::Bpf,
            },
            proc_root: proc_root(&a, env)?,
            timestamp: a.timestamp,
            log: logger(&a),
            format: format(&a, serving)?,
            print,
            ports: ports(&a)?,
            namespaces: namespaces(&a)?,
            output: a.output,
            mode,
            include_unix: a.include_unix,
            by_family: a.by_family,
            listen_queues: a.listen_queues,
            destinations: a.destinations.map(usize::from),
            netns_labels: !a.no_netns_labels,
            counters: a.counters,
            health: a.health,
            tcp_info: a.tcp_info,
            state_file: a.state_file,
        })
    }
}

/// Flags that do not go together.
fn conflicts(a: &Args) -> Result<(), clap::Error> {
    let serving = !a.listen.is_empty() || a.systemd_socket;
    if a.systemd_socket && (a.execd || a.interval.is_some() || a.output.is_some() || a.timestamp) {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--web.systemd-socket serves over HTTP: it does not combine with --execd, --interval, --output or --timestamp",
        ));
    }
    if a.systemd_socket && !a.listen.is_empty() {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--web.systemd-socket serves on the sockets systemd passes: leave out --listen",
        ));
    }
    if a.by_cgroup && matches!(a.source, SourceArg::Proc) {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--by-cgroup reads the cgroup the kernel attaches to each socket over netlink; the /proc tables of --source proc carry none",
        ));
    }
    if a.tcp_info && matches!(a.source, SourceArg::Proc) {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--tcp-info reads each socket's tcp_info over netlink; the /proc tables of --source proc carry none",
        ));
    }
    if a.state_file.is_some() {
        state_file_conflicts(a, serving)?;
    }
    if a.web_config.is_some() && !serving {
        return Err(usage(
            ErrorKind::MissingRequiredArgument,
            "--web.config.file needs --listen or --web.systemd-socket",
        ));
    }
    if a.telemetry_path.is_some() && !serving {
        return Err(usage(
            ErrorKind::MissingRequiredArgument,
            "--web.telemetry-path needs --listen or --web.systemd-socket",
        ));
    }
    Ok(())
}

/// `--state-file` serves one-shot runs with `--tcp-info --destinations N`
/// only, and is not the `--output` file.
fn state_file_conflicts(a: &Args, serving: bool) -> Result<(), clap::Error> {
    if a.execd || a.interval.is_some() || serving {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--state-file is for one-shot runs: --execd, --interval and the exporter keep the last gather's destinations in memory",
        ));
    }
    if !a.tcp_info || a.destinations.is_none() {
        return Err(usage(
            ErrorKind::MissingRequiredArgument,
            "--state-file keeps --tcp-info's top destinations for the next run: it needs --tcp-info and --destinations N",
        ));
    }
    if a.output.is_some() && a.output == a.state_file {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "--state-file and --output name the same file",
        ));
    }
    Ok(())
}

/// `--source bpf` counts TCP states per namespace (and, for native names,
/// the bytes queued) and nothing else of a TCP socket: a flag that needs
/// more (ports, listen queues, addresses, cgroups, `tcp_info`) is refused.
fn bpf_refused(a: &Args) -> Result<(), clap::Error> {
    if !matches!(a.source, SourceArg::Bpf) {
        return Ok(());
    }
    let plugged = ALL
        .iter()
        .zip(a.plugged.0)
        .filter(|&(_, on)| on)
        .find_map(|(m, _)| m.plug.as_ref().map(|p| format!("--{}", p.flag.long)));
    let flags = [
        (!a.local_port.is_empty(), "--local-port"),
        (!a.remote_port.is_empty(), "--remote-port"),
        (a.listening_ports, "--listening-ports"),
        (a.listen_queues, "--listen-queues"),
        (a.destinations.is_some(), "--destinations"),
        (a.by_cgroup, "--by-cgroup"),
        (a.health, "--health"),
        (a.tcp_info, "--tcp-info"),
    ];
    let flag = flags
        .iter()
        .find(|f| f.0)
        .map(|f| f.1.to_owned())
        .or(plugged);
    match flag {
        None => Ok(()),
        Some(flag) => Err(usage(
            ErrorKind::ArgumentConflict,
            format!("{flag} needs more of each socket than --source bpf reads (TCP states per namespace): use --source netlink"),
        )),
    }
}

/// One gather, the loops, or the exporter with its checked addresses and
/// path.
fn mode(a: &Args) -> Result<Mode, clap::Error> {
    if a.listen.is_empty() && !a.systemd_socket {
        return Ok(if a.execd || a.interval.is_some() {
            Mode::Loop {
                execd: a.execd,
                interval: a.interval,
            }
        } else {
            Mode::OneShot
        });
    }
    let path = a
        .telemetry_path
        .clone()
        .unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/')
        || path.len() > 1024
        || path
            .bytes()
            .any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f)
    {
        return Err(usage(
            ErrorKind::InvalidValue,
            format!("invalid value '{path}' for '--web.telemetry-path <PATH>': a path starting with '/', of printable ASCII without spaces, '?' or '#'"),
        ));
    }
    let mut listen = Vec::new();
    for l in &a.listen {
        listen.push(ListenAddr::parse(l).map_err(|e| usage(ErrorKind::InvalidValue, e))?);
    }
    Ok(Mode::Serve(Serve {
        listen,
        path,
        systemd_socket: a.systemd_socket,
        web_config: a.web_config.clone(),
    }))
}

/// `--proc-root`, else `HOST_PROC`, else /proc.
fn proc_root(a: &Args, env: &Env) -> Result<PathBuf, clap::Error> {
    let host_proc = env.host_proc.clone().filter(|p| !p.is_empty());
    let proc_root = a
        .proc_root
        .clone()
        .or(host_proc.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/proc"));
    if proc_root.as_os_str().is_empty() {
        return Err(usage(
            ErrorKind::InvalidValue,
            "invalid value '' for '--proc-root <DIR>': the proc root must not be empty",
        ));
    }
    Ok(proc_root)
}

/// stderr's level and format.
fn logger(a: &Args) -> Logger {
    Logger {
        level: match (a.verbose, a.log_level) {
            (true, _) | (_, LevelArg::Debug) => Level::Debug,
            (_, LevelArg::Info) => Level::Info,
            (_, LevelArg::Warn) => Level::Warn,
            (_, LevelArg::Error) => Level::Error,
        },
        format: match a.log_format {
            LogFormatArg::Telegraf => LogFormat::Telegraf,
            LogFormatArg::Logfmt => LogFormat::Logfmt,
            LogFormatArg::Json => LogFormat::Json,
        },
    }
}

/// The output format and naming; the exporter serves Prometheus only.
fn format(a: &Args, serving: bool) -> Result<Format, clap::Error> {
    Ok(match (a.format, serving, a.prometheus_names) {
        (None | Some(FormatArg::Prometheus), true, Some(NamesArg::Native))
        | (Some(FormatArg::Prometheus), false, Some(NamesArg::Native)) => Format::PrometheusNative,
        (None | Some(FormatArg::Prometheus), true, _) => Format::Prometheus,
        (Some(_), true, _) => {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                "--listen serves the Prometheus format only; leave out --format",
            ))
        }
        (_, false, Some(_)) if a.format != Some(FormatArg::Prometheus) => {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                "--prometheus-names names the Prometheus format's metrics: give it with --format prometheus or --listen",
            ))
        }
        (None | Some(FormatArg::Influx), false, _) => Format::Influx,
        (Some(FormatArg::Prometheus), false, _) => Format::Prometheus,
        (Some(FormatArg::Json), false, _) => Format::Json,
    })
}

/// Which namespaces are counted.
fn namespaces(a: &Args) -> Result<Namespaces, clap::Error> {
    if a.all_netns {
        return Ok(Namespaces::All);
    }
    if a.netns.is_empty() {
        return Ok(Namespaces::Own);
    }
    if a.netns.iter().any(|p| p.as_os_str().is_empty()) {
        return Err(usage(
            ErrorKind::InvalidValue,
            "invalid value '' for '--netns <PATH>': the path must not be empty",
        ));
    }
    Ok(Namespaces::Listed(a.netns.clone()))
}

/// `netstat_port`'s ports, sorted, each once, at most [`MAX_PORTS`].
fn ports(a: &Args) -> Result<PortConfig, clap::Error> {
    let list = |v: &[Vec<u16>]| {
        let mut p: Vec<u16> = v.iter().flatten().copied().collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let ports = PortConfig {
        local: list(&a.local_port),
        remote: list(&a.remote_port),
        listening: a.listening_ports,
    };
    let n = ports.local.len() + ports.remote.len();
    if n > MAX_PORTS {
        return Err(usage(
            ErrorKind::ValueValidation,
            format!(
                "--local-port and --remote-port name {n} ports; at most {MAX_PORTS} are allowed"
            ),
        ));
    }
    Ok(ports)
}

/// The measurements printed: every one asked for, or those `--only` names,
/// each of which must be asked for (checked in registry order).
fn print(a: &Args) -> Result<Measurements, clap::Error> {
    use measure::{cgroup, counters, destination, health, listen, port, Measurement};
    let named = |m: &Measurement| m.only.is_some_and(|n| a.only.iter().any(|o| o == n));
    let want = |m: &Measurement| a.only.is_empty() || named(m);
    let any_ports = a.listening_ports || !a.local_port.is_empty() || !a.remote_port.is_empty();
    let builtin: [(&Measurement, bool, &str); 6] = [
        (
            &port::MEASUREMENT,
            any_ports,
            "--local-port, --remote-port or --listening-ports",
        ),
        (&listen::MEASUREMENT, a.listen_queues, "--listen-queues"),
        (
            &destination::MEASUREMENT,
            a.destinations.is_some(),
            "--destinations",
        ),
        (&cgroup::MEASUREMENT, a.by_cgroup, "--by-cgroup"),
        (&counters::MEASUREMENT, a.counters.is_some(), "--counters"),
        (&health::MEASUREMENT, a.health, "--health"),
    ];
    let asked = |i: usize, m: &Measurement| match &m.plug {
        Some(p) => Some((a.plugged.0[i], format!("--{}", p.flag.long))),
        None => builtin
            .iter()
            .find(|b| std::ptr::eq(b.0, m))
            .map(|b| (b.1, b.2.to_owned())),
    };
    let mut plugged = [false; measure::COUNT];
    for (i, m) in ALL.iter().enumerate() {
        let Some((on, flag)) = asked(i, m) else {
            continue;
        };
        if named(m) && !on {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                format!("--only {} needs {flag}", m.only.unwrap_or_default()),
            ));
        }
        plugged[i] = m.plug.is_some() && on && want(m);
    }
    Ok(Measurements {
        netstat: want(&measure::netstat::MEASUREMENT),
        port: want(&port::MEASUREMENT),
        listen: want(&listen::MEASUREMENT),
        destination: want(&destination::MEASUREMENT) && a.destinations.is_some(),
        cgroup: want(&cgroup::MEASUREMENT) && a.by_cgroup,
        counters: want(&counters::MEASUREMENT) && a.counters.is_some(),
        health: want(&health::MEASUREMENT) && a.health,
        plugged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegraf_netstat::values::*;

    fn parse<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::parse(args, &Env::default())
    }

    #[test]
    fn defaults() {
        let c = parse(["telegraf-netstat"]).unwrap();
        assert_eq!(c.source, Source::Auto);
        assert!(!c.timestamp && c.log.level == Level::Info);
        assert_eq!(c.log.format, LogFormat::Telegraf);
    }

    #[test]
    fn flags() {
        let c = parse([
            "t",
            "--source",
            "proc",
            "--proc-root",
            "/hostfs/proc",
            "--timestamp",
            "-v",
        ])
        .unwrap();
        assert_eq!(c.source, Source::Proc);
        let b = parse([
            "telegraf-netstat",
            "--source",
            "bpf",
            "--all-netns",
            "--counters",
            "--format",
            "prometheus",
            "--prometheus-names",
            "native",
        ])
        .unwrap();
        assert_eq!(
            (b.source, b.format),
            (Source::Bpf, Format::PrometheusNative)
        );
        for flag in [
            &["--local-port", "22"][..],
            &["--listening-ports"],
            &["--listen-queues"],
            &["--destinations", "3"],
            &["--ephemeral-ports"],
            &["--by-cgroup"],
            &["--health"],
        ] {
            let mut args = vec!["telegraf-netstat", "--source", "bpf"];
            args.extend_from_slice(flag);
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag[0]) && e.contains("--source bpf"), "{e}");
        }
        assert_eq!(c.proc_root, PathBuf::from("/hostfs/proc"));
        assert!(c.timestamp && c.log.level == Level::Debug);
        assert_eq!(c.namespaces, Namespaces::Own);
        assert!(!c.include_unix && !c.by_family);
    }

    #[test]
    fn namespace_and_breakdown_flags() {
        let c = parse([
            "t",
            "--netns",
            "/run/netns/a",
            "--netns",
            "/proc/7/ns/net",
            "--include-unix",
            "--by-family",
        ])
        .unwrap();
        assert_eq!(
            c.namespaces,
            Namespaces::Listed(vec!["/run/netns/a".into(), "/proc/7/ns/net".into()])
        );
        assert!(c.include_unix && c.by_family);
        let c = parse(["t", "--all-netns"]).unwrap();
        assert_eq!(c.namespaces, Namespaces::All);
    }

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["t", "--source", "ss"][..],
            &["t", "--bogus"],
            &["t", "extra"],
            &["t", "--proc-root="],
            &["t", "--netns="],
            &["t", "--netns"],
            &["t", "--all-netns", "--netns", "/run/netns/a"],
            &["t", "--tcp-info", "--source", "proc", "--local-port", "22"],
        ] {
            let e = parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn state_file_is_for_one_shot_runs_with_tcp_info_destinations() {
        let ok = [
            "t",
            "--tcp-info",
            "--destinations",
            "3",
            "--state-file",
            "s",
        ];
        assert_eq!(parse(ok).unwrap().state_file, Some("s".into()));
        for (extra, says) in [
            (&["--execd"][..], "for one-shot runs"),
            (&["--interval", "10s"], "for one-shot runs"),
            (&["--listen", ":0"], "for one-shot runs"),
            (&["--output", "s"], "name the same file"),
            (&["--only", "netstat"], "which --only leaves out"),
        ] {
            let e = parse(ok.iter().chain(extra)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{extra:?}: {e}");
            assert!(e.to_string().contains(says), "{extra:?}: {e}");
        }
        for without in [
            &["t", "--destinations", "3", "--state-file", "s"][..],
            &["t", "--tcp-info", "--local-port", "22", "--state-file", "s"],
        ] {
            let e = parse(without.iter().copied()).unwrap_err();
            assert!(
                e.to_string()
                    .contains("needs --tcp-info and --destinations N"),
                "{e}"
            );
        }
    }

    #[test]
    fn port_flags() {
        let c = parse([
            "t",
            "--local-port",
            "443,80",
            "--local-port",
            "8000-8002,443",
            "--remote-port",
            "5432",
            "--listening-ports",
        ])
        .unwrap();
        assert_eq!(c.ports.local, [80, 443, 8000, 8001, 8002]);
        assert_eq!(c.ports.remote, [5432]);
        assert!(c.ports.listening);
        assert!(parse(["t"]).unwrap().ports.is_empty());
        for bad in [
            &["t", "--local-port", "0"][..],
            &["t", "--local-port", "70000"],
            &["t", "--remote-port", "x"],
            &["t", "--local-port", "1-1000", "--remote-port", "1-25"],
        ] {
            let e = parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        // 1024 in all is still fine.
        assert!(parse(["t", "--local-port", "1-1000", "--remote-port", "1-24"]).is_ok());
    }

    #[test]
    fn only_picks_measurements() {
        let c = parse(["t", "--listen-queues", "--only", "listen"]).unwrap();
        assert!(c.listen_queues);
        assert_eq!(
            c.print,
            Measurements {
                listen: true,
                ..Measurements::default()
            }
        );
        let c = parse(["t", "--listen-queues"]).unwrap();
        assert!(c.print.netstat && c.print.listen);
        let c = parse(["t", "--local-port", "1", "--only", "netstat,port"]).unwrap();
        assert!(c.print.netstat && c.print.port && !c.print.listen);
        let c = parse(["t", "--ephemeral-ports", "--destinations", "1000"]).unwrap();
        assert!(
            c.print.netstat
                && c.print.prints(&measure::ephemeral::MEASUREMENT)
                && c.print.destination
        );
        assert_eq!(c.destinations, Some(1000));
        let c = parse([
            "t",
            "--destinations",
            "1",
            "--ephemeral-ports",
            "--only",
            "destination",
        ])
        .unwrap();
        assert!(
            !c.print.netstat
                && !c.print.prints(&measure::ephemeral::MEASUREMENT)
                && c.print.destination
        );
        for bad in [
            &["t", "--only", "listen"][..],
            &["t", "--only", "port"],
            &["t", "--only", "bogus"],
            &["t", "--only", "ephemeral"],
            &["t", "--destinations", "5", "--only", "ephemeral"],
            &["t", "--only", "destination"],
            &["t", "--only", "cgroup"],
            &["t", "--only", "counters"],
            &["t", "--counters", "Tcp.*"],
            &["t", "--counters="],
            &["t", "--destinations", "0"],
            &["t", "--destinations", "1001"],
        ] {
            let e = parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn counters_flag() {
        let c = parse(["t", "--counters"]).unwrap();
        assert_eq!(c.counters.as_ref().map(|s| s.default), Some(true));
        assert!(c.print.netstat && c.print.counters);
        let c = parse(["t", "--counters", "all", "--by-family"]).unwrap();
        assert!(c.counters.unwrap().all && c.by_family);
        let c = parse(["t", "--counters=default,TcpExt*", "--only", "counters"]).unwrap();
        let s = c.counters.unwrap();
        assert!(s.default && !s.all && s.patterns == ["TcpExt*"]);
        assert!(!c.print.netstat && c.print.counters);
        assert!(!parse(["t"]).unwrap().print.counters);
    }

    fn serving(c: Config) -> Serve {
        serving_ref(&c).clone()
    }

    fn serving_ref(c: &Config) -> &Serve {
        match &c.mode {
            Mode::Serve(s) => s,
            other => panic!("not serving: {other:?}"),
        }
    }

    #[test]
    fn serve_flags() {
        let c = parse(["t", "--listen"]).unwrap();
        let s = serving_ref(&c);
        assert_eq!(s.listen, [ListenAddr::Any(10273)]);
        assert_eq!(s.path, "/metrics");
        assert_eq!(c.format, Format::Prometheus);
        let c = parse([
            "t",
            "--web.listen-address",
            "127.0.0.1:9999",
            "--listen",
            "[::1]:9999",
            "--web.telemetry-path",
            "/m",
        ])
        .unwrap();
        let s = serving(c);
        assert_eq!(
            s.listen,
            [
                ListenAddr::Addr("127.0.0.1:9999".parse().unwrap()),
                ListenAddr::Addr("[::1]:9999".parse().unwrap())
            ]
        );
        let c = parse(["t", "--listen", "localhost:0", "--web.systemd-socket"]);
        assert_eq!(c.unwrap_err().exit_code(), 2);
        let c = parse(["t", "--web.systemd-socket", "--web.telemetry-path", "/m"]);
        assert_eq!(serving(c.unwrap()).path, "/m");
        let c = parse(["t", "--listen", "localhost:0"]).unwrap();
        assert_eq!(serving(c).listen, [ListenAddr::Localhost(0)]);
        assert_eq!(s.path, "/m");
        assert_eq!(parse(["t"]).unwrap().mode, Mode::OneShot);
        for bad in [
            &["t", "--listen", "--format", "json"][..],
            &["t", "--listen", "--execd"],
            &["t", "--listen", "--timestamp"],
            &["t", "--listen", "--web.telemetry-path", "metrics"],
            &["t", "--web.telemetry-path", "/m"],
            &["t", "--web.systemd-socket", "--interval", "1s"],
            &["t", "--listen", "/m?x", "--web.telemetry-path", "/m?x"],
            &["t", "--listen", ":1", "--web.telemetry-path", "/m#x"],
            &["t", "--listen", "garbage"],
            &["t", "--listen", ":65536"],
            &["t", "--listen", ""],
            &["t", "--listen", "::1:9999"],
            &["t", "--listen", "10273"],
            &["t", "--listen", "example.org:80"],
            &["t", "--listen", "[nonsense]:80"],
            &["t", "--listen", "1.2.3.4:"],
        ] {
            let e = parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        for bad in [
            "", "0", "0s", "0ms", "-5s", "10", "s", "10x", "abc", "1e3s", "5 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let c = parse(["t", "--execd", "--interval", "200ms"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Loop {
                execd: true,
                interval: Some(ms(200))
            }
        );
        for (bad, why) in [
            ("0", "expected e.g."),
            ("0s", "greater than zero"),
            ("-1s", "must not be negative"),
            ("soon", "expected e.g."),
            ("1ns", "between 10ms and 24h"),
            ("9ms", "between 10ms and 24h"),
            ("9223372036854775807s", "between 10ms and 24h"),
            ("25h", "between 10ms and 24h"),
        ] {
            let e = parse(["t", "--interval", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert!(parse(["t", "--interval", "10ms"]).is_ok());
        assert!(parse(["t", "--interval", "24h"]).is_ok());
    }

    #[test]
    fn help_shows_an_example_for_every_flag() {
        // Every argument clap knows, so a new flag cannot be forgotten here.
        let cmd = Args::command();
        let mut checked = 0;
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let long = arg.get_long().map(|l| format!("--{l}"));
            let short = arg.get_short().map(|c| format!("-{c}"));
            let shows = [long.as_deref(), short.as_deref()]
                .into_iter()
                .flatten()
                .any(|name| {
                    help.split("Example: ").skip(1).any(|ex| {
                        ex.strip_prefix(name)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\n']))
                    })
                });
            assert!(shows, "{id}: no example in its help: {help:?}");
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} arguments");
    }

    #[test]
    fn prometheus_names_need_the_prometheus_format() {
        let native = ["t", "--prometheus-names", "native"];
        let e = parse(native).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("give it with --format prometheus or --listen"),
            "{e}"
        );
        let c = parse([
            "t",
            "--format",
            "prometheus",
            "--prometheus-names",
            "native",
        ])
        .unwrap();
        assert_eq!(c.format, Format::PrometheusNative);
        let c = parse(["t", "--listen", "--prometheus-names", "native"]).unwrap();
        assert_eq!(c.format, Format::PrometheusNative);
        let c = parse(["t", "--listen", "--prometheus-names", "telegraf"]).unwrap();
        assert_eq!(c.format, Format::Prometheus);
        assert!(parse(["t", "--format", "json", "--prometheus-names", "telegraf"]).is_err());
    }
}
