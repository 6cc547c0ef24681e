//! The exit codes, documented in the README and `--help`. (2, a usage
//! error, is clap's.)

pub const EXIT_OK: u8 = 0;
/// A one-shot gather failed, stdout failed, or `--listen` cannot bind.
pub const EXIT_GATHER_FAILED: u8 = 1;
/// Some namespaces (or processes' namespaces) could not be counted, while
/// the others were printed.
pub const EXIT_NAMESPACE_FAILED: u8 = 3;
