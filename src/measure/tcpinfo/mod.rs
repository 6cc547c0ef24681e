//! `netstat_port_tcp_info` and `netstat_destination_tcp_info`
//! (`--tcp-info`): RTT and loss of the TCP connections on the selected
//! ports and to the top destinations, one row per port and direction and
//! per destination. The aggregation is [`count`]; its RTT buckets are, with
//! native Prometheus names, one gauge histogram per kind of row.

pub mod count;

use super::destination::count::address_text;
use super::{Emit, Gathered, Measurement, Shape};
use crate::metric::{self, Field, Native, Schema};
use count::Stats;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&PORT, &DESTINATION],
    rows,
    only: None,
    plug: None,
};

pub static PORT: Schema = Schema {
    name: "netstat_port_tcp_info",
    help: |field| {
        format!(
            "{}, now, by port (label direction: the local or the remote port).",
            field_help(field)
        )
    },
    native: |field| native(&PORT_FAMILIES, field),
    native_only: false,
};

pub static DESTINATION: Schema = Schema {
    name: "netstat_destination_tcp_info",
    help: |field| {
        format!(
            "{}, now, to this destination (address and port).",
            field_help(field)
        )
    },
    native: |field| native(&DESTINATION_FAMILIES, field),
    native_only: false,
};

/// The RTT buckets: the field (connections whose smoothed RTT is at most
/// the bound, cumulative) and the bound in seconds (the native histogram's
/// `le`), as [`count::BUCKETS_US`], then every connection with a sample.
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

/// What a field but the buckets counts, in a sentence ending before the
/// full stop: its Telegraf HELP, and where the sentence is the same, the
/// start of its native families' (see `families!`).
macro_rules! says {
    (connections) => {
        "TCP connections whose tcp_info was read (every state but LISTEN, TIME_WAIT and SYN_RECV)"
    };
    (loss_recovery) => {
        "TCP connections in loss recovery now (ca_state Recovery or Loss)"
    };
    (rto_backoff) => {
        "TCP connections whose retransmission timer backed off (an RTO without an ACK since)"
    };
    (unacked_bytes) => {
        "Bytes sent on TCP connections and not yet acknowledged"
    };
}

metric::fields! {
    /// The fields but the buckets, sorted by name; the native families are
    /// by their place in `families!` (see [`native`]).
    FIELDS;
    CONNECTIONS = "connections", says!(connections);
    LOSS_RECOVERY = "loss_recovery", says!(loss_recovery);
    MIN_RTT_SECONDS = "min_rtt_seconds",
        "The least minimum RTT (tcpi_min_rtt) of the TCP connections, in seconds";
    NOTSENT_BYTES = "notsent_bytes",
        "Bytes written to TCP connections and not yet sent (tcpi_notsent_bytes)";
    RTO_BACKOFF = "rto_backoff", says!(rto_backoff);
    RTT_SAMPLES = "rtt_samples",
        "TCP connections with an RTT sample (the count of the rtt_le_* buckets)";
    RTT_SUM_SECONDS = "rtt_sum_seconds",
        "The sum of the smoothed RTTs of the TCP connections with a sample, in seconds";
    UNACKED_BYTES = "unacked_bytes", says!(unacked_bytes);
}

/// What a field counts, in a sentence ending before the full stop.
fn field_help(field: &str) -> String {
    if let Some(d) = metric::find(&FIELDS, field) {
        return d.help.into();
    }
    if field.starts_with("rtt_le_") {
        let le = RTT_BUCKETS
            .iter()
            .find(|b| b.0 == field)
            .map_or("?", |b| b.1);
        return format!("TCP connections whose smoothed RTT is at most {le} seconds (cumulative)");
    }
    metric::unknown_help(field)
}

/// The native families of the fields on one kind of row: the RTT histogram
/// (a gauge histogram: its buckets count the connections that exist now
/// and go down as well as up, so it is read as it is, never through
/// `rate()`), its `_bucket`, `_count` and `_sum` series, then
/// `connections`, `min_rtt_seconds`, `loss_recovery`, `rto_backoff`,
/// `notsent_bytes`, `unacked_bytes`.
macro_rules! families {
    ($prefix:literal, $by:literal) => {
        [
            (
                concat!($prefix, "_tcp_rtt_seconds"),
                concat!(
                    "Smoothed round-trip time of the TCP connections that exist now, ",
                    $by,
                    "; a gauge histogram: query without rate(), sum by (le) across hosts."
                ),
            ),
            (concat!($prefix, "_tcp_rtt_seconds_bucket"), ""),
            (concat!($prefix, "_tcp_rtt_seconds_count"), ""),
            (concat!($prefix, "_tcp_rtt_seconds_sum"), ""),
            (
                concat!($prefix, "_tcp_info_connections"),
                concat!(says!(connections), ", ", $by, "."),
            ),
            (
                concat!($prefix, "_tcp_min_rtt_seconds"),
                concat!(
                    "The least minimum RTT (tcpi_min_rtt) of the TCP connections that exist now, ",
                    $by,
                    "."
                ),
            ),
            (
                concat!($prefix, "_tcp_loss_recovery_connections"),
                concat!(says!(loss_recovery), ", ", $by, "."),
            ),
            (
                concat!($prefix, "_tcp_rto_backoff_connections"),
                concat!(says!(rto_backoff), ", ", $by, "."),
            ),
            (
                concat!($prefix, "_tcp_notsent_bytes"),
                concat!(
                    "Bytes written to TCP connections and not yet sent, ",
                    $by,
                    "."
                ),
            ),
            (
                concat!($prefix, "_tcp_unacked_bytes"),
                concat!(says!(unacked_bytes), ", ", $by, "."),
            ),
        ]
    };
}

/// A kind of row's families: (name, HELP), as `families!` lists them.
type Families = [(&'static str, &'static str); 10];

const PORT_FAMILIES: Families = families!(
    "netstat_port",
    "by port (label direction: the local or the remote port)"
);
const DESTINATION_FAMILIES: Families = families!(
    "netstat_destination",
    "to this destination (address and port)"
);

/// The native family of one field on a kind of row.
fn native(families: &Families, field: &str) -> Option<Native> {
    let rtt = families[0];
    let (i, label) = match field {
        f if f.starts_with("rtt_le_") => {
            let le = RTT_BUCKETS.iter().find(|b| b.0 == f)?.1;
            (1, Some(("le", le)))
        }
        f if f == RTT_SAMPLES.name => (2, None),
        f if f == RTT_SUM_SECONDS.name => (3, None),
        f if f == CONNECTIONS.name => (4, None),
        f if f == MIN_RTT_SECONDS.name => (5, None),
        f if f == LOSS_RECOVERY.name => (6, None),
        f if f == RTO_BACKOFF.name => (7, None),
        f if f == NOTSENT_BYTES.name => (8, None),
        f if f == UNACKED_BYTES.name => (9, None),
        _ => return None,
    };
    let in_histogram = (1..4).contains(&i);
    Some(Native {
        name: families[i].0,
        help: if in_histogram { rtt.1 } else { families[i].1 },
        counter: false,
        label,
        histogram: in_histogram.then_some(rtt.0),
    })
}

/// A row's fields, sorted by name: the RTT buckets cumulative, times in
/// seconds, `min_rtt_seconds` left out without a sample.
fn fields(s: &Stats) -> Vec<Field> {
    let seconds = |us: u64| us as f64 / 1e6;
    let mut f = vec![
        CONNECTIONS.gauge(s.connections),
        LOSS_RECOVERY.gauge(s.loss_recovery),
        NOTSENT_BYTES.gauge(s.notsent_bytes),
        RTO_BACKOFF.gauge(s.rto_backoff),
        RTT_SAMPLES.gauge(s.rtt_samples()),
        RTT_SUM_SECONDS.ratio(seconds(s.rtt_sum_us)),
        UNACKED_BYTES.gauge(s.unacked_bytes),
    ];
    let cumulative = s.cumulative();
    for (i, (name, _)) in RTT_BUCKETS.iter().enumerate() {
        let n = cumulative.get(i).copied().unwrap_or(s.rtt_samples());
        f.push(Field::gauge(name, n));
    }
    if let Some(m) = s.min_rtt_us {
        f.push(MIN_RTT_SECONDS.ratio(seconds(u64::from(m))));
    }
    f.sort_unstable_by_key(|f| f.name);
    f
}

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let Some(t) = g.tcp_info else {
        return;
    };
    if shape.print.port {
        for (direction, p, stats) in t.rows() {
            let own = [
                ("direction", direction.as_str().to_string()),
                ("port", p.to_string()),
            ];
            emit(&PORT, &own, &fields(stats));
        }
    }
    if shape.print.destination {
        for (addr, p, stats) in t.destination_rows() {
            let own = [("address", address_text(addr)), ("port", p.to_string())];
            emit(&DESTINATION, &own, &fields(stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PORT, RTT_BUCKETS};
    use crate::metric::{Field, Metric};
    use crate::output::Format;

    #[test]
    fn the_rtt_buckets_are_one_histogram_family_per_gather() {
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
                schema: &PORT,
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
