//! telegraf-netstat: counts a Linux host's TCP connections by state and its
//! UDP sockets over NETLINK_SOCK_DIAG (or /proc), and prints them the way
//! Telegraf's built-in `inputs.netstat` plugin does.
//!
//! Layers, each usable alone: [`wire`] (bytes), [`netlink`] and [`procfs`]
//! (kernel I/O), [`netns`] (other network namespaces), [`tally`]
//! (counting), [`collector`] (one gather in one namespace), [`output`]
//! (printing).

pub mod cli;
pub mod collector;
pub mod error;
pub mod log;
pub mod netlink;
pub mod netns;
pub mod output;
pub mod procfs;
pub mod sink;
pub mod tally;
pub mod wire;

pub use collector::{Collector, Event, Options, Proto, Source};
pub use error::{Dump, Error};
pub use output::{Format, Metric};
pub use tally::{tally, tally_unix, ByFamily, Counts, StateHistogram, TcpState};
