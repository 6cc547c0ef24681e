//! Printing: one small encoder per output format behind `Format`, all
//! writing into a caller-owned buffer that is reused between gathers.

mod influx;
mod json;
mod prometheus;

use std::time::SystemTime;

use crate::aggregate::states::Counts;

/// The measurement name the built-in plugin uses.
pub const MEASUREMENT: &str = "netstat";

/// The measurement of per-port counts (`--local-port`, `--remote-port`,
/// `--listening-ports`).
pub const PORT_MEASUREMENT: &str = "netstat_port";

/// The measurement of accept queues per listener (`--listen-queues`).
pub const LISTEN_MEASUREMENT: &str = "netstat_listen";

/// The ephemeral ports of each namespace (`--ephemeral-ports`).
pub const EPHEMERAL_MEASUREMENT: &str = "netstat_ephemeral";

/// Outbound sockets per destination (`--destinations N`).
pub const DESTINATION_MEASUREMENT: &str = "netstat_destination";

/// Sockets per cgroup v2 (`--by-cgroup`).
pub const CGROUP_MEASUREMENT: &str = "netstat_cgroup";

/// The SNMP MIB counters of each namespace (`--counters`).
pub const COUNTERS_MEASUREMENT: &str = "netstat_counters";

/// Sockets failing now and UDP drops, the namespace's totals (`--health`).
pub const HEALTH_MEASUREMENT: &str = "netstat_health";

/// RTT and loss per selected port (`--tcp-info`).
pub const PORT_TCP_INFO_MEASUREMENT: &str = "netstat_port_tcp_info";

/// The same per top destination (`--tcp-info --destinations N`).
pub const DESTINATION_TCP_INFO_MEASUREMENT: &str = "netstat_destination_tcp_info";

/// `netstat_port_tcp_info`'s (and `netstat_destination_tcp_info`'s) RTT buckets: the field (connections whose
/// smoothed RTT is at most the bound, cumulative) and the bound in seconds
/// (the native histogram's `le`), as `aggregate::tcpinfo::BUCKETS_US`,
/// then every connection with a sample.
pub const RTT_BUCKETS: [(&str, &str); 14] = [
    ("rtt_le_0_0001", "0.0001"),
    ("rtt_le_0_00025", "0.00025"),
    ("rtt_le_0_0005", "0.0005"),
    ("rtt_le_0_001", "0.001"),
    ("rtt_le_0_0025", "0.0025"),
    ("rtt_le_0_005", "0.005"),
    ("rtt_le_0_01", "0.01"),
    ("rtt_le_0_025", "0.025"),
    ("rtt_le_0_05", "0.05"),
    ("rtt_le_0_1", "0.1"),
    ("rtt_le_0_25", "0.25"),
    ("rtt_le_0_5", "0.5"),
    ("rtt_le_1", "1"),
    ("rtt_le_inf", "+Inf"),
];

/// Bytes queued on TCP sockets: printed only with native Prometheus names
/// (`netstat_tcp_receive_queue_bytes`, `netstat_tcp_send_queue_bytes`), so
/// the other outputs stay exactly Telegraf's.
pub const QUEUE_MEASUREMENT: &str = "netstat_tcp";

/// The same per port, native names only (`netstat_port_tcp_*_queue_bytes`).
pub const PORT_QUEUE_MEASUREMENT: &str = "netstat_port_tcp";

/// One field of a metric: its value, and whether it only ever grows (a
/// Prometheus counter, named `<name>_total`) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
    pub counter: bool,
}

/// A field's value. Counts are integers (`14i` in line protocol, as the
/// built-in writes them); a ratio is a float. InfluxDB fixes a field's type
/// on its first write, so a field is always one or the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    /// Finite, never NaN (the rows make sure).
    Float(f64),
}

impl std::fmt::Display for Value {
    /// The number as every format writes it: an integer in decimal, a float
    /// in Rust's shortest form that reads back to the same value (never in
    /// exponent notation, so line protocol and JSON take it as it is).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Field {
    pub fn gauge(name: &'static str, value: u64) -> Field {
        Field {
            name,
            value: Value::Int(value),
            counter: false,
        }
    }

    /// An integer that only ever grows (a Prometheus counter).
    pub fn counter(name: &'static str, value: u64) -> Field {
        Field {
            name,
            value: Value::Int(value),
            counter: true,
        }
    }

    /// A float gauge (a ratio).
    pub fn ratio(name: &'static str, value: f64) -> Field {
        debug_assert!(value.is_finite());
        Field {
            name,
            value: Value::Float(value),
            counter: false,
        }
    }

    /// The 13 fields of `netstat`, sorted by name, all gauges.
    pub fn of(c: &Counts) -> [Field; 13] {
        c.fields().map(|(name, value)| Field::gauge(name, value))
    }
}

/// One metric: a measurement's fields, sorted by name, with optional tags.
#[derive(Debug, Clone, Copy)]
pub struct Metric<'a> {
    /// One of the `*_MEASUREMENT` names above.
    pub measurement: &'a str,
    pub tags: &'a [(&'a str, &'a str)],
    pub fields: &'a [Field],
    /// Gather time; `None` leaves stamping to the consumer (Telegraf does).
    pub time: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Influx line protocol, integer fields, as `inputs.netstat` emits.
    Influx,
    /// Prometheus text exposition format 0.0.4, with Telegraf's names.
    Prometheus,
    /// The same format, with names after Prometheus practice
    /// (`--prometheus-names native`).
    PrometheusNative,
    /// One JSON object per metric per line, like Telegraf's serializer.
    Json,
}

impl Format {
    /// Whether the format always carries a timestamp (JSON does, like
    /// Telegraf's serializer; influx only with `--timestamp`).
    pub fn always_stamped(self) -> bool {
        self == Format::Json
    }

    /// Either Prometheus naming.
    pub fn is_prometheus(self) -> bool {
        matches!(self, Format::Prometheus | Format::PrometheusNative)
    }

    /// Appends the encoding of `metrics` to `out`.
    pub fn encode(self, metrics: &[Metric<'_>], out: &mut Vec<u8>) {
        match self {
            Format::Influx => influx::encode(metrics, out),
            Format::Prometheus => prometheus::encode(metrics, out),
            Format::PrometheusNative => prometheus::encode_native(metrics, out),
            Format::Json => json::encode(metrics, out),
        }
    }
}

/// How a gather went, printed after the rows in the Prometheus format so a
/// partial gather is visible to the scraper, not only on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    /// Every namespace counted (`true`) or attempted and failed, with its
    /// own tags.
    pub outcomes: &'a [(Vec<(&'a str, &'a str)>, bool)],
    /// Namespaces counted whose kernel says whether they share the host's
    /// TCP hash table (`true`), with their own tags.
    pub tcp_hash_shared: &'a [(Vec<(&'a str, &'a str)>, bool)],
    /// `--all-netns`: processes whose namespace could not be looked at.
    pub unreadable: Option<u64>,
    pub duration: std::time::Duration,
    pub time: Option<SystemTime>,
}

impl Health<'_> {
    /// Appends the self-metrics in the Prometheus text format.
    pub fn encode(&self, out: &mut Vec<u8>) {
        prometheus::encode_health(self, out)
    }
}

/// Nanoseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
