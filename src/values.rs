//! Values of the command line that the exporter reads too: port lists,
//! durations, listen addresses. Plain functions from text to value; what
//! they refuse is a [`ValueError`], whose message a usage error prints.

use std::fmt;
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

/// A value of the command line refused: the value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueError {
    /// A `--listen` address.
    Listen { value: String, why: ListenWhy },
    /// A port of a port list that is not a number from 1 to 65535.
    Port { port: String, list: String },
    /// A range of a port list that runs backwards.
    Backwards {
        range: String,
        list: String,
        from: u16,
        to: u16,
    },
    /// A range of a port list over [`MAX_PORTS`] ports.
    LongRange { range: String },
    /// A duration.
    Duration { value: String, why: DurationWhy },
}

/// What is wrong with a `--listen` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenWhy {
    NoPort,
    NotAPort,
    NotIpv6,
    Ipv6WithoutBrackets,
    NotIp,
}

/// What is wrong with a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationWhy {
    /// Not `<number><unit>`...
    Syntax,
    Negative,
    Zero,
    /// An `--interval` outside [`MIN_INTERVAL`]`..=`[`MAX_INTERVAL`].
    Interval,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Listen { value, why } => {
                let why = match why {
                    ListenWhy::NoPort => "no port",
                    ListenWhy::NotAPort => "not a port",
                    ListenWhy::NotIpv6 => "not an IPv6 address",
                    ListenWhy::Ipv6WithoutBrackets => "an IPv6 address goes in brackets",
                    ListenWhy::NotIp => {
                        "not an IP address (host names other than localhost are not resolved)"
                    }
                };
                write!(
                    f,
                    "invalid value '{value}' for '--listen <ADDR>': {why}; {LISTEN_FORMS}"
                )
            }
            ValueError::Port { port, list } => write!(
                f,
                "invalid port {port:?} in {list:?}: expected a number from 1 to 65535"
            ),
            ValueError::Backwards {
                range,
                list,
                from,
                to,
            } => write!(f, "invalid port range {range:?} in {list:?}: {from} > {to}"),
            ValueError::LongRange { range } => {
                write!(f, "port range {range:?} holds more than {MAX_PORTS} ports")
            }
            ValueError::Duration { value, why } => {
                let why = match why {
                    DurationWhy::Syntax => "expected e.g. 250ms, 10s, 1m, 1h or 1m30s",
                    DurationWhy::Negative => "the interval must not be negative",
                    DurationWhy::Zero => "the interval must be greater than zero",
                    DurationWhy::Interval => "the interval must be between 10ms and 24h",
                };
                write!(f, "invalid duration {value:?}: {why}")
            }
        }
    }
}

impl std::error::Error for ValueError {}

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
    pub fn parse(s: &str) -> Result<ListenAddr, ValueError> {
        let bad = |why| ValueError::Listen {
            value: s.into(),
            why,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad(ListenWhy::NoPort))?;
        if port.is_empty() || port.starts_with('+') {
            return Err(bad(ListenWhy::NoPort));
        }
        let port: u16 = port.parse().map_err(|_| bad(ListenWhy::NotAPort))?;
        match host {
            "" => Ok(ListenAddr::Any(port)),
            "localhost" => Ok(ListenAddr::Localhost(port)),
            h if h.starts_with('[') && h.ends_with(']') => h[1..h.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| bad(ListenWhy::NotIpv6)),
            h if h.contains(':') => Err(bad(ListenWhy::Ipv6WithoutBrackets)),
            h => h
                .parse::<std::net::Ipv4Addr>()
                .map(|ip| ListenAddr::Addr((ip, port).into()))
                .map_err(|_| bad(ListenWhy::NotIp)),
        }
    }
}

/// Parses one `--local-port`/`--remote-port` value: comma-separated ports
/// and inclusive ranges (`443,8000-8010`), each port 1..=65535. Appends to
/// `into`.
fn parse_port_list(s: &str, into: &mut Vec<u16>) -> Result<(), ValueError> {
    let port = |t: &str| match t.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(ValueError::Port {
            port: t.into(),
            list: s.into(),
        }),
        Ok(p) => Ok(p),
    };
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(ValueError::Backwards {
                        range: item.into(),
                        list: s.into(),
                        from: a,
                        to: b,
                    });
                }
                if usize::from(b - a) >= MAX_PORTS {
                    return Err(ValueError::LongRange { range: item.into() });
                }
                into.extend(a..=b);
            }
            None => into.push(port(item)?),
        }
    }
    Ok(())
}

/// `--local-port`/`--remote-port`: one LIST.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, ValueError> {
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
pub fn parse_interval(s: &str) -> Result<Duration, ValueError> {
    let d = parse_duration(s)?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(duration_error(s, DurationWhy::Interval));
    }
    Ok(d)
}

/// Parses Go-style durations as Telegraf users write them: one or more
/// `<number><unit>` with units ns, us, ms, s, m, h. Zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || duration_error(s, DurationWhy::Syntax);
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest.starts_with('-') {
        return Err(duration_error(s, DurationWhy::Negative));
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
        return Err(duration_error(s, DurationWhy::Zero));
    }
    Ok(d)
}

fn duration_error(value: &str, why: DurationWhy) -> ValueError {
    ValueError::Duration {
        value: value.into(),
        why,
    }
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
