//! telegraf-netstat: counts a Linux host's TCP connections by state and its
//! UDP sockets over NETLINK_SOCK_DIAG (or /proc), and prints them the way
//! Telegraf's built-in `inputs.netstat` plugin does.
//!
//! Layers, each usable alone: [`wire`] (bytes), [`netlink`] and [`procfs`]
//! (kernel I/O), [`netns`] (other network namespaces), [`aggregate`]
//! (counting), [`collector`] (one gather in one namespace), [`output`]
//! (printing).

pub mod aggregate;
pub mod collector;
pub mod error;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod procfs;
pub mod rows;
pub mod sink;
pub mod wire;

pub use aggregate::states::{
    counts_from_states, counts_from_unix_types, ByFamily, Counts, StateHistogram, TcpState,
};
pub use aggregate::Kind;
pub use collector::{Collector, Event, Options, Source};
pub use error::Error;
pub use output::{Format, Metric};
pub use wire::Dump;
