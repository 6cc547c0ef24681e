//! `netstat_destination`: outbound sockets per destination
//! (`--destinations N`): the N busiest remote addresses and ports, tagged
//! `address` and `port`, with the 13 fields and `utilization`; then one
//! row `address=other,port=other` for the rest.

use super::ephemeral::UTILIZATION;
use super::netstat::{self, state_help, state_native};
use super::{Emit, Measurement, Shape};
use crate::aggregate::destinations::{self, utilization};
use crate::aggregate::states::Tally;
use crate::aggregate::Gathered;
use crate::metric::{Field, Native, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_destination",
    help: |field| {
        if field == UTILIZATION.name {
            format!("{}, by destination.", UTILIZATION.help)
        } else {
            format!(
                "{}, outbound to this destination (address and port; other: the rest).",
                state_help(field)
            )
        }
    },
    native: |field| {
        if field == UTILIZATION.name {
            return Some(Native::gauge(
                "netstat_destination_utilization_ratio",
                "The most outbound TCP sockets from one local address to this destination, over the ephemeral ports connect() may pick from: at 1 connect() fails with EADDRNOTAVAIL.",
            ));
        }
        state_native(
            field,
            "netstat_destination_tcp_connections",
            "Outbound TCP sockets to this destination (address and port; other: the rest) by state.",
            Native::gauge(
                "netstat_destination_udp_sockets",
                "Connected UDP sockets to this destination (address and port; other: the rest).",
            ),
        )
    },
    native_only: false,
};

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let (true, Some(o)) = (shape.print.destination, g.outbound) else {
        return;
    };
    let range_size = o.summary().range_size;
    let fields = |sockets: &Tally, max: u64| {
        let mut f: Vec<Field> = netstat::fields(&sockets.counts()).to_vec();
        f.push(UTILIZATION.ratio(utilization(max, range_size)));
        f
    };
    let (top, rest) = o.top(shape.top);
    for d in top {
        let own = [
            ("address", destinations::address_text(&d.addr)),
            ("port", d.port.to_string()),
        ];
        emit(&SCHEMA, &own, &fields(&d.sockets, d.max_per_local));
    }
    if let Some((sockets, max)) = rest {
        let own = [("address", "other".into()), ("port", "other".into())];
        emit(&SCHEMA, &own, &fields(&sockets, max));
    }
}
