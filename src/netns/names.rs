//! Naming namespaces the way their users know them: the container ID and
//! Kubernetes pod UID from a process's cgroup path, and the hostname of its
//! UTS namespace, without talking to any container runtime.
//!
//! The process that names a namespace (its *representative*) is chosen to
//! keep the name stable: a Kubernetes pod's sandbox ("pause") process,
//! which holds the pod's network namespace for the pod's whole life, if
//! there is one in it; else the lowest PID. The lookup runs once per
//! namespace (the caller caches by namespace identity), never per gather.
//!
//! Cgroup paths, as runtimes lay them out (`/proc/PID/cgroup`, v2 `0::PATH`,
//! v1 `N:controllers:PATH`):
//!
//! | runtime | path |
//! | --- | --- |
//! | Docker, systemd driver | `/system.slice/docker-<64 hex>.scope` |
//! | Docker, cgroupfs driver | `/docker/<64 hex>` |
//! | containerd CRI, systemd driver | `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid, _ for ->.slice/cri-containerd-<64 hex>.scope` |
//! | Kubernetes, cgroupfs driver | `/kubepods/<qos>/pod<uid>/<64 hex>` |
//! | CRI-O | `…/crio-<64 hex>.scope` |
//! | Podman | `…/libpod-<64 hex>.scope` |
//! | systemd-nspawn | `/machine.slice/systemd-nspawn@<name>.service/…` or `/machine.slice/machine-<name>.scope/…` |
//!
//! (Docker's and Podman's cgroup drivers, the kubelet's
//! `cgroupManager` naming in pkg/kubelet/cm, containerd's CRI plugin and
//! CRI-O's `crio-` scope prefix; the Guaranteed QoS class has no
//! `<qos>` level.)
//!
//! The hostname is read by a short-lived helper thread that joins the
//! representative's UTS namespace (`setns`, CAP_SYS_ADMIN, as for its
//! network namespace) and calls `uname`: the kernel's value, not a file in
//! the container's filesystem that its owner may edit (`/etc/hostname` is
//! only what the runtime wrote at start). It is only read when that UTS
//! namespace differs from the collector's.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::NsId;

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

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A Kubernetes pod UID as the kubelet prints it: 36 characters of hex and
/// dashes.
fn is_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The container ID and pod UID in one cgroup path, if any.
fn parse_path(path: &str) -> (Option<String>, Option<String>) {
    let mut container = None;
    let mut pod = None;
    for part in path.split('/') {
        let scope = part.strip_suffix(".scope");
        let id = scope
            .and_then(|s| {
                ["docker-", "cri-containerd-", "crio-", "libpod-"]
                    .iter()
                    .find_map(|p| s.strip_prefix(p))
            })
            .or(Some(part).filter(|p| is_container_id(p)));
        if let Some(id) = id.filter(|id| is_container_id(id)) {
            container = Some(id.to_string());
        }
        if let Some(name) = part
            .strip_prefix("systemd-nspawn@")
            .and_then(|s| s.strip_suffix(".service"))
            .or_else(|| scope.and_then(|s| s.strip_prefix("machine-")))
        {
            // systemd escapes '-' in unit names as \x2d.
            container = Some(name.replace("\\x2d", "-"));
        }
        // kubepods-<qos>-pod<uid>.slice (systemd) or pod<uid> (cgroupfs).
        let slice = part.strip_suffix(".slice").unwrap_or(part);
        if let Some(uid) = slice.rsplit_once("pod").map(|(_, u)| u.replace('_', "-")) {
            if is_uid(&uid) && (slice.starts_with("kubepods") || slice.starts_with("pod")) {
                pod = Some(uid);
            }
        }
    }
    (container, pod)
}

/// The container ID and pod UID in a `/proc/PID/cgroup` text: the v2 line
/// (`0::PATH`) if it names them, else the first v1 line that does.
pub fn parse_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let mut best = (None, None);
    let mut lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            Some((it.next()?, it.nth(1)?))
        })
        .collect();
    // The unified hierarchy first.
    lines.sort_by_key(|(h, _)| *h != "0");
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

/// The processes that name namespaces `ids` under `proc_root`, in one walk
/// over the processes: per namespace the lowest PID whose command is
/// `pause` (a pod's sandbox), else the lowest PID. Namespaces without a
/// process are left out.
pub fn representatives(proc_root: &Path, ids: &[NsId]) -> HashMap<NsId, u32> {
    let mut lowest: HashMap<NsId, u32> = HashMap::new();
    let mut pause: HashMap<NsId, u32> = HashMap::new();
    let _ = super::each_process(proc_root, |pid, ns| {
        if !ids.contains(&ns) {
            return;
        }
        let l = lowest.entry(ns).or_insert(pid);
        *l = (*l).min(pid);
        if pause.get(&ns).is_some_and(|&p| p < pid) {
            return;
        }
        let comm = std::fs::read(proc_root.join(pid.to_string()).join("comm"));
        if comm.is_ok_and(|c| c.trim_ascii_end() == b"pause") {
            pause.insert(ns, pid);
        }
    });
    lowest.extend(pause);
    lowest
}

/// Looks up the labels of process `pid` under `proc_root`. Errors say what
/// could not be read; the labels found so far are still returned.
pub fn lookup(proc_root: &Path, pid: u32) -> (Labels, Vec<String>) {
    let dir = proc_root.join(pid.to_string());
    let mut labels = Labels::default();
    let mut problems = Vec::new();
    match std::fs::read_to_string(dir.join("cgroup")) {
        Ok(text) => (labels.container_id, labels.pod_uid) = parse_cgroup(&text),
        Err(e) => problems.push(format!("cannot read {}: {e}", dir.join("cgroup").display())),
    }
    let uts = dir.join("ns/uts");
    let own = NsId::of(Path::new("/proc/self/ns/uts")).ok();
    match NsId::of(&uts) {
        Ok(id) if Some(id) == own => {}
        Ok(_) => match hostname_in(&uts) {
            Ok(h) => labels.hostname = Some(h),
            Err(e) => problems.push(e),
        },
        Err(e) => problems.push(format!("cannot look at {}: {e}", uts.display())),
    }
    (labels, problems)
}

/// The hostname of the UTS namespace `path` refers to, read by a helper
/// thread that joins it (the caller's threads never change namespace).
fn hostname_in(path: &Path) -> Result<String, String> {
    let read = || -> Result<String, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        move_into_link_name_space(
            file.as_fd(),
            Some(LinkNameSpaceType::HostNameAndNISDomainName),
        )
        .map_err(|e| {
            format!(
                "cannot enter UTS namespace {}: {}",
                path.display(),
                std::io::Error::from(e)
            )
        })?;
        let name = rustix::system::uname();
        Ok(name.nodename().to_string_lossy().into_owned())
    };
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("uts".into())
            .stack_size(64 * 1024)
            .spawn_scoped(s, read)
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1d2a3b5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    const UID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

    fn parsed(text: &str) -> (Option<String>, Option<String>) {
        parse_cgroup(text)
    }

    #[test]
    fn runtimes_cgroup_paths() {
        let uid_ = UID.replace('-', "_");
        let id = || Some(ID.to_string());
        let uid = || Some(UID.to_string());
        // Docker, cgroup v2 with the systemd driver.
        assert_eq!(
            parsed(&format!("0::/system.slice/docker-{ID}.scope\n")),
            (id(), None)
        );
        // Docker, cgroup v1 with the cgroupfs driver.
        assert_eq!(
            parsed(&format!(
                "12:pids:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n0::/\n"
            )),
            (id(), None)
        );
        // containerd under Kubernetes, systemd driver, Burstable QoS.
        assert_eq!(
            parsed(&format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
            )),
            (id(), uid())
        );
        // Guaranteed QoS has no QoS level.
        assert_eq!(
            parsed(&format!(
                "0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
            )),
            (id(), uid())
        );
        // Kubernetes, cgroupfs driver, cgroup v1.
        assert_eq!(
            parsed(&format!("10:memory:/kubepods/besteffort/pod{UID}/{ID}\n")),
            (id(), uid())
        );
        // CRI-O and Podman.
        assert_eq!(
            parsed(&format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope\n")),
            (id(), uid())
        );
        assert_eq!(
            parsed(&format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n")),
            (id(), None)
        );
        // systemd-nspawn machines, named.
        assert_eq!(
            parsed("0::/machine.slice/systemd-nspawn@web\\x2d1.service/payload\n"),
            (Some("web-1".into()), None)
        );
        assert_eq!(
            parsed("0::/machine.slice/machine-db.scope/payload\n"),
            (Some("db".into()), None)
        );
        // Not containers.
        for text in [
            "0::/init.scope\n",
            "0::/system.slice/ssh.service\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/system.slice/docker-notanid.scope\n",
            "",
            "garbage",
        ] {
            assert_eq!(parsed(text), (None, None), "{text:?}");
        }
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
