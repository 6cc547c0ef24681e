//! Prometheus text exposition format 0.0.4, named as Telegraf's
//! `outputs.prometheus_client` names this measurement's fields
//! (`netstat_tcp_established`, ...): one gauge family per field, tags as
//! labels. No timestamps unless `--timestamp` asks (then the gather time in
//! milliseconds since the epoch, as the format defines them). HELP lines
//! say what each series counts (HELP is not part of a series' identity, so
//! this does not change Telegraf's names). After the rows come the
//! self-metrics (`encode_families`).

use std::io::Write;
use std::time::SystemTime;

use crate::metric::{unix_nanos, Family, Metric, Native, Value};

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Label names allow `[a-zA-Z_][a-zA-Z0-9_]*`; anything else becomes `_`,
/// as Telegraf's prometheus output sanitizes them.
fn write_label_name(s: &str, out: &mut Vec<u8>) {
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c as u8 } else { b'_' });
    }
}

/// One family per field and measurement: `netstat_*` for the metrics of
/// `netstat`, then `netstat_port_*`, `netstat_listen_*` (metrics arrive
/// grouped by measurement). A counter field is named `<name>_total`.
pub(super) fn encode(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    for group in metrics.chunk_by(|a, b| std::ptr::eq(a.schema, b.schema)) {
        encode_measurement(group, out);
    }
}

fn encode_measurement(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    let Some(first) = metrics.first() else { return };
    let name = first.schema.name;
    // Every field name in the group, in order (a source may not know some).
    let mut names: Vec<(&str, bool)> = Vec::new();
    for m in metrics {
        for f in m.fields {
            if !names.iter().any(|(n, _)| *n == f.name) {
                names.push((f.name, f.counter));
            }
        }
    }
    for (field, counter) in names {
        let (suffix, kind) = if counter {
            ("_total", "counter")
        } else {
            ("", "gauge")
        };
        let _ = writeln!(
            out,
            "# HELP {name}_{field}{suffix} {}",
            (first.schema.help)(field)
        );
        let _ = writeln!(out, "# TYPE {name}_{field}{suffix} {kind}");
        for m in metrics {
            let Some(f) = m.fields.iter().find(|f| f.name == field) else {
                continue;
            };
            let _ = write!(out, "{name}_{field}{suffix}");
            write_labels(m.tags, out);
            let _ = write!(out, " {}", f.value);
            write_time(m.time, out);
        }
    }
}

/// One native sample: its family, labels, value and time.
type Sample<'a> = (Native, Vec<(&'a str, &'a str)>, Value, Option<SystemTime>);

/// Native names (`--prometheus-names native`): one family per quantity,
/// the TCP state as a label, base units, `_total` for the counter; families
/// in the order they first appear, each family's samples together.
pub(super) fn encode_native(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    // (family, labels, value, time), in row order.
    let mut samples: Vec<Sample<'_>> = Vec::new();
    for m in metrics {
        for f in m.fields {
            let Some(n) = (m.schema.native)(f.name) else {
                continue;
            };
            let mut labels: Vec<(&str, &str)> = m.tags.to_vec();
            if let Some(label) = n.label {
                labels.push(label);
                labels.sort_unstable_by_key(|kv| kv.0);
            }
            samples.push((n, labels, f.value, m.time));
        }
    }
    let mut order: Vec<&'static str> = Vec::new();
    for (n, ..) in &samples {
        let family = family_of(n).0;
        if !order.contains(&family) {
            order.push(family);
        }
    }
    for family in order {
        let mut first = true;
        for (n, labels, value, time) in samples.iter().filter(|s| family_of(&s.0).0 == family) {
            if first {
                let _ = writeln!(out, "# HELP {family} {}", n.help);
                let _ = writeln!(out, "# TYPE {family} {}", family_of(n).1);
                first = false;
            }
            out.extend_from_slice(n.name.as_bytes());
            write_labels(labels, out);
            let _ = write!(out, " {value}");
            write_time(*time, out);
        }
    }
}

/// The family a native sample belongs to, and its type: a histogram's
/// `_bucket`, `_count` and `_sum` series are one family.
fn family_of(n: &Native) -> (&'static str, &'static str) {
    match (n.histogram, n.counter) {
        (Some(h), _) => (h, "histogram"),
        (None, true) => (n.name, "counter"),
        (None, false) => (n.name, "gauge"),
    }
}

fn write_labels(tags: &[(&str, &str)], out: &mut Vec<u8>) {
    if tags.is_empty() {
        return;
    }
    out.push(b'{');
    for (j, (k, v)) in tags.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_label_name(k, out);
        out.extend_from_slice(b"=\"");
        escape_label_value(v, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// The sample's timestamp when asked for, and the line's end.
fn write_time(time: Option<SystemTime>, out: &mut Vec<u8>) {
    if let Some(t) = time {
        let _ = write!(out, " {}", unix_nanos(t) / 1_000_000);
    }
    out.push(b'\n');
}

/// Families after the rows (the self-metrics), all gauges; a family
/// without a sample is left out.
pub(super) fn encode_families(
    families: &[Family<'_>],
    time: Option<SystemTime>,
    out: &mut Vec<u8>,
) {
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let Native { name, help, .. } = f.desc;
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in &f.samples {
            out.extend_from_slice(name.as_bytes());
            write_labels(labels, out);
            let _ = write!(out, " {value}");
            write_time(time, out);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_milliseconds_when_asked() {
        use std::time::{Duration, SystemTime};
        let counts = crate::measure::netstat::count::Counts::default();
        let m = crate::metric::Metric {
            schema: &crate::measure::netstat::SCHEMA,
            tags: &[],
            fields: &crate::measure::netstat::fields(&counts),
            time: Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
        };
        let mut out = Vec::new();
        super::encode(&[m], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\nnetstat_tcp_close 0 1700000000123\n"),
            "{text}"
        );
    }

    use super::super::Format;
    use crate::measure::netstat::count::Counts;
    use crate::metric::Metric;

    #[test]
    fn writes_one_gauge_family_per_field() {
        let counts = Counts {
            tcp_listen: 3,
            udp_socket: 7,
            ..Counts::default()
        };
        let mut out = Vec::new();
        Format::Prometheus.encode(
            &[Metric {
                schema: &crate::measure::netstat::SCHEMA,
                tags: &[],
                fields: &crate::measure::netstat::fields(&counts),
                time: None,
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 13 * 3);
        assert!(text.starts_with(
            "# HELP netstat_tcp_close TCP sockets in state CLOSE, as counted by Telegraf's inputs.netstat.\n# TYPE netstat_tcp_close gauge\nnetstat_tcp_close 0\n"
        ));
        assert!(text.contains("\nnetstat_tcp_listen 3\n"));
        assert!(text.ends_with("# TYPE netstat_udp_socket gauge\nnetstat_udp_socket 7\n"));
    }

    #[test]
    fn tags_become_escaped_labels() {
        let counts = Counts::default();
        let tags = [("netns", "a\"b\\c\nd"), ("fam-ily", "ipv4")];
        let mut out = Vec::new();
        Format::Prometheus.encode(
            &[Metric {
                schema: &crate::measure::netstat::SCHEMA,
                tags: &tags,
                fields: &crate::measure::netstat::fields(&counts),
                time: None,
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("netstat_tcp_close{netns=\"a\\\"b\\\\c\\nd\",fam_ily=\"ipv4\"} 0\n"),
            "{text}"
        );
    }
}
