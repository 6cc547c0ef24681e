//! Reading what the binary printed: influx lines and metrics.

use super::*;

/// Parses one line of our influx output strictly: the measurement, no tags,
/// the 13 integer fields in sorted order, no timestamp, one newline.
pub fn parse_line(line: &str) -> Vec<(String, u64)> {
    let body = line
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no trailing newline: {line:?}"));
    assert!(!body.contains('\n'), "more than one line: {line:?}");
    let fields = body
        .strip_prefix("netstat ")
        .unwrap_or_else(|| panic!("not a netstat line without tags: {line:?}"));
    assert!(
        !fields.contains(' '),
        "unexpected timestamp or tag: {line:?}"
    );
    fields
        .split(',')
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {f:?}"));
            let v = v
                .strip_suffix('i')
                .unwrap_or_else(|| panic!("field {f:?} is not an integer"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {f:?}")),
            )
        })
        .collect()
}

pub fn fields(c: &Counts) -> Vec<(String, u64)> {
    c.fields()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// One metric of our influx output: its tags and its fields.
pub type Parsed = (Vec<(String, String)>, Vec<(String, u64)>);

/// Parses every line of our influx output, tags included (test tags hold no
/// characters that need escaping).
pub fn parse_metrics(out: &str) -> Vec<Parsed> {
    out.lines()
        .map(|line| {
            let (series, fields) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no fields: {line:?}"));
            let mut parts = series.split(',');
            assert_eq!(parts.next(), Some("netstat"), "{line}");
            let tags = parts
                .map(|t| {
                    let (k, v) = t.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            (tags, parse_line(&format!("netstat {fields}\n")))
        })
        .collect()
}

/// A metric of any measurement: its name, tags and fields.
pub type AnyMetric = (String, Vec<(String, String)>, Vec<(String, u64)>);

/// Every line of our influx output as (measurement, tags, fields), any
/// measurement.
pub fn parse_metrics_any(out: &str) -> Vec<AnyMetric> {
    out.lines()
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            let (name, tags) = parse_series(series);
            (name, tags, parse_line(&format!("netstat {fields}\n")))
        })
        .collect()
}

/// A line's measurement and tags (`netstat_port,direction=local,port=1`),
/// any collection of pairs (test tags hold nothing that needs escaping).
pub fn parse_series<T: FromIterator<(String, String)>>(series: &str) -> (String, T) {
    let mut parts = series.split(',');
    let name = parts.next().unwrap().to_string();
    let tags = parts
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (name, tags)
}

/// Tags as the tests write them.
pub fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
