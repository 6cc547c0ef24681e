//! Measurements: one module each, owning its aggregation over the records
//! (its `count` module, fed by the one pass of [`Aggregations`]), its rows
//! (tags and fields) over what the aggregations computed ([`Gathered`]) and
//! its descriptors ([`Schema`]: name, fields' HELP, native Prometheus
//! families, type). The encoders read only the descriptors.
//!
//! A new measurement is one module here and one line in [`ALL`]: its
//! [`Measurement`] names it for `--only`, and its [`Plug`] declares its flag
//! (as data: the command line is built from the registry) and, when it
//! reads socket records, its [`Aggregation`], which the one pass feeds and
//! [`Gathered::plugged`] hands back to its rows (see ARCHITECTURE.md).

mod aggregations;
pub mod cgroup;
pub mod counters;
pub mod destination;
pub mod ephemeral;
pub mod health;
pub mod listen;
pub mod netstat;
pub mod port;
pub mod selfmetrics;
pub mod tcpinfo;
#[cfg(test)]
pub(crate) mod testing;

use std::any::Any;

use crate::metric::{Field, Schema};
use crate::record::{Kind, Record};
pub use aggregations::{Aggregations, Gathered};

/// How many measurements [`ALL`] holds.
pub const COUNT: usize = ALL.len();

/// Every measurement, in the order its rows are printed: every `netstat`
/// row, then every `netstat_port` row, and so on (the Prometheus format
/// needs one metric family together).
pub static ALL: &[&Measurement] = &[
    &netstat::MEASUREMENT,
    &port::MEASUREMENT,
    &listen::MEASUREMENT,
    &ephemeral::MEASUREMENT,
    &destination::MEASUREMENT,
    &cgroup::MEASUREMENT,
    &counters::MEASUREMENT,
    &health::MEASUREMENT,
    &tcpinfo::MEASUREMENT,
];

/// Where a measurement puts one row: its schema, its own tags (the
/// namespace's are merged in by `rows`), its fields sorted by name.
pub type Emit<'e> = dyn FnMut(&'static Schema, &[(&'static str, String)], &[Field]) + 'e;

/// One measurement.
#[derive(Debug)]
pub struct Measurement {
    /// The schemas of its rows, in the order they are printed.
    pub schemas: &'static [&'static Schema],
    /// Its rows for one namespace, when `shape` prints it.
    pub rows: fn(&Shape, &Gathered<'_>, &mut Emit<'_>),
    /// Its name for `--only` (whose values are these, in this order);
    /// `None` for one printed with other measurements only.
    pub only: Option<&'static str>,
    /// What a measurement that plugs in whole declares: its flag and its
    /// aggregation. `None` for the measurements whose flags `args`
    /// declares and whose aggregations `Aggregations` names (those flags
    /// also shape other measurements' rows).
    pub plug: Option<Plug>,
}

/// A measurement's own flag and its aggregation: the command line and the
/// one pass are built from these, so adding one touches neither.
#[derive(Debug)]
pub struct Plug {
    /// The flag that asks for it.
    pub flag: Flag,
    /// Its aggregation over the main pass's records, made once per
    /// collector when it is printed; `None` for a measurement whose rows
    /// come from what [`Gathered`] already holds.
    pub aggregation: Option<fn() -> Box<dyn Aggregation>>,
}

/// A switch on the command line (`--long`), as plain data: `args` makes
/// the clap argument (so `--help`, the man page and the completions have
/// it), `cli` checks it into [`Measurements`].
#[derive(Debug)]
pub struct Flag {
    /// The long name, without `--`.
    pub long: &'static str,
    /// Its `--help` text, ending with an `Example: --long` line.
    pub help: &'static str,
}

/// An aggregation of a [`Plug`]: fed every record of the main pass, and
/// told when a protocol's records are read again. It keeps what it counts
/// in memory it made before the pass (no allocation per socket).
pub trait Aggregation: Any + std::fmt::Debug + Send {
    /// Counts one socket.
    fn add(&mut self, r: &Record);
    /// Forgets what was counted of `kind`.
    fn reset(&mut self, kind: Kind);
}

/// Every schema, in the order rows are printed.
pub fn schemas() -> impl Iterator<Item = &'static Schema> {
    ALL.iter().flat_map(|m| m.schemas.iter().copied())
}

/// The measurements a gather prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measurements {
    pub netstat: bool,
    pub port: bool,
    pub listen: bool,
    pub destination: bool,
    pub cgroup: bool,
    pub counters: bool,
    /// `netstat_health` (`--health`; its fields on the other rows come
    /// with the flag, whichever rows are printed).
    pub health: bool,
    /// The measurements with a [`Plug`], by their place in [`ALL`].
    pub plugged: [bool; COUNT],
}

impl Measurements {
    /// Every measurement printed.
    pub fn all() -> Measurements {
        Measurements {
            netstat: true,
            port: true,
            listen: true,
            destination: true,
            cgroup: true,
            counters: true,
            health: true,
            plugged: [true; COUNT],
        }
    }

    /// Whether `m`, a measurement with a [`Plug`], is printed.
    pub fn prints(&self, m: &Measurement) -> bool {
        ALL.iter()
            .position(|a| std::ptr::eq(*a, m))
            .is_some_and(|i| self.plugged[i])
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_is_registered_once_under_its_own_name() {
        let names: Vec<&str> = super::schemas().map(|s| s.name).collect();
        let mut distinct = names.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }
}
