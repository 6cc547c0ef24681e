//! Values of the command line that the exporter reads too: port lists,
//! durations, listen addresses. Plain functions from text to value, with
//! the message a usage error prints.

use std::time::Duration;

use crate::measure::port::count::MAX_PORTS;

/// Where `--listen` without a value serves: every address, port 10273
/// (outside the Prometheus default-port wiki's 9100-9999 range, which is
/// fully allocated; not registered there).
pub const DEFAULT_LISTEN: &str = ":10273";

/// One `--listen` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: every address, IPv4 and IPv6.
    Any(u16),
    /// `localhost:PORT`: 127.0.0.1 and ::1 (where IPv6 is present).
    Localhost(u16),
    /// `IPV4:PORT` or `[IPV6]:PORT`.
    Addr(std::net::SocketAddr),
}

/// The forms `--listen` takes, for error messages.
const LISTEN_FORMS: &str =
    "give :PORT (every address), IPV4:PORT, [IPV6]:PORT or localhost:PORT, PORT from 0 to 65535";

impl ListenAddr {
    /// The port asked for (0: any the kernel chooses).
    pub fn port(&self) -> u16 {
        match *self {
            ListenAddr::Any(p) | ListenAddr::Localhost(p) => p,
            ListenAddr::Addr(a) => a.port(),
        }
    }

    /// Parses one `--listen` value; host names other than `localhost` are
    /// not resolved (a name's addresses change; say the address).
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        let bad =
            |why: &str| format!("invalid value '{s}' for '--listen <ADDR>': {why}; {LISTEN_FORMS}");
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if port.is_empty() || port.starts_with('+') {
            return Err(bad("no port"));
        }
        let port: u16 = port.parse().map_err(|_| bad("not a port"))?;
        match host {
            "" => Ok(ListenAddr::Any(port)),
            "localhost" => Ok(ListenAddr::Localhost(port)),
            h if h.starts_with('[') && h.ends_with(']') => h[1..h.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| bad("not an IPv6 address")),
            h if h.contains(':') => Err(bad("an IPv6 address goes in brackets")),
            h => h
                .parse::<std::net::Ipv4Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| {
                    bad("not an IP address (host names other than localhost are not resolved)")
                }),
        }
    }
}

/// Parses one `--local-port`/`--remote-port` value: comma-separated ports
/// and inclusive ranges (`443,8000-8010`), each port 1..=65535. Appends to
/// `into`.
fn parse_port_list(s: &str, into: &mut Vec<u16>) -> Result<(), String> {
    let port = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "invalid port {t:?} in {s:?}: expected a number from 1 to 65535"
            )),
            Ok(p) => Ok(p),
        }
    };
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("invalid port range {item:?} in {s:?}: {a} > {b}"));
                }
                if usize::from(b - a) >= MAX_PORTS {
                    return Err(format!(
                        "port range {item:?} holds more than {MAX_PORTS} ports"
                    ));
                }
                into.extend(a..=b);
            }
            None => into.push(port(item)?),
        }
    }
    Ok(())
}

/// `--local-port`/`--remote-port`: one LIST.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let mut v = Vec::new();
    parse_port_list(s, &mut v)?;
    Ok(v)
}

/// The shortest `--interval`: a gather takes about a millisecond even on an
/// idle host, and Telegraf's own intervals are seconds.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest `--interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `--interval`: a duration within `MIN_INTERVAL..=MAX_INTERVAL`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(format!(
            "invalid duration {s:?}: the interval must be between 10ms and 24h"
        ));
    }
    Ok(d)
}

/// Parses Go-style durations as Telegraf users write them: one or more
/// `<number><unit>` with units ns, us, ms, s, m, h. Zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 250ms, 10s, 1m, 1h or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest.starts_with('-') {
        return Err(format!(
            "invalid duration {s:?}: the interval must not be negative"
        ));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    let d = Duration::try_from_secs_f64(total).map_err(|_| bad())?;
    if d.is_zero() {
        return Err(format!(
            "invalid duration {s:?}: the interval must be greater than zero"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists() {
        let mut v = Vec::new();
        parse_port_list("443,8000-8002, 22", &mut v).unwrap();
        assert_eq!(v, [443, 8000, 8001, 8002, 22]);
        for bad in ["0", "65536", "a", "", "10-5", "1-2000", "443,", "-5"] {
            assert!(parse_port_list(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }
}
