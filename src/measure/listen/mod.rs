//! `netstat_listen`: accept queues per TCP listening address and port
//! (`--listen-queues`), tagged `address` and `port`.

pub mod count;

use super::health::count as health;
use super::netstat::family;
use super::Gathered;
use super::{Emit, Measurement, Shape};
use crate::metric::{self, Field, FieldDesc, Native, Schema};
use crate::record::address_text;
use crate::wire::AF_INET;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_listen",
    help: |field| {
        let what = metric::find(&FIELDS, field)
            .map_or_else(|| metric::unknown_help(field), |d| d.help.into());
        format!("{what}.")
    },
    native: |field| metric::find(&FIELDS, field).and_then(|d| d.native),
    native_only: false,
};

const BACKLOG: FieldDesc = FieldDesc {
    name: "backlog",
    help: "Accept queue limit of the listening sockets on this address and port (summed over SO_REUSEPORT sockets)",
    native: Some(Native::gauge(
        "netstat_listen_queue_limit_connections",
        "The accept queue limit (backlog) of the listening sockets on this address and port, summed over SO_REUSEPORT sockets.",
    )),
};

const DROPS: FieldDesc = FieldDesc {
    name: "drops",
    help: "Connections the listening sockets dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others)",
    native: Some(Native {
        name: "netstat_listen_drops_total",
        help: "Connections the listening sockets on this address and port dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others).",
        counter: true,
        label: None,
        histogram: None,
    }),
};

const QUEUE: FieldDesc = FieldDesc {
    name: "queue",
    help: "Connections waiting in the accept queue of the listening sockets on this address and port",
    native: Some(Native::gauge(
        "netstat_listen_queue_connections",
        "Connections waiting in the accept queue of the listening sockets on this address and port.",
    )),
};

const SOCKETS: FieldDesc = FieldDesc {
    name: "sockets",
    help: "Listening sockets bound to this address and port",
    native: Some(Native::gauge(
        "netstat_listen_sockets",
        "Listening TCP sockets bound to this address and port.",
    )),
};

const SYN_RECV: FieldDesc = FieldDesc {
    name: "syn_recv",
    help: "Handshakes in progress that the kernel routes to the listening sockets on this address and port",
    native: Some(Native::gauge(
        "netstat_listen_handshakes",
        "Handshakes in progress that the kernel routes to the listening sockets on this address and port.",
    )),
};

/// `--health`'s field on listeners.
const SYNACK_RETRYING: FieldDesc = FieldDesc {
    name: health::SYNACK_RETRYING,
    help: "TCP handshakes whose SYN-ACK was sent again, unanswered (SYN_RECV, 1 retransmission or more)",
    native: Some(Native::gauge(
        "netstat_listen_synack_retrying_handshakes",
        "Handshakes routed to the listening sockets on this address and port whose SYN-ACK was sent again, unanswered.",
    )),
};

/// Every field, sorted by name.
const FIELDS: [FieldDesc; 6] = [BACKLOG, DROPS, QUEUE, SOCKETS, SYN_RECV, SYNACK_RETRYING];

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let (true, Some(listeners)) = (shape.print.listen, g.listen) else {
        return;
    };
    for l in listeners.rows() {
        let mut own = vec![
            ("address", address_text(l.family, &l.addr)),
            ("port", l.port.to_string()),
        ];
        if shape.by_family {
            own.push(family(if l.family == AF_INET { "ipv4" } else { "ipv6" }));
        }
        // Sorted by name; what the source does not know is left out.
        let mut f: Vec<Field> = Vec::with_capacity(FIELDS.len());
        f.extend(l.backlog.map(|b| BACKLOG.gauge(b)));
        f.extend(l.drops.map(|d| DROPS.counter(d)));
        f.push(QUEUE.gauge(l.queue));
        f.push(SOCKETS.gauge(l.sockets));
        if shape.syn_recv {
            f.push(SYN_RECV.gauge(l.syn_recv));
            if g.health.is_some() {
                f.push(SYNACK_RETRYING.gauge(l.synack_retrying));
            }
        }
        emit(&SCHEMA, &own, &f);
    }
}
