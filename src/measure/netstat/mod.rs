//! `netstat`: the built-in plugin's 13 fields, in total or per address
//! family (`--by-family`, with a `family=unix` row under `--include-unix`);
//! and `netstat_tcp`, the bytes queued on TCP sockets, printed with native
//! Prometheus names only (`netstat_tcp_receive_queue_bytes`,
//! `netstat_tcp_send_queue_bytes`), so the other outputs stay exactly
//! Telegraf's.
//!
//! The 13 fields' HELP and their native families (TCP fields as one family
//! with a `state` label, `udp_socket` apart, `tcp_none` left out) are here
//! too: `netstat_port`, `netstat_destination` and `netstat_cgroup` print
//! the same fields.

pub mod count;

use super::{Emit, Measurement, Shape};
use crate::measure::netstat::count::{Counts, Queued, TCP_NONE, UDP_SOCKET};
use crate::measure::Gathered;
use crate::metric::{self, Field, FieldDesc, Native, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA, &QUEUED],
    rows,
    only: Some("netstat"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat",
    help: |field| {
        format!(
            "{}, as counted by Telegraf's inputs.netstat.",
            state_help(field)
        )
    },
    native: |field| {
        state_native(
            field,
            "netstat_tcp_connections",
            "TCP sockets by state (state as node_exporter's tcpstat spells it; syn_recv includes request sockets).",
            Native::gauge("netstat_udp_sockets", "UDP sockets."),
        )
    },
    native_only: false,
};

/// The bytes queued on TCP sockets (listeners left out).
pub static QUEUED: Schema = Schema {
    name: "netstat_tcp",
    help: |field| format!("{}.", metric::unknown_help(field)),
    native: |field| metric::find(&QUEUE_FIELDS, field).and_then(|d| d.native),
    native_only: true,
};

/// The queued bytes' fields.
pub const QUEUE_FIELDS: [FieldDesc; 2] = [
    FieldDesc {
        name: "receive_queue_bytes",
        help: "Bytes received and not yet read by the application",
        native: Some(Native::gauge(
            "netstat_tcp_receive_queue_bytes",
            "Bytes received on TCP sockets (listeners left out) and not yet read by the application.",
        )),
    },
    FieldDesc {
        name: "send_queue_bytes",
        help: "Bytes sent and not yet acknowledged by the peer",
        native: Some(Native::gauge(
            "netstat_tcp_send_queue_bytes",
            "Bytes sent on TCP sockets (listeners left out) and not yet acknowledged by the peer.",
        )),
    },
];

/// What each of the 13 fields counts, in the order of [`Counts::fields`].
const STATE_HELP: [&str; 13] = [
    "TCP sockets in state CLOSE",
    "TCP sockets in state CLOSE_WAIT",
    "TCP sockets in state CLOSING",
    "TCP sockets in state ESTABLISHED",
    "TCP sockets in state FIN_WAIT1",
    "TCP sockets in state FIN_WAIT2",
    "TCP sockets in state LAST_ACK",
    "TCP listening sockets",
    "TCP sockets in no known state (inputs.netstat's NONE field, kept for its 13 fields)",
    "TCP handshakes in progress (SYN_RECV, request sockets included)",
    "TCP sockets in state SYN_SENT (connecting)",
    "TCP sockets in state TIME_WAIT",
    "UDP sockets",
];

/// What one of the 13 fields counts, in a sentence ending before the full
/// stop.
pub fn state_help(field: &str) -> String {
    Counts::default()
        .fields()
        .iter()
        .position(|f| f.0 == field)
        .map_or_else(|| metric::unknown_help(field), |i| STATE_HELP[i].into())
}

/// What a field of a row of sockets counts: one of the 13, or one of
/// `--health`'s (on `netstat_port`, `netstat_destination`,
/// `netstat_cgroup`), in a sentence ending before the full stop.
pub fn field_help(field: &str) -> String {
    super::health::help(field).map_or_else(|| state_help(field), String::from)
}

/// The native family of one of the 13 fields: a TCP field in the family
/// `tcp` (HELP `help`) with its state as label `state`, `udp_socket` in
/// `udp`, `tcp_none` (inputs.netstat's artefact with no kernel state) in
/// none.
pub fn state_native(
    field: &'static str,
    tcp: &'static str,
    help: &'static str,
    udp: Native,
) -> Option<Native> {
    if field == UDP_SOCKET {
        return Some(udp);
    }
    let state = field.strip_prefix("tcp_").filter(|_| field != TCP_NONE)?;
    Some(Native {
        name: tcp,
        help,
        counter: false,
        label: Some(("state", state)),
        histogram: None,
    })
}

/// The 13 fields, sorted by name, all gauges.
pub fn fields(c: &Counts) -> [Field; 13] {
    c.fields().map(|(name, value)| Field::gauge(name, value))
}

/// The queued bytes' two fields.
pub fn queue_fields(q: &Queued) -> [Field; 2] {
    let [receive, send] = &QUEUE_FIELDS;
    [receive.gauge(q.receive), send.gauge(q.send)]
}

/// The `family` tag of a row per address family.
pub fn family(name: &str) -> (&'static str, String) {
    ("family", name.to_string())
}

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    if !shape.print.netstat {
        return;
    }
    let c = &g.by_family;
    if shape.by_family {
        emit(&SCHEMA, &[family("ipv4")], &fields(&c.ipv4));
        emit(&SCHEMA, &[family("ipv6")], &fields(&c.ipv6));
        if shape.include_unix {
            emit(&SCHEMA, &[family("unix")], &fields(&c.unix));
        }
        emit(&QUEUED, &[family("ipv4")], &queue_fields(&g.queued[0]));
        emit(&QUEUED, &[family("ipv6")], &queue_fields(&g.queued[1]));
    } else {
        emit(&SCHEMA, &[], &fields(&c.total()));
        let mut total = g.queued[0];
        total.add(&g.queued[1]);
        emit(&QUEUED, &[], &queue_fields(&total));
    }
}

#[cfg(test)]
mod tests {
    use crate::measure::testing::*;
    use crate::measure::Shape;
    use crate::rows::Rows;

    #[test]
    fn netstat_rows_total_or_per_family_with_the_namespace_s_tags() {
        let g = gathered(None, None);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[], &g);
        let out = influx(&rows);
        assert!(out.starts_with(&format!("netstat {ZERO},")), "{out}");
        assert!(
            out.contains(",tcp_established=3i,") && out.contains(",udp_socket=9i\n"),
            "{out}"
        );

        // Per family; the namespace's tags merged in key order.
        let tags = [("netns", "blue"), ("container_id", "abc")];
        rows.start(None);
        rows.add(&shape(true), &tags, &g);
        let out = influx(&rows);
        let lines: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
        // Without --include-unix there is no unix row.
        assert_eq!(
            lines,
            [
                "netstat,container_id=abc,family=ipv4,netns=blue",
                "netstat,container_id=abc,family=ipv6,netns=blue"
            ]
        );
        let unix = Shape {
            include_unix: true,
            ..shape(true)
        };
        rows.start(None);
        rows.add(&unix, &[], &g);
        assert!(influx(&rows).contains("netstat,family=unix "));
    }
}
