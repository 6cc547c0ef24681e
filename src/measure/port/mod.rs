//! `netstat_port`: the 13 fields per chosen local and remote port
//! (`--local-port`, `--remote-port`, `--listening-ports`), tagged
//! `direction` and `port`; and `netstat_port_tcp`, the bytes queued per
//! port, native Prometheus names only.

pub mod count;

use super::health::{self, families};
use super::netstat::{self, family, field_help, queue_fields, state_native, QUEUE_FIELDS};
use super::{Emit, Measurement, Shape};
use crate::measure::health::count::Signals;
use crate::measure::netstat::count::Counts;
use crate::measure::Gathered;
use crate::metric::{self, Native, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA, &QUEUED],
    rows,
    only: Some("port"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_port",
    help: |field| {
        format!(
            "{}, by port (label direction: the local or the remote port).",
            field_help(field)
        )
    },
    native: |field| {
        let of = families!(
            "netstat_port",
            "by port (label direction: the local or the remote port)"
        );
        health::native(field, of).or_else(|| {
            state_native(
                field,
                "netstat_port_tcp_connections",
                "TCP sockets by port and state (label direction: the local or the remote port).",
                Native::gauge(
                    "netstat_port_udp_sockets",
                    "UDP sockets by port (label direction: the local or the remote port).",
                ),
            )
        })
    },
    native_only: false,
};

/// The bytes queued per port (listeners left out).
pub static QUEUED: Schema = Schema {
    name: "netstat_port_tcp",
    help: |field| format!("{}.", metric::unknown_help(field)),
    native: |field| {
        let [receive, send] = &QUEUE_FIELDS;
        if field == receive.name {
            Some(Native::gauge(
                "netstat_port_tcp_receive_queue_bytes",
                "Bytes received on TCP sockets (listeners left out) and not yet read by the application, by port.",
            ))
        } else if field == send.name {
            Some(Native::gauge(
                "netstat_port_tcp_send_queue_bytes",
                "Bytes sent on TCP sockets (listeners left out) and not yet acknowledged by the peer, by port.",
            ))
        } else {
            None
        }
    },
    native_only: true,
};

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let (true, Some(ports)) = (shape.print.port, g.ports) else {
        return;
    };
    let fields = |c: &Counts, s: &Signals| {
        health::with_fields(netstat::fields(c).to_vec(), g.health.map(|_| s))
    };
    for (direction, p, counts, bytes, signals) in ports.rows() {
        let direction = ("direction", direction.as_str().to_string());
        let p = ("port", p.to_string());
        if shape.by_family {
            for (i, name) in ["ipv4", "ipv6"].into_iter().enumerate() {
                let own = [direction.clone(), family(name), p.clone()];
                emit(&SCHEMA, &own, &fields(&counts[i], &signals[i]));
                emit(&QUEUED, &own, &queue_fields(&bytes[i]));
            }
        } else {
            let mut total = counts[0];
            total.add(&counts[1]);
            let mut b = bytes[0];
            b.add(&bytes[1]);
            let mut s = signals[0];
            s.add(&signals[1]);
            let own = [direction, p];
            emit(&SCHEMA, &own, &fields(&total, &s));
            emit(&QUEUED, &own, &queue_fields(&b));
        }
    }
}
