//! What the measurements' unit tests share: a shape printing everything,
//! a `Gathered` with known counts, records, and the rows in line protocol.

use crate::measure::listen::count::ListenCounts;
use crate::measure::netstat::count::{ByFamily, Counts};
use crate::measure::port::count::PortCounts;
use crate::measure::Gathered;
use crate::measure::{Measurements, Shape};
use crate::output::Format;
use crate::record::{Kind, ListenInfo, Record, LISTEN};
use crate::rows::Rows;

pub fn shape(by_family: bool) -> Shape {
    Shape {
        by_family,
        include_unix: false,
        print: Measurements::all(),
        syn_recv: true,
        top: 2,
    }
}

pub fn by_family() -> ByFamily {
    ByFamily {
        ipv4: Counts {
            tcp_established: 3,
            ..Default::default()
        },
        ipv6: Counts {
            tcp_listen: 1,
            udp_socket: 2,
            ..Default::default()
        },
        unix: Counts {
            udp_socket: 7,
            ..Default::default()
        },
    }
}

/// `by_family()`'s counts with these breakdowns.
pub fn gathered<'a>(
    ports: Option<&'a PortCounts>,
    listen: Option<&'a ListenCounts>,
) -> Gathered<'a> {
    let mut g = Gathered::counts(by_family(), Default::default());
    g.ports = ports;
    g.listen = listen;
    g
}

pub fn influx(rows: &Rows) -> String {
    let mut out = Vec::new();
    rows.encode(Format::Influx, &mut out);
    String::from_utf8(out).unwrap()
}

/// What `g` prints in line protocol when only `netstat` is asked for.
pub fn netstat_only(rows: &mut Rows, g: &Gathered<'_>) -> String {
    let shape = Shape {
        print: Measurements {
            netstat: true,
            ..Measurements::default()
        },
        ..shape(false)
    };
    rows.start(None);
    rows.add(&shape, &[], g);
    influx(rows)
}

pub fn record(family: u8, state: u8, local_port: u16, listen: Option<ListenInfo>) -> Record {
    let remote_port = if state == LISTEN { 0 } else { 40000 };
    Record::inet(
        Kind::Tcp,
        family,
        state,
        ([0; 16], local_port),
        ([0; 16], remote_port),
    )
    .with_listen(listen)
}

pub const ZERO: &str = "tcp_close=0i,tcp_close_wait=0i,tcp_closing=0i";
