//! telegraf-netstat: counts a Linux host's TCP connections by state and its
//! UDP sockets over NETLINK_SOCK_DIAG (or /proc), and prints them the way
//! Telegraf's built-in `inputs.netstat` plugin does.
//!
//! Layers, each usable alone: [`wire`] (bytes), [`netlink`] and [`procfs`]
//! (kernel I/O), [`tally`] (counting), [`collector`] (one gather),
//! [`output`] (printing).

pub mod collector;
pub mod error;
pub mod log;
pub mod netlink;
pub mod output;
pub mod procfs;
pub mod tally;
pub mod wire;

pub use collector::{Collector, Event, Proto, Source};
pub use error::{Dump, Error};
pub use output::{Format, Metric};
pub use tally::{tally, Counts, StateHistogram, TcpState};
