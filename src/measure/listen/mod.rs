//! `netstat_listen`: accept queues per TCP listening address and port
//! (`--listen-queues`), tagged `address` and `port`.

pub mod count;

use super::health::count as health;
use super::netstat::family;
use super::Gathered;
use super::{Emit, Measurement, Shape};
use crate::metric::{self, Field, Schema};
use crate::record::address_text;
use crate::wire::AF_INET;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("listen"),
    plug: None,
};

pub static SCHEMA: Schema = metric::table_schema!("netstat_listen", FIELDS);

metric::fields! {
    /// Every field, sorted by name.
    FIELDS;
    BACKLOG = "backlog",
        "Accept queue limit of the listening sockets on this address and port (summed over SO_REUSEPORT sockets)",
        gauge "netstat_listen_queue_limit_connections",
        "The accept queue limit (backlog) of the listening sockets on this address and port, summed over SO_REUSEPORT sockets.";
    DROPS = "drops",
        "Connections the listening sockets dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others)",
        counter "netstat_listen_drops_total",
        "Connections the listening sockets on this address and port dropped since they were created (SYNs and handshakes refused when the accept queue was full, among others).";
    QUEUE = "queue",
        "Connections waiting in the accept queue of the listening sockets on this address and port",
        gauge "netstat_listen_queue_connections";
    SOCKETS = "sockets",
        "Listening sockets bound to this address and port",
        gauge "netstat_listen_sockets",
        "Listening TCP sockets bound to this address and port.";
    SYN_RECV = "syn_recv",
        "Handshakes in progress that the kernel routes to the listening sockets on this address and port",
        gauge "netstat_listen_handshakes";
    /// `--health`'s field on listeners.
    SYNACK_RETRYING = health::SYNACK_RETRYING,
        "TCP handshakes whose SYN-ACK was sent again, unanswered (SYN_RECV, 1 retransmission or more)",
        gauge "netstat_listen_synack_retrying_handshakes",
        "Handshakes routed to the listening sockets on this address and port whose SYN-ACK was sent again, unanswered.";
}

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
