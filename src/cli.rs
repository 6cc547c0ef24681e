//! Command line: flags are parsed by clap, then checked into one `Config`
//! that the rest of the program takes. `command()` is the same definition
//! for the man page and shell completions (`examples/dist-docs.rs`), so
//! they cannot drift from `--help`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{error::ErrorKind, CommandFactory, Parser, ValueEnum};
use telegraf_netstat::aggregate::destinations::MAX_TOP;
use telegraf_netstat::aggregate::ports::{PortConfig, MAX_PORTS};
use telegraf_netstat::counters::Selection;
use telegraf_netstat::log::{Level, LogFormat, Logger};
use telegraf_netstat::rows::Measurements;
use telegraf_netstat::{Format, Source};

const AFTER_HELP: &str = "\
Examples:
  telegraf-netstat                         one gather, Influx line protocol on stdout
  telegraf-netstat --timestamp             the same, stamped with the gather time
  telegraf-netstat --source proc           read /proc/net/{tcp,tcp6,udp,udp6} instead of netlink
  HOST_PROC=/hostfs/proc telegraf-netstat --source proc
  telegraf-netstat --all-netns             one line per network namespace, tagged netns=...
  telegraf-netstat --netns /run/netns/blue --by-family

Telegraf (inputs.execd, one gather per interval through stdin):
  [[inputs.execd]]
    command = [\"/usr/bin/telegraf-netstat\", \"--execd\"]
    signal = \"STDIN\"
    data_format = \"influx\"

Telegraf (inputs.exec; before Telegraf 1.39: commands = [\"/usr/bin/telegraf-netstat\"]):
  [[inputs.exec]]
    commands = [[\"/usr/bin/telegraf-netstat\"]]
    timeout = \"5s\"
    data_format = \"influx\"
    log_stderr = true      # Telegraf 1.38.1+: log our E!/W!/I! lines

Exit status: 0 on success (and when stdout is closed by the reader; with
--execd, --interval or --listen also on stdin EOF, SIGTERM and SIGINT), 1 when a
one-shot gather failed (one E! line on stderr, nothing on stdout; the loops log
the error and go on) or --listen cannot bind its address, 2 on a usage error
(among them a --web.systemd-socket descriptor that is not a listening TCP
socket and a --web.config.file that does not load), 3 when some network namespaces could not be counted, or --all-netns
could not look at some processes' namespaces (an E! line each), while the
others were printed.";

/// `--version`: the version and the target it was built for.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TELEGRAF_NETSTAT_TARGET"),
    ")"
);

// The field doc comments are --help text, written for a terminal: `<proc
// root>` and `[IPV6]` there are placeholders, not HTML or rustdoc links.
#[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
#[derive(Parser, Debug)]
#[command(
    name = "telegraf-netstat",
    version = VERSION,
    about = "Counts TCP connections by state and UDP sockets for Telegraf, like inputs.netstat, at a fraction of its cost",
    after_help = AFTER_HELP
)]
struct Args {
    /// Where socket states come from: `auto` asks the kernel over netlink and
    /// reads /proc for a protocol whose dump is refused (seccomp, missing
    /// udp_diag module); `netlink` and `proc` use only that source.
    /// Example: --source proc
    #[arg(long, value_enum, default_value_t = SourceArg::Auto, value_name = "SOURCE")]
    source: SourceArg,

    /// The proc filesystem to read with the proc source (the default is
    /// $HOST_PROC if set, else /proc). Example: --proc-root /hostfs/proc
    #[arg(long, value_name = "DIR")]
    proc_root: Option<PathBuf>,

    /// Output format: `influx` (line protocol, as inputs.netstat), `prometheus`
    /// (text exposition 0.0.4) or `json` (Telegraf's JSON shape).
    /// Example: --format prometheus
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,

    /// Metric names in the Prometheus format: `telegraf` (default; the names
    /// Telegraf's prometheus_client output gives, e.g. netstat_tcp_established)
    /// or `native` (Prometheus practice: netstat_tcp_connections{state=...},
    /// netstat_udp_sockets, queued bytes, listener names with units). Needs
    /// --format prometheus or --listen. Example: --prometheus-names native
    #[arg(long, value_enum, value_name = "NAMES")]
    prometheus_names: Option<NamesArg>,

    /// Write each gather to FILE instead of stdout, replacing it atomically
    /// (a new temporary file with a random hidden name in the same directory,
    /// never following or reusing anything found there, then rename), mode
    /// 0644: for node_exporter's textfile collector or any reader that must
    /// never see a partial file. An existing FILE must be a regular file.
    /// Example: --output /var/lib/node_exporter/netstat.prom
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Append the gather time to each line: nanoseconds since the epoch in
    /// influx, milliseconds in prometheus (by default Telegraf and Prometheus
    /// stamp metrics themselves; node_exporter's textfile collector refuses
    /// stamped files). json always carries it. Example: --timestamp
    #[arg(long)]
    timestamp: bool,

    /// Run for Telegraf's inputs.execd: gather once per line read on stdin
    /// (signal = "STDIN"); exit 0 when stdin closes. Example: --execd
    #[arg(long)]
    execd: bool,

    /// Keep running and gather every DURATION (250ms, 10s, 1m, 1h, 1m30s;
    /// from 10ms to 24h), for inputs.execd with signal = "none"; the first
    /// gather is at once. Exits 0 on SIGTERM, SIGINT, and on stdin EOF when
    /// stdin is a pipe or socket (how Telegraf stops a plugin); with stdin on
    /// a terminal or /dev/null it runs until a signal.
    /// Example: --interval 10s
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, allow_hyphen_values = true)]
    interval: Option<Duration>,

    /// Count inside the network namespace at PATH (/run/netns/NAME,
    /// /proc/PID/ns/net, any bind mount); repeatable. One metric per
    /// namespace, tagged netns=NAME, netns=pid:PID or netns=<absolute
    /// PATH>. Entering
    /// another namespace needs CAP_SYS_ADMIN over it.
    /// Example: --netns /run/netns/blue
    #[arg(long, value_name = "PATH", conflicts_with = "all_netns")]
    netns: Vec<PathBuf>,

    /// Count every network namespace reachable through /run/netns/* and
    /// <proc root>/*/ns/net, each once: netns=host for the one of PID 1,
    /// netns=self for the one this program runs in if it is not PID 1's,
    /// netns=NAME for named ones (name:NAME if NAME looks like one of these
    /// tags), else netns=pid:<lowest PID in it>. Re-scanned at every
    /// gather. Example: --all-netns
    #[arg(long)]
    all_netns: bool,

    /// Also count unix-domain sockets as the built-in plugin's fields end up
    /// doing: datagram sockets in udp_socket, stream and seqpacket sockets in
    /// tcp_none. Example: --include-unix
    #[arg(long)]
    include_unix: bool,

    /// One metric per address family, tagged family=ipv4 / family=ipv6
    /// (and family=unix with --include-unix). Example: --by-family
    #[arg(long)]
    by_family: bool,

    /// Also print measurement netstat_port for these local ports: one metric
    /// per port, tagged direction=local and port=N, with the 13 netstat
    /// fields counting the sockets whose own port is N (listeners, accepted
    /// connections, bound UDP sockets). LIST: comma-separated ports and
    /// ranges; repeatable; at most 1024 ports in all. Named ports are always
    /// printed, zeros included. Example: --local-port 443,8000-8010
    #[arg(long, value_name = "LIST", value_parser = parse_ports)]
    local_port: Vec<Vec<u16>>,

    /// Also print netstat_port for these remote ports (direction=remote):
    /// sockets whose peer's port is N, such as connections to a database.
    /// Same LIST syntax. Example: --remote-port 5432
    #[arg(long, value_name = "LIST", value_parser = parse_ports)]
    remote_port: Vec<Vec<u16>>,

    /// Also print netstat_port (direction=local) for every local port with a
    /// TCP LISTEN socket at gather time, like collectd's ListeningPorts; at
    /// most 1024 per namespace (a W! line says when more were found).
    /// Example: --listening-ports
    #[arg(long)]
    listening_ports: bool,

    /// Also print measurement netstat_listen: one metric per TCP listening
    /// address and port (tags address, port) with fields sockets, queue
    /// (connections waiting to be accepted), backlog (the queue's limit),
    /// syn_recv (handshakes in progress), drops (the listeners' drop
    /// counter); backlog and drops need the netlink source. At most 1024
    /// per namespace. Example: --listen-queues
    #[arg(long)]
    listen_queues: bool,

    /// Also print measurement netstat_ephemeral: one metric per namespace
    /// with range_size (the ports of net.ipv4.ip_local_port_range minus
    /// ip_local_reserved_ports, read inside the namespace), ports_used
    /// (of those, held by a TCP socket), max_per_destination (the most
    /// outbound TCP sockets from one local address to one remote address and
    /// port), destinations (distinct remote addresses and ports of outbound
    /// TCP sockets) and utilization (max_per_destination / range_size, a
    /// float: alert when it nears 1). Example: --ephemeral-ports
    #[arg(long)]
    ephemeral_ports: bool,

    /// Also print measurement netstat_destination: the N remote addresses
    /// and ports with the most outbound sockets (TCP other than listeners
    /// and connected UDP, from a local port of the ephemeral range that no
    /// TCP listener uses), tagged address and port, with the 13 netstat
    /// fields and utilization; then one row tagged address=other,port=other
    /// for the rest, when there is a rest. N from 1 to 1000.
    /// Example: --destinations 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_TOP as i64))]
    destinations: Option<u16>,

    /// Also print measurement netstat_cgroup: the 13 netstat fields per
    /// cgroup v2 (tag cgroup, the path below the cgroup2 mount, e.g.
    /// /system.slice/nginx.service; container_id and pod_uid where the
    /// runtime's own path names them), from the cgroup id the kernel
    /// attaches to each socket (Linux 5.8+, netlink only). Sockets without
    /// one (TIME_WAIT, handshakes, unix) are in the row cgroup=unattributed,
    /// so the rows add up to netstat's. Example: --by-cgroup
    #[arg(long)]
    by_cgroup: bool,

    /// Also print measurement netstat_counters: one row per network
    /// namespace with the kernel's SNMP MIB counters of that namespace
    /// (/proc/net/snmp, netstat and snmp6), named as nstat names them
    /// (TcpAttemptFails, TcpExtListenOverflows, Udp6RcvbufErrors), integers
    /// that only grow. SET: default (22 counters: failed connects, resets,
    /// timeouts, retransmissions, listen overflows, UDP drops; docs/metrics.md
    /// lists them), all (about 390 per namespace on Linux 6.18), or
    /// comma-separated names and patterns with * and ?, case ignored, such
    /// as default,TcpExtSyncookies*. Example: --counters
    #[arg(long, value_name = "SET", num_args = 0..=1, default_missing_value = "default", value_parser = Selection::parse)]
    counters: Option<Selection>,

    /// Also print where connections are failing now: measurement
    /// netstat_health, one row per namespace with syn_retrying (connects
    /// whose SYN went unanswered and was sent again), retransmitting,
    /// zero_window, keepalive_probing, synack_retrying (handshakes whose
    /// SYN-ACK went unanswered), udp_drops (datagrams dropped, summed over
    /// the UDP sockets' lifetimes) and udp_receive_queue (bytes); and the
    /// same fields on every netstat_port, netstat_destination and
    /// netstat_cgroup row, synack_retrying on netstat_listen's. Read from
    /// each socket's timer and retransmit count, which every dump carries,
    /// and its drop counter (asked for on UDP dumps only).
    /// Example: --health --remote-port 5432
    #[arg(long)]
    health: bool,

    /// Also print round-trip time and loss of the TCP connections on the
    /// ports of --local-port and --remote-port, and to the top destinations
    /// of --destinations N: measurements netstat_port_tcp_info (one row per
    /// port and direction) and netstat_destination_tcp_info, with
    /// connections, rtt_le_* (connections whose smoothed RTT is at most
    /// 0.0001 ... 1 s, cumulative), rtt_samples, rtt_sum_seconds,
    /// min_rtt_seconds, loss_recovery, rto_backoff, notsent_bytes and
    /// unacked_bytes. Read from each socket's tcp_info in one extra TCP
    /// dump that the kernel filters to those sockets, so it costs in
    /// proportion to the connections selected. Needs netlink (not
    /// --source proc); with nothing selected nothing extra is dumped.
    /// Printed with netstat_port and netstat_destination.
    /// Example: --tcp-info --remote-port 5432
    #[arg(long)]
    tcp_info: bool,

    /// Print only these measurements, comma-separated: netstat, port,
    /// listen, ephemeral, destination, cgroup, counters, health. --counters --only
    /// counters reads the counters only, no socket. --listen-queues --only listen asks
    /// the kernel for listeners only and skips its walk of established
    /// sockets (syn_recv is then left out). Example: --only listen
    #[arg(long, value_name = "MEASUREMENTS", value_delimiter = ',', value_enum)]
    only: Vec<OnlyArg>,

    /// Serve Prometheus metrics over HTTP on ADDR, gathering at each scrape;
    /// repeatable. ADDR is :PORT (every address, IPv4 and IPv6; default
    /// :10273), IPV4:PORT, [IPV6]:PORT or localhost:PORT; exit 1 if it
    /// cannot be bound. Example: --listen 127.0.0.1:10273
    #[arg(
        long = "listen",
        visible_alias = "web.listen-address",
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = DEFAULT_LISTEN,
        conflicts_with_all = ["execd", "interval", "output", "timestamp"]
    )]
    listen: Vec<String>,

    /// The path of the metrics page when serving (default /metrics).
    /// Example: --web.telemetry-path /metrics
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    telemetry_path: Option<String>,

    /// Serve on the sockets systemd passes (socket activation, LISTEN_FDS)
    /// instead of opening --listen addresses; each must be a listening TCP
    /// socket (exit 2 otherwise). Example: --web.systemd-socket
    #[arg(long = "web.systemd-socket")]
    systemd_socket: bool,

    /// Serve over TLS and/or with basic authentication as this file says:
    /// the web configuration file of Prometheus exporters
    /// (exporter-toolkit format: tls_server_config, basic_auth_users,
    /// http_server_config.headers, rate_limit). Read again for every new
    /// connection, so certificates rotate without a restart; invalid at
    /// startup: exit 2. Example: --web.config.file /etc/telegraf-netstat/web.yml
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,

    /// Leave out the container_id, pod_uid and hostname tags that
    /// --all-netns and --netns add to a namespace's metrics (found from its
    /// processes' cgroup and UTS namespace); netns stays.
    /// Example: --no-netns-labels
    #[arg(long)]
    no_netns_labels: bool,

    /// Also log debug (`D! `) lines on stderr, e.g. sockets in a state this
    /// program does not know; the same as --log.level debug. Example: -v
    #[arg(short, long)]
    verbose: bool,

    /// The least severe lines logged on stderr: `error`, `warn`, `info`
    /// (default) or `debug`. Example: --log.level warn
    #[arg(long = "log.level", value_enum, value_name = "LEVEL", default_value_t = LevelArg::Info)]
    log_level: LevelArg,

    /// How stderr lines look: `telegraf` (default: `E! `, `W! `, `I! `, `D! `
    /// prefixes, which Telegraf's exec and execd inputs read as levels),
    /// `logfmt` or `json` (timestamped, as Prometheus exporters log:
    /// time=... level=INFO msg="..."). Example: --log.format logfmt
    #[arg(long = "log.format", value_enum, value_name = "FORMAT", default_value_t = LogFormatArg::Telegraf)]
    log_format: LogFormatArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LevelArg {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormatArg {
    Telegraf,
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Influx,
    Prometheus,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NamesArg {
    Telegraf,
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnlyArg {
    Netstat,
    Port,
    Listen,
    Ephemeral,
    Destination,
    Cgroup,
    Counters,
    Health,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceArg {
    Auto,
    Netlink,
    Proc,
}

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
    /// Gather per stdin line.
    pub execd: bool,
    /// Gather on this period.
    pub interval: Option<Duration>,
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
    /// Tag namespaces with container, pod and hostname labels.
    pub netns_labels: bool,
    /// Serve Prometheus metrics over HTTP (`--listen`).
    pub serve: Option<Serve>,
    /// Which measurements are printed (`--only`; all asked-for by default).
    pub print: Measurements,
}

/// The usage error (exit 2) for an `--output` FILE that startup could not
/// open (see `sink::OutputFile::open`): its directory cannot take new files,
/// or it exists and is not a regular file.
pub fn output_error(path: &std::path::Path, why: impl std::fmt::Display) -> clap::Error {
    Args::command().error(
        ErrorKind::InvalidValue,
        format!(
            "invalid value '{}' for '--output <FILE>': {why}",
            path.display()
        ),
    )
}

/// Where `--listen` without a value serves: every address, port 10273
/// (outside the Prometheus default-port wiki's 9100-9999 range, which is
/// fully allocated; not registered there).
pub const DEFAULT_LISTEN: &str = ":10273";

/// One `--listen` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: every address, IPv4 and IPv6.
    Any(u16),
    /// `localhost:PORT`: 127.0.0.1 and ::1 (where IPv6 is present).
    Localhost(u16),
    /// `IPV4:PORT` or `[IPV6]:PORT`.
    Addr(std::net::SocketAddr),
}

/// The forms `--listen` takes, for error messages.
const LISTEN_FORMS: &str =
    "give :PORT (every address), IPV4:PORT, [IPV6]:PORT or localhost:PORT, PORT from 0 to 65535";

impl ListenAddr {
    /// The port asked for (0: any the kernel chooses).
    pub fn port(&self) -> u16 {
        match *self {
            ListenAddr::Any(p) | ListenAddr::Localhost(p) => p,
            ListenAddr::Addr(a) => a.port(),
        }
    }

    /// Parses one `--listen` value; host names other than `localhost` are
    /// not resolved (a name's addresses change; say the address).
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        let bad =
            |why: &str| format!("invalid value '{s}' for '--listen <ADDR>': {why}; {LISTEN_FORMS}");
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if port.is_empty() || port.starts_with('+') {
            return Err(bad("no port"));
        }
        let port: u16 = port.parse().map_err(|_| bad("not a port"))?;
        match host {
            "" => Ok(ListenAddr::Any(port)),
            "localhost" => Ok(ListenAddr::Localhost(port)),
            h if h.starts_with('[') && h.ends_with(']') => h[1..h.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| bad("not an IPv6 address")),
            h if h.contains(':') => Err(bad("an IPv6 address goes in brackets")),
            h => h
                .parse::<std::net::Ipv4Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| {
                    bad("not an IP address (host names other than localhost are not resolved)")
                }),
        }
    }
}

/// `--listen`: HTTP serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// Addresses to bind (empty with `systemd_socket`).
    pub listen: Vec<ListenAddr>,
    /// The metrics page, starting with `/`.
    pub path: String,
    /// Take the listening sockets systemd passes.
    pub systemd_socket: bool,
    /// `--web.config.file`: TLS and authentication.
    pub web_config: Option<PathBuf>,
}

/// Parses one `--local-port`/`--remote-port` value: comma-separated ports
/// and inclusive ranges (`443,8000-8010`), each port 1..=65535. Appends to
/// `into`.
fn parse_port_list(s: &str, into: &mut Vec<u16>) -> Result<(), String> {
    let port = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "invalid port {t:?} in {s:?}: expected a number from 1 to 65535"
            )),
            Ok(p) => Ok(p),
        }
    };
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("invalid port range {item:?} in {s:?}: {a} > {b}"));
                }
                if usize::from(b - a) >= MAX_PORTS {
                    return Err(format!(
                        "port range {item:?} holds more than {MAX_PORTS} ports"
                    ));
                }
                into.extend(a..=b);
            }
            None => into.push(port(item)?),
        }
    }
    Ok(())
}

/// `--local-port`/`--remote-port`: one LIST.
fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let mut v = Vec::new();
    parse_port_list(s, &mut v)?;
    Ok(v)
}

/// The shortest `--interval`: a gather takes about a millisecond even on an
/// idle host, and Telegraf's own intervals are seconds.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest `--interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `--interval`: a duration within `MIN_INTERVAL..=MAX_INTERVAL`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(format!(
            "invalid duration {s:?}: the interval must be between 10ms and 24h"
        ));
    }
    Ok(d)
}

/// Parses Go-style durations as Telegraf users write them: one or more
/// `<number><unit>` with units ns, us, ms, s, m, h. Zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 250ms, 10s, 1m, 1h or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest.starts_with('-') {
        return Err(format!(
            "invalid duration {s:?}: the interval must not be negative"
        ));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    let d = Duration::try_from_secs_f64(total).map_err(|_| bad())?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration {s:?}: the interval must be greater than zero"
        ));
    }
    Ok(d)
}

/// The clap definition of the command line, for the man page and shell
/// completions (`examples/dist-docs.rs` compiles this file too).
#[allow(dead_code)]
pub fn command() -> clap::Command {
    Args::command()
}

impl Config {
    /// Parses and checks the command line; a `clap::Error` carries the
    /// message and exit code (2 for usage errors, 0 for --help/--version).
    pub fn parse<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let a = Args::try_parse_from(args)?;
        let any_ports = a.listening_ports || !a.local_port.is_empty() || !a.remote_port.is_empty();
        let serving = !a.listen.is_empty() || a.systemd_socket;
        if a.systemd_socket
            && (a.execd || a.interval.is_some() || a.output.is_some() || a.timestamp)
        {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                "--web.systemd-socket serves over HTTP: it does not combine with --execd, --interval, --output or --timestamp",
            ));
        }
        if a.systemd_socket && !a.listen.is_empty() {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                "--web.systemd-socket serves on the sockets systemd passes: leave out --listen",
            ));
        }
        if a.by_cgroup && matches!(a.source, SourceArg::Proc) {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                "--by-cgroup reads the cgroup the kernel attaches to each socket over netlink; the /proc tables of --source proc carry none",
            ));
        }
        if a.tcp_info && matches!(a.source, SourceArg::Proc) {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                "--tcp-info reads each socket's tcp_info over netlink; the /proc tables of --source proc carry none",
            ));
        }
        if a.web_config.is_some() && !serving {
            return Err(Args::command().error(
                ErrorKind::MissingRequiredArgument,
                "--web.config.file needs --listen or --web.systemd-socket",
            ));
        }
        if a.telemetry_path.is_some() && !serving {
            return Err(Args::command().error(
                ErrorKind::MissingRequiredArgument,
                "--web.telemetry-path needs --listen or --web.systemd-socket",
            ));
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
            return Err(Args::command().error(
                ErrorKind::InvalidValue,
                format!("invalid value '{path}' for '--web.telemetry-path <PATH>': a path starting with '/', of printable ASCII without spaces, '?' or '#'"),
            ));
        }
        let mut listen = Vec::new();
        for l in &a.listen {
            listen.push(
                ListenAddr::parse(l)
                    .map_err(|e| Args::command().error(ErrorKind::InvalidValue, e))?,
            );
        }
        let serve = serving.then_some(Serve {
            listen,
            path,
            systemd_socket: a.systemd_socket,
            web_config: a.web_config.clone(),
        });
        // Telegraf's convention; an empty HOST_PROC means unset.
        let host_proc = std::env::var_os("HOST_PROC").filter(|p| !p.is_empty());
        let proc_root = a
            .proc_root
            .or(host_proc.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/proc"));
        if proc_root.as_os_str().is_empty() {
            return Err(Args::command().error(
                ErrorKind::InvalidValue,
                "invalid value '' for '--proc-root <DIR>': the proc root must not be empty",
            ));
        }
        Ok(Config {
            source: match a.source {
                SourceArg::Auto => Source::Auto,
                SourceArg::Netlink => Source::Netlink,
                SourceArg::Proc => Source::Proc,
            },
            proc_root,
            timestamp: a.timestamp,
            log: Logger {
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
            },
            format: match (a.format, serving, a.prometheus_names) {
                (None | Some(FormatArg::Prometheus), true, Some(NamesArg::Native))
                | (Some(FormatArg::Prometheus), false, Some(NamesArg::Native)) => {
                    Format::PrometheusNative
                }
                (None | Some(FormatArg::Prometheus), true, _) => Format::Prometheus,
                (Some(_), true, _) => {
                    return Err(Args::command().error(
                        ErrorKind::ArgumentConflict,
                        "--listen serves the Prometheus format only; leave out --format",
                    ))
                }
                (_, false, Some(_)) if a.format != Some(FormatArg::Prometheus) => {
                    return Err(Args::command().error(
                        ErrorKind::ArgumentConflict,
                        "--prometheus-names names the Prometheus format's metrics: give it with --format prometheus or --listen",
                    ))
                }
                (None | Some(FormatArg::Influx), false, _) => Format::Influx,
                (Some(FormatArg::Prometheus), false, _) => Format::Prometheus,
                (Some(FormatArg::Json), false, _) => Format::Json,
            },
            output: a.output,
            execd: a.execd,
            interval: a.interval,
            namespaces: if a.all_netns {
                Namespaces::All
            } else if a.netns.is_empty() {
                Namespaces::Own
            } else {
                if a.netns.iter().any(|p| p.as_os_str().is_empty()) {
                    return Err(Args::command().error(
                        ErrorKind::InvalidValue,
                        "invalid value '' for '--netns <PATH>': the path must not be empty",
                    ));
                }
                Namespaces::Listed(a.netns)
            },
            include_unix: a.include_unix,
            by_family: a.by_family,
            ports: {
                let list = |v: Vec<Vec<u16>>| {
                    let mut p: Vec<u16> = v.into_iter().flatten().collect();
                    p.sort_unstable();
                    p.dedup();
                    p
                };
                let ports = PortConfig {
                    local: list(a.local_port),
                    remote: list(a.remote_port),
                    listening: a.listening_ports,
                };
                let n = ports.local.len() + ports.remote.len();
                if n > MAX_PORTS {
                    return Err(Args::command().error(
                        ErrorKind::ValueValidation,
                        format!(
                            "--local-port and --remote-port name {n} ports; at most {MAX_PORTS} are allowed"
                        ),
                    ));
                }
                ports
            },
            listen_queues: a.listen_queues,
            destinations: a.destinations.map(usize::from),
            netns_labels: !a.no_netns_labels,
            counters: a.counters.clone(),
            health: a.health,
            tcp_info: a.tcp_info,
            serve,
            print: {
                let want = |m| a.only.is_empty() || a.only.contains(&m);
                let bad = |what: &str| {
                    Err(Args::command().error(
                        ErrorKind::ArgumentConflict,
                        format!(
                            "--only {what} needs {}",
                            match what {
                                "port" => "--local-port, --remote-port or --listening-ports",
                                "ephemeral" => "--ephemeral-ports",
                                "destination" => "--destinations",
                                "cgroup" => "--by-cgroup",
                                "counters" => "--counters",
                                "health" => "--health",
                                _ => "--listen-queues",
                            }
                        ),
                    ))
                };
                if !a.only.is_empty() {
                    if a.only.contains(&OnlyArg::Port) && !any_ports {
                        return bad("port");
                    }
                    if a.only.contains(&OnlyArg::Listen) && !a.listen_queues {
                        return bad("listen");
                    }
                    if a.only.contains(&OnlyArg::Ephemeral) && !a.ephemeral_ports {
                        return bad("ephemeral");
                    }
                    if a.only.contains(&OnlyArg::Destination) && a.destinations.is_none() {
                        return bad("destination");
                    }
                    if a.only.contains(&OnlyArg::Cgroup) && !a.by_cgroup {
                        return bad("cgroup");
                    }
                    if a.only.contains(&OnlyArg::Counters) && a.counters.is_none() {
                        return bad("counters");
                    }
                    if a.only.contains(&OnlyArg::Health) && !a.health {
                        return bad("health");
                    }
                }
                Measurements {
                    netstat: want(OnlyArg::Netstat),
                    port: want(OnlyArg::Port),
                    listen: want(OnlyArg::Listen),
                    ephemeral: want(OnlyArg::Ephemeral) && a.ephemeral_ports,
                    destination: want(OnlyArg::Destination) && a.destinations.is_some(),
                    cgroup: want(OnlyArg::Cgroup) && a.by_cgroup,
                    counters: want(OnlyArg::Counters) && a.counters.is_some(),
                    health: want(OnlyArg::Health) && a.health,
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::parse(["telegraf-netstat"]).unwrap();
        assert_eq!(c.source, Source::Auto);
        assert!(!c.timestamp && c.log.level == Level::Info);
        assert_eq!(c.log.format, LogFormat::Telegraf);
    }

    #[test]
    fn flags() {
        let c = Config::parse([
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
        assert_eq!(c.proc_root, PathBuf::from("/hostfs/proc"));
        assert!(c.timestamp && c.log.level == Level::Debug);
        assert_eq!(c.namespaces, Namespaces::Own);
        assert!(!c.include_unix && !c.by_family);
    }

    #[test]
    fn namespace_and_breakdown_flags() {
        let c = Config::parse([
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
        let c = Config::parse(["t", "--all-netns"]).unwrap();
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
            let e = Config::parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn port_flags() {
        let c = Config::parse([
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
        assert!(Config::parse(["t"]).unwrap().ports.is_empty());
        for bad in [
            &["t", "--local-port", "0"][..],
            &["t", "--local-port", "70000"],
            &["t", "--remote-port", "x"],
            &["t", "--local-port", "1-1000", "--remote-port", "1-25"],
        ] {
            let e = Config::parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        // 1024 in all is still fine.
        assert!(Config::parse(["t", "--local-port", "1-1000", "--remote-port", "1-24"]).is_ok());
    }

    #[test]
    fn only_picks_measurements() {
        let c = Config::parse(["t", "--listen-queues", "--only", "listen"]).unwrap();
        assert!(c.listen_queues);
        assert_eq!(
            c.print,
            Measurements {
                listen: true,
                ..Measurements::default()
            }
        );
        let c = Config::parse(["t", "--listen-queues"]).unwrap();
        assert!(c.print.netstat && c.print.listen);
        let c = Config::parse(["t", "--local-port", "1", "--only", "netstat,port"]).unwrap();
        assert!(c.print.netstat && c.print.port && !c.print.listen);
        let c = Config::parse(["t", "--ephemeral-ports", "--destinations", "1000"]).unwrap();
        assert!(c.print.netstat && c.print.ephemeral && c.print.destination);
        assert_eq!(c.destinations, Some(1000));
        let c = Config::parse([
            "t",
            "--destinations",
            "1",
            "--ephemeral-ports",
            "--only",
            "destination",
        ])
        .unwrap();
        assert!(!c.print.netstat && !c.print.ephemeral && c.print.destination);
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
            let e = Config::parse(bad.iter().copied()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn counters_flag() {
        let c = Config::parse(["t", "--counters"]).unwrap();
        assert_eq!(c.counters.as_ref().map(|s| s.default), Some(true));
        assert!(c.print.netstat && c.print.counters);
        let c = Config::parse(["t", "--counters", "all", "--by-family"]).unwrap();
        assert!(c.counters.unwrap().all && c.by_family);
        let c = Config::parse(["t", "--counters=default,TcpExt*", "--only", "counters"]).unwrap();
        let s = c.counters.unwrap();
        assert!(s.default && !s.all && s.patterns == ["TcpExt*"]);
        assert!(!c.print.netstat && c.print.counters);
        assert!(!Config::parse(["t"]).unwrap().print.counters);
    }

    #[test]
    fn serve_flags() {
        let c = Config::parse(["t", "--listen"]).unwrap();
        let s = c.serve.unwrap();
        assert_eq!(s.listen, [ListenAddr::Any(10273)]);
        assert_eq!(s.path, "/metrics");
        assert_eq!(c.format, Format::Prometheus);
        let c = Config::parse([
            "t",
            "--web.listen-address",
            "127.0.0.1:9999",
            "--listen",
            "[::1]:9999",
            "--web.telemetry-path",
            "/m",
        ])
        .unwrap();
        let s = c.serve.unwrap();
        assert_eq!(
            s.listen,
            [
                ListenAddr::Addr("127.0.0.1:9999".parse().unwrap()),
                ListenAddr::Addr("[::1]:9999".parse().unwrap())
            ]
        );
        let c = Config::parse(["t", "--listen", "localhost:0", "--web.systemd-socket"]);
        assert_eq!(c.unwrap_err().exit_code(), 2);
        let c = Config::parse(["t", "--web.systemd-socket", "--web.telemetry-path", "/m"]);
        assert_eq!(c.unwrap().serve.unwrap().path, "/m");
        let c = Config::parse(["t", "--listen", "localhost:0"]).unwrap();
        assert_eq!(c.serve.unwrap().listen, [ListenAddr::Localhost(0)]);
        assert_eq!(s.path, "/m");
        assert!(Config::parse(["t"]).unwrap().serve.is_none());
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
            let e = Config::parse(bad.iter().copied()).unwrap_err();
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
        let c = Config::parse(["t", "--execd", "--interval", "200ms"]).unwrap();
        assert!(c.execd);
        assert_eq!(c.interval, Some(ms(200)));
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
            let e = Config::parse(["t", "--interval", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert!(Config::parse(["t", "--interval", "10ms"]).is_ok());
        assert!(Config::parse(["t", "--interval", "24h"]).is_ok());
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
        let e = Config::parse(native).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("give it with --format prometheus or --listen"),
            "{e}"
        );
        let c = Config::parse([
            "t",
            "--format",
            "prometheus",
            "--prometheus-names",
            "native",
        ])
        .unwrap();
        assert_eq!(c.format, Format::PrometheusNative);
        let c = Config::parse(["t", "--listen", "--prometheus-names", "native"]).unwrap();
        assert_eq!(c.format, Format::PrometheusNative);
        let c = Config::parse(["t", "--listen", "--prometheus-names", "telegraf"]).unwrap();
        assert_eq!(c.format, Format::Prometheus);
        assert!(
            Config::parse(["t", "--format", "json", "--prometheus-names", "telegraf"]).is_err()
        );
    }

    #[test]
    fn port_lists() {
        let mut v = Vec::new();
        parse_port_list("443,8000-8002, 22", &mut v).unwrap();
        assert_eq!(v, [443, 8000, 8001, 8002, 22]);
        for bad in ["0", "65536", "a", "", "10-5", "1-2000", "443,", "-5"] {
            assert!(parse_port_list(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }
}
