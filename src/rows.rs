//! Rows: one gather's results as the metrics every format prints
//! (measurement, sorted tags, sorted fields). Pure: the gather loop hands
//! each namespace's [`Gathered`] here as it is counted, and an encoder from
//! [`crate::output`] prints the rows; no I/O and no kernel access here.
//!
//! Order, which the Prometheus format needs (one metric family together):
//! every `netstat` row, then every `netstat_port` row, then every
//! `netstat_listen` row, then `netstat_ephemeral`, `netstat_destination`
//! `netstat_cgroup`, `netstat_counters` and `netstat_health`; within each, namespaces in the
//! order they were counted.
//!
//! A new measurement plugs in as one more section: its aggregation's
//! result in [`Gathered`], its rows in [`Rows::add`].

use std::time::{Duration, SystemTime};

use crate::aggregate::destinations::{self, utilization};
use crate::aggregate::health::Signals;
use crate::aggregate::listen::address_text;
use crate::aggregate::states::Tally;
use crate::aggregate::states::{Counts, Queued};
use crate::aggregate::tcpinfo::Stats;
use crate::aggregate::Gathered;
use crate::netns::names;
use crate::output::DESTINATION_TCP_INFO_MEASUREMENT;
use crate::output::{
    Field, Format, Health, Metric, Value, CGROUP_MEASUREMENT, COUNTERS_MEASUREMENT,
    DESTINATION_MEASUREMENT, EPHEMERAL_MEASUREMENT, HEALTH_MEASUREMENT, LISTEN_MEASUREMENT,
    MEASUREMENT, PORT_MEASUREMENT, PORT_QUEUE_MEASUREMENT, PORT_TCP_INFO_MEASUREMENT,
    QUEUE_MEASUREMENT, RTT_BUCKETS,
};
use crate::wire::AF_INET;

/// The measurements a gather prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measurements {
    pub netstat: bool,
    pub port: bool,
    pub listen: bool,
    pub ephemeral: bool,
    pub destination: bool,
    pub cgroup: bool,
    pub counters: bool,
    /// `netstat_health` (`--health`; its fields on the other rows come
    /// with the flag, whichever rows are printed).
    pub health: bool,
}

/// How rows are cut, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// One row per address family, tagged `family` (`--by-family`).
    pub by_family: bool,
    /// Unix sockets are counted (`--include-unix`): a `family=unix` row.
    pub include_unix: bool,
    pub print: Measurements,
    /// `netstat_listen` has `syn_recv` (not with `--only listen`, which does
    /// not walk the table the handshakes are in).
    pub syn_recv: bool,
    /// `netstat_destination`: this many destinations per namespace
    /// (`--destinations N`), then one row for the rest.
    pub top: usize,
}

/// One row, owning its tag values.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    measurement: &'static str,
    /// Sorted by key, as Telegraf writes them.
    tags: Vec<(&'static str, String)>,
    /// Sorted by name.
    fields: Vec<Field>,
}

/// The rows of one gather, built namespace by namespace, and how the
/// gather went (for the Prometheus self-metrics). Reused between gathers:
/// [`Rows::start`] clears it.
#[derive(Debug, Default)]
pub struct Rows {
    time: Option<SystemTime>,
    /// `netstat`, its queued bytes, `netstat_port`, its queued bytes,
    /// `netstat_listen`, `netstat_ephemeral`, `netstat_destination`,
    /// `netstat_cgroup`, `netstat_counters`, `netstat_health`,
    /// `netstat_port_tcp_info`, `netstat_destination_tcp_info`. The queued
    /// bytes are printed with native Prometheus names only.
    sections: [Vec<Row>; 12],
    /// Every namespace counted (true) or attempted and failed (false), with
    /// its own tags, sorted by key.
    outcomes: Vec<(Vec<(&'static str, String)>, bool)>,
    /// `--all-netns`: processes whose namespace could not be looked at.
    unreadable: Option<u64>,
    duration: Duration,
    /// Every namespace counted whose kernel says whether it shares the
    /// host's TCP hash table, with its own tags.
    tcp_hash: Vec<(Vec<(&'static str, String)>, bool)>,
}

impl Rows {
    /// Starts a gather's rows, stamped with `time` (`None`: the consumer
    /// stamps them).
    pub fn start(&mut self, time: Option<SystemTime>) {
        self.time = time;
        for s in &mut self.sections {
            s.clear();
        }
        self.outcomes.clear();
        self.tcp_hash.clear();
        self.unreadable = None;
        self.duration = Duration::ZERO;
    }

    /// A namespace that was attempted and could not be counted.
    pub fn failed(&mut self, tags: &[(&'static str, &str)]) {
        self.outcomes.push((sorted(tags), false));
    }

    /// `--all-netns`: how many processes' namespaces could not be looked at.
    pub fn unreadable(&mut self, processes: u64) {
        self.unreadable = Some(processes);
    }

    /// How many of the namespaces counted share the host's TCP hash table,
    /// of how many whose kernel says.
    pub fn tcp_hash_shared(&self) -> (usize, usize) {
        let shared = self.tcp_hash.iter().filter(|t| t.1).count();
        (shared, self.tcp_hash.len())
    }

    /// The gather's wall time, once it is over.
    pub fn finish(&mut self, duration: Duration) {
        self.duration = duration;
    }

    pub fn is_empty(&self) -> bool {
        self.sections.iter().all(Vec::is_empty)
    }

    /// Adds the rows of one namespace, whose own tags (`netns`, labels) are
    /// `tags`.
    pub fn add(&mut self, shape: &Shape, tags: &[(&'static str, &str)], g: &Gathered<'_>) {
        self.outcomes.push((sorted(tags), true));
        let family = |name: &str| ("family", name.to_string());
        self.add_from_files(shape, tags, g);
        let health = g.health;
        let [netstat, queued, port, port_queued, listen, ..] = &mut self.sections;
        let q = |q: &Queued| {
            [
                Field::gauge("receive_queue_bytes", q.receive),
                Field::gauge("send_queue_bytes", q.send),
            ]
        };
        if shape.print.netstat {
            let c = &g.by_family;
            if shape.by_family {
                netstat.push(row(
                    MEASUREMENT,
                    &Field::of(&c.ipv4),
                    &[family("ipv4")],
                    tags,
                ));
                netstat.push(row(
                    MEASUREMENT,
                    &Field::of(&c.ipv6),
                    &[family("ipv6")],
                    tags,
                ));
                if shape.include_unix {
                    netstat.push(row(
                        MEASUREMENT,
                        &Field::of(&c.unix),
                        &[family("unix")],
                        tags,
                    ));
                }
                queued.push(row(
                    QUEUE_MEASUREMENT,
                    &q(&g.queued[0]),
                    &[family("ipv4")],
                    tags,
                ));
                queued.push(row(
                    QUEUE_MEASUREMENT,
                    &q(&g.queued[1]),
                    &[family("ipv6")],
                    tags,
                ));
            } else {
                netstat.push(row(MEASUREMENT, &Field::of(&c.total()), &[], tags));
                let mut total = g.queued[0];
                total.add(&g.queued[1]);
                queued.push(row(QUEUE_MEASUREMENT, &q(&total), &[], tags));
            }
        }
        if let (true, Some(ports)) = (shape.print.port, g.ports) {
            for (direction, p, counts, bytes, signals) in ports.rows() {
                let direction = ("direction", direction.as_str().to_string());
                let p = ("port", p.to_string());
                let fields =
                    |c: &Counts, s: &Signals| with_health(Field::of(c).to_vec(), health.map(|_| s));
                if shape.by_family {
                    for (i, name) in ["ipv4", "ipv6"].into_iter().enumerate() {
                        let own = [direction.clone(), family(name), p.clone()];
                        let f = fields(&counts[i], &signals[i]);
                        port.push(row(PORT_MEASUREMENT, &f, &own, tags));
                        port_queued.push(row(PORT_QUEUE_MEASUREMENT, &q(&bytes[i]), &own, tags));
                    }
                } else {
                    let mut total = counts[0];
                    total.add(&counts[1]);
                    let mut b = bytes[0];
                    b.add(&bytes[1]);
                    let mut s = signals[0];
                    s.add(&signals[1]);
                    let own = [direction, p];
                    port.push(row(PORT_MEASUREMENT, &fields(&total, &s), &own, tags));
                    port_queued.push(row(PORT_QUEUE_MEASUREMENT, &q(&b), &own, tags));
                }
            }
        }
        if let (true, Some(listeners)) = (shape.print.listen, g.listen) {
            for l in listeners.rows() {
                let mut own = vec![
                    ("address", address_text(l.family, &l.addr)),
                    ("port", l.port.to_string()),
                ];
                if shape.by_family {
                    own.push(family(if l.family == AF_INET { "ipv4" } else { "ipv6" }));
                }
                // Sorted by name; what the source does not know is left out.
                let mut f: Vec<Field> = Vec::with_capacity(6);
                if let Some(b) = l.backlog {
                    f.push(Field::gauge("backlog", b));
                }
                if let Some(d) = l.drops {
                    f.push(Field::counter("drops", d));
                }
                f.push(Field::gauge("queue", l.queue));
                f.push(Field::gauge("sockets", l.sockets));
                if shape.syn_recv {
                    f.push(Field::gauge("syn_recv", l.syn_recv));
                    if health.is_some() {
                        f.push(Field::gauge("synack_retrying", l.synack_retrying));
                    }
                }
                listen.push(row(LISTEN_MEASUREMENT, &f, &own, tags));
            }
        }
        self.add_outbound(shape, tags, g);
        self.add_cgroups(shape, tags, g);
        if let (true, Some(h)) = (shape.print.health, health) {
            let f = with_health(Vec::new(), Some(h));
            self.sections[9].push(row(HEALTH_MEASUREMENT, &f, &[], tags));
        }
        if let (true, Some(t)) = (shape.print.port, g.tcp_info) {
            for (direction, p, stats) in t.rows() {
                let own = [
                    ("direction", direction.as_str().to_string()),
                    ("port", p.to_string()),
                ];
                let f = tcp_info_fields(stats);
                self.sections[10].push(row(PORT_TCP_INFO_MEASUREMENT, &f, &own, tags));
            }
        }
        if let (true, Some(t)) = (shape.print.destination, g.tcp_info) {
            for (addr, p, stats) in t.destination_rows() {
                let own = [
                    ("address", destinations::address_text(addr)),
                    ("port", p.to_string()),
                ];
                let f = tcp_info_fields(stats);
                self.sections[11].push(row(DESTINATION_TCP_INFO_MEASUREMENT, &f, &own, tags));
            }
        }
    }

    /// `netstat_ephemeral` and `netstat_destination`.
    fn add_outbound(&mut self, shape: &Shape, tags: &[(&'static str, &str)], g: &Gathered<'_>) {
        let Some(o) = g.outbound else {
            return;
        };
        let e = o.summary();
        if shape.print.ephemeral {
            let f = [
                Field::gauge("destinations", e.destinations),
                Field::gauge("max_per_destination", e.max_per_destination),
                Field::gauge("ports_used", e.ports_used),
                Field::gauge("range_size", e.range_size),
                Field::ratio(
                    "utilization",
                    utilization(e.max_per_destination, e.range_size),
                ),
            ];
            self.sections[5].push(row(EPHEMERAL_MEASUREMENT, &f, &[], tags));
        }
        if !shape.print.destination {
            return;
        }
        let fields = |sockets: &Tally, max: u64| {
            let mut f = Field::of(&sockets.counts()).to_vec();
            f.push(Field::ratio("utilization", utilization(max, e.range_size)));
            with_health(f, g.health.map(|_| &sockets.health))
        };
        let destination = &mut self.sections[6];
        let (top, rest) = o.top(shape.top);
        for d in top {
            let own = [
                ("address", destinations::address_text(&d.addr)),
                ("port", d.port.to_string()),
            ];
            let f = fields(&d.sockets, d.max_per_local);
            destination.push(row(DESTINATION_MEASUREMENT, &f, &own, tags));
        }
        if let Some((sockets, max)) = rest {
            let own = [("address", "other".into()), ("port", "other".into())];
            let f = fields(&sockets, max);
            destination.push(row(DESTINATION_MEASUREMENT, &f, &own, tags));
        }
    }

    /// `netstat_cgroup`.
    fn add_cgroups(&mut self, shape: &Shape, tags: &[(&'static str, &str)], g: &Gathered<'_>) {
        let (true, Some(c)) = (shape.print.cgroup, g.cgroups) else {
            return;
        };
        let fields =
            |t: &Tally| with_health(Field::of(&t.counts()).to_vec(), g.health.map(|_| &t.health));
        let cgroup = &mut self.sections[7];
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
            cgroup.push(row(CGROUP_MEASUREMENT, &fields(&cg.sockets), &own, tags));
        }
        for (name, t) in [
            ("unresolved", &unresolved),
            ("other", &c.other),
            ("unattributed", &c.unattributed),
        ] {
            if t.total() > 0 || name == "unattributed" {
                let own = [("cgroup", name.to_string())];
                cgroup.push(row(CGROUP_MEASUREMENT, &fields(t), &own, tags));
            }
        }
    }

    /// What was read from the namespace's files: whether it shares the
    /// host's TCP hash table, and `netstat_counters`, one row of its
    /// counters, left out when none was selected or found.
    fn add_from_files(&mut self, shape: &Shape, tags: &[(&'static str, &str)], g: &Gathered<'_>) {
        if let Some(shared) = g.tcp_hash_shared {
            self.tcp_hash.push((merged(&[], tags), shared));
        }
        let Some(c) = g
            .counters
            .filter(|c| shape.print.counters && !c.values().is_empty())
        else {
            return;
        };
        let fields = c
            .values()
            .iter()
            .map(|&(name, value)| Field::counter(name, value))
            .collect();
        self.sections[8].push(Row {
            measurement: COUNTERS_MEASUREMENT,
            tags: merged(&[], tags),
            fields,
        });
    }

    /// Every row of `format` as a `Metric`, in order, handed to `f`.
    pub fn with_metrics<R>(&self, format: Format, f: impl FnOnce(&[Metric<'_>]) -> R) -> R {
        let tags: Vec<Vec<(&str, &str)>> = self
            .rows_of(format)
            .map(|r| r.tags.iter().map(|(k, v)| (*k, v.as_str())).collect())
            .collect();
        let metrics: Vec<Metric<'_>> = self
            .rows_of(format)
            .zip(&tags)
            .map(|(r, tags)| Metric {
                measurement: r.measurement,
                tags,
                fields: &r.fields,
                time: self.time,
            })
            .collect();
        f(&metrics)
    }

    /// Encodes every row into `out` (cleared first). The Prometheus format
    /// also gets the self-metrics (build, per-namespace success, unreadable
    /// processes, gather time); influx and JSON print the rows only.
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        out.clear();
        self.with_metrics(format, |m| format.encode(m, out));
        if format.is_prometheus() {
            let (outcomes, tcp_hash) = (borrowed(&self.outcomes), borrowed(&self.tcp_hash));
            let health = Health {
                outcomes: &outcomes,
                tcp_hash_shared: &tcp_hash,
                unreadable: self.unreadable,
                duration: self.duration,
                time: self.time,
            };
            health.encode(out);
        }
    }

    /// The rows `format` prints: the queued bytes only with native names.
    fn rows_of(&self, format: Format) -> impl Iterator<Item = &Row> {
        let native = format == Format::PrometheusNative;
        self.sections.iter().flatten().filter(move |r| {
            native || !matches!(r.measurement, QUEUE_MEASUREMENT | PORT_QUEUE_MEASUREMENT)
        })
    }
}

/// One row of `measurement` with `fields`, tagged with its `own` tags and
/// the namespace's.
fn row(
    measurement: &'static str,
    fields: &[Field],
    own: &[(&'static str, String)],
    namespace: &[(&'static str, &str)],
) -> Row {
    Row {
        measurement,
        tags: merged(own, namespace),
        fields: fields.to_vec(),
    }
}

/// `netstat_port_tcp_info`'s fields, sorted by name: the RTT buckets
/// cumulative, times in seconds, `min_rtt_seconds` left out without a sample.
fn tcp_info_fields(s: &Stats) -> Vec<Field> {
    let seconds = |us: u64| us as f64 / 1e6;
    let mut f = vec![
        Field::gauge("connections", s.connections),
        Field::gauge("loss_recovery", s.loss_recovery),
        Field::gauge("notsent_bytes", s.notsent_bytes),
        Field::gauge("rto_backoff", s.rto_backoff),
        Field::gauge("rtt_samples", s.rtt_samples()),
        Field::ratio("rtt_sum_seconds", seconds(s.rtt_sum_us)),
        Field::gauge("unacked_bytes", s.unacked_bytes),
    ];
    let cumulative = s.cumulative();
    for (i, (name, _)) in RTT_BUCKETS.iter().enumerate() {
        let n = cumulative.get(i).copied().unwrap_or(s.rtt_samples());
        f.push(Field::gauge(name, n));
    }
    if let Some(m) = s.min_rtt_us {
        f.push(Field::ratio("min_rtt_seconds", seconds(u64::from(m))));
    }
    f.sort_unstable_by_key(|f| f.name);
    f
}

/// `fields` with `--health`'s seven fields of the same sockets when given
/// (`None`: no `--health`), sorted by name.
fn with_health(mut fields: Vec<Field>, health: Option<&Signals>) -> Vec<Field> {
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

/// A row's tags: its own (`port`, `cgroup`, and the `container_id` or
/// `pod_uid` its cgroup path names) and the namespace's (`netns`, labels),
/// sorted by key, each key once. Where both give a key, the row's own value
/// wins: it is the more specific answer (a socket's own cgroup names the
/// container that holds it; the namespace's label names the pod's sandbox).
fn merged(
    own: &[(&'static str, String)],
    namespace: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut t: Vec<(&'static str, String)> = own.to_vec();
    for &(k, v) in namespace {
        if !own.iter().any(|o| o.0 == k) {
            t.push((k, v.to_string()));
        }
    }
    t.sort_unstable_by_key(|kv| kv.0);
    // Each source gives each key once, so the rule above is the only merge.
    debug_assert!(t.windows(2).all(|w| w[0].0 != w[1].0), "{t:?}");
    t.dedup_by_key(|kv| kv.0);
    t
}

/// Tagged flags (how each namespace went) with borrowed tag values.
type TaggedFlags<'a> = Vec<(Vec<(&'static str, &'a str)>, bool)>;

fn borrowed<'a>(list: &'a [(Vec<(&'static str, String)>, bool)]) -> TaggedFlags<'a> {
    list.iter()
        .map(|(t, b)| (t.iter().map(|(k, v)| (*k, v.as_str())).collect(), *b))
        .collect()
}

/// Tags as owned pairs, sorted by key.
fn sorted(tags: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut t: Vec<(&'static str, String)> =
        tags.iter().map(|&(k, v)| (k, v.to_string())).collect();
    t.sort_unstable_by_key(|kv| kv.0);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::listen::ListenCounts;
    use crate::aggregate::ports::{PortConfig, PortCounts};
    use crate::aggregate::states::{ByFamily, Counts};
    use crate::aggregate::{Kind, ListenInfo, Record, LISTEN};
    use crate::wire::AF_INET6;

    const ALL: Measurements = Measurements {
        netstat: true,
        port: true,
        listen: true,
        ephemeral: true,
        destination: true,
        cgroup: true,
        counters: true,
        health: true,
    };

    fn shape(by_family: bool) -> Shape {
        Shape {
            by_family,
            include_unix: false,
            print: ALL,
            syn_recv: true,
            top: 2,
        }
    }

    fn by_family() -> ByFamily {
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
    fn gathered<'a>(
        ports: Option<&'a PortCounts>,
        listen: Option<&'a ListenCounts>,
    ) -> Gathered<'a> {
        Gathered {
            by_family: by_family(),
            queued: Default::default(),
            ports,
            listen,
            outbound: None,
            cgroups: None,
            health: None,
            tcp_info: None,
            counters: None,
            tcp_hash_shared: None,
        }
    }

    fn influx(rows: &Rows) -> String {
        let mut out = Vec::new();
        rows.encode(Format::Influx, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn record(family: u8, state: u8, local_port: u16, listen: Option<ListenInfo>) -> Record {
        Record {
            kind: Kind::Tcp,
            family,
            state,
            local_port,
            remote_port: if state == LISTEN { 0 } else { 40000 },
            local_addr: [0; 16],
            remote_addr: [0; 16],
            listen,
            rqueue: 0,
            wqueue: 0,
            cgroup: None,
            health: Default::default(),
        }
    }

    const ZERO: &str = "tcp_close=0i,tcp_close_wait=0i,tcp_closing=0i";

    #[test]
    fn netstat_rows_total_or_per_family_with_the_namespace_s_tags() {
        let g = gathered(None, None);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[], &g);
        let out = influx(&rows);
        assert!(out.starts_with(&format!("netstat {ZERO},")), "{out}");
        assert!(
            out.contains(",tcp_established=3i,") && out.contains(",udp_socket=9i\n"),
            "{out}"
        );

        // Per family; the namespace's tags merged in key order.
        let tags = [("netns", "blue"), ("container_id", "abc")];
        rows.start(None);
        rows.add(&shape(true), &tags, &g);
        let out = influx(&rows);
        let lines: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
        // Without --include-unix there is no unix row.
        assert_eq!(
            lines,
            [
                "netstat,container_id=abc,family=ipv4,netns=blue",
                "netstat,container_id=abc,family=ipv6,netns=blue"
            ]
        );
        let unix = Shape {
            include_unix: true,
            ..shape(true)
        };
        rows.start(None);
        rows.add(&unix, &[], &g);
        assert!(influx(&rows).contains("netstat,family=unix "));
    }

    #[test]
    fn sections_in_order_across_namespaces_and_only_what_is_printed() {
        let config = PortConfig {
            local: vec![443],
            remote: Vec::new(),
            listening: false,
        };
        let mut ports = PortCounts::new(&config);
        ports.add(&record(AF_INET, 1, 443, None));
        ports.add(&record(AF_INET6, 1, 443, None));
        let mut listen = ListenCounts::default();
        let info = ListenInfo {
            queue: 2,
            backlog: Some(128),
            drops: Some(5),
        };
        listen.add_listener(&record(AF_INET, LISTEN, 443, Some(info)));
        let g = gathered(Some(&ports), Some(&listen));
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[("netns", "a")], &g);
        rows.add(&shape(false), &[("netns", "b")], &g);
        let out = influx(&rows);
        let heads: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            heads,
            [
                "netstat,netns=a",
                "netstat,netns=b",
                "netstat_port,direction=local,netns=a,port=443",
                "netstat_port,direction=local,netns=b,port=443",
                "netstat_listen,address=0.0.0.0,netns=a,port=443",
                "netstat_listen,address=0.0.0.0,netns=b,port=443",
            ],
            "{out}"
        );
        assert!(
            out.contains(",tcp_established=2i,"),
            "ports summed over families: {out}"
        );
        assert!(
            out.contains("netstat_listen,address=0.0.0.0,netns=a,port=443 backlog=128i,drops=5i,queue=2i,sockets=1i,syn_recv=0i\n"),
            "{out}"
        );

        // Per family, and `--only listen` (no syn_recv).
        let only_listen = Shape {
            by_family: true,
            include_unix: false,
            print: Measurements {
                listen: true,
                ..Measurements::default()
            },
            syn_recv: false,
            top: 0,
        };
        rows.start(None);
        rows.add(&only_listen, &[], &g);
        assert_eq!(
            influx(&rows),
            "netstat_listen,address=0.0.0.0,family=ipv4,port=443 backlog=128i,drops=5i,queue=2i,sockets=1i\n"
        );
        rows.start(None);
        rows.add(&shape(true), &[], &g);
        let out = influx(&rows);
        assert!(
            out.contains("netstat_port,direction=local,family=ipv6,port=443 "),
            "{out}"
        );
        assert!(
            out.contains("netstat_port,direction=local,family=ipv4,port=443 "),
            "{out}"
        );
    }

    #[test]
    fn prometheus_gets_the_self_metrics_and_the_others_do_not() {
        let g = gathered(None, None);
        let mut rows = Rows::default();
        rows.start(None);
        rows.add(&shape(false), &[("netns", "a"), ("container_id", "c1")], &g);
        rows.failed(&[("netns", "b\"q")]);
        rows.unreadable(4);
        rows.finish(std::time::Duration::from_millis(1500));
        let mut out = Vec::new();
        rows.encode(Format::Prometheus, &mut out);
        let text = String::from_utf8(out).unwrap();
        let health = &text[text.find("# HELP netstat_build_info ").unwrap()..];
        let samples: Vec<&str> = health.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                format!(
                    "netstat_build_info{{target=\"{}\",version=\"{}\"}} 1",
                    env!("TELEGRAF_NETSTAT_TARGET"),
                    env!("CARGO_PKG_VERSION")
                )
                .as_str(),
                "netstat_gather_success{container_id=\"c1\",netns=\"a\"} 1",
                "netstat_gather_success{netns=\"b\\\"q\"} 0",
                "netstat_scan_unreadable_processes 4",
                "netstat_gather_duration_seconds 1.500000",
            ]
        );
        assert!(
            health.contains("\n# TYPE netstat_gather_success gauge\n"),
            "{health}"
        );
        // Influx and JSON print the rows only.
        for format in [Format::Influx, Format::Json] {
            let mut out = Vec::new();
            rows.encode(format, &mut out);
            assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
        }
    }

    #[test]
    fn health_fields_join_the_rows_sorted_and_netstat_health_follows() {
        use crate::aggregate::health::{failure, Signals};
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

    #[test]
    fn rows_carry_the_gather_time_and_start_clears() {
        let g = gathered(None, None);
        let mut rows = Rows::default();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2);
        rows.start(Some(t));
        rows.add(&shape(false), &[], &g);
        assert!(influx(&rows).ends_with(" 2000000000\n"));
        assert!(rows.with_metrics(Format::Influx, |m| m.len() == 1 && m[0].time == Some(t)));
        rows.start(None);
        assert!(rows.is_empty());
        assert_eq!(influx(&rows), "");
    }

    #[test]
    fn ephemeral_and_destination_rows_with_a_float_field() {
        use crate::aggregate::destinations::Outbound;
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
        let none = Shape {
            print: Measurements {
                netstat: true,
                ..Measurements::default()
            },
            ..shape(false)
        };
        rows.start(None);
        rows.add(&none, &[], &g);
        assert_eq!(influx(&rows).lines().count(), 1);
    }

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
        let none = Shape {
            print: Measurements {
                netstat: true,
                ..Measurements::default()
            },
            ..shape(false)
        };
        rows.start(None);
        rows.add(&none, &[], &g);
        assert!(!influx(&rows).contains("netstat_counters"));
        let empty = Counters::parsed(&Selection::parse("Nothing*").unwrap(), snmp);
        g.counters = Some(&empty);
        rows.start(None);
        rows.add(&shape(false), &[], &g);
        assert!(!influx(&rows).contains("netstat_counters"));
    }

    #[test]
    fn a_row_s_own_tag_wins_over_the_namespace_s_and_no_key_is_written_twice() {
        use crate::aggregate::cgroups::CgroupCounts;
        const APP: &str = "4f1d2a3b5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
        let mut c = CgroupCounts::default();
        c.reset(Kind::Tcp);
        let mut r = record(AF_INET, 1, 80, None);
        r.cgroup = Some(7);
        c.add(&r);
        for g in c.cgroups_mut() {
            g.path = Some(format!("/system.slice/docker-{APP}.scope"));
        }
        c.finish();
        let mut g = gathered(None, None);
        g.cgroups = Some(&c);
        let mut rows = Rows::default();
        rows.start(None);
        // The namespace is labelled with the sandbox's container.
        let ns = [
            ("netns", "a"),
            ("container_id", "sandbox"),
            ("hostname", "h"),
        ];
        rows.add(&shape(false), &ns, &g);
        let out = influx(&rows);
        let cgroup: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("netstat_cgroup"))
            .collect();
        assert_eq!(cgroup.len(), 2, "{out}");
        assert!(
            cgroup[0].starts_with(&format!(
                "netstat_cgroup,cgroup=/system.slice/docker-{APP}.scope,container_id={APP},hostname=h,netns=a "
            )),
            "{out}"
        );
        // A row with no container of its own keeps the namespace's.
        assert!(
            cgroup[1].starts_with(
                "netstat_cgroup,cgroup=unattributed,container_id=sandbox,hostname=h,netns=a "
            ),
            "{out}"
        );
        for format in [Format::PrometheusNative, Format::Prometheus] {
            let mut out = Vec::new();
            rows.encode(format, &mut out);
            let text = String::from_utf8(out).unwrap();
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                assert!(l.matches("container_id=").count() <= 1, "{l}");
            }
        }
    }
}
