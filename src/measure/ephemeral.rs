//! `netstat_ephemeral`: the ephemeral ports of each namespace
//! (`--ephemeral-ports`), one row per namespace.

use super::{Emit, Flag, Measurement, Plug, Shape};
use crate::measure::destination::count::utilization;
use crate::measure::Gathered;
use crate::metric::{self, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("ephemeral"),
    plug: Some(Plug {
        flag: Flag {
            long: "ephemeral-ports",
            help: concat!(
                "Also print measurement netstat_ephemeral: one metric per namespace ",
                "with range_size (the ports of net.ipv4.ip_local_port_range minus ",
                "ip_local_reserved_ports, read inside the namespace), ports_used ",
                "(of those, held by a TCP socket), max_per_destination (the most ",
                "outbound TCP sockets from one local address to one remote address and ",
                "port), destinations (distinct remote addresses and ports of outbound ",
                "TCP sockets) and utilization (max_per_destination / range_size, a ",
                "float: alert when it nears 1). Example: --ephemeral-ports"
            ),
        },
        // Its rows read `destination`'s aggregation, made when either
        // is printed.
        aggregation: None,
    }),
};

pub static SCHEMA: Schema = metric::table_schema!("netstat_ephemeral", FIELDS);

metric::fields! {
    /// Every field, sorted by name.
    FIELDS;
    DESTINATIONS = "destinations",
        "Distinct remote addresses and ports of outbound TCP sockets",
        gauge "netstat_ephemeral_destinations";
    MAX_PER_DESTINATION = "max_per_destination",
        "The most outbound TCP sockets from one local address to one remote address and port, whose ceiling is range_size",
        gauge "netstat_ephemeral_destination_max_connections",
        "The most outbound TCP sockets from one local address to one remote address and port; its ceiling is netstat_ephemeral_range_ports.";
    PORTS_USED = "ports_used",
        "Ports of the ephemeral range held by a TCP socket (any state, listeners and TIME_WAIT included)",
        gauge "netstat_ephemeral_used_ports";
    RANGE_SIZE = "range_size",
        "Ports connect() may pick from: net.ipv4.ip_local_port_range minus ip_local_reserved_ports",
        gauge "netstat_ephemeral_range_ports",
        "Ports connect() may pick from: net.ipv4.ip_local_port_range minus ip_local_reserved_ports, in this namespace.";
    /// `max_per_destination / range_size`; `netstat_destination` has it too.
    pub UTILIZATION = "utilization",
        "The most outbound TCP sockets from one local address to one remote address and port, over range_size: at 1 connect() fails with EADDRNOTAVAIL",
        gauge "netstat_ephemeral_utilization_ratio",
        "netstat_ephemeral_destination_max_connections over netstat_ephemeral_range_ports: at 1 connect() to that destination fails with EADDRNOTAVAIL.";
}

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let (true, Some(o)) = (shape.print.prints(&MEASUREMENT), g.outbound) else {
        return;
    };
    let e = o.summary();
    let f = [
        DESTINATIONS.gauge(e.destinations),
        MAX_PER_DESTINATION.gauge(e.max_per_destination),
        PORTS_USED.gauge(e.ports_used),
        RANGE_SIZE.gauge(e.range_size),
        UTILIZATION.ratio(utilization(e.max_per_destination, e.range_size)),
    ];
    emit(&SCHEMA, &[], &f);
}
