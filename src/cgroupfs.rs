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
//! An id not in the cache makes the next lookup walk the mount again, at
//! most once per gather ([`CgroupPaths::start_gather`]); an id still not
//! found then is a cgroup that was removed while its sockets live on (a
//! socket keeps its cgroup alive after `rmdir`), or one outside the part of
//! the hierarchy this program's mount shows (a cgroup namespace). Memory:
//! one entry per cgroup, not per socket. Paths are what the directories
//! are named; any user a subtree is delegated to names them, so they are
//! only ever written as escaped tag values.

use std::collections::HashMap;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The cgroup v2 mount and the paths of its cgroups.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    /// `None`: not looked for yet; `Some(None)`: no cgroup2 mount.
    mount: Option<Option<PathBuf>>,
    by_id: HashMap<u64, String>,
    /// The mount was walked during this gather.
    walked: bool,
}

impl CgroupPaths {
    /// A new gather may walk the mount again (once) for an unknown id.
    pub fn start_gather(&mut self) {
        self.walked = false;
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

    /// The path of cgroup `id` below the mount (`/` for its root); `None`
    /// also before `mounted` found a mount.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        let Some(Some(mount)) = &self.mount else {
            return None;
        };
        if !self.by_id.contains_key(&id) && !self.walked {
            self.walked = true;
            self.by_id.clear();
            walk(mount, &mut self.by_id);
        }
        self.by_id.get(&id).map(String::as_str)
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

/// Every directory below `mount` by inode number, as `/a/b` paths.
fn walk(mount: &Path, by_id: &mut HashMap<u64, String>) {
    let Ok(m) = std::fs::metadata(mount) else {
        return;
    };
    by_id.insert(m.ino(), "/".into());
    let mut stack = vec![(mount.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = format!(
                "{rel}/{}",
                crate::tagtext::escaped(e.file_name().as_encoded_bytes())
            );
            by_id.insert(e.ino(), path.clone());
            stack.push((e.path(), path));
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
        assert_eq!(c.path(ino(&svc)), None, "no mount looked up yet");
        c.mount = Some(Some(d.0.clone()));
        c.start_gather();
        assert_eq!(c.path(ino(&svc)), Some("/system.slice/nginx.service"));
        assert_eq!(c.path(ino(&d.0)), Some("/"));
        // A cgroup made later is found by the next gather's walk, not by
        // a second walk in this one.
        let late = d.0.join("late.scope");
        std::fs::create_dir(&late).unwrap();
        assert_eq!(c.path(ino(&late)), None);
        c.start_gather();
        assert_eq!(c.path(ino(&late)), Some("/late.scope"));
        // Files are not cgroups.
        assert_eq!(c.path(ino(&d.0.join("system.slice/cgroup.procs"))), None);
    }
}
