//! `netstat_health` (`--health`): the sockets failing now and the UDP
//! drops of each namespace, one row per namespace; and the same fields on
//! the rows that break sockets down (`netstat_port`,
//! `netstat_destination`, `netstat_cgroup`; `synack_retrying` on
//! `netstat_listen`), whose schemas take their HELP and native families
//! from here. The aggregation is `measure::health::count`.

pub mod count;

use super::{Emit, Measurement, Shape};
use crate::measure::health::count::{Signals, UDP_DROPS, UDP_RECEIVE_QUEUE};
use crate::measure::Gathered;
use crate::metric::{Field, Native, Schema, Value};

/// The three native families of the fields on one kind of row (failing
/// TCP sockets, UDP drops, UDP receive queues): names under `prefix`, HELP
/// ending with `of`.
macro_rules! families {
    ($prefix:literal, $of:literal) => {
        [
            (
                concat!($prefix, "_tcp_failing_connections"),
                concat!("TCP sockets failing now, by how (label failure: syn_retrying, retransmitting, zero_window, keepalive_probing, synack_retrying), ", $of, "."),
            ),
            (
                concat!($prefix, "_udp_socket_drops_total"),
                concat!("Datagrams the UDP sockets dropped since each was created (a socket closed takes its count with it, which rate() reads as a reset), ", $of, "."),
            ),
            (
                concat!($prefix, "_udp_receive_queue_bytes"),
                concat!("Bytes of receive buffer held by datagrams waiting in UDP sockets, ", $of, "."),
            ),
        ]
    };
}
pub(crate) use families;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("health"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_health",
    help: |field| {
        let what = help(field).map_or_else(|| crate::metric::unknown_help(field), String::from);
        format!("{what}, in this network namespace, now.")
    },
    native: |field| native(field, families!("netstat", "in this network namespace")),
    native_only: false,
};

/// What each field counts, in the order of [`Signals::fields`].
const HELP: [&str; 7] = [
    "TCP connections whose keepalive probes go unanswered (1 or more)",
    "TCP connections resending unacknowledged data or FIN (retransmit timer, 1 retransmission or more)",
    "TCP connects whose SYN was sent again, unanswered (SYN_SENT, retransmit timer, 1 retransmission or more)",
    "TCP handshakes whose SYN-ACK was sent again, unanswered (SYN_RECV, 1 retransmission or more)",
    "Datagrams the UDP sockets dropped since each was created (receive buffer full, among others; a socket closed takes its count with it)",
    "Bytes of receive buffer held by datagrams waiting in UDP sockets",
    "TCP connections probing a peer that advertises a zero receive window (zero-window probe timer)",
];

/// What one of the seven fields counts, in a sentence ending before the
/// full stop; `None` for another field.
pub fn help(field: &str) -> Option<&'static str> {
    Signals::default()
        .fields()
        .iter()
        .position(|f| f.0 == field)
        .map(|i| HELP[i])
}

/// The native family of one of the seven fields among `families` (see
/// `families!`): the failing sockets as one family with the way they
/// fail as label `failure`, the UDP drops and receive queues as families
/// of their own; `None` for another field.
pub fn native(field: &'static str, families: [(&'static str, &'static str); 3]) -> Option<Native> {
    help(field)?;
    let (i, label) = match field {
        UDP_DROPS => (1, None),
        UDP_RECEIVE_QUEUE => (2, None),
        f => (0, Some(("failure", f))),
    };
    Some(Native {
        name: families[i].0,
        help: families[i].1,
        counter: i == 1,
        label,
        histogram: None,
    })
}

/// `fields` with the seven fields of the same sockets when `--health` asks
/// (`Some`), sorted by name.
pub fn with_fields(mut fields: Vec<Field>, health: Option<&Signals>) -> Vec<Field> {
    if let Some(h) = health {
        fields.extend(h.fields().map(|(name, value, counter)| Field {
            name,
            value: Value::Int(value),
            counter,
        }));
        fields.sort_unstable_by_key(|f| f.name);
    }
    fields
}

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    if let (true, Some(h)) = (shape.print.health, g.health) {
        emit(&SCHEMA, &[], &with_fields(Vec::new(), Some(h)));
    }
}

#[cfg(test)]
mod tests {
    use crate::measure::port::count::{PortConfig, PortCounts};
    use crate::measure::testing::*;
    use crate::rows::Rows;
    use crate::wire::AF_INET;

    #[test]
    fn health_fields_join_the_rows_sorted_and_netstat_health_follows() {
        use crate::measure::health::count::{failure, Signals};
        use crate::record::HealthInfo;
        let config = PortConfig {
            remote: vec![5432],
            ..PortConfig::default()
        };
        let mut ports = PortCounts::new(&config);
        let mut totals = Signals::default();
        let mut syn = record(AF_INET, 2, 40000, None);
        syn.remote_port = 5432;
        syn.health = HealthInfo {
            timer: 1,
            retrans: 2,
            drops: 0,
        };
        ports.add(&syn);
        ports.add_health(&syn, failure(&syn));
        totals.add_record(&syn, failure(&syn));
        let mut g = gathered(Some(&ports), None);
        g.health = Some(&totals);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[], &g);
        let text = influx(&rows);
        let port = text
            .lines()
            .find(|l| l.starts_with("netstat_port,"))
            .unwrap();
        let names: Vec<&str> = port
            .split(' ')
            .nth(1)
            .unwrap()
            .split(',')
            .map(|f| f.split('=').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "{port}");
        assert!(
            port.contains(",syn_retrying=1i,") && names.len() == 20,
            "{port}"
        );
        assert_eq!(
            text.lines().last().unwrap(),
            "netstat_health keepalive_probing=0i,retransmitting=0i,syn_retrying=1i,synack_retrying=0i,udp_drops=0i,udp_receive_queue=0i,zero_window=0i"
        );
        assert!(
            text.lines().next().unwrap().split(',').count() == 13,
            "netstat keeps its 13 fields"
        );
        // Without --health: neither.
        rows.start(None);
        rows.add(&shape(false), &[], &gathered(Some(&ports), None));
        assert!(!influx(&rows).contains("retrying"));
    }
}
