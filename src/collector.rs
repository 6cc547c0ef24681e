//! One gather in one network namespace: picks the source per protocol
//! (netlink, or /proc where netlink is refused) and tallies the result by
//! address family. Keeps its socket between
//! gathers, and reads into buffers the caller owns and shares between
//! collectors, so a long-running process allocates nothing per socket and
//! memory does not grow with gathers.
//!
//! Every gather dumps every table it counts. An earlier version skipped the
//! TCP and UDP dumps when `/proc/net/sockstat{,6}` said a table was empty;
//! that is unsound for TCP: the kernel's `TCP: inuse` counts only hashed full
//! sockets (`sock_prot_inuse_add()` in `inet_hash()`/`inet_unhash()`) and
//! `tw` only TIME_WAIT entries, while request sockets (`NEW_SYN_RECV`) sit in
//! the established hash uncounted (`inet_ehash_insert()` from
//! `reqsk_queue_hash_req()` touches no counter) and outlive a closed listener
//! until `reqsk_timer_handler()` drops them. No per-namespace counter covers
//! them, so no rule can prove a skipped TCP dump exact; the UDP half saved
//! ~9 µs per dump here and went with it.

use std::path::PathBuf;

use crate::aggregate::states::{
    counts_from_states, counts_from_unix_types, ByFamily, StateHistogram,
};
use crate::error::{Dump, Error};
use crate::netlink::DiagSocket;
use crate::netns::{self, Target};
use crate::procfs::{self, ProcPaths, Table};
use crate::wire::AF_INET6;

/// Where socket states come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Netlink; /proc for a protocol whose netlink dump is refused.
    Auto,
    Netlink,
    Proc,
}

/// What a collector counts, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// The proc filesystem: its `net/` tables for the own namespace, its
    /// `PID/net/` tables for another one.
    pub proc_root: PathBuf,
    /// Also count unix-domain sockets (`--include-unix`).
    pub include_unix: bool,
}

/// A transport protocol, as far as source selection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Unix,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Unix => "unix",
        })
    }
}

/// Something worth telling the operator that did not fail the gather.
#[derive(Debug)]
pub enum Event<'a> {
    /// `Source::Auto` found netlink refused for `proto` (for every protocol
    /// it counts when `None`: the socket itself was refused) and reads /proc
    /// for it from now on. Sent once per collector and protocol.
    Fallback {
        proto: Option<Proto>,
        error: &'a Error,
    },
    /// Sockets in a state number this program does not know; counted nowhere.
    UnknownState { state: u8, count: u64 },
}

/// Scratch memory for gathers, owned by the caller and shared by all its
/// collectors, however many namespaces they count: one netlink receive
/// buffer, and one /proc read buffer once a /proc table is read.
pub struct Buffers {
    recv: Box<[u8]>,
    proc: Option<Box<[u8]>>,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            recv: crate::netlink::recv_buffer(),
            proc: None,
        }
    }
}

impl Buffers {
    /// The /proc read buffer, allocated on first use and kept.
    fn proc(&mut self) -> &mut [u8] {
        self.proc
            .get_or_insert_with(|| vec![0u8; procfs::CHUNK_LEN].into_boxed_slice())
    }
}

pub struct Collector {
    options: Options,
    /// `None`: the namespace this process runs in.
    target: Option<Target>,
    own_paths: ProcPaths,
    socket: Option<DiagSocket>,
    tcp_via_proc: bool,
    udp_via_proc: bool,
    unix_via_proc: bool,
    /// TCP states and UDP sockets, indexed by family: 0 IPv4, 1 IPv6.
    tcp: [StateHistogram; 2],
    udp: [u64; 2],
    unix: StateHistogram,
}

/// The family slot of a record: IPv6 or not.
#[inline(always)]
fn slot(family: u8) -> usize {
    (family == AF_INET6) as usize
}

impl Collector {
    /// A collector for the namespace this process runs in.
    pub fn new(options: Options) -> Self {
        Self::in_namespace(options, None)
    }

    /// A collector for `target`, or for the own namespace when `None`. A
    /// socket for another namespace is opened on the first gather and kept.
    pub fn in_namespace(options: Options, target: Option<Target>) -> Self {
        let proc = options.source == Source::Proc;
        Collector {
            own_paths: ProcPaths::new(&options.proc_root),
            target,
            socket: None,
            tcp_via_proc: proc,
            udp_via_proc: proc,
            unix_via_proc: proc,
            tcp: Default::default(),
            udp: [0; 2],
            unix: StateHistogram::default(),
            options,
        }
    }

    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Takes a fresher description (tag, path, PID) of the namespace this
    /// collector already counts, keeping its socket.
    pub fn retarget(&mut self, target: Target) {
        debug_assert_eq!(self.target.as_ref().map(|t| t.id), Some(target.id));
        self.target = Some(target);
    }

    /// Counts the sockets of the collector's namespace. `stop` is asked
    /// between dumps and every few hundred sockets; when it says so the
    /// gather ends with `Error::Stopped`.
    pub fn gather(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<ByFamily, Error> {
        if !self.tcp_via_proc {
            if let Err(e) = self.netlink(Dump::Tcp, &mut bufs.recv, stop) {
                self.fall_back(Proto::Tcp, e, events)?;
            }
        }
        if self.tcp_via_proc {
            self.proc_tcp(bufs.proc(), stop)?;
        }
        if !self.udp_via_proc {
            let r = self
                .netlink(Dump::Udp4, &mut bufs.recv, stop)
                .and_then(|()| self.netlink(Dump::Udp6, &mut bufs.recv, stop));
            if let Err(e) = r {
                self.fall_back(Proto::Udp, e, events)?;
            }
        }
        if self.udp_via_proc {
            self.proc_udp(bufs.proc(), stop)?;
        }
        if self.options.include_unix {
            if !self.unix_via_proc {
                if let Err(e) = self.netlink(Dump::Unix, &mut bufs.recv, stop) {
                    self.fall_back(Proto::Unix, e, events)?;
                }
            }
            if self.unix_via_proc {
                self.proc_unix(bufs.proc(), stop)?;
            }
        }
        for h in &self.tcp {
            for (state, count) in h.unknown() {
                events(Event::UnknownState { state, count });
            }
        }
        Ok(ByFamily {
            ipv4: counts_from_states(&self.tcp[0], self.udp[0]),
            ipv6: counts_from_states(&self.tcp[1], self.udp[1]),
            unix: if self.options.include_unix {
                counts_from_unix_types(&self.unix)
            } else {
                Default::default()
            },
        })
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
        if self.options.source != Source::Auto || !e.is_refusal() {
            self.socket = None;
            return Err(e);
        }
        // No socket at all means no protocol can use netlink: say it once.
        if matches!(e, Error::NetlinkOpen(_)) {
            events(Event::Fallback {
                proto: None,
                error: &e,
            });
            self.tcp_via_proc = true;
            self.udp_via_proc = true;
            self.unix_via_proc = true;
            return Ok(());
        }
        events(Event::Fallback {
            proto: Some(proto),
            error: &e,
        });
        match proto {
            Proto::Tcp => self.tcp_via_proc = true,
            Proto::Udp => self.udp_via_proc = true,
            Proto::Unix => self.unix_via_proc = true,
        }
        Ok(())
    }

    /// One dump into the histograms.
    fn netlink(
        &mut self,
        dump: Dump,
        buf: &mut [u8],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), Error> {
        if stop() {
            return Err(Error::Stopped);
        }
        let socket = match &mut self.socket {
            Some(s) => s,
            None => self.socket.insert(match &self.target {
                None => DiagSocket::open()?,
                Some(t) => netns::open_socket(t)?,
            }),
        };
        match dump {
            Dump::Tcp => {
                let hist = &mut self.tcp;
                hist.iter_mut().for_each(StateHistogram::clear);
                socket.dump(
                    buf,
                    dump,
                    |family, state| hist[slot(family)].add(state),
                    stop,
                )
            }
            Dump::Udp4 | Dump::Udp6 => {
                let n = &mut self.udp[(dump == Dump::Udp6) as usize];
                *n = 0;
                socket.dump(buf, dump, |_, _| *n += 1, stop)
            }
            Dump::Unix => {
                let hist = &mut self.unix;
                hist.clear();
                socket.dump(buf, dump, |_, sock_type| hist.add(sock_type), stop)
            }
        }
    }

    /// For another namespace, the /proc tables of a process inside it,
    /// `<proc root>/PID/net`; `None` for the own namespace, whose tables
    /// are `<proc root>/net`.
    fn namespace_paths(&self) -> Result<Option<ProcPaths>, Error> {
        let Some(t) = &self.target else {
            return Ok(None);
        };
        let root = &self.options.proc_root;
        let still_inside = |pid: u32| {
            netns::NsId::of(&root.join(pid.to_string()).join("ns/net")).is_ok_and(|id| id == t.id)
        };
        let pid = t
            .pid
            .filter(|&p| still_inside(p))
            .or_else(|| netns::find_pid(root, t.id))
            .ok_or_else(|| Error::NetnsNoProcess {
                path: t.path.clone(),
            })?;
        Ok(Some(ProcPaths::new(&root.join(pid.to_string()))))
    }

    fn proc_tcp(&mut self, buf: &mut [u8], stop: &mut dyn FnMut() -> bool) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let [v4, v6] = &mut self.tcp;
        v4.clear();
        v6.clear();
        procfs::scan(&paths.tcp, Table::Inet, buf, &mut |s| v4.add(s), stop)?;
        procfs::scan_optional(&paths.tcp6, buf, &mut |s| v6.add(s), stop)
    }

    fn proc_udp(&mut self, buf: &mut [u8], stop: &mut dyn FnMut() -> bool) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let [v4, v6] = &mut self.udp;
        *v4 = 0;
        *v6 = 0;
        procfs::scan(&paths.udp, Table::Inet, buf, &mut |_| *v4 += 1, stop)?;
        procfs::scan_optional(&paths.udp6, buf, &mut |_| *v6 += 1, stop)
    }

    fn proc_unix(&mut self, buf: &mut [u8], stop: &mut dyn FnMut() -> bool) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let hist = &mut self.unix;
        hist.clear();
        procfs::scan(&paths.unix, Table::Unix, buf, &mut |t| hist.add(t), stop)
    }
}
