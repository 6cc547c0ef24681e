//! Prometheus text exposition format 0.0.4, named as Telegraf's
//! `outputs.prometheus_client` names this measurement's fields
//! (`netstat_tcp_established`, ...): one gauge family per field, tags as
//! labels. No timestamps unless `--timestamp` asks (then the gather time in
//! milliseconds since the epoch, as the format defines them).

use std::io::Write;

use super::{unix_nanos, Metric};

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
    for group in metrics.chunk_by(|a, b| a.measurement == b.measurement) {
        encode_measurement(group, out);
    }
}

fn encode_measurement(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    let Some(first) = metrics.first() else { return };
    let name = first.measurement;
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
            "# HELP {name}_{field}{suffix} Telegraf collected metric"
        );
        let _ = writeln!(out, "# TYPE {name}_{field}{suffix} {kind}");
        for m in metrics {
            let Some(f) = m.fields.iter().find(|f| f.name == field) else {
                continue;
            };
            let _ = write!(out, "{name}_{field}{suffix}");
            if !m.tags.is_empty() {
                out.push(b'{');
                for (j, (k, v)) in m.tags.iter().enumerate() {
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
            let _ = write!(out, " {}", f.value);
            if let Some(t) = m.time {
                let _ = write!(out, " {}", unix_nanos(t) / 1_000_000);
            }
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_milliseconds_when_asked() {
        use std::time::{Duration, SystemTime};
        let counts = crate::aggregate::states::Counts::default();
        let m = super::Metric {
            measurement: "netstat",
            tags: &[],
            fields: &super::super::Field::of(&counts),
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

    use super::super::{Format, Metric};
    use crate::aggregate::states::Counts;

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
                measurement: "netstat",
                tags: &[],
                fields: &super::super::Field::of(&counts),
                time: None,
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 13 * 3);
        assert!(text.starts_with(
            "# HELP netstat_tcp_close Telegraf collected metric\n# TYPE netstat_tcp_close gauge\nnetstat_tcp_close 0\n"
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
                measurement: "netstat",
                tags: &tags,
                fields: &super::super::Field::of(&counts),
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
