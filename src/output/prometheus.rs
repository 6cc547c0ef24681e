//! Prometheus text exposition format 0.0.4, named as Telegraf's
//! `outputs.prometheus_client` names this measurement's fields
//! (`netstat_tcp_established`, ...): one gauge family per field, tags as
//! labels. No timestamps unless `--timestamp` asks (then the gather time in
//! milliseconds since the epoch, as the format defines them). HELP lines
//! say what each series counts (HELP is not part of a series' identity, so
//! this does not change Telegraf's names). After the rows come the
//! self-metrics ([`encode_health`]).

use std::io::Write;

use super::DESTINATION_TCP_INFO_MEASUREMENT;
use super::{
    unix_nanos, Health, Metric, CGROUP_MEASUREMENT, COUNTERS_MEASUREMENT, DESTINATION_MEASUREMENT,
    EPHEMERAL_MEASUREMENT, HEALTH_MEASUREMENT, LISTEN_MEASUREMENT, MEASUREMENT, PORT_MEASUREMENT,
    PORT_QUEUE_MEASUREMENT, PORT_TCP_INFO_MEASUREMENT, QUEUE_MEASUREMENT, RTT_BUCKETS,
};
use crate::counters;

/// What one field counts, in a sentence ending before the full stop.
fn field_help(field: &str) -> String {
    let state = |s: &str| format!("TCP sockets in state {s}");
    match field {
        "tcp_established" => state("ESTABLISHED"),
        "tcp_syn_sent" => state("SYN_SENT (connecting)"),
        "tcp_syn_recv" => "TCP handshakes in progress (SYN_RECV, request sockets included)".into(),
        "tcp_fin_wait1" => state("FIN_WAIT1"),
        "tcp_fin_wait2" => state("FIN_WAIT2"),
        "tcp_time_wait" => state("TIME_WAIT"),
        "tcp_close" => state("CLOSE"),
        "tcp_close_wait" => state("CLOSE_WAIT"),
        "tcp_last_ack" => state("LAST_ACK"),
        "tcp_listen" => "TCP listening sockets".into(),
        "tcp_closing" => state("CLOSING"),
        "tcp_none" => "TCP sockets in no known state (inputs.netstat's NONE field, kept for its 13 fields)".into(),
        "udp_socket" => "UDP sockets".into(),
        "backlog" => "Accept queue limit of the listening sockets on this address and port (summed over SO_REUSEPORT sockets)".into(),
        "drops" => "Connections the listening sockets dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others)".into(),
        "queue" => "Connections waiting in the accept queue of the listening sockets on this address and port".into(),
        "sockets" => "Listening sockets bound to this address and port".into(),
        "syn_recv" => "Handshakes in progress that the kernel routes to the listening sockets on this address and port".into(),
        "range_size" => "Ports connect() may pick from: net.ipv4.ip_local_port_range minus ip_local_reserved_ports".into(),
        "ports_used" => "Ports of the ephemeral range held by a TCP socket (any state, listeners and TIME_WAIT included)".into(),
        "max_per_destination" => "The most outbound TCP sockets from one local address to one remote address and port, whose ceiling is range_size".into(),
        "destinations" => "Distinct remote addresses and ports of outbound TCP sockets".into(),
        "utilization" => "The most outbound TCP sockets from one local address to one remote address and port, over range_size: at 1 connect() fails with EADDRNOTAVAIL".into(),
        "syn_retrying" => "TCP connects whose SYN was sent again, unanswered (SYN_SENT, retransmit timer, 1 retransmission or more)".into(),
        "retransmitting" => "TCP connections resending unacknowledged data or FIN (retransmit timer, 1 retransmission or more)".into(),
        "zero_window" => "TCP connections probing a peer that advertises a zero receive window (zero-window probe timer)".into(),
        "keepalive_probing" => "TCP connections whose keepalive probes go unanswered (1 or more)".into(),
        "synack_retrying" => "TCP handshakes whose SYN-ACK was sent again, unanswered (SYN_RECV, 1 retransmission or more)".into(),
        "udp_drops" => "Datagrams the UDP sockets dropped since each was created (receive buffer full, among others; a socket closed takes its count with it)".into(),
        "udp_receive_queue" => "Bytes of receive buffer held by datagrams waiting in UDP sockets".into(),
        "connections" => "TCP connections whose tcp_info was read (every state but LISTEN, TIME_WAIT and SYN_RECV)".into(),
        "loss_recovery" => "TCP connections in loss recovery now (ca_state Recovery or Loss)".into(),
        "rto_backoff" => "TCP connections whose retransmission timer backed off (an RTO without an ACK since)".into(),
        "notsent_bytes" => "Bytes written to TCP connections and not yet sent (tcpi_notsent_bytes)".into(),
        "unacked_bytes" => "Bytes sent on TCP connections and not yet acknowledged".into(),
        "rtt_samples" => "TCP connections with an RTT sample (the count of the rtt_le_* buckets)".into(),
        "rtt_sum_seconds" => "The sum of the smoothed RTTs of the TCP connections with a sample, in seconds".into(),
        "min_rtt_seconds" => "The least minimum RTT (tcpi_min_rtt) of the TCP connections, in seconds".into(),
        f if f.starts_with("rtt_le_") => format!(
            "TCP connections whose smoothed RTT is at most {} seconds (cumulative)",
            RTT_BUCKETS.iter().find(|b| b.0 == f).map_or("?", |b| b.1)
        ),
        other => format!("The {other} field of telegraf-netstat"),
    }
}

/// The HELP text of one family.
fn help(measurement: &str, field: &str) -> String {
    let what = field_help(field);
    match measurement {
        PORT_MEASUREMENT => {
            format!("{what}, by port (label direction: the local or the remote port).")
        }
        LISTEN_MEASUREMENT | EPHEMERAL_MEASUREMENT => format!("{what}."),
        PORT_TCP_INFO_MEASUREMENT => {
            format!("{what}, now, by port (label direction: the local or the remote port).")
        }
        DESTINATION_TCP_INFO_MEASUREMENT => {
            format!("{what}, now, to this destination (address and port).")
        }
        COUNTERS_MEASUREMENT => counters::help(field),
        CGROUP_MEASUREMENT => format!(
            "{what}, by cgroup (label cgroup: its path; unattributed: sockets without one)."
        ),
        DESTINATION_MEASUREMENT if field == "utilization" => format!("{what}, by destination."),
        HEALTH_MEASUREMENT => format!("{what}, in this network namespace, now."),
        DESTINATION_MEASUREMENT => {
            format!("{what}, outbound to this destination (address and port; other: the rest).")
        }
        _ => format!("{what}, as counted by Telegraf's inputs.netstat."),
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Label names allow `[a-zA-Z_][a-zA-Z0-9_]*`; anything else becomes `_`,
/// as Telegraf's prometheus output sanitizes them.
fn write_label_name(s: &str, out: &mut Vec<u8>) {
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c as u8 } else { b'_' });
    }
}

/// One family per field and measurement: `netstat_*` for the metrics of
/// `netstat`, then `netstat_port_*`, `netstat_listen_*` (metrics arrive
/// grouped by measurement). A counter field is named `<name>_total`.
pub(super) fn encode(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    for group in metrics.chunk_by(|a, b| a.measurement == b.measurement) {
        encode_measurement(group, out);
    }
}

fn encode_measurement(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    let Some(first) = metrics.first() else { return };
    let name = first.measurement;
    // Every field name in the group, in order (a source may not know some).
    let mut names: Vec<(&str, bool)> = Vec::new();
    for m in metrics {
        for f in m.fields {
            if !names.iter().any(|(n, _)| *n == f.name) {
                names.push((f.name, f.counter));
            }
        }
    }
    for (field, counter) in names {
        let (suffix, kind) = if counter {
            ("_total", "counter")
        } else {
            ("", "gauge")
        };
        let _ = writeln!(out, "# HELP {name}_{field}{suffix} {}", help(name, field));
        let _ = writeln!(out, "# TYPE {name}_{field}{suffix} {kind}");
        for m in metrics {
            let Some(f) = m.fields.iter().find(|f| f.name == field) else {
                continue;
            };
            let _ = write!(out, "{name}_{field}{suffix}");
            write_labels(m.tags, out);
            let _ = write!(out, " {}", f.value);
            write_time(m.time, out);
        }
    }
}

/// A family of the native names: its name, HELP, whether a counter, and
/// the label a field becomes (`state` for a TCP state field, `family` for
/// a UDP counter).
struct Native {
    name: &'static str,
    help: &'static str,
    counter: bool,
    label: Option<(&'static str, &'static str)>,
}

/// The native family of a row's field; `None` for a field native names
/// leave out (`tcp_none`, inputs.netstat's artefact with no kernel state).
fn native(measurement: &str, field: &'static str) -> Option<Native> {
    let plain = |name, help| {
        Some(Native {
            name,
            help,
            counter: false,
            label: None,
        })
    };
    match (measurement, field) {
        (_, "tcp_none") => None,
        (COUNTERS_MEASUREMENT, f) => counters_native(f),
        (PORT_TCP_INFO_MEASUREMENT, f) => tcp_info_native(&TCP_INFO_PORT, f),
        (DESTINATION_TCP_INFO_MEASUREMENT, f) => tcp_info_native(&TCP_INFO_DESTINATION, f),
        (
            _,
            "syn_retrying" | "retransmitting" | "zero_window" | "keepalive_probing"
            | "synack_retrying" | "udp_drops" | "udp_receive_queue",
        ) => health_native(measurement, field),
        (MEASUREMENT, "udp_socket") => plain("netstat_udp_sockets", "UDP sockets."),
        (PORT_MEASUREMENT, "udp_socket") => plain(
            "netstat_port_udp_sockets",
            "UDP sockets by port (label direction: the local or the remote port).",
        ),
        (MEASUREMENT, f) if f.starts_with("tcp_") => Some(Native {
            name: "netstat_tcp_connections",
            help: "TCP sockets by state (state as node_exporter's tcpstat spells it; syn_recv includes request sockets).",
            counter: false,
            label: Some(("state", &f[4..])),
        }),
        (CGROUP_MEASUREMENT, "udp_socket") => plain(
            "netstat_cgroup_udp_sockets",
            "UDP sockets by cgroup (label cgroup: its path; unattributed: sockets without one).",
        ),
        (CGROUP_MEASUREMENT, f) if f.starts_with("tcp_") => Some(Native {
            name: "netstat_cgroup_tcp_connections",
            help: "TCP sockets by cgroup and state (label cgroup: its path; unattributed: TIME_WAIT, handshakes and sockets read from /proc).",
            counter: false,
            label: Some(("state", &f[4..])),
        }),
        (DESTINATION_MEASUREMENT, "udp_socket") => plain(
            "netstat_destination_udp_sockets",
            "Connected UDP sockets to this destination (address and port; other: the rest).",
        ),
        (DESTINATION_MEASUREMENT, "utilization") => plain(
            "netstat_destination_utilization_ratio",
            "The most outbound TCP sockets from one local address to this destination, over the ephemeral ports connect() may pick from: at 1 connect() fails with EADDRNOTAVAIL.",
        ),
        (DESTINATION_MEASUREMENT, f) if f.starts_with("tcp_") => Some(Native {
            name: "netstat_destination_tcp_connections",
            help: "Outbound TCP sockets to this destination (address and port; other: the rest) by state.",
            counter: false,
            label: Some(("state", &f[4..])),
        }),
        (EPHEMERAL_MEASUREMENT, "range_size") => plain(
            "netstat_ephemeral_range_ports",
            "Ports connect() may pick from: net.ipv4.ip_local_port_range minus ip_local_reserved_ports, in this namespace.",
        ),
        (EPHEMERAL_MEASUREMENT, "ports_used") => plain(
            "netstat_ephemeral_used_ports",
            "Ports of the ephemeral range held by a TCP socket (any state, listeners and TIME_WAIT included).",
        ),
        (EPHEMERAL_MEASUREMENT, "max_per_destination") => plain(
            "netstat_ephemeral_destination_max_connections",
            "The most outbound TCP sockets from one local address to one remote address and port; its ceiling is netstat_ephemeral_range_ports.",
        ),
        (EPHEMERAL_MEASUREMENT, "destinations") => plain(
            "netstat_ephemeral_destinations",
            "Distinct remote addresses and ports of outbound TCP sockets.",
        ),
        (EPHEMERAL_MEASUREMENT, "utilization") => plain(
            "netstat_ephemeral_utilization_ratio",
            "netstat_ephemeral_destination_max_connections over netstat_ephemeral_range_ports: at 1 connect() to that destination fails with EADDRNOTAVAIL.",
        ),
        (PORT_MEASUREMENT, f) if f.starts_with("tcp_") => Some(Native {
            name: "netstat_port_tcp_connections",
            help: "TCP sockets by port and state (label direction: the local or the remote port).",
            counter: false,
            label: Some(("state", &f[4..])),
        }),
        (QUEUE_MEASUREMENT, "receive_queue_bytes") => plain(
            "netstat_tcp_receive_queue_bytes",
            "Bytes received on TCP sockets (listeners left out) and not yet read by the application.",
        ),
        (QUEUE_MEASUREMENT, "send_queue_bytes") => plain(
            "netstat_tcp_send_queue_bytes",
            "Bytes sent on TCP sockets (listeners left out) and not yet acknowledged by the peer.",
        ),
        (PORT_QUEUE_MEASUREMENT, "receive_queue_bytes") => plain(
            "netstat_port_tcp_receive_queue_bytes",
            "Bytes received on TCP sockets (listeners left out) and not yet read by the application, by port.",
        ),
        (PORT_QUEUE_MEASUREMENT, "send_queue_bytes") => plain(
            "netstat_port_tcp_send_queue_bytes",
            "Bytes sent on TCP sockets (listeners left out) and not yet acknowledged by the peer, by port.",
        ),
        (LISTEN_MEASUREMENT, "sockets") => plain(
            "netstat_listen_sockets",
            "Listening TCP sockets bound to this address and port.",
        ),
        (LISTEN_MEASUREMENT, "queue") => plain(
            "netstat_listen_queue_connections",
            "Connections waiting in the accept queue of the listening sockets on this address and port.",
        ),
        (LISTEN_MEASUREMENT, "backlog") => plain(
            "netstat_listen_queue_limit_connections",
            "The accept queue limit (backlog) of the listening sockets on this address and port, summed over SO_REUSEPORT sockets.",
        ),
        (LISTEN_MEASUREMENT, "syn_recv") => plain(
            "netstat_listen_handshakes",
            "Handshakes in progress that the kernel routes to the listening sockets on this address and port.",
        ),
        (LISTEN_MEASUREMENT, "drops") => Some(Native {
            name: "netstat_listen_drops_total",
            help: "Connections the listening sockets on this address and port dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others).",
            counter: true,
            label: None,
        }),
        _ => None,
    }
}

/// The three native families of `--health`'s fields on one kind of row:
/// names under `prefix`, HELP ending with `of`.
macro_rules! health_families {
    ($prefix:literal, $of:literal) => {
        [
            (
                concat!($prefix, "_tcp_failing_connections"),
                concat!("TCP sockets failing now, by how (label failure: syn_retrying, retransmitting, zero_window, keepalive_probing, synack_retrying), ", $of, "."),
            ),
            (
                concat!($prefix, "_udp_socket_drops_total"),
                concat!("Datagrams the UDP sockets dropped since each was created (a socket closed takes its count with it, which rate() reads as a reset), ", $of, "."),
            ),
            (
                concat!($prefix, "_udp_receive_queue_bytes"),
                concat!("Bytes of receive buffer held by datagrams waiting in UDP sockets, ", $of, "."),
            ),
        ]
    };
}

/// The native family of one of `--health`'s fields: the failing sockets as
/// one family per kind of row with the way they fail as label `failure`;
/// the UDP drops and receive queues as families of their own.
fn health_native(measurement: &str, field: &'static str) -> Option<Native> {
    let families = match measurement {
        HEALTH_MEASUREMENT => health_families!("netstat", "in this network namespace"),
        PORT_MEASUREMENT => health_families!(
            "netstat_port",
            "by port (label direction: the local or the remote port)"
        ),
        DESTINATION_MEASUREMENT => health_families!(
            "netstat_destination",
            "outbound to this destination (address and port; other: the rest)"
        ),
        CGROUP_MEASUREMENT => health_families!(
            "netstat_cgroup",
            "by cgroup (label cgroup: its path; unattributed: handshakes and sockets read from /proc)"
        ),
        LISTEN_MEASUREMENT if field == "synack_retrying" => {
            return Some(Native {
                name: "netstat_listen_synack_retrying_handshakes",
                help: "Handshakes routed to the listening sockets on this address and port whose SYN-ACK was sent again, unanswered.",
                counter: false,
                label: None,
            })
        }
        _ => return None,
    };
    let (i, label) = match field {
        "udp_drops" => (1, None),
        "udp_receive_queue" => (2, None),
        f => (0, Some(("failure", f))),
    };
    Some(Native {
        name: families[i].0,
        help: families[i].1,
        counter: i == 1,
        label,
    })
}

/// The native families of `--tcp-info`'s fields on one kind of row: the
/// RTT histogram (a gauge histogram: its buckets count the connections that
/// exist now and go down as well as up, so it is read as it is, never
/// through `rate()`), then `connections`, `min_rtt_seconds`,
/// `loss_recovery`, `rto_backoff`, `notsent_bytes`, `unacked_bytes`.
macro_rules! tcp_info_families {
    ($prefix:literal, $by:literal) => {
        [
            (concat!($prefix, "_tcp_rtt_seconds"), concat!("Smoothed round-trip time of the TCP connections that exist now, ", $by, "; a gauge histogram: query without rate(), sum by (le) across hosts.")),
            (concat!($prefix, "_tcp_rtt_seconds_bucket"), ""),
            (concat!($prefix, "_tcp_rtt_seconds_count"), ""),
            (concat!($prefix, "_tcp_rtt_seconds_sum"), ""),
            (concat!($prefix, "_tcp_info_connections"), concat!("TCP connections whose tcp_info was read (every state but LISTEN, TIME_WAIT and SYN_RECV), ", $by, ".")),
            (concat!($prefix, "_tcp_min_rtt_seconds"), concat!("The least minimum RTT (tcpi_min_rtt) of the TCP connections that exist now, ", $by, ".")),
            (concat!($prefix, "_tcp_loss_recovery_connections"), concat!("TCP connections in loss recovery now (ca_state Recovery or Loss), ", $by, ".")),
            (concat!($prefix, "_tcp_rto_backoff_connections"), concat!("TCP connections whose retransmission timer backed off (an RTO without an ACK since), ", $by, ".")),
            (concat!($prefix, "_tcp_notsent_bytes"), concat!("Bytes written to TCP connections and not yet sent, ", $by, ".")),
            (concat!($prefix, "_tcp_unacked_bytes"), concat!("Bytes sent on TCP connections and not yet acknowledged, ", $by, ".")),
        ]
    };
}

/// A kind of row's `--tcp-info` families: (name, HELP), as
/// `tcp_info_families!` lists them.
type TcpInfoFamilies = [(&'static str, &'static str); 10];

const TCP_INFO_PORT: TcpInfoFamilies = tcp_info_families!(
    "netstat_port",
    "by port (label direction: the local or the remote port)"
);
const TCP_INFO_DESTINATION: TcpInfoFamilies = tcp_info_families!(
    "netstat_destination",
    "to this destination (address and port)"
);

/// The native family of one of `--tcp-info`'s fields on a kind of row.
fn tcp_info_native(families: &TcpInfoFamilies, field: &str) -> Option<Native> {
    let rtt = families[0];
    let (i, label) = match field {
        f if f.starts_with("rtt_le_") => {
            let le = RTT_BUCKETS.iter().find(|b| b.0 == f)?.1;
            (1, Some(("le", le)))
        }
        "rtt_samples" => (2, None),
        "rtt_sum_seconds" => (3, None),
        "connections" => (4, None),
        "min_rtt_seconds" => (5, None),
        "loss_recovery" => (6, None),
        "rto_backoff" => (7, None),
        "notsent_bytes" => (8, None),
        "unacked_bytes" => (9, None),
        _ => return None,
    };
    Some(Native {
        name: families[i].0,
        help: if (1..4).contains(&i) {
            rtt.1
        } else {
            families[i].1
        },
        counter: false,
        label,
    })
}

/// The family a native sample belongs to, and its type: the RTT
/// histogram's `_bucket`, `_sum` and `_count` series are one family.
fn family_of(n: &Native) -> (&'static str, &'static str) {
    let rtt = [TCP_INFO_PORT[0].0, TCP_INFO_DESTINATION[0].0];
    if let Some(h) = rtt.into_iter().find(|h| n.name.starts_with(h)) {
        (h, "histogram")
    } else if n.counter {
        (n.name, "counter")
    } else {
        (n.name, "gauge")
    }
}

/// A counter's native family (`netstat_counters`).
fn counters_native(field: &str) -> Option<Native> {
    counters::native(field).map(|(name, help, family)| Native {
        name,
        help,
        counter: true,
        label: family.map(|f| ("family", f)),
    })
}

/// One native sample: its family, labels, value and time.
type Sample<'a> = (
    Native,
    Vec<(&'a str, &'a str)>,
    super::Value,
    Option<std::time::SystemTime>,
);

/// Native names (`--prometheus-names native`): one family per quantity,
/// the TCP state as a label, base units, `_total` for the counter; families
/// in the order they first appear, each family's samples together.
pub(super) fn encode_native(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    // (family, labels, value, time), in row order.
    let mut samples: Vec<Sample<'_>> = Vec::new();
    for m in metrics {
        for f in m.fields {
            let Some(n) = native(m.measurement, f.name) else {
                continue;
            };
            let mut labels: Vec<(&str, &str)> = m.tags.to_vec();
            if let Some(label) = n.label {
                labels.push(label);
                labels.sort_unstable_by_key(|kv| kv.0);
            }
            samples.push((n, labels, f.value, m.time));
        }
    }
    let mut order: Vec<&'static str> = Vec::new();
    for (n, ..) in &samples {
        let family = family_of(n).0;
        if !order.contains(&family) {
            order.push(family);
        }
    }
    for family in order {
        let mut first = true;
        for (n, labels, value, time) in samples.iter().filter(|s| family_of(&s.0).0 == family) {
            if first {
                let _ = writeln!(out, "# HELP {family} {}", n.help);
                let _ = writeln!(out, "# TYPE {family} {}", family_of(n).1);
                first = false;
            }
            out.extend_from_slice(n.name.as_bytes());
            write_labels(labels, out);
            let _ = write!(out, " {value}");
            write_time(*time, out);
        }
    }
}

fn write_labels(tags: &[(&str, &str)], out: &mut Vec<u8>) {
    if tags.is_empty() {
        return;
    }
    out.push(b'{');
    for (j, (k, v)) in tags.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_label_name(k, out);
        out.extend_from_slice(b"=\"");
        escape_label_value(v, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// The sample's timestamp when asked for, and the line's end.
fn write_time(time: Option<std::time::SystemTime>, out: &mut Vec<u8>) {
    if let Some(t) = time {
        let _ = write!(out, " {}", unix_nanos(t) / 1_000_000);
    }
    out.push(b'\n');
}

/// The self-metrics: the build, whether each namespace was counted, the
/// processes `--all-netns` could not look at, and the gather's wall time.
pub(super) fn encode_health(h: &Health<'_>, out: &mut Vec<u8>) {
    let family = |out: &mut Vec<u8>, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
    };
    family(
        out,
        "netstat_build_info",
        "A constant 1, labelled with the version of telegraf-netstat and the target it was built for.",
    );
    out.extend_from_slice(b"netstat_build_info");
    write_labels(
        &[
            ("target", env!("TELEGRAF_NETSTAT_TARGET")),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        out,
    );
    out.extend_from_slice(b" 1");
    write_time(h.time, out);
    if !h.outcomes.is_empty() {
        family(
            out,
            "netstat_gather_success",
            "Whether the last gather counted this network namespace (1) or could not (0; the reason is in the log).",
        );
        for (tags, ok) in h.outcomes {
            out.extend_from_slice(b"netstat_gather_success");
            write_labels(tags, out);
            let _ = write!(out, " {}", u8::from(*ok));
            write_time(h.time, out);
        }
    }
    if !h.tcp_hash_shared.is_empty() {
        family(
            out,
            "netstat_tcp_hash_shared",
            "Whether this network namespace shares the host's TCP established hash table (1), so that each of its TCP dumps walks all of it, or has one of its own (0; or it is the host's): net.ipv4.tcp_child_ehash_entries, set before a namespace is made, gives it its own.",
        );
        for (tags, shared) in h.tcp_hash_shared {
            out.extend_from_slice(b"netstat_tcp_hash_shared");
            write_labels(tags, out);
            let _ = write!(out, " {}", u8::from(*shared));
            write_time(h.time, out);
        }
    }
    if let Some(n) = h.unreadable {
        family(
            out,
            "netstat_scan_unreadable_processes",
            "Processes whose network namespace --all-netns could not look at (CAP_SYS_PTRACE missing); namespaces only they are in are not counted.",
        );
        let _ = write!(out, "netstat_scan_unreadable_processes {n}");
        write_time(h.time, out);
    }
    family(
        out,
        "netstat_gather_duration_seconds",
        "Wall time of the last gather, in seconds.",
    );
    // Microseconds, at a fixed width below 10 s: a HEAD answers with the
    // Content-Length of the GET it stands for.
    let _ = write!(
        out,
        "netstat_gather_duration_seconds {:.6}",
        h.duration.as_secs_f64()
    );
    write_time(h.time, out);
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_milliseconds_when_asked() {
        use std::time::{Duration, SystemTime};
        let counts = crate::aggregate::states::Counts::default();
        let m = super::Metric {
            measurement: "netstat",
            tags: &[],
            fields: &super::super::Field::of(&counts),
            time: Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
        };
        let mut out = Vec::new();
        super::encode(&[m], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\nnetstat_tcp_close 0 1700000000123\n"),
            "{text}"
        );
    }

    use super::super::{Format, Metric};
    use crate::aggregate::states::Counts;

    #[test]
    fn writes_one_gauge_family_per_field() {
        let counts = Counts {
            tcp_listen: 3,
            udp_socket: 7,
            ..Counts::default()
        };
        let mut out = Vec::new();
        Format::Prometheus.encode(
            &[Metric {
                measurement: "netstat",
                tags: &[],
                fields: &super::super::Field::of(&counts),
                time: None,
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 13 * 3);
        assert!(text.starts_with(
            "# HELP netstat_tcp_close TCP sockets in state CLOSE, as counted by Telegraf's inputs.netstat.\n# TYPE netstat_tcp_close gauge\nnetstat_tcp_close 0\n"
        ));
        assert!(text.contains("\nnetstat_tcp_listen 3\n"));
        assert!(text.ends_with("# TYPE netstat_udp_socket gauge\nnetstat_udp_socket 7\n"));
    }

    #[test]
    fn tags_become_escaped_labels() {
        let counts = Counts::default();
        let tags = [("netns", "a\"b\\c\nd"), ("fam-ily", "ipv4")];
        let mut out = Vec::new();
        Format::Prometheus.encode(
            &[Metric {
                measurement: "netstat",
                tags: &tags,
                fields: &super::super::Field::of(&counts),
                time: None,
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("netstat_tcp_close{netns=\"a\\\"b\\\\c\\nd\",fam_ily=\"ipv4\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn the_rtt_buckets_are_one_histogram_family_per_gather() {
        use super::super::{Field, PORT_TCP_INFO_MEASUREMENT, RTT_BUCKETS};
        let mut fields: Vec<Field> = RTT_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, b)| Field::gauge(b.0, i as u64))
            .collect();
        fields.push(Field::gauge("rtt_samples", 13));
        fields.push(Field::ratio("rtt_sum_seconds", 0.5));
        fields.push(Field::gauge("loss_recovery", 1));
        fields.sort_unstable_by_key(|f| f.name);
        let rows: Vec<Metric<'_>> = [[("direction", "local"), ("port", "1")]; 2]
            .iter()
            .enumerate()
            .map(|(i, tags)| Metric {
                measurement: PORT_TCP_INFO_MEASUREMENT,
                tags: if i == 0 { &tags[..] } else { &tags[1..] },
                fields: &fields,
                time: None,
            })
            .collect();
        let mut out = Vec::new();
        Format::PrometheusNative.encode(&rows, &mut out);
        let text = String::from_utf8(out).unwrap();
        let family = "# TYPE netstat_port_tcp_rtt_seconds histogram\n";
        assert_eq!(text.matches(family).count(), 1, "{text}");
        assert_eq!(
            text.matches("# HELP netstat_port_tcp_rtt_seconds ").count(),
            1
        );
        assert!(text.contains(
            "netstat_port_tcp_rtt_seconds_bucket{direction=\"local\",le=\"+Inf\",port=\"1\"} 13\n"
        ));
        assert!(text.contains("netstat_port_tcp_rtt_seconds_bucket{le=\"0.0001\",port=\"1\"} 0\n"));
        assert!(text.contains("netstat_port_tcp_rtt_seconds_count{port=\"1\"} 13\n"));
        assert!(
            text.contains("netstat_port_tcp_rtt_seconds_sum{direction=\"local\",port=\"1\"} 0.5\n")
        );
        assert!(text.contains("# TYPE netstat_port_tcp_loss_recovery_connections gauge\n"));
    }
}
