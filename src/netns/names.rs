//! Naming namespaces the way their users know them: the container ID and
//! Kubernetes pod UID from their processes' cgroup paths, and the hostname
//! of their UTS namespace, without talking to any container runtime, and
//! never from evidence a local user can plant.
//!
//! # Trust rules
//!
//! A label is a claim that every connection of the namespace belongs to a
//! container or pod, and dashboards charge them to it; so a label is set
//! only when no one but the runtime (root) can have made the evidence:
//!
//! 1. **The host's namespace is never labelled from a process in it.**
//!    hostNetwork pods (kube-proxy, CNI agents) run in it, and so does any
//!    local user. The host's network namespace is the one of PID 1 under the
//!    proc root, or the one with the kernel's fixed inode for the initial
//!    namespace (`NET_NS_INIT_INO`, 0xEFFFFFF9, fixed since Linux 6.18:
//!    `net_ns_net_init` in net/core/net_namespace.c); when PID 1 cannot be
//!    looked at, our own namespace may be the host's and is not labelled
//!    either.
//! 2. **Cgroup paths count only at the runtime's own place.** A runtime's
//!    path component (`docker-<id>.scope`, `kubepods-…-pod<uid>.slice`) is
//!    trusted only where the runtime puts it, anchored at the root of the
//!    hierarchy (`/system.slice/docker-<id>.scope`, `/kubepods.slice/…`,
//!    table below). Those directories belong to root: a user can create
//!    cgroups only under a subtree delegated to them (`/user.slice/…`), so
//!    the same name there names nothing. What follows the container's own
//!    component (cgroups a container made inside its own) is ignored, so a
//!    container cannot drop its labels with a sub-cgroup of any name, UTF-8
//!    or not. The root is the host's: the kernel writes a path from the
//!    root of the reader's cgroup namespace, so the program joins the
//!    host's at start (`cgroupfs`), and where its thread is not in it
//!    (`Host::cgroups`), no path is evidence at all.
//! 3. **All of a namespace's processes must agree.** `pod_uid` is set when
//!    every process in the namespace names the same pod; `container_id`
//!    when every process names the same container, or, in a pod, the
//!    pod's sandbox: of processes that all name one pod, the one that
//!    started first (the kernel's start time, field 22 of `/proc/PID/stat`,
//!    which no process can set). The runtime starts the sandbox before any
//!    container of the pod, and the sandbox holds the namespace for the
//!    pod's whole life, so no process of the pod can be older. A process's
//!    name (`pause`) is not evidence: any process can take it.
//! 4. **The hostname** is read only when every process shares one UTS
//!    namespace, and that namespace is neither the host's (the kernel's
//!    fixed `UTS_NS_INIT_INO`, 0xEFFFFFFE, include/uapi/linux/nsfs.h, or
//!    PID 1's) nor ours.
//! 5. **A hostname is believed only where no unprivileged user could have
//!    set it**: every process of the namespace runs in the initial user
//!    namespace, or the namespace's `container_id` or `pod_uid` was
//!    established by rules 2 and 3. Any user can make a UTS namespace of
//!    their own (`unshare -Urn --uts`) and name it after a victim's pod; it
//!    is then owned by the user namespace made with it. A process of the
//!    initial user namespace can enter or make a UTS namespace only with
//!    CAP_SYS_ADMIN there (`utsns_install()` checks the caller's own user
//!    namespace, `copy_utsname()` makes the new one owned by it;
//!    kernel/utsname.c), that is, as root; so the process's user namespace
//!    answers what `NS_GET_USERNS` on the UTS namespace would, without an
//!    `ioctl`. A hostname left out by this rule is said with `D!`.
//!
//! Each process is read through a descriptor of its `/proc/PID` directory:
//! once the process exits, reads through it fail (ESRCH) even if its PID is
//! reused, and its network namespace is checked again after its other files
//! were read, so a reused PID never lends its labels to another namespace.
//! The caller keeps the *representative* (the sandbox or first-started
//! process, with its start time) and derives the labels again when it is
//! gone; a lookup that failed is tried again at the next gather.
//!
//! Cgroup paths, as runtimes lay them out (`/proc/PID/cgroup`, v2 `0::PATH`,
//! v1 `N:controllers:PATH`), each anchored at the root:
//!
//! | runtime | path |
//! | --- | --- |
//! | Docker, systemd driver | `/system.slice/docker-<64 hex>.scope` |
//! | Docker, cgroupfs driver | `/docker/<64 hex>` |
//! | Kubernetes, systemd driver (containerd, CRI-O, cri-dockerd) | `/kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid, _ for ->.slice/{cri-containerd,crio,docker}-<64 hex>.scope` |
//! | Kubernetes, cgroupfs driver | `/kubepods/[<qos>/]pod<uid>/<64 hex>` |
//! | Podman (root, systemd driver) | `/machine.slice/libpod-<64 hex>.scope` |
//! | systemd-nspawn | `/machine.slice/systemd-nspawn@<name>.service` or `/machine.slice/machine-<name>.scope` |
//!
//! (Docker's and Podman's cgroup drivers, the kubelet's `cgroupManager`
//! naming in pkg/kubelet/cm, containerd's CRI plugin and CRI-O's `crio-`
//! scope prefix; the Guaranteed QoS class has no `<qos>` level.) Rootless
//! containers live in their user's delegated subtree and are not labelled:
//! their user could have named them anything.
//!
//! The hostname is read by a short-lived helper thread that joins the
//! UTS namespace (`setns`, CAP_SYS_ADMIN, as for a network namespace) and
//! calls `uname`: the kernel's value, not a file in the container's
//! filesystem that its owner may edit.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::NsId;

/// The inode the kernel gives the initial network namespace (Linux 6.18+:
/// `NET_NS_INIT_INO` in include/uapi/linux/nsfs.h).
pub const NET_NS_INIT_INO: u64 = 0xEFFF_FFF9;
/// The inode of the initial UTS namespace (`UTS_NS_INIT_INO`, fixed since
/// Linux 3.8 as `PROC_UTS_INIT_INO`).
pub const UTS_NS_INIT_INO: u64 = 0xEFFF_FFFE;

pub use crate::cgroupfs::USER_NS_INIT_INO;

/// The tags found for one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub hostname: Option<String>,
}

impl Labels {
    /// The tags as (key, value) pairs, keys sorted.
    pub fn tags(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("container_id", self.container_id.as_deref()),
            ("hostname", self.hostname.as_deref()),
            ("pod_uid", self.pod_uid.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

fn is_container_id(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| b.is_ascii_hexdigit())
}

/// A Kubernetes pod UID as the kubelet prints it: 36 characters of hex and
/// dashes (underscores in systemd slice names).
fn uid_of(s: &[u8]) -> Option<String> {
    let ok = s.len() == 36
        && s.iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| {
        s.iter()
            .map(|&b| if b == b'_' { '-' } else { b as char })
            .collect()
    })
}

/// What one cgroup path says: the container and the pod, each if any.
pub type Claim = (Option<String>, Option<String>);

fn id(s: &[u8]) -> Option<String> {
    is_container_id(s).then(|| String::from_utf8_lossy(s).into_owned())
}

/// `<prefix><64 hex><suffix>`'s ID.
fn wrapped(part: &[u8], prefixes: &[&str], suffix: &str) -> Option<String> {
    let inner = part.strip_suffix(suffix.as_bytes())?;
    prefixes
        .iter()
        .find_map(|p| inner.strip_prefix(p.as_bytes()))
        .and_then(id)
}

/// A systemd unit name's escapes undone (`\x2d` is `-`); names that are not
/// UTF-8 name nothing.
fn unit_name(s: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(s).ok().filter(|s| !s.is_empty())?;
    Some(s.replace("\\x2d", "-"))
}

/// The container ID and pod UID one cgroup path claims, read only at the
/// places runtimes create (see the module doc): anchored at the root,
/// ignoring whatever follows the container's own component.
pub fn parse_path(path: &[u8]) -> Claim {
    let Some(rest) = path.strip_prefix(b"/") else {
        return (None, None);
    };
    let mut parts = rest.split(|&b| b == b'/');
    match parts.next().unwrap_or_default() {
        b"system.slice" => {
            let c = parts
                .next()
                .and_then(|p| wrapped(p, &["docker-"], ".scope"));
            (c, None)
        }
        b"docker" => (parts.next().and_then(id), None),
        b"machine.slice" => {
            let Some(p) = parts.next() else {
                return (None, None);
            };
            let c = wrapped(p, &["libpod-"], ".scope")
                .or_else(|| {
                    p.strip_prefix(b"systemd-nspawn@")
                        .and_then(|s| s.strip_suffix(b".service"))
                        .and_then(unit_name)
                })
                .or_else(|| {
                    p.strip_prefix(b"machine-")
                        .and_then(|s| s.strip_suffix(b".scope"))
                        .and_then(unit_name)
                });
            (c, None)
        }
        b"kubepods.slice" => {
            // [kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid>.slice
            let mut p = parts.next().unwrap_or_default();
            let qos = |p: &[u8]| {
                [
                    &b"kubepods-burstable.slice"[..],
                    b"kubepods-besteffort.slice",
                ]
                .contains(&p)
            };
            if qos(p) {
                p = parts.next().unwrap_or_default();
            }
            let pod = p
                .strip_suffix(b".slice")
                .and_then(|s| {
                    [
                        &b"kubepods-pod"[..],
                        b"kubepods-burstable-pod",
                        b"kubepods-besteffort-pod",
                    ]
                    .iter()
                    .find_map(|pre| s.strip_prefix(*pre))
                })
                .and_then(uid_of);
            let Some(pod) = pod else {
                return (None, None);
            };
            let c = parts
                .next()
                .and_then(|p| wrapped(p, &["cri-containerd-", "crio-", "docker-"], ".scope"));
            (c, Some(pod))
        }
        b"kubepods" => {
            // [<qos>/]pod<uid>/<64 hex>
            let mut p = parts.next().unwrap_or_default();
            if p == b"burstable" || p == b"besteffort" {
                p = parts.next().unwrap_or_default();
            }
            let Some(pod) = p.strip_prefix(b"pod").and_then(uid_of) else {
                return (None, None);
            };
            (parts.next().and_then(id), Some(pod))
        }
        _ => (None, None),
    }
}

/// The container ID and pod UID a `/proc/PID/cgroup` text claims: the v2
/// line (`0::PATH`) if it names them, else the first v1 line that does.
pub fn parse_cgroup(text: &[u8]) -> Claim {
    let mut lines: Vec<(&[u8], &[u8])> = text
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let mut it = l.splitn(3, |&b| b == b':');
            Some((it.next()?, it.nth(1)?))
        })
        .collect();
    // The unified hierarchy first.
    lines.sort_by_key(|(h, _)| *h != b"0");
    let mut best: Claim = (None, None);
    for (_, path) in lines {
        let (c, p) = parse_path(path);
        if best.0.is_none() {
            best.0 = c;
        }
        if best.1.is_none() {
            best.1 = p;
        }
    }
    best
}

/// The start time of a process (field 22 of `/proc/PID/stat`, in clock
/// ticks since boot). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Field 3 (state) is the first after the name; 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A process that names a namespace, and the one to check it is still
/// there: its PID and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Representative {
    pub pid: u32,
    pub start: u64,
}

/// What is known of the host, to keep its namespaces unlabelled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    /// PID 1's network namespace, if it can be looked at.
    pub net: Option<NsId>,
    /// PID 1's UTS namespace, if it can be looked at.
    pub uts: Option<NsId>,
    /// Our own network and UTS namespaces.
    pub own_net: Option<NsId>,
    pub own_uts: Option<NsId>,
    /// PID 1's user namespace, if it can be looked at.
    pub user: Option<NsId>,
    /// Whether this thread sees the host's cgroup namespace
    /// (`cgroupfs::in_host_namespace`): elsewhere cgroup paths start at
    /// another root and are not evidence.
    pub cgroups: bool,
}

impl Host {
    /// What `proc_root` and our own /proc tell now.
    pub fn look(proc_root: &Path) -> Host {
        let of = |p: &Path| NsId::of(p).ok();
        Host {
            net: of(&proc_root.join("1/ns/net")),
            uts: of(&proc_root.join("1/ns/uts")),
            own_net: NsId::own(),
            own_uts: of(Path::new("/proc/self/ns/uts")),
            user: of(&proc_root.join("1/ns/user")),
            cgroups: crate::cgroupfs::in_host_namespace(proc_root).is_ok(),
        }
    }

    /// Whether user namespace `id` is the initial one (`PROC_USER_INIT_INO`,
    /// 0xEFFFFFFD, include/linux/proc_ns.h; or PID 1's).
    fn initial_user(&self, id: NsId) -> bool {
        id.ino == USER_NS_INIT_INO || Some(id) == self.user
    }

    /// Whether network namespace `id` is, or may be, the host's.
    pub fn may_be_host_net(&self, id: NsId) -> bool {
        id.ino == NET_NS_INIT_INO
            || Some(id) == self.net
            || (self.net.is_none() && Some(id) == self.own_net)
    }

    fn shared_uts(&self, id: NsId) -> bool {
        id.ino == UTS_NS_INIT_INO || Some(id) == self.uts || Some(id) == self.own_uts
    }
}

/// What the processes of one namespace said.
#[derive(Debug, Default)]
pub struct Named {
    pub labels: Labels,
    /// `None` when no process could be read: nothing to re-check.
    pub representative: Option<Representative>,
    /// Reads that failed: the labels may be missing something, and the
    /// lookup should be tried again.
    pub problems: Vec<Problem>,
    /// Why a label was left out although processes claimed one (they
    /// disagree).
    pub ambiguous: Option<String>,
    /// The namespace is, or may be, the host's: never labelled, so never
    /// looked at again.
    pub host: bool,
    /// A hostname left out by rule 5, and why.
    pub withheld: Option<String>,
}

/// One process's evidence.
struct Evidence {
    pid: u32,
    start: u64,
    claim: Claim,
    uts: NsId,
    /// The process's user namespace.
    user: NsId,
}

fn io(e: Errno) -> std::io::Error {
    e.into()
}

/// Whether an error means the process is gone (or never was).
fn gone(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::SRCH)
}

fn ns_at(dir: BorrowedFd<'_>, name: &str) -> Result<NsId, Errno> {
    Ok(NsId::of_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::empty(),
    )?))
}

/// Reads a small /proc file through the process's directory descriptor.
fn read_at(dir: BorrowedFd<'_>, name: &str) -> Result<Vec<u8>, Errno> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut out = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
        // A cgroup path is at most a few KiB; more is not a /proc file.
        if out.len() > 64 * 1024 {
            return Err(Errno::FBIG);
        }
    }
}

/// Opens a process's directory under the proc root (which the
/// administrator chose: a mount of /proc, or in tests a tree of links to
/// its entries, so links are followed here).
fn open_process(proc_root: &Path, pid: u32) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        proc_root.join(pid.to_string()),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Why a process's labels could not be read (the lookup is tried again):
/// the path, and the OS error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Problem {
    /// Its /proc directory could not be opened.
    Open(PathBuf, std::io::Error),
    /// A file in it could not be read.
    Read(PathBuf, std::io::Error),
    /// Its `stat` has no start time.
    NoStartTime(PathBuf),
    /// The hostname of the process whose /proc directory this is.
    Hostname(PathBuf, HostnameError),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Open(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            Problem::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            Problem::NoStartTime(p) => write!(f, "cannot read {}: no start time", p.display()),
            Problem::Hostname(p, e) => {
                write!(f, "cannot read the hostname of {}: {e}", p.display())
            }
        }
    }
}

/// One process's evidence, `Ok(None)` if it is gone or no longer in `ns`.
fn evidence(proc_root: &Path, pid: u32, ns: NsId) -> Result<Option<(Evidence, OwnedFd)>, Problem> {
    let dir = match open_process(proc_root, pid) {
        Ok(d) => d,
        Err(e) if gone(e) => return Ok(None),
        Err(e) => return Err(Problem::Open(proc_root.join(pid.to_string()), io(e))),
    };
    let d = dir.as_fd();
    let said =
        |what: &str, e: Errno| Problem::Read(proc_root.join(pid.to_string()).join(what), io(e));
    let step = |r: Result<NsId, Errno>, what: &str| -> Result<Option<NsId>, Problem> {
        match r {
            Ok(id) => Ok(Some(id)),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(said(what, e)),
        }
    };
    if step(ns_at(d, "ns/net"), "ns/net")? != Some(ns) {
        return Ok(None);
    }
    let cgroup = match read_at(d, "cgroup") {
        Ok(c) => c,
        Err(e) if gone(e) => return Ok(None),
        Err(e) => return Err(said("cgroup", e)),
    };
    let start = match read_at(d, "stat") {
        Ok(s) => start_time(&s)
            .ok_or_else(|| Problem::NoStartTime(proc_root.join(pid.to_string()).join("stat")))?,
        Err(e) if gone(e) => return Ok(None),
        Err(e) => return Err(said("stat", e)),
    };
    let Some(uts) = step(ns_at(d, "ns/uts"), "ns/uts")? else {
        return Ok(None);
    };
    let Some(user) = step(ns_at(d, "ns/user"), "ns/user")? else {
        return Ok(None);
    };
    // Still the same process in the same namespace: what was read is its.
    if step(ns_at(d, "ns/net"), "ns/net")? != Some(ns) {
        return Ok(None);
    }
    let e = Evidence {
        pid,
        start,
        claim: parse_cgroup(&cgroup),
        uts,
        user,
    };
    Ok(Some((e, dir)))
}

/// The one value every item has, if there are items and they all have the
/// same.
fn agreed<T: PartialEq + Clone>(mut it: impl Iterator<Item = T>) -> Option<T> {
    let first = it.next()?;
    it.all(|x| x == first).then_some(first)
}

/// Derives the labels of network namespace `ns` from its processes `pids`
/// (see the module doc for the rules).
pub fn derive(proc_root: &Path, ns: NsId, pids: &[u32], host: &Host) -> Named {
    let mut named = Named::default();
    if host.may_be_host_net(ns) {
        named.host = true;
        return named;
    }
    let mut seen: Vec<(Evidence, OwnedFd)> = Vec::new();
    for &pid in pids {
        match evidence(proc_root, pid, ns) {
            // Paths from another cgroup namespace's root name nothing.
            Ok(Some((e, dir))) if !host.cgroups => seen.push((
                Evidence {
                    claim: (None, None),
                    ..e
                },
                dir,
            )),
            Ok(Some(e)) => seen.push(e),
            Ok(None) => {}
            Err(p) => named.problems.push(p),
        }
    }
    if !named.problems.is_empty() {
        // Labels from some processes only could be wrong: none, and the
        // caller tries again.
        seen.clear();
    }
    // The earliest-started process (the lowest PID among equals).
    let Some(first) = seen
        .iter()
        .enumerate()
        .min_by_key(|(_, (e, _))| (e.start, e.pid))
        .map(|(i, _)| i)
    else {
        return named;
    };
    named.representative = Some(Representative {
        pid: seen[first].0.pid,
        start: seen[first].0.start,
    });
    let pod = agreed(seen.iter().map(|(e, _)| e.claim.1.clone()));
    let container = agreed(seen.iter().map(|(e, _)| e.claim.0.clone()));
    named.labels.pod_uid = pod.clone().flatten();
    named.labels.container_id = match (&container, &named.labels.pod_uid) {
        (Some(c), _) => c.clone(),
        // A pod's containers share its namespace: the sandbox started
        // first, unless another container's process started in the same
        // tick.
        (None, Some(_)) => {
            let (sandbox, _) = &seen[first];
            let tie = seen
                .iter()
                .any(|(e, _)| e.start == sandbox.start && e.claim.0 != sandbox.claim.0);
            if tie {
                None
            } else {
                sandbox.claim.0.clone()
            }
        }
        (None, None) => None,
    };
    let claims = seen
        .iter()
        .any(|(e, _)| e.claim.0.is_some() || e.claim.1.is_some());
    if claims && (pod.is_none() || named.labels.container_id.is_none() && container.is_none()) {
        let pids: Vec<String> = seen
            .iter()
            .map(|(e, _)| {
                let c = e.claim.0.as_deref().unwrap_or("none");
                let p = e.claim.1.as_deref().unwrap_or("none");
                format!("{} (container {c}, pod {p})", e.pid)
            })
            .take(4)
            .collect();
        named.ambiguous = Some(format!(
            "its processes disagree on the container or pod, so those tags are left out: {}",
            pids.join(", ")
        ));
    }
    // Rule 5: a hostname any user could have set names nothing.
    let vouched = named.labels.container_id.is_some()
        || named.labels.pod_uid.is_some()
        || seen.iter().all(|(e, _)| host.initial_user(e.user));
    match agreed(seen.iter().map(|(e, _)| e.uts)) {
        Some(uts) if !host.shared_uts(uts) && !vouched => {
            named.withheld = Some(format!(
                "no hostname tag: its UTS namespace may belong to an unprivileged user \
                 (process {} runs in a user namespace of its own) and it names no container",
                seen[first].0.pid
            ));
        }
        Some(uts) if !host.shared_uts(uts) => match hostname_in(seen[first].1.as_fd()) {
            Ok(h) => named.labels.hostname = Some(h),
            Err(e) => named.problems.push(Problem::Hostname(
                proc_root.join(seen[first].0.pid.to_string()),
                e,
            )),
        },
        _ => {}
    }
    named
}

/// Whether `rep` still runs in namespace `ns` (the same process: same PID
/// and start time).
pub fn still_there(proc_root: &Path, rep: Representative, ns: NsId) -> bool {
    let Ok(dir) = open_process(proc_root, rep.pid) else {
        return false;
    };
    let d = dir.as_fd();
    ns_at(d, "ns/net").ok() == Some(ns)
        && read_at(d, "stat").ok().and_then(|s| start_time(&s)) == Some(rep.start)
}

/// The processes of each namespace in `ids` under `proc_root`, in one walk.
pub fn members(proc_root: &Path, ids: &[NsId]) -> HashMap<NsId, Vec<u32>> {
    let mut found: HashMap<NsId, Vec<u32>> = HashMap::new();
    let _ = super::each_process(proc_root, |pid, ns| {
        if ids.contains(&ns) {
            found.entry(ns).or_default().push(pid);
        }
    });
    found
}

/// Why a namespace's hostname could not be read: the step, and the OS
/// error.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostnameError {
    /// Opening the process's `ns/uts` failed.
    Open(std::io::Error),
    /// `setns(2)` into it failed.
    Enter(std::io::Error),
    /// The helper thread that joins it could not start.
    Thread(std::io::Error),
}

impl std::fmt::Display for HostnameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostnameError::Open(e) => write!(f, "cannot open its UTS namespace: {e}"),
            HostnameError::Enter(e) => write!(f, "cannot enter its UTS namespace: {e}"),
            HostnameError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

/// The hostname of the UTS namespace of the process whose /proc directory
/// is `dir`, read by a helper thread that joins it (the caller's threads
/// never change namespace).
fn hostname_in(dir: BorrowedFd<'_>) -> Result<String, HostnameError> {
    let read = || {
        let file = rustix::fs::openat(
            dir,
            "ns/uts",
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| HostnameError::Open(io(e)))?;
        move_into_link_name_space(
            file.as_fd(),
            Some(LinkNameSpaceType::HostNameAndNISDomainName),
        )
        .map_err(|e| HostnameError::Enter(io(e)))?;
        let name = rustix::system::uname();
        Ok(crate::tagtext::escaped(name.nodename().to_bytes()))
    };
    super::on_helper_thread("uts", read).map_err(HostnameError::Thread)?
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1d2a3b5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    const UID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

    fn parsed(text: &str) -> Claim {
        parse_cgroup(text.as_bytes())
    }

    #[test]
    fn runtimes_cgroup_paths() {
        let uid_ = UID.replace('-', "_");
        let id = || Some(ID.to_string());
        let uid = || Some(UID.to_string());
        for (text, want) in [
            // Docker, cgroup v2 with the systemd driver.
            (format!("0::/system.slice/docker-{ID}.scope\n"), (id(), None)),
            // Docker, cgroup v1 with the cgroupfs driver.
            (
                format!("12:pids:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n0::/\n"),
                (id(), None),
            ),
            // containerd under Kubernetes, systemd driver, Burstable QoS.
            (
                format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
                (id(), uid()),
            ),
            // Guaranteed QoS has no QoS level.
            (
                format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
                (id(), uid()),
            ),
            // The pod's own slice: a pod, no container.
            (
                format!("0::/kubepods.slice/kubepods-pod{uid_}.slice\n"),
                (None, uid()),
            ),
            // Kubernetes, cgroupfs driver, cgroup v1.
            (
                format!("10:memory:/kubepods/besteffort/pod{UID}/{ID}\n"),
                (id(), uid()),
            ),
            // CRI-O and Podman.
            (
                format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope\n"),
                (id(), uid()),
            ),
            (format!("0::/machine.slice/libpod-{ID}.scope/container\n"), (id(), None)),
            // systemd-nspawn machines, named.
            (
                "0::/machine.slice/systemd-nspawn@web\\x2d1.service/payload\n".into(),
                (Some("web-1".into()), None),
            ),
            (
                "0::/machine.slice/machine-db.scope/payload\n".into(),
                (Some("db".into()), None),
            ),
        ] {
            assert_eq!(parsed(&text), want, "{text:?}");
        }
    }

    #[test]
    fn captured_runtime_cgroup_files() {
        // Read from real containers (tests/data/cgroup/README.md says how).
        let docker = include_bytes!("../../tests/data/cgroup/docker-20.10-cgroupfs-hybrid");
        let want = "c005bebff0dca06eba3ec7070537d2000c40cd0780136b4663f2701f021d6ec4";
        assert_eq!(parse_cgroup(docker), (Some(want.to_string()), None));
    }

    #[test]
    fn runtime_names_elsewhere_name_nothing() {
        let uid_ = UID.replace('-', "_");
        for text in [
            "0::/init.scope\n".to_string(),
            "0::/system.slice/ssh.service\n".into(),
            "0::/user.slice/user-1000.slice/session-3.scope\n".into(),
            "0::/system.slice/docker-notanid.scope\n".into(),
            String::new(),
            "garbage".into(),
            // A user's delegated subtree: any name can be made there.
            format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope\n"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"),
            format!("0::/system.slice/foo.service/docker-{ID}.scope\n"),
            format!("0::/x/docker/{ID}\n"),
            format!("0::/x/kubepods/pod{UID}/{ID}\n"),
            format!("0::docker/{ID}\n"),
        ] {
            assert_eq!(parsed(&text), (None, None), "{text:?}");
        }
    }

    #[test]
    fn a_sub_cgroup_of_any_name_keeps_the_labels() {
        let mut text = format!("0::/system.slice/docker-{ID}.scope/").into_bytes();
        text.extend_from_slice(b"\xff\xfe/x\n");
        assert_eq!(parse_cgroup(&text), (Some(ID.into()), None));
        let mut text = b"1:name=x:/\xff\n".to_vec();
        text.extend_from_slice(format!("0::/docker/{ID}/").as_bytes());
        text.extend_from_slice(b"\xc3\x28\n");
        assert_eq!(parse_cgroup(&text), (Some(ID.into()), None));
    }

    #[test]
    fn start_times() {
        let stat =
            b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 1";
        assert_eq!(start_time(stat), Some(123456));
        assert_eq!(start_time(b"42 (x) S 1"), None);
        assert_eq!(start_time(b"no parens"), None);
    }

    #[test]
    fn the_host_and_maybe_host() {
        let ns = |ino| NsId { dev: 4, ino };
        let h = Host {
            net: Some(ns(10)),
            uts: Some(ns(20)),
            own_net: Some(ns(11)),
            own_uts: Some(ns(21)),
            user: Some(ns(30)),
            cgroups: true,
        };
        assert!(h.initial_user(ns(30)) && h.initial_user(ns(USER_NS_INIT_INO)));
        assert!(!h.initial_user(ns(31)));
        assert!(h.may_be_host_net(ns(10)));
        assert!(h.may_be_host_net(ns(NET_NS_INIT_INO)));
        assert!(!h.may_be_host_net(ns(11)));
        assert!(!h.may_be_host_net(ns(12)));
        // PID 1 unseen: our own namespace may be the host's.
        let blind = Host { net: None, ..h };
        assert!(blind.may_be_host_net(ns(11)));
        assert!(!blind.may_be_host_net(ns(12)));
        assert!(h.shared_uts(ns(UTS_NS_INIT_INO)));
        assert!(h.shared_uts(ns(20)) && h.shared_uts(ns(21)));
        assert!(!h.shared_uts(ns(22)));
    }

    #[test]
    fn processes_that_are_gone_or_elsewhere_are_skipped_without_a_word() {
        let own = NsId::own().unwrap();
        let other = NsId {
            dev: own.dev,
            ino: own.ino ^ 1,
        };
        let host = Host::default();
        // PID 0 never has a /proc entry; our own process is in `own`, not
        // `other`.
        let me = std::process::id();
        let n = derive(Path::new("/proc"), other, &[0, me], &host);
        assert!(n.problems.is_empty() && n.ambiguous.is_none(), "{n:?}");
        assert_eq!((n.representative, n.labels), (None, Labels::default()));
        // Our own process in our own namespace is read.
        let (e, _) = evidence(Path::new("/proc"), me, own).unwrap().unwrap();
        assert_eq!(e.pid, me);
        let rep = Representative {
            pid: me,
            start: e.start,
        };
        assert!(still_there(Path::new("/proc"), rep, own));
        let reused = Representative {
            start: e.start + 1,
            ..rep
        };
        assert!(!still_there(Path::new("/proc"), reused, own));
        assert!(!still_there(Path::new("/proc"), rep, other));
    }

    #[test]
    fn agreement() {
        assert_eq!(agreed([1, 1, 1].into_iter()), Some(1));
        assert_eq!(agreed([1, 2].into_iter()), None);
        assert_eq!(agreed(std::iter::empty::<u8>()), None);
    }

    #[test]
    fn labels_are_sorted_tags() {
        let l = Labels {
            container_id: Some("c".into()),
            pod_uid: Some("p".into()),
            hostname: Some("h".into()),
        };
        assert_eq!(
            l.tags().collect::<Vec<_>>(),
            [("container_id", "c"), ("hostname", "h"), ("pod_uid", "p")]
        );
        assert_eq!(Labels::default().tags().count(), 0);
    }
}
