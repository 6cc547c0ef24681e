//! One gather: picks the source per protocol (netlink, or /proc where netlink
//! is refused), retries interrupted dumps, and tallies the result. Keeps its
//! socket and buffers between gathers so a long-running process allocates
//! nothing per gather.

use std::path::Path;

use crate::error::{Dump, Error};
use crate::netlink::DiagSocket;
use crate::procfs::{self, ProcPaths};
use crate::tally::{tally, Counts, StateHistogram};

/// Where socket states come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Netlink; /proc for a protocol whose netlink dump is refused.
    Auto,
    Netlink,
    Proc,
}

/// A transport protocol, as far as source selection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Something worth telling the operator that did not fail the gather.
#[derive(Debug)]
pub enum Event<'a> {
    /// `Source::Auto` found netlink refused for `proto` (for every protocol
    /// when `None`: the socket itself was refused) and reads /proc for it
    /// from now on. Sent once per collector and protocol.
    Fallback {
        proto: Option<Proto>,
        error: &'a Error,
    },
    /// The dump was still interrupted by table changes after `attempts`
    /// tries; the last attempt's counts are used.
    Interrupted { dump: Dump, attempts: u32 },
    /// Sockets in a state number this program does not know; counted nowhere.
    UnknownState { state: u8, count: u64 },
}

/// How often a dump flagged `NLM_F_DUMP_INTR` is tried before its counts
/// are taken as they are.
pub const DUMP_ATTEMPTS: u32 = 4;

pub struct Collector {
    source: Source,
    paths: ProcPaths,
    socket: Option<DiagSocket>,
    proc_buf: Option<Box<[u8]>>,
    tcp_via_proc: bool,
    udp_via_proc: bool,
    tcp: StateHistogram,
    udp: u64,
}

impl Collector {
    pub fn new(source: Source, proc_root: &Path) -> Self {
        Collector {
            source,
            paths: ProcPaths::new(proc_root),
            socket: None,
            proc_buf: None,
            tcp_via_proc: source == Source::Proc,
            udp_via_proc: source == Source::Proc,
            tcp: StateHistogram::default(),
            udp: 0,
        }
    }

    /// Counts the sockets of the calling thread's network namespace.
    pub fn gather(&mut self, events: &mut dyn FnMut(Event)) -> Result<Counts, Error> {
        self.udp = 0;
        if !self.tcp_via_proc {
            if let Err(e) = self.netlink(Dump::Tcp, events) {
                self.fall_back(Proto::Tcp, e, events)?;
            }
        }
        if self.tcp_via_proc {
            self.proc_tcp()?;
        }
        if !self.udp_via_proc {
            let r = self
                .netlink(Dump::Udp4, events)
                .and_then(|()| self.netlink(Dump::Udp6, events));
            if let Err(e) = r {
                self.fall_back(Proto::Udp, e, events)?;
            }
        }
        if self.udp_via_proc {
            self.proc_udp()?;
        }
        for (state, count) in self.tcp.unknown() {
            events(Event::UnknownState { state, count });
        }
        Ok(tally(&self.tcp, self.udp))
    }

    /// Decides what a failed netlink dump means: a refusal under `auto`
    /// switches the protocol to /proc for good; anything else fails the
    /// gather and drops the socket so the next gather starts on a fresh one.
    fn fall_back(
        &mut self,
        proto: Proto,
        e: Error,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), Error> {
        if self.source != Source::Auto || !e.is_refusal() {
            self.socket = None;
            return Err(e);
        }
        // No socket at all means neither protocol can use netlink: say it once.
        let proto = if matches!(e, Error::NetlinkOpen(_)) {
            None
        } else {
            Some(proto)
        };
        events(Event::Fallback { proto, error: &e });
        if proto != Some(Proto::Udp) {
            self.tcp_via_proc = true;
        }
        if proto != Some(Proto::Tcp) {
            self.udp_via_proc = true;
            self.udp = 0;
        }
        Ok(())
    }

    fn netlink(&mut self, dump: Dump, events: &mut dyn FnMut(Event)) -> Result<(), Error> {
        let socket = match &mut self.socket {
            Some(s) => s,
            None => self.socket.insert(DiagSocket::open()?),
        };
        let mut udp = 0u64;
        for attempt in 1..=DUMP_ATTEMPTS {
            let status = if dump == Dump::Tcp {
                self.tcp.clear();
                let hist = &mut self.tcp;
                socket.dump(dump, |s| hist.add(s))?
            } else {
                udp = 0;
                socket.dump(dump, |_| udp += 1)?
            };
            if !status.interrupted {
                break;
            }
            if attempt == DUMP_ATTEMPTS {
                events(Event::Interrupted {
                    dump,
                    attempts: attempt,
                });
            }
        }
        self.udp += udp;
        Ok(())
    }

    fn proc_tcp(&mut self) -> Result<(), Error> {
        self.tcp.clear();
        let buf = self
            .proc_buf
            .get_or_insert_with(|| vec![0u8; procfs::CHUNK_LEN].into_boxed_slice());
        let hist = &mut self.tcp;
        procfs::scan(&self.paths.tcp, buf, &mut |s| hist.add(s))?;
        procfs::scan_optional(&self.paths.tcp6, buf, &mut |s| hist.add(s))
    }

    fn proc_udp(&mut self) -> Result<(), Error> {
        let buf = self
            .proc_buf
            .get_or_insert_with(|| vec![0u8; procfs::CHUNK_LEN].into_boxed_slice());
        let mut n = 0u64;
        procfs::scan(&self.paths.udp, buf, &mut |_| n += 1)?;
        procfs::scan_optional(&self.paths.udp6, buf, &mut |_| n += 1)?;
        self.udp = n;
        Ok(())
    }
}
