//! `netstat_cgroup`: the 13 fields per cgroup v2 (`--by-cgroup`), tagged
//! `cgroup` (and `container_id`, `pod_uid` where the runtime's path names
//! them); sockets without a cgroup in `cgroup=unattributed`.

pub mod count;

use super::health::{self, families};
use super::netstat::{self, field_help, state_native};
use super::{Emit, Measurement, Shape};
use crate::measure::netstat::count::Tally;
use crate::measure::Gathered;
use crate::metric::{Native, Schema};
use crate::netns::names;

pub static MEASUREMENT: Measurement = Measurement {
    schemas: &[&SCHEMA],
    rows,
    only: Some("cgroup"),
    plug: None,
};

pub static SCHEMA: Schema = Schema {
    name: "netstat_cgroup",
    help: |field| {
        format!(
            "{}, by cgroup (label cgroup: its path; unattributed: sockets without one).",
            field_help(field)
        )
    },
    native: |field| {
        let of = families!(
            "netstat_cgroup",
            "by cgroup (label cgroup: its path; unattributed: handshakes and sockets read from /proc)"
        );
        health::native(field, of).or_else(|| {
            state_native(
                field,
                "netstat_cgroup_tcp_connections",
                "TCP sockets by cgroup and state (label cgroup: its path; unattributed: TIME_WAIT, handshakes and sockets read from /proc).",
                Native::gauge(
                    "netstat_cgroup_udp_sockets",
                    "UDP sockets by cgroup (label cgroup: its path; unattributed: sockets without one).",
                ),
            )
        })
    },
    native_only: false,
};

fn rows(shape: &Shape, g: &Gathered<'_>, emit: &mut Emit<'_>) {
    let (true, Some(c)) = (shape.print.cgroup, g.cgroups) else {
        return;
    };
    let fields = |t: &Tally| {
        health::with_fields(
            netstat::fields(&t.counts()).to_vec(),
            g.health.map(|_| &t.health),
        )
    };
    // Ids without a path are one row, so no two rows share tags.
    let mut unresolved = Tally::default();
    for cg in c.cgroups() {
        let Some(path) = &cg.path else {
            unresolved.add(&cg.sockets);
            continue;
        };
        let (container, pod) = names::parse_path(path.as_bytes());
        let mut own = vec![("cgroup", path.clone())];
        own.extend(container.map(|v| ("container_id", v)));
        own.extend(pod.map(|v| ("pod_uid", v)));
        emit(&SCHEMA, &own, &fields(&cg.sockets));
    }
    for (name, t) in [
        ("unresolved", &unresolved),
        ("other", &c.other),
        ("unattributed", &c.unattributed),
    ] {
        if t.total() > 0 || name == "unattributed" {
            let own = [("cgroup", name.to_string())];
            emit(&SCHEMA, &own, &fields(t));
        }
    }
}
