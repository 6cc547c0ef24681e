//! `netstat_destination`: outbound sockets per destination
//! (`--destinations N`): the N busiest remote addresses and ports, tagged
//! `address` and `port`, with the 13 fields and `utilization`; then one
//! row `address=other,port=other` for the rest.

pub mod count;

use super::ephemeral::UTILIZATION;
use super::health::{self, families};
use super::netstat::{self, field_help, state_native};
use super::{Emit, Measurement, Shape};
use crate::measure::netstat::count::Tally;
use crate::measure::Gathered;
use crate::metric::{Field, Native, Schema};
use count::utilization;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("destination"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_destination",
    help: |field| {
        if field == UTILIZATION.name {
            format!("{}, by destination.", UTILIZATION.help)
        } else {
            format!(
                "{}, outbound to this destination (address and port; other: the rest).",
                field_help(field)
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
        let of = families!(
            "netstat_destination",
            "outbound to this destination (address and port; other: the rest)"
        );
        health::native(field, of).or_else(|| {
            state_native(
                field,
                "netstat_destination_tcp_connections",
                "Outbound TCP sockets to this destination (address and port; other: the rest) by state.",
                Native::gauge(
                    "netstat_destination_udp_sockets",
                    "Connected UDP sockets to this destination (address and port; other: the rest).",
                ),
            )
        })
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
        health::with_fields(f, g.health.map(|_| &sockets.health))
    };
    let (top, rest) = o.top(shape.top);
    for d in top {
        let own = [
            ("address", count::address_text(&d.addr)),
            ("port", d.port.to_string()),
        ];
        emit(&SCHEMA, &own, &fields(&d.sockets, d.max_per_local));
    }
    if let Some((sockets, max)) = rest {
        let own = [("address", "other".into()), ("port", "other".into())];
        emit(&SCHEMA, &own, &fields(&sockets, max));
    }
}

#[cfg(test)]
mod tests {
    use crate::measure::testing::*;
    use crate::output::Format;
    use crate::record::Kind;
    use crate::rows::Rows;
    use crate::wire::AF_INET;

    #[test]
    fn ephemeral_and_destination_rows_with_a_float_field() {
        use crate::measure::destination::count::Outbound;
        let mut o = Outbound::default();
        o.range.parse(b"40000 40003", b"").unwrap();
        o.reset(Kind::Tcp);
        let sock = |remote: [u8; 4], port: u16, local_port: u16| {
            let mut r = record(AF_INET, 1, local_port, None);
            r.remote_addr[..4].copy_from_slice(&remote);
            r.remote_port = port;
            r
        };
        o.add(&sock([10, 0, 0, 1], 80, 40000));
        o.add(&sock([10, 0, 0, 1], 80, 40001));
        o.add(&sock([10, 0, 0, 2], 80, 40000));
        o.add(&sock([10, 0, 0, 3], 443, 40002));
        o.finish();
        let mut g = gathered(None, None);
        g.outbound = Some(&o);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[("netns", "a")], &g);
        let out = influx(&rows);
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            lines[0],
            "netstat_ephemeral,netns=a destinations=3i,max_per_destination=2i,ports_used=3i,range_size=4i,utilization=0.5"
        );
        let head = |l: &str| l.split(' ').next().unwrap().to_string();
        assert_eq!(
            lines[1..].iter().map(|l| head(l)).collect::<Vec<_>>(),
            [
                "netstat_destination,address=10.0.0.1,netns=a,port=80",
                "netstat_destination,address=10.0.0.2,netns=a,port=80",
                "netstat_destination,address=other,netns=a,port=other",
            ]
        );
        assert!(
            lines[1].contains(",tcp_established=2i,")
                && lines[1].ends_with(",udp_socket=0i,utilization=0.5")
        );
        assert!(lines[3].ends_with(",utilization=0.25"), "{out}");
        let mut json = Vec::new();
        rows.encode(Format::Json, &mut json);
        let json = String::from_utf8(json).unwrap();
        assert!(
            json.contains("\"range_size\":4,\"utilization\":0.5},\"name\":\"netstat_ephemeral\""),
            "{json}"
        );
        // Not printed unless asked for.
        assert_eq!(netstat_only(&mut rows, &g).lines().count(), 1);
    }
}
