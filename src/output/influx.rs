//! Influx line protocol, as Telegraf's influx serializer writes the built-in
//! plugin's metric: fields sorted by key, integers with the `i` suffix.
//! Following that serializer (plugins/serializers/influx/influx.go and
//! escape.go, Telegraf 1.3x): a tag value whose escaped form ends in `\`
//! loses its trailing backslashes (line protocol cannot carry them), a tag
//! left empty is dropped, and an integer above `i64::MAX` is written as
//! `i64::MAX`.

use std::io::Write;

use crate::metric::{unix_nanos, Field, Metric, Value};

/// Escapes a tag key or value: comma, equals sign and space get a
/// backslash; line breaks and tabs, which would end or split the line, are
/// written as `\n`, `\r`, `\t`, `\f` like Telegraf does.
fn escape_tag(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b',' | b'=' | b' ' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.push(b),
        }
    }
}

pub(super) fn encode(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    for m in metrics {
        out.extend_from_slice(m.schema.name.as_bytes());
        let mut tags: [(&str, &str); 8] = [("", ""); 8];
        // Line protocol wants tags sorted by key for the best write path.
        let tags = if m.tags.len() <= tags.len() {
            tags[..m.tags.len()].copy_from_slice(m.tags);
            let t = &mut tags[..m.tags.len()];
            t.sort_unstable_by_key(|t| t.0);
            &*t
        } else {
            m.tags
        };
        for (k, v) in tags {
            let mark = out.len();
            out.push(b',');
            escape_tag(k, out);
            out.push(b'=');
            let value = out.len();
            escape_tag(v, out);
            while out.len() > value && out.last() == Some(&b'\\') {
                out.pop();
            }
            if out.len() == value {
                out.truncate(mark);
            }
        }
        let mut sep = b' ';
        for &Field { name, value, .. } in m.fields {
            out.push(sep);
            sep = b',';
            // Writing to a Vec cannot fail.
            let _ = match value {
                Value::Int(n) => write!(out, "{name}={}i", n.min(i64::MAX as u64)),
                // A float needs no suffix: `0.5`, and `1` read as 1.0.
                Value::Float(_) | Value::Fixed(_) => write!(out, "{name}={value}"),
            };
        }
        if let Some(t) = m.time {
            let _ = write!(out, " {}", unix_nanos(t));
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::super::Format;
    use crate::measure::netstat::count::Counts;
    use crate::metric::Metric;

    fn encode(m: Metric<'_>) -> String {
        let mut out = Vec::new();
        Format::Influx.encode(&[m], &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_builtin_line() {
        let counts = Counts {
            tcp_established: 14,
            tcp_listen: 1,
            udp_socket: 10,
            ..Counts::default()
        };
        let m = Metric {
            schema: &crate::measure::netstat::SCHEMA,
            tags: &[],
            fields: &crate::measure::netstat::fields(&counts),
            time: None,
        };
        assert_eq!(
            encode(m),
            "netstat tcp_close=0i,tcp_close_wait=0i,tcp_closing=0i,tcp_established=14i,\
tcp_fin_wait1=0i,tcp_fin_wait2=0i,tcp_last_ack=0i,tcp_listen=1i,tcp_none=0i,\
tcp_syn_recv=0i,tcp_syn_sent=0i,tcp_time_wait=0i,udp_socket=10i\n"
        );
    }

    #[test]
    fn appends_the_timestamp_in_nanoseconds() {
        let counts = Counts::default();
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let line = encode(Metric {
            schema: &crate::measure::netstat::SCHEMA,
            tags: &[],
            fields: &crate::measure::netstat::fields(&counts),
            time: Some(t),
        });
        assert!(
            line.ends_with(",udp_socket=0i 1700000000000000123\n"),
            "{line}"
        );
    }

    #[test]
    fn escapes_and_sorts_tags() {
        let counts = Counts {
            udp_socket: u64::MAX,
            ..Counts::default()
        };
        let tags = [("netns", "a b,c=d\n"), ("family", "ipv4")];
        let line = encode(Metric {
            schema: &crate::measure::netstat::SCHEMA,
            tags: &tags,
            fields: &crate::measure::netstat::fields(&counts),
            time: None,
        });
        assert!(
            line.starts_with("netstat,family=ipv4,netns=a\\ b\\,c\\=d\\n tcp_close=0i,"),
            "{line}"
        );
        assert!(
            line.ends_with("udp_socket=9223372036854775807i\n"),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn trailing_backslashes_are_trimmed_and_empty_tags_dropped() {
        let counts = Counts::default();
        let line = |tags: &[(&str, &str)]| {
            encode(Metric {
                schema: &crate::measure::netstat::SCHEMA,
                tags,
                fields: &crate::measure::netstat::fields(&counts),
                time: None,
            })
        };
        assert!(line(&[("netns", "a\\")]).starts_with("netstat,netns=a tcp_close="));
        assert!(line(&[("netns", "a b\\\\")]).starts_with("netstat,netns=a\\ b tcp_close="));
        assert!(line(&[("netns", "\\"), ("family", "ipv4")])
            .starts_with("netstat,family=ipv4 tcp_close="));
        assert!(line(&[("netns", "")]).starts_with("netstat tcp_close="));
    }
}
