//! One gather in one network namespace: picks the source per protocol
//! (netlink, or /proc where netlink is refused), retries interrupted dumps,
//! and tallies the result by address family. Keeps its socket between
//! gathers, and reads into buffers the caller owns and shares between
//! collectors, so a long-running process allocates nothing per socket and
//! memory does not grow with gathers.

use std::path::PathBuf;

use crate::error::{Dump, Error};
use crate::netlink::DiagSocket;
use crate::netns::{self, Target};
use crate::procfs::{self, ProcPaths, SockCounts, Sockstat, Table};
use crate::tally::{tally, tally_unix, ByFamily, StateHistogram};
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
    /// The dump was still interrupted by table changes after `attempts`
    /// tries; the last attempt's counts are used.
    Interrupted { dump: Dump, attempts: u32 },
    /// Sockets in a state number this program does not know; counted nowhere.
    UnknownState { state: u8, count: u64 },
}

/// How often a dump flagged `NLM_F_DUMP_INTR` is tried before its counts
/// are taken as they are.
pub const DUMP_ATTEMPTS: u32 = 4;

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

/// The empty-table shortcut. A TCP dump visits every bucket of the
/// host-wide established hash (262 144 on a small VM, ~150 µs) even in a
/// namespace without a single TCP socket, and each UDP dump its hash; the
/// kernel's per-namespace counters in /proc/net/sockstat{,6} tell that a
/// table is empty for a few µs. A zero is believed for a table only after
/// one of its dumps confirmed a zero read just before it, and never once a
/// dump contradicted one. Pure policy, tested without a kernel.
#[derive(Debug, Default)]
struct Shortcut {
    trusted: [bool; 3],
    distrusted: [bool; 3],
}

/// The tables the shortcut knows, as indices into its arrays.
#[derive(Debug, Clone, Copy)]
enum Table3 {
    Tcp = 0,
    Udp4 = 1,
    Udp6 = 2,
}

impl Table3 {
    fn of(dump: Dump) -> Option<Table3> {
        match dump {
            Dump::Tcp => Some(Table3::Tcp),
            Dump::Udp4 => Some(Table3::Udp4),
            Dump::Udp6 => Some(Table3::Udp6),
            Dump::Unix => None,
        }
    }

    fn count(self, c: &SockCounts) -> u64 {
        match self {
            Table3::Tcp => c.tcp,
            Table3::Udp4 => c.udp4,
            Table3::Udp6 => c.udp6,
        }
    }
}

impl Shortcut {
    /// Whether the dump of `t` can be skipped given this gather's counters.
    fn skip(&self, t: Table3, now: Option<&SockCounts>) -> bool {
        self.trusted[t as usize] && now.is_some_and(|c| t.count(c) == 0)
    }

    /// What a dump of `t` that found `found` sockets says of the counters
    /// read before it.
    fn learn(&mut self, t: Table3, before: Option<&SockCounts>, found: u64) {
        let i = t as usize;
        if before.is_some_and(|c| t.count(c) == 0) {
            if found == 0 && !self.distrusted[i] {
                self.trusted[i] = true;
            } else if found != 0 {
                self.distrusted[i] = true;
                self.trusted[i] = false;
            }
        }
    }
}

/// The counters of a collector's namespace: not looked at during the first
/// gather (a one-shot run would only pay for them), then opened once.
enum Counters {
    Untried,
    Open(Sockstat),
    Unavailable,
}

pub struct Collector {
    options: Options,
    shortcut: Shortcut,
    counters: Counters,
    /// Whether a gather has run before this one.
    gathered: bool,
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
            shortcut: Shortcut::default(),
            counters: Counters::Untried,
            gathered: false,
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

    /// Counts the sockets of the collector's namespace.
    pub fn gather(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
    ) -> Result<ByFamily, Error> {
        let r = self.gather_once(bufs, events);
        self.gathered = true;
        r
    }

    fn gather_once(
        &mut self,
        bufs: &mut Buffers,
        events: &mut dyn FnMut(Event),
    ) -> Result<ByFamily, Error> {
        let counters = self.read_counters();
        let counters = counters.as_ref();
        if !self.tcp_via_proc {
            if let Err(e) = self.netlink(Dump::Tcp, counters, &mut bufs.recv, events) {
                self.fall_back(Proto::Tcp, e, events)?;
            }
        }
        if self.tcp_via_proc {
            self.proc_tcp(bufs.proc())?;
        }
        if !self.udp_via_proc {
            let r = self
                .netlink(Dump::Udp4, counters, &mut bufs.recv, events)
                .and_then(|()| self.netlink(Dump::Udp6, counters, &mut bufs.recv, events));
            if let Err(e) = r {
                self.fall_back(Proto::Udp, e, events)?;
            }
        }
        if self.udp_via_proc {
            self.proc_udp(bufs.proc())?;
        }
        if self.options.include_unix {
            if !self.unix_via_proc {
                if let Err(e) = self.netlink(Dump::Unix, None, &mut bufs.recv, events) {
                    self.fall_back(Proto::Unix, e, events)?;
                }
            }
            if self.unix_via_proc {
                self.proc_unix(bufs.proc())?;
            }
        }
        for h in &self.tcp {
            for (state, count) in h.unknown() {
                events(Event::UnknownState { state, count });
            }
        }
        Ok(ByFamily {
            ipv4: tally(&self.tcp[0], self.udp[0]),
            ipv6: tally(&self.tcp[1], self.udp[1]),
            unix: if self.options.include_unix {
                tally_unix(&self.unix)
            } else {
                Default::default()
            },
        })
    }

    /// This gather's per-namespace counters, from the second gather on.
    fn read_counters(&mut self) -> Option<SockCounts> {
        if !self.gathered || (self.tcp_via_proc && self.udp_via_proc) {
            return None;
        }
        if let Counters::Untried = self.counters {
            self.counters = match self.sockstat_dir().and_then(|d| Sockstat::open(&d).ok()) {
                Some(s) => Counters::Open(s),
                None => Counters::Unavailable,
            };
        }
        let Counters::Open(s) = &self.counters else {
            return None;
        };
        let c = s.read();
        if c.is_none() {
            self.counters = Counters::Unavailable;
        }
        c
    }

    /// Where the counters of the collector's namespace are: /proc/self/net
    /// for the own one (the main thread never changes namespace), else
    /// `<proc root>/PID/net` of a process known to be inside.
    fn sockstat_dir(&self) -> Option<PathBuf> {
        match &self.target {
            None => Some(PathBuf::from("/proc/self/net")),
            Some(t) => {
                let pid = t.pid?.to_string();
                let root = &self.options.proc_root;
                let id = netns::NsId::of(&root.join(&pid).join("ns/net")).ok()?;
                (id == t.id).then(|| root.join(pid).join("net"))
            }
        }
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

    /// One dump into the histograms, unless the shortcut says its table is
    /// empty (`counters`: this gather's, if any).
    fn netlink(
        &mut self,
        dump: Dump,
        counters: Option<&SockCounts>,
        buf: &mut [u8],
        events: &mut dyn FnMut(Event),
    ) -> Result<(), Error> {
        let table = Table3::of(dump);
        if table.is_some_and(|t| self.shortcut.skip(t, counters)) {
            match dump {
                Dump::Tcp => self.tcp.iter_mut().for_each(StateHistogram::clear),
                _ => self.udp[(dump == Dump::Udp6) as usize] = 0,
            }
            return Ok(());
        }
        let socket = match &mut self.socket {
            Some(s) => s,
            None => self.socket.insert(match &self.target {
                None => DiagSocket::open()?,
                Some(t) => netns::open_socket(t)?,
            }),
        };
        for attempt in 1..=DUMP_ATTEMPTS {
            let status = match dump {
                Dump::Tcp => {
                    let hist = &mut self.tcp;
                    hist.iter_mut().for_each(StateHistogram::clear);
                    socket.dump(buf, dump, |family, state| hist[slot(family)].add(state))?
                }
                Dump::Udp4 | Dump::Udp6 => {
                    let n = &mut self.udp[(dump == Dump::Udp6) as usize];
                    *n = 0;
                    socket.dump(buf, dump, |_, _| *n += 1)?
                }
                Dump::Unix => {
                    let hist = &mut self.unix;
                    hist.clear();
                    socket.dump(buf, dump, |_, sock_type| hist.add(sock_type))?
                }
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
        if let Some(t) = table {
            let found = match t {
                Table3::Tcp => self.tcp.iter().map(StateHistogram::total).sum(),
                Table3::Udp4 => self.udp[0],
                Table3::Udp6 => self.udp[1],
            };
            self.shortcut.learn(t, counters, found);
        }
        Ok(())
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

    fn proc_tcp(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let [v4, v6] = &mut self.tcp;
        v4.clear();
        v6.clear();
        procfs::scan(&paths.tcp, Table::Inet, buf, &mut |s| v4.add(s))?;
        procfs::scan_optional(&paths.tcp6, buf, &mut |s| v6.add(s))
    }

    fn proc_udp(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let [v4, v6] = &mut self.udp;
        *v4 = 0;
        *v6 = 0;
        procfs::scan(&paths.udp, Table::Inet, buf, &mut |_| *v4 += 1)?;
        procfs::scan_optional(&paths.udp6, buf, &mut |_| *v6 += 1)
    }

    fn proc_unix(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let ns = self.namespace_paths()?;
        let paths = ns.as_ref().unwrap_or(&self.own_paths);
        let hist = &mut self.unix;
        hist.clear();
        procfs::scan(&paths.unix, Table::Unix, buf, &mut |t| hist.add(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(tcp: u64, udp4: u64, udp6: u64) -> Option<SockCounts> {
        Some(SockCounts { tcp, udp4, udp6 })
    }

    #[test]
    fn a_zero_is_believed_only_after_a_dump_confirmed_it() {
        let mut s = Shortcut::default();
        let empty = counts(0, 0, 0);
        // Never before a confirmation, nor without counters.
        assert!(!s.skip(Table3::Tcp, empty.as_ref()));
        s.learn(Table3::Tcp, counts(5, 0, 0).as_ref(), 5);
        assert!(!s.skip(Table3::Tcp, empty.as_ref()));
        s.learn(Table3::Tcp, empty.as_ref(), 0);
        assert!(s.skip(Table3::Tcp, empty.as_ref()));
        assert!(!s.skip(Table3::Tcp, None));
        assert!(!s.skip(Table3::Tcp, counts(1, 0, 0).as_ref()));
        // Each table on its own evidence.
        assert!(!s.skip(Table3::Udp4, empty.as_ref()));
        s.learn(Table3::Udp6, empty.as_ref(), 0);
        assert!(s.skip(Table3::Udp6, empty.as_ref()));
    }

    #[test]
    fn a_contradicted_zero_is_never_believed_again() {
        let mut s = Shortcut::default();
        let empty = counts(0, 0, 0);
        s.learn(Table3::Udp4, empty.as_ref(), 0);
        assert!(s.skip(Table3::Udp4, empty.as_ref()));
        // The counters said none, the dump found one.
        s.learn(Table3::Udp4, empty.as_ref(), 1);
        assert!(!s.skip(Table3::Udp4, empty.as_ref()));
        s.learn(Table3::Udp4, empty.as_ref(), 0);
        assert!(!s.skip(Table3::Udp4, empty.as_ref()));
    }
}
