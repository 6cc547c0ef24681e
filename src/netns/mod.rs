//! Network namespaces: naming them, finding every one on the host
//! (`--all-netns`), and opening a sock_diag socket inside one.
//!
//! Tags never collide: the synthetic ones (`host`, `self`, `pid:N`) and
//! the names under /run/netns live in disjoint sets (a name that looks like
//! a synthetic tag is written `name:NAME`, see `name_tag`), and other paths
//! are tagged by their absolute path, which no name can be (names have no
//! `/`).
//!
//! A sock_diag socket reports the namespace it was created in, so a socket
//! for another namespace is created by a short-lived helper thread that has
//! joined it (`setns(2)` moves only the calling thread). The socket is kept
//! for later gathers; the caller's threads never change namespace.

pub mod names;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::error::Error;
use crate::netlink::DiagSocket;

/// The directories `ip netns` keeps its named namespaces in.
pub const NAMED_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// The identity of a namespace: the device and inode of its nsfs file,
/// the same through every path that refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// The namespace `path` refers to (following symlinks and bind mounts).
    pub fn of(path: &Path) -> std::io::Result<NsId> {
        let m = std::fs::metadata(path)?;
        Ok(NsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The namespace of an nsfs file `stat` describes.
    pub fn of_stat(m: &rustix::fs::Stat) -> NsId {
        NsId {
            dev: m.st_dev,
            ino: m.st_ino,
        }
    }

    /// The namespace this process runs in, if /proc tells.
    pub fn own() -> Option<NsId> {
        NsId::of(Path::new("/proc/self/ns/net")).ok()
    }
}

/// A namespace to gather in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The value of the `netns` tag.
    pub tag: String,
    /// A file that refers to the namespace.
    pub path: PathBuf,
    pub id: NsId,
    /// A process inside it, whose /proc/PID/net the proc source reads.
    pub pid: Option<u32>,
}

/// `f_type` of the nsfs filesystem that holds every namespace file
/// (`NSFS_MAGIC`, include/uapi/linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens a namespace file without blocking (a FIFO planted at the path
/// would block a plain open) and checks that it is a namespace file at
/// all; whether it is a *network* namespace `setns` tells.
fn open_ns_file(path: &Path) -> Result<OwnedFd, Error> {
    let open_err = |e: Errno| Error::NetnsOpen {
        path: path.to_owned(),
        source: e.into(),
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(open_err)?;
    let fs = rustix::fs::fstatfs(&fd).map_err(open_err)?;
    if fs.f_type as i64 != NSFS_MAGIC {
        return Err(Error::NotNetns {
            path: path.to_owned(),
        });
    }
    Ok(fd)
}

impl Target {
    /// Resolves a `--netns PATH` argument (at every gather): checks that it
    /// is a namespace file without opening it (the socket is opened from it
    /// later, checked again, by `open_socket`).
    pub fn at(path: &Path, proc_root: &Path) -> Result<Target, Error> {
        let open_err = |e: Errno| Error::NetnsOpen {
            path: path.to_owned(),
            source: e.into(),
        };
        let fs = rustix::fs::statfs(path).map_err(open_err)?;
        if fs.f_type as i64 != NSFS_MAGIC {
            return Err(Error::NotNetns {
                path: path.to_owned(),
            });
        }
        let m = rustix::fs::stat(path).map_err(open_err)?;
        let id = NsId::of_stat(&m);
        Ok(Target {
            tag: tag_for(path, proc_root),
            path: path.to_owned(),
            id,
            pid: pid_in(path, proc_root),
        })
    }
}

/// The PID in a `<proc_root>/PID/ns/net` path: only under the proc root
/// this program reads (the /proc source reads that PID's tables there, and
/// `pid:N` names a process of this host's /proc, not of another tree).
fn pid_in(path: &Path, proc_root: &Path) -> Option<u32> {
    let mut c = path.strip_prefix(proc_root).ok()?.components();
    let (pid, ns, net) = (c.next()?, c.next()?, c.next()?);
    if c.next().is_some() || ns.as_os_str() != "ns" || net.as_os_str() != "net" {
        return None;
    }
    let pid = pid.as_os_str().to_str()?;
    if pid.starts_with('0') || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The tag of a namespace named `name` under /run/netns: the name itself
/// (escaped where it has bytes a tag cannot show as they are, see
/// `tagtext`), unless it could be taken for a tag this program makes up
/// (`host`, `self`, `pid:N`) or for one written this way (`name:...`);
/// those are written `name:NAME`. So `ip netns add host` can never pass for
/// the host.
pub fn name_tag(name: &[u8]) -> String {
    let reserved = name == b"host"
        || name == b"self"
        || name.starts_with(b"pid:")
        || name.starts_with(b"name:");
    let text = crate::tagtext::escaped(name);
    if reserved {
        format!("name:{text}")
    } else {
        text
    }
}

/// The `netns` tag for a path: the name under /run/netns (or
/// /var/run/netns, see `name_tag`), `pid:<PID>` for `<proc_root>/PID/ns/net`,
/// else the absolute path (escaped as names are).
pub fn tag_for(path: &Path, proc_root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        if NAMED_DIRS.iter().any(|d| dir == Path::new(d)) {
            return name_tag(name.as_bytes());
        }
    }
    match pid_in(path, proc_root) {
        Some(pid) => format!("pid:{pid}"),
        None => {
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            crate::tagtext::escaped(abs.as_os_str().as_bytes())
        }
    }
}

/// What one pass over the host found about a namespace.
#[derive(Default)]
struct Found {
    name: Option<(std::ffi::OsString, PathBuf)>,
    lowest_pid: Option<u32>,
    of_pid1: bool,
}

/// What `scan` found.
#[derive(Debug)]
pub struct Scan {
    pub targets: Vec<Target>,
    /// Processes whose namespace could be looked at: 0 means the unnamed
    /// namespaces could not be found at all (an empty or foreign proc root).
    pub processes: usize,
    /// Processes whose namespace could not be looked at (missing
    /// CAP_SYS_PTRACE): namespaces only they are in are missing.
    pub unreadable: usize,
    /// The PIDs in each namespace found, from the same walk (for
    /// `names::derive`, which then needs no walk of its own).
    pub members: HashMap<NsId, Vec<u32>>,
}

/// Whether this thread holds CAP_SYS_PTRACE: an unreadable `/proc/PID/ns/net`
/// is then refused for another reason (a user namespace above ours, an LSM),
/// and the log line must not blame a missing capability.
pub fn holds_cap_sys_ptrace() -> bool {
    use rustix::thread::{capabilities, CapabilitySet};
    capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::SYS_PTRACE))
}

/// Every distinct namespace reachable through the named directories and
/// `<proc_root>/*/ns/net`, each once. Named ones are tagged by name (see
/// `name_tag`); the one of PID 1 `host`; the one this program runs in, if
/// it is not PID 1's, `self` (stable across runs, also when PID 1 cannot be
/// looked at, as for an unprivileged user); the others `pid:<lowest PID in
/// it>`. Entries that vanish or cannot be looked at during the scan are
/// skipped: only a proc root that cannot be listed is an error. Sorted:
/// `host`, `self`, then the named ones by name, then by PID.
pub fn scan(proc_root: &Path, named_dirs: &[&Path]) -> Result<Scan, Error> {
    // Every nsfs file has the device of our own namespace's file; anything
    // else in a named directory is a leftover mount point, not a namespace.
    let nsfs_dev = NsId::own().map(|id| id.dev);
    let mut found: HashMap<NsId, Found> = HashMap::new();
    for dir in named_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(id) = NsId::of(&path) else { continue };
            if nsfs_dev.is_some_and(|d| d != id.dev) {
                continue;
            }
            let f = found.entry(id).or_default();
            let name = entry.file_name();
            if f.name.as_ref().is_none_or(|(n, _)| name < *n) {
                f.name = Some((name, path));
            }
        }
    }
    let mut processes = 0;
    let mut members: HashMap<NsId, Vec<u32>> = HashMap::new();
    let unreadable = each_process(proc_root, |pid, id| {
        processes += 1;
        members.entry(id).or_default().push(pid);
        let f = found.entry(id).or_default();
        f.lowest_pid = Some(f.lowest_pid.map_or(pid, |p| p.min(pid)));
        f.of_pid1 |= pid == 1;
    })
    .map_err(|source| Error::ProcRead {
        path: proc_root.to_owned(),
        source,
    })?;
    let own = NsId::own();
    let mut targets: Vec<(u8, u32, Target)> = found
        .into_iter()
        .filter_map(|(id, f)| {
            let proc_path = |pid: u32| proc_root.join(pid.to_string()).join("ns/net");
            let is_own = own == Some(id);
            let (rank, order, tag, path) = match (f.name, f.of_pid1, f.lowest_pid) {
                (Some((name, path)), ..) => (2, 0, name_tag(name.as_encoded_bytes()), path),
                (None, true, _) => (0, 0, "host".to_string(), proc_path(1)),
                (None, false, _) if is_own => {
                    (1, 0, "self".to_string(), PathBuf::from("/proc/self/ns/net"))
                }
                (None, false, Some(pid)) => (3, pid, format!("pid:{pid}"), proc_path(pid)),
                // Only a process puts an unnamed namespace in the map.
                (None, false, None) => return None,
            };
            let target = Target {
                tag,
                path,
                id,
                pid: f.lowest_pid,
            };
            Some((rank, order, target))
        })
        .collect();
    targets.sort_by(|a, b| (a.0, a.1, &a.2.tag).cmp(&(b.0, b.1, &b.2.tag)));
    Ok(Scan {
        targets: targets.into_iter().map(|(_, _, t)| t).collect(),
        processes,
        unreadable,
        members,
    })
}

/// Calls `f` with the PID and network namespace of every process under
/// `proc_root` that can be looked at. Returns how many processes could not
/// be looked at although they exist (without CAP_SYS_PTRACE, those of other
/// users); processes that exit meanwhile are not counted.
pub(crate) fn each_process(
    proc_root: &Path,
    mut f: impl FnMut(u32, NsId),
) -> std::io::Result<usize> {
    let mut unreadable = 0;
    let mut path = proc_root.to_path_buf();
    for entry in std::fs::read_dir(proc_root)?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        path.push(&name);
        path.push("ns/net");
        let id = NsId::of(&path);
        path.pop();
        path.pop();
        path.pop();
        match id {
            Ok(id) => f(pid, id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // ESRCH: exited between the listing and the look.
            Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {}
            Err(_) => unreadable += 1,
        }
    }
    Ok(unreadable)
}

/// The lowest PID under `proc_root` that runs in namespace `id`, if any.
pub fn find_pid(proc_root: &Path, id: NsId) -> Option<u32> {
    let mut lowest: Option<u32> = None;
    each_process(proc_root, |pid, i| {
        if i == id {
            lowest = Some(lowest.map_or(pid, |p| p.min(pid)));
        }
    })
    .ok()?;
    lowest
}

/// Opens a sock_diag socket inside the namespace `target` refers to.
pub fn open_socket(target: &Target) -> Result<DiagSocket, Error> {
    inside(target, DiagSocket::open)
}

/// Runs `f` inside the namespace `target` refers to, on a helper thread
/// that first checks that it is still the namespace `target.id`. The
/// namespace the process runs in needs no helper and no privilege. What
/// `f` opens (a socket, a /proc/sys file) belongs to that namespace.
pub fn inside<T: Send>(
    target: &Target,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> Result<T, Error> {
    if NsId::own() == Some(target.id) {
        return f();
    }
    let path = &target.path;
    let enter_and_run = || -> Result<T, Error> {
        let file = open_ns_file(path)?;
        let m = rustix::fs::fstat(&file).map_err(|e| Error::NetnsOpen {
            path: path.clone(),
            source: e.into(),
        })?;
        if NsId::of_stat(&m) != target.id {
            return Err(Error::NetnsOpen {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it now refers to another namespace",
                ),
            });
        }
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
            match e {
                // Another kind of namespace (mnt, uts, ...).
                Errno::INVAL => Error::NotNetns { path: path.clone() },
                e => Error::NetnsEnter {
                    path: path.clone(),
                    source: e.into(),
                },
            }
        })?;
        f()
    };
    on_helper_thread("netns", enter_and_run).map_err(|source| Error::NetnsEnter {
        path: path.clone(),
        source,
    })?
}

/// Runs `f` on a short-lived thread named `name` and returns what it
/// returns: `setns(2)` moves only the calling thread, so a thread that joins
/// another namespace is one made for it and then ended; the caller's threads
/// never change namespace. `Err` only if the thread cannot be started; a
/// panic in `f` is passed on.
pub(crate) fn on_helper_thread<T: Send>(
    name: &str,
    f: impl FnOnce() -> T + Send,
) -> std::io::Result<T> {
    std::thread::scope(|s| {
        let t = std::thread::Builder::new()
            .name(name.into())
            .stack_size(64 * 1024)
            .spawn_scoped(s, f)?;
        Ok(t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_path() {
        assert_eq!(
            tag_for(Path::new("/run/netns/blue"), Path::new("/proc")),
            "blue"
        );
        assert_eq!(
            tag_for(Path::new("/var/run/netns/red"), Path::new("/proc")),
            "red"
        );
        assert_eq!(
            tag_for(Path::new("/proc/1234/ns/net"), Path::new("/proc")),
            "pid:1234"
        );
        assert_eq!(
            tag_for(
                Path::new("/hostfs/proc/77/ns/net"),
                Path::new("/hostfs/proc")
            ),
            "pid:77"
        );
        assert_eq!(
            tag_for(Path::new("/proc/self/ns/net"), Path::new("/proc")),
            "/proc/self/ns/net"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/host"), Path::new("/proc")),
            "name:host"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/self"), Path::new("/proc")),
            "name:self"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/pid:5"), Path::new("/proc")),
            "name:pid:5"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/name:x"), Path::new("/proc")),
            "name:name:x"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/hostile"), Path::new("/proc")),
            "hostile"
        );
        // Relative paths are tagged absolute: never a bare name.
        let rel = tag_for(Path::new("blue"), Path::new("/proc"));
        assert!(rel.starts_with('/') && rel.ends_with("/blue"), "{rel}");
        assert_eq!(
            tag_for(Path::new("/proc/12/ns/mnt"), Path::new("/proc")),
            "/proc/12/ns/mnt"
        );
        assert_eq!(
            tag_for(Path::new("/run/netns/a/b"), Path::new("/proc")),
            "/run/netns/a/b"
        );
        assert_eq!(
            tag_for(Path::new("/srv/ns/web"), Path::new("/proc")),
            "/srv/ns/web"
        );
        assert_eq!(
            tag_for(Path::new("/proc/007/ns/net"), Path::new("/proc")),
            "/proc/007/ns/net"
        );
        let root = Path::new("/proc");
        assert_eq!(pid_in(Path::new("/proc/9/ns/net"), root), Some(9));
        assert_eq!(pid_in(Path::new("ns/net"), root), None);
    }

    #[test]
    fn own_namespace_has_an_identity() {
        let own = NsId::own().expect("/proc/self/ns/net");
        assert_eq!(
            NsId::of(Path::new("/proc/thread-self/ns/net")).unwrap(),
            own
        );
    }

    #[test]
    fn synthetic_and_real_names_never_collide() {
        let synthetic = ["host", "self", "pid:5", "pid:77"];
        let names = [
            "host",
            "self",
            "pid:5",
            "name:host",
            "name:name:host",
            "blue",
            "pid",
        ];
        for name in names {
            let t = name_tag(name.as_bytes());
            assert!(!synthetic.contains(&t.as_str()), "{name} -> {t}");
            assert!(!t.contains('/'));
            for other in names.iter().filter(|&&o| o != name) {
                assert_ne!(t, name_tag(other.as_bytes()), "{name} and {other}");
            }
        }
        // Names a tag cannot show as they are stay apart.
        let odd: [&[u8]; 4] = [b"a", b"a\\", b"a\xff", b"a\\x5c"];
        let tags: Vec<String> = odd.iter().map(|n| name_tag(n)).collect();
        assert_eq!(tags, ["a", "a\\x5c", "a\\xff", "a\\x5cx5c"]);
    }

    #[test]
    fn pid_tags_only_under_the_proc_root() {
        let root = Path::new("/proc");
        let tag = |p: &str| tag_for(Path::new(p), root);
        assert_eq!(tag("/proc/42/ns/net"), "pid:42");
        assert_eq!(tag("/other/proc/42/ns/net"), "/other/proc/42/ns/net");
        assert_eq!(tag("/proc/042/ns/net"), "/proc/042/ns/net");
        assert_eq!(tag("/proc/self/ns/net"), "/proc/self/ns/net");
        assert_eq!(tag("/run/netns/host"), "name:host");
        assert_eq!(
            tag_for(Path::new("/srv/proc/42/ns/net"), Path::new("/srv/proc")),
            "pid:42"
        );
        assert_eq!(pid_in(Path::new("/other/proc/42/ns/net"), root), None);
    }

    #[test]
    fn files_that_are_not_namespaces_are_said_so_without_blocking() {
        let dir = std::env::temp_dir().join(format!("tn-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        for p in [&fifo, &file, &dir] {
            let e = Target::at(p, Path::new("/proc")).unwrap_err();
            assert!(matches!(e, Error::NotNetns { .. }), "{}: {e}", p.display());
            assert_eq!(
                e.to_string(),
                format!("{} is not a network namespace", p.display())
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_path_is_an_open_error() {
        let e = Target::at(
            Path::new("/run/netns/does-not-exist-here"),
            Path::new("/proc"),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NetnsOpen { .. }), "{e}");
        assert_eq!(e.raw_os_error(), Some(2));
    }
}
