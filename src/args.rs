//! The command line as clap defines it: every flag, its `--help` text and
//! value parser, and the help's examples. The binary checks what it parses
//! into its `Config`; the man page and the shell completions
//! (`examples/dist-docs.rs`) are made from [`command`], so they cannot
//! drift from `--help`. Behind the `cli` feature (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::counters::Selection;
use crate::measure::destination::count::MAX_TOP;
use crate::measure::{self, ALL};
use crate::values::{parse_interval, parse_ports, DEFAULT_LISTEN};

pub const AFTER_HELP: &str = "\
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
socket and a --web.config.file that does not load), 3 when some network
namespaces could not be counted, or --all-netns could not look at some
processes' namespaces (an E! line each), while the others were printed.";

/// `--version`: the version and the target it was built for.
pub const VERSION: &str = concat!(
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
pub struct Args {
    /// Where socket states come from: `auto` asks the kernel over netlink and
    /// reads /proc for a protocol whose dump is refused (seccomp, missing
    /// udp_diag module); `netlink` and `proc` use only that source. `bpf`
    /// (Linux 6.1+, BTF, CAP_BPF and CAP_PERFMON) counts the TCP states of
    /// every namespace sharing the host's TCP hash in one walk of it by a BPF
    /// program, the rest over netlink; no breakdown flag (docs/bpf.md).
    /// Example: --source proc
    #[arg(long, value_enum, default_value_t = SourceArg::Auto, value_name = "SOURCE")]
    pub source: SourceArg,

    /// The proc filesystem to read with the proc source (the default is
    /// $HOST_PROC if set, else /proc). Example: --proc-root /hostfs/proc
    #[arg(long, value_name = "DIR")]
    pub proc_root: Option<PathBuf>,

    /// Output format: `influx` (line protocol, as inputs.netstat), `prometheus`
    /// (text exposition 0.0.4) or `json` (Telegraf's JSON shape).
    /// Example: --format prometheus
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// Metric names in the Prometheus format: `telegraf` (default; the names
    /// Telegraf's prometheus_client output gives, e.g. netstat_tcp_established)
    /// or `native` (Prometheus practice: netstat_tcp_connections{state=...},
    /// netstat_udp_sockets, queued bytes, listener names with units). Needs
    /// --format prometheus or --listen. Example: --prometheus-names native
    #[arg(long, value_enum, value_name = "NAMES")]
    pub prometheus_names: Option<NamesArg>,

    /// Write each gather to FILE instead of stdout, replacing it atomically
    /// (a new temporary file with a random hidden name in the same directory,
    /// never following or reusing anything found there, then rename), mode
    /// 0644: for node_exporter's textfile collector or any reader that must
    /// never see a partial file. An existing FILE must be a regular file.
    /// Example: --output /var/lib/node_exporter/netstat.prom
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Append the gather time to each line: nanoseconds since the epoch in
    /// influx, milliseconds in prometheus (by default Telegraf and Prometheus
    /// stamp metrics themselves; node_exporter's textfile collector refuses
    /// stamped files). json always carries it. Example: --timestamp
    #[arg(long)]
    pub timestamp: bool,

    /// Run for Telegraf's inputs.execd: gather once per line read on stdin
    /// (signal = "STDIN"); exit 0 when stdin closes. Example: --execd
    #[arg(long)]
    pub execd: bool,

    /// Keep running and gather every DURATION (250ms, 10s, 1m, 1h, 1m30s;
    /// from 10ms to 24h), for inputs.execd with signal = "none"; the first
    /// gather is at once. Exits 0 on SIGTERM, SIGINT, and on stdin EOF when
    /// stdin is a pipe or socket (how Telegraf stops a plugin); with stdin on
    /// a terminal or /dev/null it runs until a signal.
    /// Example: --interval 10s
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, allow_hyphen_values = true)]
    pub interval: Option<Duration>,

    /// Count inside the network namespace at PATH (/run/netns/NAME,
    /// /proc/PID/ns/net, any bind mount); repeatable. One metric per
    /// namespace, tagged netns=NAME, netns=pid:PID or netns=<absolute
    /// PATH>. Entering
    /// another namespace needs CAP_SYS_ADMIN over it.
    /// Example: --netns /run/netns/blue
    #[arg(long, value_name = "PATH", conflicts_with = "all_netns")]
    pub netns: Vec<PathBuf>,

    /// Count every network namespace reachable through /run/netns/* and
    /// <proc root>/*/ns/net, each once: netns=host for the one of PID 1,
    /// netns=self for the one this program runs in if it is not PID 1's,
    /// netns=NAME for named ones (name:NAME if NAME looks like one of these
    /// tags), else netns=pid:<lowest PID in it>. Re-scanned at every
    /// gather. Example: --all-netns
    #[arg(long)]
    pub all_netns: bool,

    /// Also count unix-domain sockets as the built-in plugin's fields end up
    /// doing: datagram sockets in udp_socket, stream and seqpacket sockets in
    /// tcp_none. Example: --include-unix
    #[arg(long)]
    pub include_unix: bool,

    /// One metric per address family, tagged family=ipv4 / family=ipv6
    /// (and family=unix with --include-unix). Example: --by-family
    #[arg(long)]
    pub by_family: bool,

    /// Also print measurement netstat_port for these local ports: one metric
    /// per port, tagged direction=local and port=N, with the 13 netstat
    /// fields counting the sockets whose own port is N (listeners, accepted
    /// connections, bound UDP sockets). LIST: comma-separated ports and
    /// ranges; repeatable; at most 1024 ports in all. Named ports are always
    /// printed, zeros included. Example: --local-port 443,8000-8010
    #[arg(long, value_name = "LIST", value_parser = parse_ports)]
    pub local_port: Vec<Vec<u16>>,

    /// Also print netstat_port for these remote ports (direction=remote):
    /// sockets whose peer's port is N, such as connections to a database.
    /// Same LIST syntax. Example: --remote-port 5432
    #[arg(long, value_name = "LIST", value_parser = parse_ports)]
    pub remote_port: Vec<Vec<u16>>,

    /// Also print netstat_port (direction=local) for every local port with a
    /// TCP LISTEN socket at gather time, like collectd's ListeningPorts; at
    /// most 1024 per namespace (a W! line says when more were found).
    /// Example: --listening-ports
    #[arg(long)]
    pub listening_ports: bool,

    /// Also print measurement netstat_listen: one metric per TCP listening
    /// address and port (tags address, port) with fields sockets, queue
    /// (connections waiting to be accepted), backlog (the queue's limit),
    /// syn_recv (handshakes in progress), drops (the listeners' drop
    /// counter); backlog and drops need the netlink source. At most 1024
    /// per namespace. Example: --listen-queues
    #[arg(long)]
    pub listen_queues: bool,

    /// The flags of the measurements that declare their own
    /// ([`measure::Plug`]), in registry order.
    #[command(flatten)]
    pub plugged: Plugged,

    /// Also print measurement netstat_destination: the N remote addresses
    /// and ports with the most outbound sockets (TCP other than listeners
    /// and connected UDP, from a local port of the ephemeral range that no
    /// TCP listener uses), tagged address and port, with the 13 netstat
    /// fields and utilization; then one row tagged address=other,port=other
    /// for the rest, when there is a rest. N from 1 to 1000.
    /// Example: --destinations 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_TOP as i64))]
    pub destinations: Option<u16>,

    /// Also print measurement netstat_cgroup: the 13 netstat fields per
    /// cgroup v2 (tag cgroup, the path below the cgroup2 mount, e.g.
    /// /system.slice/nginx.service; container_id and pod_uid where the
    /// runtime's own path names them), from the cgroup id the kernel
    /// attaches to each socket (Linux 5.8+, netlink only). Sockets without
    /// one (TIME_WAIT, handshakes, unix) are in the row cgroup=unattributed,
    /// so the rows add up to netstat's. Example: --by-cgroup
    #[arg(long)]
    pub by_cgroup: bool,

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
    pub counters: Option<Selection>,

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
    pub health: bool,

    /// Also print round-trip time and loss of the TCP connections on the
    /// ports of --local-port and --remote-port, and to the top destinations
    /// of --destinations N: measurements netstat_port_tcp_info (one row per
    /// port and direction) and netstat_destination_tcp_info, with
    /// connections, rtt_le_* (connections whose smoothed RTT is at most
    /// 0.0001 ... 1 s, cumulative), rtt_samples, rtt_sum_seconds,
    /// min_rtt_seconds, loss_recovery, rto_backoff, notsent_bytes and
    /// unacked_bytes. Read from each socket's tcp_info: those sockets asked
    /// of the kernel one by one when the main pass found them (ports, and
    /// the last gather's top destinations and up to as many just below
    /// them), else one extra TCP dump
    /// the kernel filters to them. Needs netlink (not
    /// --source proc); with nothing selected nothing extra is dumped.
    /// Printed with netstat_port and netstat_destination.
    /// Example: --tcp-info --remote-port 5432
    #[arg(long)]
    pub tcp_info: bool,

    /// One-shot runs with --tcp-info --destinations N: keep each network
    /// namespace's top destinations in FILE for the next run, whose main
    /// pass then keeps their sockets and, when they are still the top ones,
    /// asks the kernel for each instead of walking its table a second time
    /// (the loops keep them in memory). Replaced atomically like --output,
    /// mode 0600; read back only if it is a regular file of this user, not
    /// writable by group or others, made of the lines it writes: anything
    /// else there is said, ignored and left as it is. What it holds changes
    /// the cost, never the counts. One file per command line.
    /// Example: --state-file /var/lib/telegraf/netstat.state
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,

    /// Print only these measurements, comma-separated, each one of the
    /// possible values and asked for by its flag. --counters --only
    /// counters reads the counters only, no socket. --listen-queues --only listen asks
    /// the kernel for listeners only and skips its walk of established
    /// sockets (syn_recv is then left out). Example: --only listen
    #[arg(long, value_name = "MEASUREMENTS", value_delimiter = ',', value_parser = only_names())]
    pub only: Vec<String>,

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
    pub listen: Vec<String>,

    /// The path of the metrics page when serving (default /metrics).
    /// Example: --web.telemetry-path /metrics
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,

    /// Serve on the sockets systemd passes (socket activation, LISTEN_FDS)
    /// instead of opening --listen addresses; each must be a listening TCP
    /// socket (exit 2 otherwise). Example: --web.systemd-socket
    #[arg(long = "web.systemd-socket")]
    pub systemd_socket: bool,

    /// Serve over TLS and/or with basic authentication as this file says:
    /// the web configuration file of Prometheus exporters
    /// (exporter-toolkit format: tls_server_config, basic_auth_users,
    /// http_server_config.headers, rate_limit). Read again for every new
    /// connection, so certificates rotate without a restart; invalid at
    /// startup: exit 2. Example: --web.config.file /etc/telegraf-netstat/web.yml
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config: Option<PathBuf>,

    /// Leave out the container_id, pod_uid and hostname tags that
    /// --all-netns and --netns add to a namespace's metrics (found from its
    /// processes' cgroup and UTS namespace); netns stays.
    /// Example: --no-netns-labels
    #[arg(long)]
    pub no_netns_labels: bool,

    /// Also log debug (`D! `) lines on stderr, e.g. sockets in a state this
    /// program does not know; the same as --log.level debug. Example: -v
    #[arg(short, long)]
    pub verbose: bool,

    /// The least severe lines logged on stderr: `error`, `warn`, `info`
    /// (default) or `debug`. Example: --log.level warn
    #[arg(long = "log.level", value_enum, value_name = "LEVEL", default_value_t = LevelArg::Info)]
    pub log_level: LevelArg,

    /// How stderr lines look: `telegraf` (default: `E! `, `W! `, `I! `, `D! `
    /// prefixes, which Telegraf's exec and execd inputs read as levels),
    /// `logfmt` or `json` (timestamped, as Prometheus exporters log:
    /// time=... level=INFO msg="..."). Example: --log.format logfmt
    #[arg(long = "log.format", value_enum, value_name = "FORMAT", default_value_t = LogFormatArg::Telegraf)]
    pub log_format: LogFormatArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LevelArg {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Telegraf,
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Influx,
    Prometheus,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NamesArg {
    Telegraf,
    Native,
}

/// `--only`'s values: the measurements' names for it, in registry order.
fn only_names() -> PossibleValuesParser {
    PossibleValuesParser::new(ALL.iter().filter_map(|m| m.only))
}

/// Whether each plugged measurement's flag was given, by its place in
/// [`ALL`]: the clap arguments are made from the registry.
#[derive(Debug, Clone, Default)]
pub struct Plugged(pub [bool; measure::COUNT]);

impl clap::Args for Plugged {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        ALL.iter()
            .filter_map(|m| m.plug.as_ref())
            .fold(cmd, |cmd, p| {
                cmd.arg(
                    Arg::new(p.flag.long)
                        .long(p.flag.long)
                        .help(p.flag.help)
                        .action(ArgAction::SetTrue),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Plugged {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut p = Plugged::default();
        p.update_from_arg_matches(m)?;
        Ok(p)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for (on, meas) in self.0.iter_mut().zip(ALL) {
            if let Some(p) = &meas.plug {
                *on = m.get_flag(p.flag.long);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    Auto,
    Netlink,
    Proc,
    Bpf,
}

/// The clap definition of the command line, for the man page and shell
/// completions (`examples/dist-docs.rs`).
pub fn command() -> clap::Command {
    Args::command()
}
