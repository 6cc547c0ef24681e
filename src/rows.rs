//! Rows: one gather's results as the metrics every format prints
//! (schema, sorted tags, sorted fields), and how the gather went (for the
//! self-metrics). The generic part: each measurement (`crate::measure`)
//! makes its own rows; here they are kept in order, tagged with the
//! namespace's tags by one rule (`merged`), and handed to an encoder.
//! Pure: no I/O and no kernel access here.
//!
//! Order, which the Prometheus format needs (one metric family together):
//! the sections of [`measure::schemas`] in turn (every `netstat` row, then
//! every `netstat_port` row, ...); within each, namespaces in the order
//! they were counted.

use std::time::{Duration, SystemTime};

use crate::measure::selfmetrics::{self, Status};
use crate::measure::Gathered;
use crate::measure::{self, Shape};
use crate::metric::{Field, Metric, Schema};
use crate::output::Format;

/// One row, owning its tag values.
#[derive(Debug, Clone)]
struct Row {
    schema: &'static Schema,
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
    /// One per schema of [`measure::schemas`], in that order.
    sections: Vec<Vec<Row>>,
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
    /// `tags`: every measurement's, each in its section.
    pub fn add(&mut self, shape: &Shape, tags: &[(&'static str, &str)], g: &Gathered<'_>) {
        self.outcomes.push((sorted(tags), true));
        if let Some(shared) = g.tcp_hash_shared {
            self.tcp_hash.push((merged(&[], tags), shared));
        }
        if self.sections.is_empty() {
            self.sections = measure::schemas().map(|_| Vec::new()).collect();
        }
        let sections = &mut self.sections;
        let mut emit =
            |schema: &'static Schema, own: &[(&'static str, String)], fields: &[Field]| {
                let i = measure::schemas()
                    .position(|s| std::ptr::eq(s, schema))
                    .expect("a schema of measure::ALL");
                sections[i].push(Row {
                    schema,
                    tags: merged(own, tags),
                    fields: fields.to_vec(),
                });
            };
        for m in measure::ALL {
            (m.rows)(shape, g, &mut emit);
        }
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
                schema: r.schema,
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
        let (outcomes, tcp_hash) = (borrowed(&self.outcomes), borrowed(&self.tcp_hash));
        let status = Status {
            outcomes: &outcomes,
            tcp_hash_shared: &tcp_hash,
            unreadable: self.unreadable,
            duration: self.duration,
        };
        format.encode_families(&selfmetrics::families(&status), self.time, out);
    }

    /// The rows `format` prints: the native-only ones with native names only.
    fn rows_of(&self, format: Format) -> impl Iterator<Item = &Row> {
        let native = format == Format::PrometheusNative;
        self.sections
            .iter()
            .flatten()
            .filter(move |r| native || !r.schema.native_only)
    }
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
    use crate::measure::listen::count::ListenCounts;
    use crate::measure::port::count::{PortConfig, PortCounts};
    use crate::measure::testing::*;
    use crate::measure::Measurements;
    use crate::record::{Kind, ListenInfo, LISTEN};
    use crate::wire::{AF_INET, AF_INET6};

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
    fn a_row_s_own_tag_wins_over_the_namespace_s_and_no_key_is_written_twice() {
        use crate::measure::cgroup::count::CgroupCounts;
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
