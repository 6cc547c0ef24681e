//! The namespace labels and `--by-cgroup` rows of a program that runs, as
//! a Kubernetes DaemonSet's container does on a cgroup v2 node, in a cgroup
//! namespace of its own (containerd and CRI-O give every non-privileged
//! container one), compared with what the same run gives from the host's
//! cgroup namespace.
//!
//! The node is a PID namespace made here, whose PID 1 (in this process's
//! cgroup namespace) stands for the node's init and whose /proc is the runs'
//! `HOST_PROC` (hostPID). In it: a pod-like process in its own network
//! namespace, in
//! `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`,
//! and one in a sub-cgroup that the exporter's own container made, named
//! like another pod (which the exporter's private view would read as
//! anchored at its root). The exporter runs in another pod-like scope,
//! inside `unshare --cgroup --mount` with a fresh cgroup2 mount (what a
//! container sees), with and without the host's hierarchy mounted
//! beside it (the DaemonSet's hostPath), and with `setns(CLONE_NEWCGROUP)`
//! refused by seccomp; and a PID 1 whose cgroup namespace a user namespace
//! of its own owns, which is not joined; and a PID 1 that shares the
//! program's namespace, not the initial one (said). Random ids; every
//! cgroup made is removed.
//!
//! Needs root, a writable cgroup2 mount, util-linux's `unshare` and
//! `nsenter`, and python3; otherwise ignored (failed under CI).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;
use telegraf_netstat::cgroupfs::cgroup2_mount;

fn mount() -> Option<PathBuf> {
    cgroup2_mount(&std::fs::read("/proc/self/mountinfo").ok()?)
}

fn setup() -> Result<(), String> {
    needs_root("making cgroups, PID and cgroup namespaces")?;
    let m = mount().ok_or("no cgroup2 mount")?;
    let probe = m.join(format!("telegraf-netstat-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .map_err(|e| format!("cannot make a cgroup in {}: {e}", m.display()))?;
    let _ = std::fs::remove_dir(&probe);
    for (tool, arg) in [
        ("unshare", "--version"),
        ("nsenter", "--version"),
        ("python3", "--version"),
    ] {
        match Command::new(tool).arg(arg).output() {
            Ok(o) if o.status.success() => {}
            _ => return Err(format!("no {tool}")),
        }
    }
    Ok(())
}

/// A random lowercase hex string of `n` characters.
fn hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_string()
}

/// A random pod UID, as the kubelet prints it.
fn uid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A pod's container scope, below the root (no leading `/`).
fn scope(uid: &str, id: &str) -> String {
    format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{id}.scope",
        uid.replace('-', "_")
    )
}

/// The node: a PID namespace whose PID 1 sleeps, with /run/netns hidden
/// (the machine's named namespaces stay out of the runs). Killed, and every
/// process in it with it, on drop.
struct Node {
    unshare: Child,
    init: u32,
}

impl Node {
    /// `unshare` with `more` namespaces for the node.
    fn start(more: &[&str]) -> Node {
        let unshare = Command::new("unshare")
            .args(more)
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
            ])
            .arg("[ -d /run/netns ] && mount -t tmpfs none /run/netns; exec sleep 600")
            .spawn()
            .unwrap();
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let mut init = 0;
        poll_until(Duration::from_secs(10), || {
            let c = std::fs::read_to_string(&children).unwrap_or_default();
            init = c
                .split_whitespace()
                .next()
                .map_or(0, |p| p.parse().unwrap());
            let comm = std::fs::read_to_string(format!("/proc/{init}/comm")).unwrap_or_default();
            init != 0 && comm.trim() == "sleep"
        });
        Node { unshare, init }
    }

    /// `args` run inside the node (its PID and mount namespaces).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "--pid", "--mount", "--"])
            .args(args)
            .env("HOST_PROC", "/proc");
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// An empty directory to mount on, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> EmptyDir {
        let d = std::env::temp_dir().join(format!("telegraf-netstat-hostcg-{}", hex(8)));
        std::fs::create_dir(&d).unwrap();
        EmptyDir(d)
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A process of the node in a network namespace of its own and cgroup
/// `dir`, holding a listener; returns once it listens.
fn holder(node: &Node, dir: &Path) -> Child {
    let script = "import socket,sys\n\
        s=socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen()\n\
        print('ready', flush=True); sys.stdin.read()";
    let mut cmd = node.command(&["unshare", "--net", "python3", "-c", script]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    start_in_cgroup(&mut cmd, dir);
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

const ARGS: [&str; 4] = ["--all-netns", "--by-cgroup", "--only", "netstat,cgroup"];

/// The run from the host's cgroup namespace (the node's PID 1's).
fn from_host(node: &Node) -> Output {
    let mut args = vec![BIN];
    args.extend(ARGS);
    node.command(&args).output().unwrap()
}

/// The run as a container sees the node: moved into cgroup `dir`, then in a
/// cgroup namespace of its own rooted there, the cgroup2 mount at `point`
/// replaced by a fresh one (which shows only `dir`'s subtree), and the
/// host's hierarchy bind-mounted at `host` first if given.
fn from_container(node: &Node, dir: &Path, point: &Path, host: Option<&Path>) -> Command {
    let script = r#"set -e
        [ -n "$HOSTCG" ] && mount --bind "$CG" "$HOSTCG"
        umount -l "$CG"
        mount -t cgroup2 none "$CG"
        exec "$@""#;
    let mut args = vec![
        "unshare", "--cgroup", "--mount", "sh", "-c", script, "sh", BIN,
    ];
    args.extend(ARGS);
    let mut c = node.command(&args);
    c.env("CG", point)
        .env("HOSTCG", host.map(Path::as_os_str).unwrap_or_default());
    start_in_cgroup(&mut c, dir);
    c
}

/// Stdout's lines that are not the host namespace's (whose sockets are the
/// machine's), sorted.
fn pods(out: &Output) -> Vec<String> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut l: Vec<String> = text
        .lines()
        .filter(|l| !l.contains(",netns=host ") && !l.contains(",netns=host,"))
        .map(str::to_owned)
        .collect();
    l.sort();
    l
}

/// Stderr's W! and E! lines.
fn complaints(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("W! ") || l.starts_with("E! "))
        .map(str::to_owned)
        .collect()
}

fn labels_and_cgroups_as_from_the_host() {
    let root = mount().unwrap();
    let (pod_uid, pod_id) = (uid(), hex(64));
    let (exp_uid, exp_id) = (uid(), hex(64));
    let (other_uid, other_id) = (uid(), hex(64));
    let pod = format!("/{}", scope(&pod_uid, &pod_id));
    let exporter = format!("/{}", scope(&exp_uid, &exp_id));
    // Made inside the exporter's own cgroup, named like another pod.
    let inner = format!("{exporter}/{}", scope(&other_uid, &other_id));
    let mut cgroups = Cgroups::default();
    for p in [&pod, &exporter, &inner] {
        cgroups.make(&root.join(&p[1..]));
    }
    let host_mount = EmptyDir::new();
    let node = Node::start(&[]);
    let holders = [
        holder(&node, &root.join(&pod[1..])),
        holder(&node, &root.join(&inner[1..])),
    ];
    let exp_dir = root.join(&exporter[1..]);

    let host = from_host(&node);
    assert_eq!(complaints(&host), Vec::<String>::new());
    let want = pods(&host);
    // The host's view: the pod named from its cgroup, the inner process
    // as what it is, a process of the exporter's container.
    let labelled = |id: &str, uid: &str| {
        want.iter()
            .filter(|l| {
                l.contains(&format!(",container_id={id},"))
                    && l.contains(&format!(",pod_uid={uid}"))
            })
            .count()
    };
    assert_eq!(labelled(&pod_id, &pod_uid), 3, "{want:#?}");
    assert_eq!(labelled(&exp_id, &exp_uid), 3, "{want:#?}");
    for c in [&pod, &inner] {
        let row = format!("netstat_cgroup,cgroup={c},");
        assert!(want.iter().any(|l| l.starts_with(&row)), "{row} {want:#?}");
    }

    // A container with the host's hierarchy mounted: the same, silently.
    let joined = from_container(&node, &exp_dir, &root, Some(&host_mount.0))
        .output()
        .unwrap();
    assert_eq!(complaints(&joined), Vec::<String>::new());
    assert_eq!(pods(&joined), want);

    // Without it: the same labels; the cgroups outside the container's own
    // subtree unresolved, and said.
    let partial = from_container(&node, &exp_dir, &root, None)
        .output()
        .unwrap();
    assert_eq!(
        complaints(&partial),
        [format!(
            "W! --by-cgroup: the cgroup2 mount at {} shows only {exporter}, not the whole \
             hierarchy, so cgroups outside it are counted in cgroup=unresolved; mount the \
             host's /sys/fs/cgroup into the container, read-only (Kubernetes: a hostPath \
             volume, as deploy/kubernetes/exporter.yaml does)",
            root.display()
        )]
    );
    let got = pods(&partial);
    let netstat = |l: &Vec<String>| -> Vec<String> {
        l.iter()
            .filter(|l| l.starts_with("netstat,"))
            .cloned()
            .collect()
    };
    assert_eq!(netstat(&got), netstat(&want));
    let row = |l: &Vec<String>, c: &str| -> Option<String> {
        let p = format!("netstat_cgroup,cgroup={c},");
        l.iter().find(|l| l.starts_with(&p)).cloned()
    };
    assert_eq!(row(&got, &inner), row(&want, &inner));
    assert_eq!(row(&got, &pod), None, "{got:#?}");
    let unresolved = format!("netstat_cgroup,cgroup=unresolved,container_id={pod_id},");
    assert!(got.iter().any(|l| l.starts_with(&unresolved)), "{got:#?}");

    apart_says_what_is_lost(&node, &exp_dir, &root, &host_mount.0, &other_uid);
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.wait();
    }
    drop(node);
    drop(cgroups);
}

/// When `setns(CLONE_NEWCGROUP)` is refused (a seccomp profile): one W!
/// line naming what is lost and what to do, no labels at all (not even the
/// inner process's, whose path the private view shows as another pod's),
/// and every socket unattributed.
fn apart_says_what_is_lost(node: &Node, exp_dir: &Path, root: &Path, host: &Path, other_uid: &str) {
    let mut cmd = from_container(node, exp_dir, root, Some(host));
    let apart = refuse_syscall(&mut cmd, libc::SYS_setns, 1, libc::CLONE_NEWCGROUP as u32)
        .output()
        .unwrap();
    assert_eq!(
        complaints(&apart),
        [
            "W! this program runs in a cgroup namespace other than the host's (cannot join \
         PID 1's cgroup namespace: Operation not permitted (os error 1)), where cgroup \
         paths name nothing: namespaces get no container_id or pod_uid tags and \
         --by-cgroup names no cgroup. Run it in the host's cgroup namespace (Docker: \
         --cgroupns host) or give it CAP_SYS_ADMIN and the host's PID namespace to join \
         it (Kubernetes: hostPID, as deploy/kubernetes/exporter.yaml does)"
        ]
    );
    let got = pods(&apart);
    assert!(
        got.iter().all(|l| !l.contains("container_id=")
            && !l.contains("pod_uid=")
            && !l.contains(other_uid)
            && (l.starts_with("netstat,") || l.starts_with("netstat_cgroup,cgroup=unattributed,"))),
        "{got:#?}"
    );
    assert_eq!(got.len(), 4, "{got:#?}");
}

/// A PID 1 in a user namespace of its own, whose cgroup namespace that
/// namespace owns (rooted wherever its owner chose), is not joined: its
/// paths could be anything. Said, and nothing is named.
fn a_pid_1_a_user_namespace_owns_is_not_joined() {
    let mut owned = Command::new("unshare")
        .args(["--user", "--cgroup", "sleep", "600"])
        .spawn()
        .unwrap();
    let ns = format!("/proc/{}/ns", owned.id());
    poll_until(Duration::from_secs(10), || {
        std::fs::read_link(format!("{ns}/cgroup")).ok()
            != std::fs::read_link("/proc/self/ns/cgroup").ok()
    });
    // A proc root whose PID 1 is that process.
    let root = Scratch::new("cgroupns-proc");
    std::fs::create_dir_all(root.0.join("1/ns")).unwrap();
    for f in ["cgroup", "user"] {
        std::os::unix::fs::symlink(format!("{ns}/{f}"), root.0.join("1/ns").join(f)).unwrap();
    }
    let proc_root = root.0.to_str().unwrap().to_owned();
    // In a namespace of its own: the machine's sockets stay out of it.
    let out = in_netns(move || {
        command(&["--by-cgroup", "--only", "cgroup", "--proc-root", &proc_root])
            .output()
            .unwrap()
    });
    let _ = owned.kill();
    let _ = owned.wait();
    assert_eq!(
        complaints(&out),
        [
            "W! this program runs in a cgroup namespace other than the host's (PID 1 runs \
          in a user namespace of its own, whose owner may name its cgroups), where cgroup \
          paths name nothing: --by-cgroup names no cgroup. Run it in the host's cgroup \
          namespace (Docker: --cgroupns host) or give it CAP_SYS_ADMIN and the host's PID \
          namespace to join it (Kubernetes: hostPID, as deploy/kubernetes/exporter.yaml does)"
        ]
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .all(|l| l.starts_with("netstat_cgroup,cgroup=unattributed ")),
        "{text}"
    );
}

/// Run inside a node whose PID 1 has a cgroup namespace that is not the
/// kernel's initial one, after `enter`: one I! line says whose view the
/// cgroup paths are, and nothing else is said.
fn only_the_view_is_said(enter: &[&str]) {
    let node = Node::start(&["--cgroup"]);
    let mut args = enter.to_vec();
    args.extend([BIN, "--by-cgroup", "--only", "cgroup"]);
    let out = node.command(&args).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "I! cgroup paths are read from the cgroup namespace of PID 1 under /proc, which is \
         not the kernel's initial one (a container's, if this program does not see the \
         host's PID namespace or /proc): they start at its root. For the host's, run it in \
         the host's cgroup namespace (Docker: --cgroupns host)\n"
    );
}

/// A PID 1 that shares this program's cgroup namespace, which is not the
/// kernel's initial one (a container's init, the program not seeing the
/// host's PID namespace): nothing to join, and one I! line says whose view
/// the paths are.
fn a_container_s_own_view_is_said() {
    only_the_view_is_said(&["nsenter", "--cgroup=/proc/1/ns/cgroup", "--"]);
}

/// A PID 1 in a cgroup namespace that is not the kernel's initial one, and
/// this program in yet another (a DaemonSet on a node that is itself a
/// container, as kind's are): it joins PID 1's, and the same I! line says
/// whose view the paths are, not a claim that they are the host's.
fn a_joined_namespace_not_the_initial_one_is_said() {
    only_the_view_is_said(&["unshare", "--cgroup", "--"]);
}

fn main() {
    let args = Arguments::from_args();
    let setup = setup();
    let tests = tests![
        labels_and_cgroups_as_from_the_host,
        a_pid_1_a_user_namespace_owns_is_not_joined,
        a_container_s_own_view_is_said,
        a_joined_namespace_not_the_initial_one_is_said,
    ];
    run_trials(args, setup, named("cgroupns", &tests));
}
