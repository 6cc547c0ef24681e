//! `netstat_counters`: the SNMP MIB counters of each namespace
//! (`--counters`), one row per namespace, left out when none was selected
//! or found. The counters' names, HELP and native families come from
//! [`crate::counters`], which reads them.

use super::{Emit, Measurement, Shape};
use crate::counters;
use crate::measure::Gathered;
use crate::metric::{Field, Native, Schema};

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("counters"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_counters",
    help: counters::help,
    native: |field| {
        counters::native(field).map(|(name, help, family)| Native {
            name,
            help,
            counter: true,
            label: family.map(|f| ("family", f)),
            histogram: None,
        })
    },
    native_only: false,
};

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let Some(c) = g
        .counters
        .filter(|c| shape.print.counters && !c.values().is_empty())
    else {
        return;
    };
    let fields: Vec<Field> = c
        .values()
        .iter()
        .map(|&(name, value)| Field::counter(name, value))
        .collect();
    emit(&SCHEMA, &[], &fields);
}

#[cfg(test)]
mod tests {
    use crate::measure::testing::*;
    use crate::output::Format;
    use crate::rows::Rows;

    #[test]
    fn counters_rows_per_namespace_in_every_format() {
        use crate::counters::{Counters, Selection};
        let all = Selection::parse("all").unwrap();
        let snmp = "Tcp: MaxConn ActiveOpens AttemptFails\nTcp: -1 5 3\nUdp: NoPorts\nUdp: 2\n";
        let c = Counters::parsed(&all, snmp);
        let mut g = gathered(None, None);
        g.counters = Some(&c);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(true), &[("netns", "a")], &g);
        rows.add(&shape(true), &[("netns", "b")], &g);
        let out = influx(&rows);
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("netstat_counters"))
            .collect();
        assert_eq!(
            lines,
            [
                "netstat_counters,netns=a TcpActiveOpens=5i,TcpAttemptFails=3i,UdpNoPorts=2i",
                "netstat_counters,netns=b TcpActiveOpens=5i,TcpAttemptFails=3i,UdpNoPorts=2i",
            ]
        );
        let prometheus = |format| {
            let mut out = Vec::new();
            rows.encode(format, &mut out);
            String::from_utf8(out).unwrap()
        };
        let text = prometheus(Format::Prometheus);
        assert!(text.contains("# HELP netstat_counters_TcpAttemptFails_total Failed TCP connection attempts: SYN_SENT or SYN_RECV to CLOSED (refused, reset or timed out), or SYN_RECV back to LISTEN, in this network namespace (nstat's TcpAttemptFails).\n# TYPE netstat_counters_TcpAttemptFails_total counter\nnetstat_counters_TcpAttemptFails_total{netns=\"a\"} 3\nnetstat_counters_TcpAttemptFails_total{netns=\"b\"} 3\n"), "{text}");
        assert!(text.contains("# HELP netstat_counters_UdpNoPorts_total UDP datagrams received for a port without a socket, IPv4, in this"), "{text}");
        let text = prometheus(Format::PrometheusNative);
        assert!(text.contains("# TYPE netstat_tcp_attempt_fails_total counter\nnetstat_tcp_attempt_fails_total{netns=\"a\"} 3\n"), "{text}");
        assert!(
            text.contains("\nnetstat_udp_no_port_datagrams_total{family=\"ipv4\",netns=\"b\"} 2\n"),
            "{text}"
        );
        // Not printed unless asked for; no row without a counter.
        assert!(!netstat_only(&mut rows, &g).contains("netstat_counters"));
        let empty = Counters::parsed(&Selection::parse("Nothing*").unwrap(), snmp);
        g.counters = Some(&empty);
        rows.start(None);
        rows.add(&shape(false), &[], &g);
        assert!(!influx(&rows).contains("netstat_counters"));
    }
}
