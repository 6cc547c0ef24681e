//! The vocabulary every measurement and every encoder share: a field
//! ([`Field`], [`Value`]), a metric ([`Metric`]), and what describes a
//! measurement's metrics to the formats ([`Schema`]: its name, its fields'
//! HELP, their native Prometheus families). Measurements (`crate::measure`)
//! fill these in; the encoders (`crate::output`) read them and never name a
//! measurement.

use std::time::SystemTime;

/// One field of a metric: its value, and whether it only ever grows (a
/// Prometheus counter, named `<name>_total`) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub value: Value,
    pub counter: bool,
}

/// A field's value. Counts are integers (`14i` in line protocol, as the
/// built-in writes them); a ratio is a float. InfluxDB fixes a field's type
/// on its first write, so a field is always one or the other.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Value {
    Int(u64),
    /// Finite, never NaN (the measurements make sure).
    Float(f64),
    /// A float written with six decimals, fixed width below 10 (a HEAD
    /// answers with the Content-Length of the GET it stands for).
    Fixed(f64),
}

impl std::fmt::Display for Value {
    /// The number as every format writes it: an integer in decimal, a float
    /// in Rust's shortest form that reads back to the same value (never in
    /// exponent notation, so line protocol and JSON take it as it is).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Fixed(x) => write!(f, "{x:.6}"),
        }
    }
}

impl Field {
    pub fn gauge(name: &'static str, value: u64) -> Field {
        Field {
            name,
            value: Value::Int(value),
            counter: false,
        }
    }

    /// An integer that only ever grows (a Prometheus counter).
    pub fn counter(name: &'static str, value: u64) -> Field {
        Field {
            name,
            value: Value::Int(value),
            counter: true,
        }
    }

    /// A float gauge (a ratio).
    pub fn ratio(name: &'static str, value: f64) -> Field {
        debug_assert!(value.is_finite());
        Field {
            name,
            value: Value::Float(value),
            counter: false,
        }
    }
}

/// One metric: a measurement's fields, sorted by name, with optional tags.
#[derive(Debug, Clone, Copy)]
pub struct Metric<'a> {
    /// What the metric is: its measurement's name and descriptions.
    pub schema: &'a Schema,
    pub tags: &'a [(&'a str, &'a str)],
    pub fields: &'a [Field],
    /// Gather time; `None` leaves stamping to the consumer (Telegraf does).
    pub time: Option<SystemTime>,
}

/// What describes one measurement's metrics to the formats.
#[derive(Debug)]
pub struct Schema {
    /// The measurement name (influx, JSON, and the prefix of the
    /// Prometheus families in Telegraf's naming).
    pub name: &'static str,
    /// A field's HELP in Telegraf's naming, a sentence with its full stop.
    pub help: fn(&str) -> String,
    /// A field's family in the native Prometheus naming; `None` leaves the
    /// field out of that naming.
    pub native: fn(&'static str) -> Option<Native>,
    /// Printed with native Prometheus names only (the other outputs stay
    /// exactly Telegraf's).
    pub native_only: bool,
}

/// A family of the native Prometheus names: its name, HELP, whether a
/// counter, and the label a field becomes (`state` for a TCP state field,
/// `family` for a UDP counter, `le` for a histogram bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Native {
    /// The series' name (a histogram's `_bucket`, `_count` or `_sum`).
    pub name: &'static str,
    /// The family's HELP.
    pub help: &'static str,
    pub counter: bool,
    pub label: Option<(&'static str, &'static str)>,
    /// The histogram this series belongs to: its family's name.
    pub histogram: Option<&'static str>,
}

impl Native {
    /// A gauge family without a label.
    pub const fn gauge(name: &'static str, help: &'static str) -> Native {
        Native {
            name,
            help,
            counter: false,
            label: None,
            histogram: None,
        }
    }

    /// A counter family without a label.
    pub const fn counter(name: &'static str, help: &'static str) -> Native {
        Native {
            counter: true,
            ..Native::gauge(name, help)
        }
    }
}

/// One field a measurement prints: its name, its HELP sentence (without
/// the measurement's own words and the full stop) and its native family.
#[derive(Debug, Clone, Copy)]
pub struct FieldDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub native: Option<Native>,
}

impl FieldDesc {
    /// A field printed in the native naming as `native`: one table row.
    pub const fn new(name: &'static str, help: &'static str, native: Native) -> FieldDesc {
        FieldDesc {
            name,
            help,
            native: Some(native),
        }
    }

    /// A gauge field of this name.
    pub fn gauge(&self, value: u64) -> Field {
        Field::gauge(self.name, value)
    }

    /// A counter field of this name.
    pub fn counter(&self, value: u64) -> Field {
        Field::counter(self.name, value)
    }

    /// A ratio field of this name.
    pub fn ratio(&self, value: f64) -> Field {
        Field::ratio(self.name, value)
    }
}

/// The description of `field` in `table`.
pub fn find<'t>(table: &'t [FieldDesc], field: &str) -> Option<&'t FieldDesc> {
    table.iter().find(|d| d.name == field)
}

/// A field's HELP in Telegraf's naming from its `table`: its sentence
/// and the full stop.
pub fn table_help(table: &[FieldDesc], field: &str) -> String {
    let what = find(table, field).map_or_else(|| unknown_help(field), |d| d.help.into());
    format!("{what}.")
}

/// A [`Schema`] whose fields' HELP and native families are all in one
/// table of [`FieldDesc`]s.
macro_rules! table_schema {
    ($name:expr, $table:expr) => {
        $crate::metric::Schema {
            name: $name,
            help: |field| $crate::metric::table_help(&$table, field),
            native: |field| $crate::metric::find(&$table, field).and_then(|d| d.native),
            native_only: false,
        }
    };
}
pub(crate) use table_schema;

/// Declares a measurement's fields, a `const` [`FieldDesc`] each, and
/// `$table`, every one of them in the order given (sorted by name): each
/// field is declared once. An entry is `NAME = "name", "HELP";` (no native
/// family of its own), `NAME = "name", "HELP", gauge "native_name";` (its
/// native HELP is its own sentence and the full stop), or that and the
/// native HELP (`counter` for a counter).
macro_rules! fields {
    (@native $help:expr) => { None };
    (@native $help:expr, $kind:ident $native:literal) => {
        Some($crate::metric::Native::$kind($native, concat!($help, ".")))
    };
    (@native $help:expr, $kind:ident $native:literal, $nhelp:literal) => {
        Some($crate::metric::Native::$kind($native, $nhelp))
    };
    (
        $(#[$tm:meta])* $table:ident;
        $(
            $(#[$m:meta])*
            $v:vis $c:ident = $name:expr, $help:expr $(, $kind:ident $native:literal $(, $nhelp:literal)?)?;
        )*
    ) => {
        $(
            $(#[$m])*
            $v const $c: $crate::metric::FieldDesc = $crate::metric::FieldDesc {
                name: $name,
                help: $help,
                native: $crate::metric::fields!(@native $help $(, $kind $native $(, $nhelp)?)?),
            };
        )*
        $(#[$tm])*
        const $table: [$crate::metric::FieldDesc; [$(stringify!($c)),*].len()] = [$($c),*];
    };
}
pub(crate) use fields;

/// What a field outside every table is, in Telegraf's naming.
pub fn unknown_help(field: &str) -> String {
    format!("The {field} field of telegraf-netstat")
}

/// Nanoseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A family printed in the Prometheus format only, after the rows: its
/// name and HELP, and its samples (labels, value).
#[derive(Debug, Clone)]
pub struct Family<'a> {
    pub desc: Native,
    pub samples: Vec<(Vec<(&'static str, &'a str)>, Value)>,
}
