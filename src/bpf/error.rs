//! What `--source bpf` could not do: the step, and what the kernel, a file
//! or aya said. `Display` carries the cause (there is no `source()`), as
//! the `E!`/`W!` lines print it whole.

use std::fmt;

use super::{OBJECT_ENV, VMLINUX};

/// The kernel's BTF as `btf.rs` reads it: what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not little-endian BTF (magic 0xeb9f).
    Magic,
    /// Its header is cut short.
    Header,
    /// Its `.0` section lies out of the file's bounds.
    Section(&'static str),
    /// Type number `.0` is cut short.
    CutType(usize),
    /// Type number `index` has a kind this reader does not know.
    Kind { index: usize, kind: u32 },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Magic => f.write_str("not little-endian BTF (magic 0xeb9f)"),
            Malformed::Header => f.write_str("its header is cut short"),
            Malformed::Section(s) => write!(f, "its {s} section is out of bounds"),
            Malformed::CutType(i) => write!(f, "type {i} is cut short"),
            Malformed::Kind { index, kind } => write!(f, "type {index} has unknown kind {kind}"),
        }
    }
}

/// A step of `--source bpf` that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BpfError {
    /// This build has no program: clang was not found at build time.
    NoProgram,
    /// The object `TELEGRAF_NETSTAT_BPF_OBJECT` names cannot be read.
    Object { path: String, error: std::io::Error },
    /// The kernel's BTF file cannot be read.
    NoBtf(std::io::Error),
    /// This process's capabilities cannot be read.
    Capabilities(std::io::Error),
    /// This process lacks these capabilities (`CAP_BPF and CAP_PERFMON`).
    Needs(&'static str),
    /// The kernel's BTF cannot be read by `btf.rs`.
    Btf(Malformed),
    /// The kernel's BTF lacks a field the program reads.
    NoField {
        structure: &'static str,
        field: &'static str,
    },
    /// The object lacks a map or program of this name.
    Missing(&'static str),
    /// A step done through aya (`step` says which), and what it said.
    Aya {
        step: &'static str,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the iterator's file failed.
    Read(std::io::Error),
    /// Read number `.0` of a walk ended short of its end without walking
    /// further.
    NoProgress(u32),
    /// A walk did not end in this many reads.
    Unending(u32),
    /// The last read's trailer is not the program's.
    Trailer,
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BpfError::NoProgram => {
                f.write_str("this build has no BPF program: clang was not found at build time")
            }
            BpfError::Object { path, error } => {
                write!(f, "cannot read {OBJECT_ENV}={path}: {error}")
            }
            BpfError::NoBtf(e) => write!(
                f,
                "the kernel's BTF is needed (CONFIG_DEBUG_INFO_BTF): cannot read {VMLINUX}: {e}"
            ),
            BpfError::Capabilities(e) => write!(f, "cannot read this process's capabilities: {e}"),
            BpfError::Needs(caps) => write!(f, "it needs {caps} (or CAP_SYS_ADMIN)"),
            BpfError::Btf(m) => write!(f, "cannot read {VMLINUX}: {m}"),
            BpfError::NoField { structure, field } => write!(
                f,
                "the kernel has no field {field} in struct {structure} (its BTF, {VMLINUX}): the \
                 walk needs Linux 6.1 or later"
            ),
            BpfError::Missing(what) => write!(f, "the BPF object has no {what}"),
            BpfError::Aya { step, error } => write!(f, "{step}: {error}"),
            BpfError::Read(e) => write!(f, "reading the walk: {e}"),
            BpfError::NoProgress(read) => write!(f, "read {read} of the walk made no progress"),
            BpfError::Unending(reads) => write!(f, "the walk did not end in {reads} reads"),
            BpfError::Trailer => f.write_str("the walk's trailer is malformed"),
        }
    }
}

impl std::error::Error for BpfError {}

/// Makes aya's error `E` the failure of the step `step`.
pub fn aya<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> BpfError {
    move |error| BpfError::Aya {
        step,
        error: Box::new(error),
    }
}
