//! Test support: private network namespaces, sockets in known states, and
//! running the real binary (and `ss`) inside those namespaces.
#![allow(dead_code)]

use std::any::Any;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
use rustix::thread::UnshareFlags;
use telegraf_netstat::Counts;

pub mod servers;

pub const BIN: &str = env!("CARGO_BIN_EXE_telegraf-netstat");

mod binary;
mod exporter;
mod namespaces;
mod parse;
mod plugin;
mod process;
mod sockets;
mod ss;
mod tools;
mod trials;

pub use binary::*;
pub use exporter::*;
pub use namespaces::*;
pub use parse::*;
pub use plugin::*;
pub use process::*;
pub use sockets::*;
pub use ss::*;
pub use tools::*;
// Not every test binary registers its tests here (cli and execd use the
// standard harness).
#[allow(unused_imports)]
pub use trials::*;
