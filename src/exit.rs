//! The exit codes, documented in the README and `--help`.

pub const EXIT_OK: u8 = 0;
/// A one-shot gather failed, stdout failed, or `--listen` cannot bind.
pub const EXIT_GATHER_FAILED: u8 = 1;
/// A usage error: clap's own code, and the exporter's for sockets systemd
/// passed that are unusable.
pub const EXIT_USAGE: u8 = 2;
/// Some namespaces (or processes' namespaces) could not be counted, while
/// the others were printed.
pub const EXIT_NAMESPACE_FAILED: u8 = 3;
