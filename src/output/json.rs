//! JSON, one object per metric per line, shaped like Telegraf's JSON
//! serializer: `{"fields":{...},"name":"netstat","tags":{...},"timestamp":S}`
//! with counts as JSON integers and the timestamp in Unix seconds.

use std::io::Write;

use crate::metric::{unix_nanos, Metric};

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

pub(super) fn encode(metrics: &[Metric<'_>], out: &mut Vec<u8>) {
    for m in metrics {
        out.extend_from_slice(b"{\"fields\":{");
        for (i, f) in m.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "\"{}\":{}", f.name, f.value);
        }
        out.extend_from_slice(b"},\"name\":");
        string(m.schema.name, out);
        out.extend_from_slice(b",\"tags\":{");
        for (i, (k, v)) in m.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(k, out);
            out.push(b':');
            string(v, out);
        }
        let secs = m.time.map_or(0, |t| unix_nanos(t) / 1_000_000_000);
        let _ = writeln!(out, "}},\"timestamp\":{secs}}}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::super::Format;
    use crate::measure::netstat::count::Counts;
    use crate::metric::Metric;

    #[test]
    fn writes_telegrafs_json_shape() {
        let counts = Counts {
            tcp_established: 14,
            ..Counts::default()
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        let tags = [("netns", "q\"\u{1}")];
        let mut out = Vec::new();
        Format::Json.encode(
            &[Metric {
                schema: &crate::measure::netstat::SCHEMA,
                tags: &tags,
                fields: &crate::measure::netstat::fields(&counts),
                time: Some(t),
            }],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"fields\":{\"tcp_close\":0,"), "{text}");
        assert!(text.contains("\"tcp_established\":14,"), "{text}");
        assert!(
            text.ends_with("},\"name\":\"netstat\",\"tags\":{\"netns\":\"q\\\"\\u0001\"},\"timestamp\":1700000000}\n"),
            "{text}"
        );
    }
}
