//! telegraf-netstat: counts a Linux host's TCP connections by state and its
//! UDP sockets over NETLINK_SOCK_DIAG (or /proc), and prints them the way
//! Telegraf's built-in `inputs.netstat` plugin does.
//!
//! What a library user gets: a [`Collector`] with its [`Options`] (one
//! gather in one namespace, over [`netlink`] or [`procfs`]), the gathered
//! result ([`measure::Gathered`]), the measurements that turn it into rows
//! ([`measure`], [`rows::Rows`]), the formats ([`Format`]) and the
//! [`Error`] type.
//!
//! The modules in import order, each depending only on those before it
//! (unit tests aside): [`wire`] (bytes), [`error`] (the error type),
//! [`record`] (one socket), [`bytecode`] (a kernel socket filter),
//! [`netlink`] and [`procfs`] (kernel I/O),
//! `kept`, `portrange`, `tcphash` and [`counters`] (a namespace's /proc
//! files, kept open: its ephemeral ports, whether it shares the TCP hash,
//! its SNMP MIB counters), `tagtext` and [`cgroupfs`] (cgroup ids to
//! paths), [`netns`] (other network namespaces and their labels),
//! [`metric`] (what a field, a metric and a measurement's description
//! are), [`measure`] (one module per measurement: its aggregation over the
//! records, its rows and its descriptions; the one pass that feeds them),
//! [`collector`] (one gather in one namespace, returning every
//! aggregation's result), [`output`] (one encoder per format, reading
//! descriptions only) and [`rows`] (the rows of a gather, in order, tagged
//! by one rule).
//!
//! The binary adds the command line, the loop over namespaces, the modes
//! (one-shot, execd and interval loops, the exporter) and the man page.
//! What it shares with the man page generator sits behind the default
//! `cli` feature: `args` (clap's definition) and `values` (value
//! parsers). With `default-features = false` the library needs
//! only `rustix` and `foldhash` (the destinations' hash map).

#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod args;
pub mod bytecode;
pub mod cgroupfs;
pub mod collector;
pub mod counters;
pub mod error;
pub(crate) mod kept;
pub mod measure;
pub mod metric;
pub mod netlink;
pub mod netns;
pub mod output;
pub(crate) mod portrange;
pub mod procfs;
pub mod record;
pub mod rows;
pub(crate) mod tagtext;
pub(crate) mod tcphash;
#[cfg(feature = "cli")]
pub mod values;
pub mod wire;

#[cfg(test)]
mod testdir;

pub use collector::{Collector, Event, Options, Source};
pub use error::Error;
pub use measure::netstat::count::{
    counts_from_states, counts_from_unix_types, ByFamily, Counts, StateHistogram, TcpState,
};
pub use metric::Metric;
pub use output::Format;
pub use record::Kind;
pub use wire::Dump;
