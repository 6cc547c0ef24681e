//! The cgroup v2 hierarchy as this program sees it: where it is mounted,
//! the path of each cgroup id, found by walking that mount once and cached,
//! and whether this program sees the host's cgroup namespace at all.
//!
//! # The host's cgroup namespace
//!
//! The kernel writes every cgroup path relative to the root of the
//! *reading thread's* cgroup namespace: `/proc/PID/cgroup`
//! (`proc_cgroup_show()`, kernel/cgroup/cgroup.c, through
//! `cgroup_path_ns_locked(…, current->nsproxy->cgroup_ns)`) and the root
//! field of a cgroup2 line in mountinfo (`cgroup_show_path()`). On a
//! cgroup v2 host, containerd's and CRI-O's CRI plugins give every
//! non-privileged container a cgroup namespace of its own
//! (internal/cri/server/container_create.go, `isUnifiedCgroupsMode() &&
//! !securityContext.GetPrivileged()`; cri-o server/container_create.go,
//! `setupCgroupNamespace`), and so does Docker (`--cgroupns private`, its
//! default on cgroup v2). There another pod's process reads
//! `0::/../../kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope`, which
//! names nothing (labels are anchored at the root: `netns::names`), and
//! the container's own cgroup2 mount shows only its own subtree.
//!
//! So at start, before any thread is spawned, the binary calls
//! [`join_host_namespace`]: when PID 1's cgroup namespace under the proc
//! root differs from ours, it joins it (`setns(CLONE_NEWCGROUP)`: CAP_SYS_ADMIN,
//! `cgroupns_install()` in kernel/cgroup/namespace.c). `setns` moves only
//! the calling thread, and a thread starts in its creator's namespaces, so
//! every thread spawned afterwards (the exporter's, the helpers that join
//! network namespaces) renders paths from the host's root. Paths are then
//! what a program on the host reads, and the trust rules hold unchanged.
//! [`in_host_namespace`] tells the readers whether that holds: where it
//! does not (no CAP_SYS_ADMIN, a seccomp profile, PID 1 not visible), no
//! cgroup path is believed or shown (`netns::names` takes no labels from
//! them, `--by-cgroup` names no cgroup) and the binary says so once.
//! PID 1 must run in the initial user namespace or ours: a cgroup namespace
//! that a user namespace of its own owns may be rooted in a user's
//! delegated subtree, whose names that user chooses.
//!
//! # The mount walked
//!
//! The cgroup2 line of `<proc root>/self/mountinfo` whose root (field 4) is
//! `/`, the whole hierarchy (`/sys/fs/cgroup` on a unified host,
//! `/sys/fs/cgroup/unified` on a hybrid one; in a container, the host's
//! `/sys/fs/cgroup` mounted into it); else the first one that shows a part
//! of it (a container's own `/sys/fs/cgroup`, rooted at its own cgroup),
//! whose paths are named from that root, every cgroup outside it counted
//! `unresolved`. Roots are read after the join, so they are the host's
//! paths; a root with a `..` component lies outside this namespace and is
//! not used.
//!
//! # Ids and paths
//!
//! A cgroup's id is the inode number of its directory: the kernel gives a
//! socket `cgroup_id(sock_cgroup_ptr(...))`, which is `kn->id` of the
//! cgroup's kernfs node (`cgroup_id()`, include/linux/cgroup.h), and kernfs
//! reports `kn->id` as the inode number on 64-bit `ino_t`
//! (`kernfs_id_ino()`, include/linux/kernfs.h), which is what x86_64 and
//! aarch64 have. The walk reads each directory's entries (`getdents64`
//! gives the inode numbers, so nothing is `stat`ed) and descends only into
//! entries the kernel marks as directories: nothing is followed.
//!
//! Memory is bounded whatever the hierarchy holds (any user with a
//! delegated subtree can make tens of thousands of cgroups): a walk looks
//! only for the ids a gather asks about and keeps only their paths; the
//! paths kept are those asked for in this gather or the last. The walk
//! holds one directory descriptor and the name of each level it is in, no
//! list of the tree, and descends at most [`MAX_DEPTH`] levels (deeper
//! cgroups are counted `unresolved`). An id not known makes the mount be
//! walked again, at most once per namespace per gather (each namespace's
//! ids are resolved in one call, so a walk for one namespace cannot leave
//! another's new cgroup unnamed); an id the walk does not find (a
//! cgroup removed while its sockets live on: a socket keeps its cgroup
//! alive after `rmdir`; or one outside the part of the hierarchy this
//! program's mount shows, a cgroup namespace) is remembered as missing for
//! [`MISSING_FOR`] before it is looked for again, so one such socket does
//! not cost a walk of the whole tree per gather. Paths are what the
//! directories are named; any user a subtree is delegated to names them, so
//! they are written escaped (`tagtext`).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Dir, FileType, Mode, OFlags};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::tagtext::escaped;

/// How deep below the mount a walk descends (one descriptor per level).
pub const MAX_DEPTH: usize = 32;

/// How long an id no directory had is not looked for again.
pub const MISSING_FOR: Duration = Duration::from_secs(300);

/// The inode of the initial cgroup namespace (`CGROUP_NS_INIT_INO`,
/// 0xEFFFFFFB, fixed since cgroup namespaces came in Linux 4.6:
/// `PROC_CGROUP_INIT_INO` in include/linux/proc_ns.h).
pub const CGROUP_NS_INIT_INO: u64 = 0xEFFF_FFFB;

/// The inode of the initial user namespace (`PROC_USER_INIT_INO`, fixed
/// since Linux 3.8, include/linux/proc_ns.h).
pub const USER_NS_INIT_INO: u64 = 0xEFFF_FFFD;

/// Why this thread does not see the host's cgroup namespace: cgroup paths
/// read here start at another root and name nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotHost {
    /// PID 1's cgroup namespace (this file) cannot be looked at, and ours
    /// is not the initial one.
    Unseen(PathBuf, std::io::Error),
    /// It differs from PID 1's (not joined yet).
    Apart,
    /// PID 1 runs in a user namespace other than the initial one and ours,
    /// whose owner may have rooted its cgroup namespace in a subtree they
    /// name.
    ForeignUser,
    /// `setns` into PID 1's was refused.
    Enter(std::io::Error),
}

impl std::fmt::Display for NotHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHost::Unseen(p, e) => write!(
                f,
                "cannot look at PID 1's cgroup namespace ({}: {e})",
                p.display()
            ),
            NotHost::Apart => f.write_str("it differs from PID 1's"),
            NotHost::ForeignUser => f.write_str(
                "PID 1 runs in a user namespace of its own, whose owner may name its cgroups",
            ),
            NotHost::Enter(e) => write!(f, "cannot join PID 1's cgroup namespace: {e}"),
        }
    }
}

/// Whether this thread sees the host's cgroup namespace: PID 1's under
/// `proc_root`, or, where PID 1's cannot be looked at, the initial one.
pub fn in_host_namespace(proc_root: &Path) -> Result<(), NotHost> {
    settle(proc_root, false).map(|_| ())
}

/// Whether this thread runs in the kernel's initial cgroup namespace (true
/// where cgroup namespaces do not exist).
pub fn in_initial_namespace() -> bool {
    std::fs::metadata("/proc/thread-self/ns/cgroup").map_or(true, |m| m.ino() == CGROUP_NS_INIT_INO)
}

/// Joins PID 1's cgroup namespace under `proc_root` when this thread is in
/// another one (see the module doc; call it before spawning threads): true
/// when it joined, an error when the thread stays apart.
pub fn join_host_namespace(proc_root: &Path) -> Result<bool, NotHost> {
    settle(proc_root, true)
}

fn settle(proc_root: &Path, join: bool) -> Result<bool, NotHost> {
    let ino = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let pid1 = proc_root.join("1/ns/cgroup");
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let opened = rustix::fs::open(&pid1, flags, Mode::empty());
    let own_path = Path::new("/proc/thread-self/ns/cgroup");
    let own = match ino(own_path) {
        Ok(own) => own,
        // Without cgroup namespaces (before Linux 4.6) neither file exists
        // and every path is the host's; where only ours cannot be looked
        // at (no /proc mounted beside the proc root), nothing is known.
        Err(_) if opened.is_err() => return Ok(false),
        Err(e) => return Err(NotHost::Unseen(own_path.to_path_buf(), e)),
    };
    let file = match opened {
        Ok(f) => f,
        Err(_) if own.1 == CGROUP_NS_INIT_INO => return Ok(false),
        Err(e) => return Err(NotHost::Unseen(pid1, e.into())),
    };
    let st = rustix::fs::fstat(&file).map_err(|e| NotHost::Unseen(pid1.clone(), e.into()))?;
    if (st.st_dev, st.st_ino) == own {
        return Ok(false);
    }
    if !join {
        return Err(NotHost::Apart);
    }
    let pid1_user = proc_root.join("1/ns/user");
    let user = ino(&pid1_user).map_err(|e| NotHost::Unseen(pid1_user, e))?;
    let own_user = ino(Path::new("/proc/thread-self/ns/user")).ok();
    if user.1 != USER_NS_INIT_INO && Some(user) != own_user {
        return Err(NotHost::ForeignUser);
    }
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::ControlGroup))
        .map_err(|e| NotHost::Enter(e.into()))?;
    Ok(true)
}

/// A cgroup2 mount: where, and which cgroup is at its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// The path of the cgroup at its root (mountinfo's field 4, escaped as
    /// tags are): `/` when it shows the whole hierarchy.
    pub root: String,
}

impl Mount {
    /// Whether every cgroup is below it.
    pub fn whole(&self) -> bool {
        self.root == "/"
    }
}

/// Why cgroup ids cannot be given paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// No cgroup2 filesystem is mounted (a cgroup v1-only host).
    NoMount,
    /// This program does not see the host's cgroup namespace.
    NotHost,
}

/// The cgroup v2 mount and the paths of the cgroups gathers ask about.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    /// `None`: not looked for yet.
    mount: Option<Result<Mount, Unusable>>,
    /// Paths of the ids asked for, with the gather that last asked.
    known: HashMap<u64, (String, u64)>,
    /// Ids a walk did not find, and when.
    missing: HashMap<u64, Instant>,
    /// Gathers started.
    gather: u64,
    /// Walks of the mount so far (for the tests).
    walks: u64,
}

impl CgroupPaths {
    /// A new gather: paths not asked for in it or the last are let go.
    pub fn start_gather(&mut self) {
        self.gather += 1;
        let keep = self.gather.saturating_sub(1);
        self.known.retain(|_, (_, asked)| *asked >= keep);
    }

    /// Whether cgroup ids can be given paths: this thread sees the host's
    /// cgroup namespace and a cgroup2 filesystem is mounted (from
    /// `<proc_root>/self/mountinfo`; not on a host with cgroup v1 only, or
    /// with an unreadable file). Looked up once.
    pub fn usable(&mut self, proc_root: &Path) -> Result<(), Unusable> {
        let found = self.mount.get_or_insert_with(|| {
            in_host_namespace(proc_root).map_err(|_| Unusable::NotHost)?;
            std::fs::read(proc_root.join("self/mountinfo"))
                .ok()
                .and_then(|text| cgroup2_hierarchy(&text))
                .ok_or(Unusable::NoMount)
        });
        found.as_ref().map(|_| ()).map_err(|u| *u)
    }

    /// Finds the paths of `ids`, one namespace's cgroups: one walk if any
    /// is neither known nor recently missing. `now` is the gather's time.
    pub fn resolve(&mut self, ids: impl Iterator<Item = u64> + Clone, now: Instant) {
        let Some(Ok(mount)) = &self.mount else {
            return;
        };
        self.missing
            .retain(|_, at| now.duration_since(*at) < MISSING_FOR);
        let gather = self.gather;
        let mut wanted: HashMap<u64, Option<String>> = HashMap::new();
        for id in ids.clone() {
            match self.known.get_mut(&id) {
                Some((_, asked)) => *asked = gather,
                None if !self.missing.contains_key(&id) => {
                    wanted.insert(id, None);
                }
                None => {}
            }
        }
        if wanted.is_empty() {
            return;
        }
        self.walks += 1;
        walk(mount, &mut wanted);
        for (id, path) in wanted {
            match path {
                Some(p) => {
                    self.known.insert(id, (p, gather));
                }
                None => {
                    self.missing.insert(id, now);
                }
            }
        }
    }

    /// The path of cgroup `id` below the mount (`/` for its root), once
    /// [`CgroupPaths::resolve`] found it.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.known.get(&id).map(|(p, _)| p.as_str())
    }
}

/// The mount point of the cgroup2 mount [`cgroup2_hierarchy`] picks.
pub fn cgroup2_mount(mountinfo: &[u8]) -> Option<PathBuf> {
    cgroup2_hierarchy(mountinfo).map(|m| m.point)
}

/// The `cgroup2` mount to walk in mountinfo text (see the module doc): the
/// first whose root is `/`, else the first whose root has no `..`
/// component.
///
/// ```text
/// 35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
/// ```
///
/// Field 4 is the root and field 5 the mount point (octal escapes for
/// space, tab, newline and backslash); the filesystem type follows the
/// ` - ` separator.
pub fn cgroup2_hierarchy(mountinfo: &[u8]) -> Option<Mount> {
    use std::os::unix::ffi::OsStringExt;
    let mounts = mountinfo.split(|&b| b == b'\n').filter_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let root = unescape(fields.nth(3)?);
        let point = fields.next()?;
        let mut rest = fields.skip_while(|f| *f != b"-");
        rest.next()?;
        let inside = root.starts_with(b"/") && !root.split(|&b| b == b'/').any(|c| c == b"..");
        (rest.next()? == b"cgroup2" && inside).then(|| Mount {
            point: PathBuf::from(std::ffi::OsString::from_vec(unescape(point))),
            root: escaped(&root),
        })
    });
    let mut first = None;
    for m in mounts {
        if m.whole() {
            return Some(m);
        }
        first.get_or_insert(m);
    }
    first
}

/// Undoes mountinfo's `\ooo` octal escapes.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|o| s[i] == b'\\' && o.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(o) => {
                out.push(o.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// Opens directory `name` below `dir` without following links.
fn open_dir(dir: &Dir, name: &std::ffi::CStr) -> Option<Dir> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd: OwnedFd = rustix::fs::openat(dir.fd().ok()?, name, flags, Mode::empty()).ok()?;
    Dir::new(fd).ok()
}

/// Fills in the path (`/a/b`, escaped, from the mount's root cgroup) of
/// each id in `wanted` found among the directories below `mount` (its inode
/// number; `getdents64` gives it, so nothing is `stat`ed), descending only
/// into entries the kernel marks as directories, depth first, and stopping
/// once every id is found.
fn walk(mount: &Mount, wanted: &mut HashMap<u64, Option<String>>) {
    let Ok(m) = std::fs::metadata(&mount.point) else {
        return;
    };
    let mut left = wanted.len();
    if let Some(slot @ None) = wanted.get_mut(&m.ino()) {
        *slot = Some(mount.root.clone());
        left -= 1;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Some(root) = rustix::fs::open(&mount.point, flags, Mode::empty())
        .ok()
        .and_then(|fd| Dir::new(fd).ok())
    else {
        return;
    };
    // The directories being read, each with the length of `path` before
    // its name was added.
    let mut path = if mount.whole() {
        String::new()
    } else {
        mount.root.clone()
    };
    let mut stack: Vec<(Dir, usize)> = vec![(root, path.len())];
    while left > 0 {
        let Some((dir, _)) = stack.last_mut() else {
            break;
        };
        let entry = match dir.read() {
            Some(Ok(e)) => e,
            // An unreadable directory is left like a finished one.
            Some(Err(_)) | None => {
                let (_, len) = stack.pop().expect("not empty");
                path.truncate(len);
                continue;
            }
        };
        let name = entry.file_name();
        if entry.file_type() != FileType::Directory || name == c"." || name == c".." {
            continue;
        }
        let len = path.len();
        path.push('/');
        path.push_str(&escaped(name.to_bytes()));
        if let Some(slot @ None) = wanted.get_mut(&entry.ino()) {
            *slot = Some(path.clone());
            left -= 1;
        }
        let child = (stack.len() < MAX_DEPTH)
            .then(|| open_dir(&stack.last().expect("not empty").0, name))
            .flatten();
        match child {
            Some(d) => stack.push((d, len)),
            None => path.truncate(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    #[test]
    fn the_first_cgroup2_mount_unescaped() {
        let hybrid = b"24 1 0:22 / /sys rw shared:7 - sysfs sysfs rw\n\
31 24 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755\n\
32 31 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
33 31 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let odd = b"40 1 0:30 / /mnt/a\\040b\\134c rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(odd), Some(PathBuf::from("/mnt/a b\\c")));
        let v1 = b"33 31 0:28 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount(v1), None);
        // Optional fields before the separator do not shift the type.
        let opt = b"35 24 0:30 / /sys/fs/cgroup rw shared:9 master:2 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(opt), Some(PathBuf::from("/sys/fs/cgroup")));
    }

    #[test]
    fn the_whole_hierarchy_before_a_containers_own_subtree() {
        // A container in a private cgroup namespace after joining the
        // host's: its own mount shows its own cgroup, the host's (a
        // hostPath) the root.
        let own = "/kubepods.slice/kubepods-pod1.slice/cri-containerd-a.scope";
        let text = format!(
            "50 40 0:30 {own} /sys/fs/cgroup ro - cgroup2 cgroup rw\n\
             51 40 0:30 / /hostfs/sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
        );
        let whole = cgroup2_hierarchy(text.as_bytes()).unwrap();
        assert_eq!(
            (whole.point.to_str(), whole.whole()),
            (Some("/hostfs/sys/fs/cgroup"), true)
        );
        // Without it: the subtree, named from its root.
        let first_line = text.lines().next().unwrap();
        let part = cgroup2_hierarchy(first_line.as_bytes()).unwrap();
        assert_eq!((part.root.as_str(), part.whole()), (own, false));
        // Before joining, the host's shows as above our root: not used.
        let above = b"51 40 0:30 /../../.. /hostfs/sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_hierarchy(above), None);
        // Roots are unescaped from mountinfo and escaped as tags are.
        let odd = b"52 40 0:30 /a\\134b\\012 /mnt rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_hierarchy(odd).unwrap().root, "/a\\x5cb\\x0a");
    }

    #[test]
    fn a_subtree_is_walked_from_its_root() {
        let d = TestDir::new("cgroupfs-subtree");
        let svc = d.0.join("web.service");
        std::fs::create_dir(&svc).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut c = CgroupPaths {
            mount: Some(Ok(Mount {
                point: d.0.clone(),
                root: "/kubepods.slice/x.scope".into(),
            })),
            ..Default::default()
        };
        c.resolve([ino(&svc), ino(&d.0)].into_iter(), Instant::now());
        assert_eq!(
            c.path(ino(&svc)),
            Some("/kubepods.slice/x.scope/web.service")
        );
        assert_eq!(c.path(ino(&d.0)), Some("/kubepods.slice/x.scope"));
    }

    #[test]
    fn this_thread_sees_the_host_or_says_why_not() {
        // The test runs in some cgroup namespace; a proc root without PID 1
        // leaves only the initial namespace's inode to tell.
        let own = std::fs::metadata("/proc/thread-self/ns/cgroup")
            .map(|m| m.ino())
            .ok();
        let d = TestDir::new("cgroupfs-noinit");
        match (in_host_namespace(&d.0), own) {
            (Ok(()), Some(ino)) => assert_eq!(ino, CGROUP_NS_INIT_INO),
            (Err(NotHost::Unseen(p, _)), Some(ino)) => {
                assert_ne!(ino, CGROUP_NS_INIT_INO);
                assert_eq!(p, d.0.join("1/ns/cgroup"));
            }
            (r, own) => assert!(r.is_ok() && own.is_none(), "{r:?} {own:?}"),
        }
        // Our own /proc: PID 1's, where it can be looked at.
        if let Ok(pid1) = std::fs::metadata("/proc/1/ns/cgroup") {
            let same = own == Some(pid1.ino());
            assert_eq!(in_host_namespace(Path::new("/proc")).is_ok(), same);
        }
    }

    #[test]
    fn ids_are_directory_inodes_walked_once_per_gather() {
        let d = TestDir::new("cgroupfs");
        let svc = d.0.join("system.slice/nginx.service");
        std::fs::create_dir_all(&svc).unwrap();
        std::fs::write(d.0.join("system.slice/cgroup.procs"), "").unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut c = CgroupPaths::default();
        let now = Instant::now();
        c.resolve([ino(&svc)].into_iter(), now);
        assert_eq!(c.path(ino(&svc)), None, "no mount looked up yet");
        c.mount = Some(Ok(Mount {
            point: d.0.clone(),
            root: "/".into(),
        }));
        c.start_gather();
        c.resolve([ino(&svc), ino(&d.0)].into_iter(), now);
        assert_eq!(c.path(ino(&svc)), Some("/system.slice/nginx.service"));
        assert_eq!(c.path(ino(&d.0)), Some("/"));
        // Only what was asked for is kept.
        assert_eq!(c.path(ino(&d.0.join("system.slice"))), None);
        assert_eq!(c.known.len(), 2);
        // Known ids cost no walk; a cgroup made later (another namespace's,
        // or this one's next gather) is found by a walk of its own.
        c.resolve([ino(&svc)].into_iter(), now);
        assert_eq!(c.walks, 1);
        let late = d.0.join("late.scope");
        std::fs::create_dir(&late).unwrap();
        c.resolve([ino(&late), ino(&svc)].into_iter(), now);
        assert_eq!(c.path(ino(&late)), Some("/late.scope"));
        assert_eq!(c.walks, 2);
        c.start_gather();
        c.resolve([ino(&late)].into_iter(), now);
        assert_eq!(c.walks, 2);
        // Paths not asked for in this gather or the last are let go.
        c.start_gather();
        c.resolve([ino(&late)].into_iter(), now);
        assert_eq!(c.path(ino(&svc)), None);
        assert_eq!(c.walks, 2);
        // Files are not cgroups; an id no directory has is looked for
        // again only after MISSING_FOR.
        let file = ino(&d.0.join("system.slice/cgroup.procs"));
        c.resolve([file].into_iter(), now);
        assert_eq!((c.path(file), c.walks), (None, 3));
        for _ in 0..10 {
            c.start_gather();
            c.resolve([file].into_iter(), now + Duration::from_secs(1));
        }
        assert_eq!(c.walks, 3);
        c.start_gather();
        c.resolve([file].into_iter(), now + MISSING_FOR);
        assert_eq!(c.walks, 4);
    }

    #[test]
    fn odd_names_escaped_and_depth_bounded() {
        let d = TestDir::new("cgroupfs-odd");
        use std::os::unix::ffi::OsStrExt;
        let odd = d.0.join(std::ffi::OsStr::from_bytes(b"nonutf\xff"));
        std::fs::create_dir(&odd).unwrap();
        let trail = d.0.join("trail\\");
        std::fs::create_dir(&trail).unwrap();
        let mut deep = d.0.clone();
        for _ in 0..MAX_DEPTH + 2 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let mut c = CgroupPaths {
            mount: Some(Ok(Mount {
                point: d.0.clone(),
                root: "/".into(),
            })),
            ..Default::default()
        };
        let mut at_max = d.0.clone();
        for _ in 0..MAX_DEPTH {
            at_max.push("d");
        }
        let ids = [ino(&odd), ino(&trail), ino(&deep), ino(&at_max)];
        c.resolve(ids.into_iter(), Instant::now());
        assert_eq!(c.path(ids[0]), Some("/nonutf\\xff"));
        assert_eq!(c.path(ids[1]), Some("/trail\\x5c"));
        assert_eq!(c.path(ids[2]), None);
        assert_eq!(c.path(ids[3]).map(|p| p.len()), Some(2 * MAX_DEPTH));
    }
}
