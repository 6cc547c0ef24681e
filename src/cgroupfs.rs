//! The cgroup v2 hierarchy as this program sees it: where it is mounted
//! (the first `cgroup2` line of `<proc root>/self/mountinfo`: `/sys/fs/cgroup`
//! on a unified host, `/sys/fs/cgroup/unified` on a hybrid one), and the
//! path of each cgroup id, found by walking that mount once and cached.
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
//! walked again, at most once per gather; an id the walk does not find (a
//! cgroup removed while its sockets live on: a socket keeps its cgroup
//! alive after `rmdir`; or one outside the part of the hierarchy this
//! program's mount shows, a cgroup namespace) is remembered as missing for
//! [`MISSING_FOR`] before it is looked for again, so one such socket does
//! not cost a walk of the whole tree per gather. Paths are what the
//! directories are named; any user a subtree is delegated to names them, so
//! they are written escaped (`tagtext`).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Dir, FileType, Mode, OFlags};

use crate::tagtext::escaped;

/// How deep below the mount a walk descends (one descriptor per level).
pub const MAX_DEPTH: usize = 32;

/// How long an id no directory had is not looked for again.
pub const MISSING_FOR: Duration = Duration::from_secs(300);

/// The cgroup v2 mount and the paths of the cgroups gathers ask about.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    /// `None`: not looked for yet; `Some(None)`: no cgroup2 mount.
    mount: Option<Option<PathBuf>>,
    /// Paths of the ids asked for, with the gather that last asked.
    known: HashMap<u64, (String, u64)>,
    /// Ids a walk did not find, and when.
    missing: HashMap<u64, Instant>,
    /// Gathers started.
    gather: u64,
    /// The mount was walked during this gather.
    walked: bool,
    /// Walks of the mount so far (for the tests).
    walks: u64,
}

impl CgroupPaths {
    /// A new gather may walk the mount again (once) for an unknown id.
    pub fn start_gather(&mut self) {
        self.walked = false;
        self.gather += 1;
        let keep = self.gather.saturating_sub(1);
        self.known.retain(|_, (_, asked)| *asked >= keep);
    }

    /// Whether a cgroup2 filesystem is mounted, from
    /// `<proc_root>/self/mountinfo`, looked up once; false on a host with
    /// cgroup v1 only (or an unreadable file).
    pub fn mounted(&mut self, proc_root: &Path) -> bool {
        self.mount
            .get_or_insert_with(|| {
                let text = std::fs::read(proc_root.join("self/mountinfo")).ok()?;
                cgroup2_mount(&text)
            })
            .is_some()
    }

    /// Finds the paths of `ids` (at most one walk per gather, none for ids
    /// known or recently missing). `now` is the gather's time.
    pub fn resolve(&mut self, ids: impl Iterator<Item = u64> + Clone, now: Instant) {
        let Some(Some(mount)) = &self.mount else {
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
        if wanted.is_empty() || self.walked {
            return;
        }
        self.walked = true;
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

/// The mount point of the first `cgroup2` filesystem in mountinfo text:
///
/// ```text
/// 35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
/// ```
///
/// Field 5 is the mount point (octal escapes for space, tab, newline and
/// backslash); the filesystem type follows the ` - ` separator.
pub fn cgroup2_mount(mountinfo: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    mountinfo.split(|&b| b == b'\n').find_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let point = fields.nth(4)?;
        let mut rest = fields.skip_while(|f| *f != b"-");
        rest.next()?;
        (rest.next()? == b"cgroup2")
            .then(|| PathBuf::from(std::ffi::OsString::from_vec(unescape(point))))
    })
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

/// Fills in the path (`/a/b`, escaped) of each id in `wanted` found among
/// the directories below `mount` (its inode number; `getdents64` gives it,
/// so nothing is `stat`ed), descending only into entries the kernel marks
/// as directories, depth first, and stopping once every id is found.
fn walk(mount: &Path, wanted: &mut HashMap<u64, Option<String>>) {
    let Ok(m) = std::fs::metadata(mount) else {
        return;
    };
    let mut left = wanted.len();
    if let Some(slot @ None) = wanted.get_mut(&m.ino()) {
        *slot = Some("/".into());
        left -= 1;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Some(root) = rustix::fs::open(mount, flags, Mode::empty())
        .ok()
        .and_then(|fd| Dir::new(fd).ok())
    else {
        return;
    };
    // The directories being read, each with the length of `path` before
    // its name was added.
    let mut stack: Vec<(Dir, usize)> = vec![(root, 0)];
    let mut path = String::new();
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
        c.mount = Some(Some(d.0.clone()));
        c.start_gather();
        c.resolve([ino(&svc), ino(&d.0)].into_iter(), now);
        assert_eq!(c.path(ino(&svc)), Some("/system.slice/nginx.service"));
        assert_eq!(c.path(ino(&d.0)), Some("/"));
        // Only what was asked for is kept.
        assert_eq!(c.path(ino(&d.0.join("system.slice"))), None);
        assert_eq!(c.known.len(), 2);
        // A cgroup made later is found by the next gather's walk, not by
        // a second walk in this one.
        let late = d.0.join("late.scope");
        std::fs::create_dir(&late).unwrap();
        c.resolve([ino(&late)].into_iter(), now);
        assert_eq!(c.path(ino(&late)), None);
        assert_eq!(c.walks, 1);
        c.start_gather();
        c.resolve([ino(&late)].into_iter(), now);
        assert_eq!(c.path(ino(&late)), Some("/late.scope"));
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
            mount: Some(Some(d.0.clone())),
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
