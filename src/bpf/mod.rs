//! `--source bpf`: one walk of the kernel's TCP hash tables, done by a BPF
//! program (bpf/tcpwalk.bpf.c, built by build.rs with clang when it can),
//! counts the TCP sockets of every network namespace sharing the tables
//! walked, per family and state, and, when asked (`queues`: native names
//! print them), sums their bytes queued as sock_diag reports them: for a
//! full socket but a listener, `max(rcv_nxt - copied_seq, 0)` received and
//! `write_seq - snd_una` sent (net/ipv4/tcp_diag.c, `tcp_diag_get_info()`),
//! 0 for TIME_WAIT and request sockets (net/ipv4/inet_diag.c,
//! `inet_twsk_diag_fill()`, `inet_req_diag_fill()`). Loaded with aya (pure Rust: no libbpf,
//! libelf or zlib to build or to run), which relocates the program's field
//! offsets against the running kernel's BTF. docs/bpf.md says what it reads,
//! what it needs, and why nothing promises it keeps working.
//!
//! The program runs as an `iter/task` program: reading its iterator's file
//! makes the kernel call it once per task, and each call walks one slice of
//! the tables (at most about 250 µs) and keeps its cursor; a read stops
//! after 16 slices, and `walk` asks `stop` between reads. The counts land in
//! the `counts` map, keyed by `struct net` address; the last read of a walk
//! returns its trailer.

mod btf;
mod error;

use std::borrow::Cow;
use std::io::Read;

use aya::maps::{Array, HashMap};
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};
use rustix::thread::CapabilitySet;
use telegraf_netstat::measure::netstat::count::{Queued, TcpStates, UNKNOWN_STATE};
use telegraf_netstat::record::LISTEN;

use error::aya;
pub use error::BpfError;

/// The compiled program, when build.rs could compile it.
#[cfg(tcpwalk)]
static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/tcpwalk.bpf.o"
)));
#[cfg(not(tcpwalk))]
static OBJECT: Option<&[u8]> = None;

/// Another build of the program to load instead (`clang -DMISCOUNT` makes
/// the self-test fail on purpose: docs/bpf.md, tests/bpf.rs).
const OBJECT_ENV: &str = "TELEGRAF_NETSTAT_BPF_OBJECT";
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const TRAILER_MAGIC: u64 = 0x6b6c_6177_7470_6374;
const TRAILER_WORDS: usize = 13;
/// Words of a `counts` map value (the program's VALUE_WORDS); the bytes
/// queued are four 64-bit sums from word `QUEUED`.
const VALUE_WORDS: usize = 40;
const QUEUED: usize = 32;
/// Reads of one walk at most, however few tasks each visits (a slice per
/// read, at worst: 278 528 buckets here take about 140).
const MAX_READS: u32 = 100_000;

/// How one walk went: the program's trailer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trailer {
    /// Sockets counted.
    pub sockets: u64,
    /// Buckets given up, chains too long, namespaces the map could not
    /// hold: any of them and the walk is not to be trusted.
    pub broken: u64,
    pub long_chains: u64,
    pub map_full: u64,
    /// The tables walked are a namespace's own, not the host's.
    pub pernet: bool,
}

impl Trailer {
    pub fn complete(&self) -> bool {
        self.broken + self.long_chains + self.map_full == 0
    }
}

/// A namespace the walk met: its counts, and whether the tables walked
/// are its own (else only its listeners, in the shared listening hash,
/// were seen: its counts are not whole).
pub struct Found {
    pub ino: u64,
    pub same_tables: bool,
    pub states: TcpStates,
    /// Bytes queued, IPv4 and IPv6, listeners left out: zero unless the
    /// program was loaded to read them.
    pub queued: [Queued; 2],
}

pub struct Walker {
    ebpf: Ebpf,
    buf: Vec<u8>,
    stale: Vec<u64>,
    /// The last walk's namespaces, sorted by inode.
    found: Vec<Found>,
}

impl Walker {
    /// The quick checks, at start: the program (this build's, or the
    /// file `TELEGRAF_NETSTAT_BPF_OBJECT` names), the capabilities, the
    /// kernel's BTF file. What is missing is said.
    /// `queues`: the program also sums the bytes queued (native names
    /// print them), which costs more.
    pub fn prepare(queues: bool) -> Result<Prepared, BpfError> {
        let object = match std::env::var_os(OBJECT_ENV) {
            Some(path) => Cow::Owned(std::fs::read(&path).map_err(|error| BpfError::Object {
                path: path.to_string_lossy().into_owned(),
                error,
            })?),
            None => Cow::Borrowed(OBJECT.ok_or(BpfError::NoProgram)?),
        };
        capable()?;
        let btf = std::fs::read(VMLINUX).map_err(BpfError::NoBtf)?;
        Ok(Prepared {
            object,
            btf,
            queues,
        })
    }
}

/// What `Walker::prepare` found, to load (a few tens of ms: on a thread of
/// its own, so that the loops hear a stop meanwhile).
pub struct Prepared {
    object: Cow<'static, [u8]>,
    btf: Vec<u8>,
    queues: bool,
}

impl Prepared {
    /// Loads the program, or says what is missing. A field the kernel's
    /// BTF lacks loads as a poisoned instruction, which the verifier
    /// refuses without naming a field (aya-obj 0.3 `poison_insn`): only
    /// when the load fails is every field the program reads looked up in the
    /// BTF (`btf.rs`), to name the one missing, so that a load that works
    /// reads the BTF once, in aya.
    pub fn load(self) -> Result<Walker, BpfError> {
        let Prepared {
            object,
            btf: data,
            queues,
        } = self;
        let btf = Btf::parse(&data, aya::Endianness::default());
        let parsed = btf.is_ok();
        let loaded = btf
            .map_err(aya("cannot parse the kernel's BTF"))
            .and_then(|btf| load(&object, &btf, queues));
        loaded.map_err(|error| match (btf::missing_field(&data, queues), parsed) {
            (Ok(Some((structure, field))), _) => BpfError::NoField { structure, field },
            // Neither aya nor btf.rs can read the BTF: btf.rs says why.
            (Err(m), false) => BpfError::Btf(m),
            _ => error,
        })
    }
}

/// Loads `object` against the kernel's `btf`.
fn load(object: &[u8], btf: &Btf, queues: bool) -> Result<Walker, BpfError> {
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .override_global("queues", &u32::from(queues), true)
        .load(object)
        .map_err(aya("cannot load the BPF program"))?;
    iter(&mut ebpf)?
        .load("task", btf)
        .map_err(aya("the kernel refused the BPF program"))?;
    Ok(Walker {
        ebpf,
        buf: Vec::with_capacity(4096),
        stale: Vec::new(),
        found: Vec::new(),
    })
}

impl Walker {
    /// Groups of buckets walked since the load (the `progress` map).
    fn walked(&self) -> Result<u64, BpfError> {
        let map = self
            .ebpf
            .map("progress")
            .ok_or(BpfError::Missing("progress map"))?;
        let a: Array<_, u64> = Array::try_from(map).map_err(aya("the progress map"))?;
        a.get(&0, 0).map_err(aya("reading the progress map"))
    }

    /// One walk: the namespaces it met are in `found` afterwards. `None`
    /// when `stop` said so between two reads: the walk is left half done
    /// (the program keeps its cursor), which only an exiting caller does.
    pub fn walk(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<Option<Trailer>, BpfError> {
        let mut walked = self.walked()?;
        for reads in 1..=MAX_READS {
            if stop() {
                return Ok(None);
            }
            let prog = iter(&mut self.ebpf)?;
            let link = prog.attach().map_err(aya("attaching the iterator"))?;
            let link = prog
                .take_link(link)
                .map_err(aya("taking the iterator's link"))?;
            let mut file = link.into_file().map_err(aya("opening the iterator"))?;
            self.buf.clear();
            file.read_to_end(&mut self.buf).map_err(BpfError::Read)?;
            if self.buf.len() >= TRAILER_WORDS * 8 {
                return self.finish().map(Some);
            }
            // A read that ended before the walk did must have made progress.
            let now = self.walked()?;
            if now == walked {
                return Err(BpfError::NoProgress(reads));
            }
            walked = now;
        }
        Err(BpfError::Unending(MAX_READS))
    }

    /// Reads the trailer, then the counts of this walk's generation;
    /// forgets namespaces gone.
    fn finish(&mut self) -> Result<Trailer, BpfError> {
        let w = |i: usize| u64::from_ne_bytes(self.buf[i * 8..i * 8 + 8].try_into().expect("8"));
        if w(0) != TRAILER_MAGIC {
            return Err(BpfError::Trailer);
        }
        let generation = w(1) & 0xffff_ffff;
        let t = Trailer {
            sockets: w(2),
            broken: w(4),
            long_chains: w(5),
            map_full: w(6),
            pernet: w(11) != 0,
        };
        let map = self
            .ebpf
            .map_mut("counts")
            .ok_or(BpfError::Missing("counts map"))?;
        let mut map: HashMap<_, u64, [u32; VALUE_WORDS]> =
            HashMap::try_from(map).map_err(aya("the counts map"))?;
        self.stale.clear();
        self.found.clear();
        for kv in map.iter() {
            let (k, v) = kv.map_err(aya("reading the counts map"))?;
            if u64::from(v[0]) != generation {
                self.stale.push(k);
                continue;
            }
            let mut states = TcpStates::default();
            for (family, half) in states.0.iter_mut().zip([&v[1..14], &v[17..30]]) {
                for (s, &n) in half.iter().enumerate() {
                    // Slot 13 of the program's half: no state it knows.
                    let slot = if s == 12 { UNKNOWN_STATE } else { s + 1 };
                    family[slot] += u64::from(n);
                }
            }
            // Sockets of no inet family in the TCP tables: none should be.
            states.0[0][UNKNOWN_STATE] += u64::from(v[16]);
            let sum = |k: usize| {
                let (lo, hi) = (
                    v[QUEUED + 2 * k].to_ne_bytes(),
                    v[QUEUED + 2 * k + 1].to_ne_bytes(),
                );
                u64::from_ne_bytes([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]])
            };
            let queued = |k: usize| Queued {
                receive: sum(2 * k),
                send: sum(2 * k + 1),
            };
            self.found.push(Found {
                ino: u64::from(v[14]),
                same_tables: v[15] == 1,
                states,
                queued: [queued(0), queued(1)],
            });
        }
        for k in &self.stale {
            map.remove(k).map_err(aya("forgetting a namespace gone"))?;
        }
        self.found.sort_unstable_by_key(|f| f.ino);
        Ok(t)
    }

    /// Of the namespaces `inos`, the one with the most sockets in the last
    /// walk, of those whose tables were walked.
    pub fn busiest(&self, inos: impl Iterator<Item = u64>) -> Option<u64> {
        inos.filter_map(|ino| self.found(ino))
            .filter(|f| f.same_tables)
            .max_by_key(|f| f.states.0.iter().flatten().sum::<u64>())
            .map(|f| f.ino)
    }

    /// Of the namespaces `inos`, the one a first self-test compares, of
    /// those whose tables were walked and which hold sockets, leaving out
    /// the one with the most if there are others: the one with the fewest
    /// sockets among those holding both a listener (the listening hash) and
    /// another socket (the established hash), else the one with the fewest.
    /// Every dump in a namespace sharing the tables walks all of them, so a
    /// small namespace costs a netlink dump little more than an empty one
    /// does; the busiest costs a full dump. Also says whether it holds both.
    /// `pair`: the namespace that held the self-test's loopback pair
    /// during the walk (a listener and two connections), which proves both
    /// tables for the cost of a small namespace: the pick when the others
    /// would prove one table only or cost a full dump (its counts without
    /// the pair decide).
    pub fn cheapest(
        &self,
        inos: impl Iterator<Item = u64>,
        pair: Option<u64>,
    ) -> Option<(u64, bool)> {
        cheapest(inos.filter_map(|ino| self.found(ino)), pair)
    }

    /// What the last walk found of the namespace with inode `ino`.
    pub fn found(&self, ino: u64) -> Option<&Found> {
        self.found
            .binary_search_by_key(&ino, |f| f.ino)
            .ok()
            .map(|i| &self.found[i])
    }
}

/// The self-test's loopback pair: a listener, a client and the
/// listener's child (gather/bpf/pair.rs).
const PAIR_SOCKETS: u64 = 3;

/// `Walker::cheapest` over the namespaces `found`.
fn cheapest<'a>(found: impl Iterator<Item = &'a Found>, pair: Option<u64>) -> Option<(u64, bool)> {
    // The two best by (holds not both, sockets), and the largest.
    let (mut first, mut second) = (None::<(bool, u64, u64)>, None);
    let mut largest = None::<(u64, u64)>;
    for f in found {
        let mut all: u64 = f.states.0.iter().flatten().sum();
        let mut listen: u64 = f.states.0.iter().map(|s| s[usize::from(LISTEN)]).sum();
        if pair == Some(f.ino) {
            all = all.saturating_sub(PAIR_SOCKETS);
            listen = listen.saturating_sub(1);
        }
        let seen = [first, second].iter().flatten().any(|k| k.2 == f.ino);
        if !f.same_tables || all == 0 || seen {
            continue;
        }
        let key = (listen == 0 || listen == all, all, f.ino);
        if first.is_none_or(|k| key < k) {
            (first, second) = (Some(key), first);
        } else if second.is_none_or(|k| key < k) {
            second = Some(key);
        }
        if largest.is_none_or(|(n, _)| all > n) {
            largest = Some((all, f.ino));
        }
    }
    let pick = match (first, second, largest) {
        (Some(f), Some(s), Some((_, big))) if f.2 == big => Some(s),
        (f, ..) => f,
    };
    // With the pair, its namespace, unless the pick holds both kinds and
    // is not the busiest (the only one holding sockets).
    match (pick, pair) {
        (Some(p), Some(_)) if !p.0 && largest.is_none_or(|(_, big)| p.2 != big) => {
            Some((p.2, true))
        }
        (_, Some(own)) => Some((own, true)),
        (p, None) => p.map(|p| (p.2, !p.0)),
    }
}

fn iter(ebpf: &mut Ebpf) -> Result<&mut Iter, BpfError> {
    ebpf.program_mut("tcpwalk")
        .ok_or(BpfError::Missing("program tcpwalk"))?
        .try_into()
        .map_err(aya("the program tcpwalk"))
}

/// CAP_BPF (or CAP_SYS_ADMIN) loads the program and its maps; an iterator
/// is a tracing program, which also needs CAP_PERFMON (or CAP_SYS_ADMIN):
/// `bpf_capable()`, `is_perfmon_prog_type()` in kernel/bpf/syscall.c.
fn capable() -> Result<(), BpfError> {
    let caps = rustix::thread::capabilities(None)
        .map_err(|e| BpfError::Capabilities(e.into()))?
        .effective;
    if caps.contains(CapabilitySet::SYS_ADMIN) {
        return Ok(());
    }
    match (
        caps.contains(CapabilitySet::BPF),
        caps.contains(CapabilitySet::PERFMON),
    ) {
        (true, true) => Ok(()),
        (false, false) => Err(BpfError::Needs("CAP_BPF and CAP_PERFMON")),
        (false, true) => Err(BpfError::Needs("CAP_BPF")),
        (true, false) => Err(BpfError::Needs("CAP_PERFMON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(ino: u64, same_tables: bool, listen: u64, established: u64) -> Found {
        let mut states = TcpStates::default();
        states.0[1][usize::from(LISTEN)] = listen;
        states.0[0][1] = established;
        Found {
            ino,
            same_tables,
            states,
            queued: [Queued::default(); 2],
        }
    }

    fn pick(found: &[Found]) -> Option<(u64, bool)> {
        cheapest(found.iter(), None)
    }

    #[test]
    fn a_first_self_test_compares_a_small_namespace_not_the_busiest() {
        let busy = ns(1, true, 1, 200_000);
        // The smallest of those with a listener and another socket.
        let found = [
            busy,
            ns(2, true, 1, 40),
            ns(3, true, 2, 6),
            ns(4, true, 0, 3),
        ];
        assert_eq!(pick(&found), Some((3, true)));
        // Else the smallest holding any; never the busiest if another
        // holds sockets, nor one the walk saw only the listeners of, nor
        // an empty one; the same namespace twice is one.
        let found = [
            ns(1, true, 1, 200_000),
            ns(5, true, 1, 0),
            ns(6, false, 1, 1),
            ns(7, true, 0, 0),
        ];
        assert_eq!(pick(&found), Some((5, false)));
        let found = [
            ns(1, true, 1, 200_000),
            ns(1, true, 1, 200_000),
            ns(8, true, 0, 9),
        ];
        assert_eq!(pick(&found), Some((8, false)));
        // The busiest when it is the only one; none when all are empty.
        assert_eq!(
            pick(&[ns(1, true, 1, 200_000), ns(7, true, 0, 0)]),
            Some((1, true))
        );
        assert_eq!(
            pick(&[ns(1, true, 1, 200_000), ns(1, true, 1, 200_000)]),
            Some((1, true))
        );
        assert_eq!(pick(&[ns(7, true, 0, 0)]), None);
    }

    #[test]
    fn the_loopback_pair_is_left_out_of_the_pick() {
        // This process's namespace (9) holds a lone listener and the pair
        // (a listener, two connections): without it, the pick would be a
        // lone listener (9) or connections only (5); with it, 9 holds both.
        let found = [
            ns(1, true, 1, 200_000),
            ns(9, true, 2, 2),
            ns(5, true, 0, 4),
        ];
        assert_eq!(cheapest(found.iter(), Some(9)), Some((9, true)));
        // A namespace holding both kinds is picked before it...
        let found = [
            ns(1, true, 1, 200_000),
            ns(9, true, 1, 2),
            ns(5, true, 1, 4),
        ];
        assert_eq!(cheapest(found.iter(), Some(9)), Some((5, true)));
        // ...but not the busiest, the only other holding sockets.
        let found = [ns(1, true, 1, 200_000), ns(9, true, 1, 2)];
        assert_eq!(cheapest(found.iter(), Some(9)), Some((9, true)));
        assert_eq!(cheapest(found.iter(), None), Some((9, true)));
        assert_eq!(cheapest(found[..1].iter(), None), Some((1, true)));
    }
}
