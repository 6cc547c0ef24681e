//! telegraf-netstat: counts a Linux host's TCP connections by state and its
//! UDP sockets over NETLINK_SOCK_DIAG (or /proc), and prints them the way
//! Telegraf's built-in `inputs.netstat` plugin does.
//!
//! The library is everything below the command line, in the order data
//! flows: [`wire`] (bytes), [`record`] (one socket), [`netlink`] and
//! [`procfs`] (kernel I/O), [`kept`] (a namespace's /proc files, kept open),
//! [`portrange`] (a namespace's ephemeral ports), [`counters`] (its SNMP
//! MIB counters),
//! [`cgroupfs`] (cgroup ids to paths),
//! [`netns`] (other network namespaces and their labels), [`aggregate`]
//! (one pass over the records), [`collector`] (one gather in one namespace,
//! returning every aggregation's result), [`rows`] (results as metrics),
//! [`output`] (one encoder per format) and [`sink`] (stdout, the atomic
//! file). Each depends only on those before it.
//!
//! The binary adds the command line (clap), the loop over namespaces, the
//! modes (one-shot, execd and interval loops, the exporter) and the man
//! page. Its crates sit behind the default `cli` feature: with
//! `default-features = false` the library needs only `rustix` and
//! `foldhash` (the destinations' hash map).

pub mod aggregate;
pub mod bytecode;
pub mod cgroupfs;
pub mod collector;
pub mod counters;
pub mod error;
pub mod kept;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod portrange;
pub mod procfs;
pub mod record;
pub mod rows;
pub mod sink;
pub mod tagtext;
pub mod tcphash;
pub mod wire;

#[cfg(test)]
mod testdir;

pub use aggregate::states::{
    counts_from_states, counts_from_unix_types, ByFamily, Counts, StateHistogram, TcpState,
};
pub use aggregate::Kind;
pub use collector::{Collector, Event, Options, Source};
pub use error::Error;
pub use output::{Format, Metric};
pub use wire::Dump;
