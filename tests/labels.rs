//! Namespace labels (`container_id`, `pod_uid`, `hostname`) with
//! `--all-netns` and `--netns`, on real network and UTS namespaces the test
//! makes, seen through a `--proc-root` whose process entries hold links to
//! those namespace files and cgroup files in each runtime's format (the
//! formats are listed, with their sources, in `src/netns/names.rs`).

mod support;

use std::os::unix::fs::symlink;
use std::process::Command;

use libtest_mimic::Arguments;
use support::*;

const SANDBOX: &str = "a1a2a3a4a5a6a7a8a9b0b1b2b3b4b5b6b7b8b9c0c1c2c3c4c5c6c7c8c9d0d1d2";
const APP: &str = "e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9a0a1a2a3a4a5a6a7a8a9b0b1b2";
const DOCKER: &str = "4f1d2a3b5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
const UID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

/// A network namespace and a UTS namespace with `hostname`, kept alive by
/// `n` sleeping processes (whose real PIDs are returned).
struct Box {
    pids: Vec<u32>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Box {
    fn new(hostname: Option<&'static str>, n: usize, sockets: fn() -> Population) -> Box {
        Box::with(true, hostname, n, sockets)
    }

    /// A UTS namespace only (the network namespace stays the test's).
    fn uts_only(hostname: &'static str) -> Box {
        Box::with(false, Some(hostname), 1, Population::default)
    }

    fn with(
        net: bool,
        hostname: Option<&'static str>,
        n: usize,
        sockets: fn() -> Population,
    ) -> Box {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut flags = rustix::thread::UnshareFlags::empty();
            if net {
                flags |= rustix::thread::UnshareFlags::NEWNET;
            }
            if hostname.is_some() {
                flags |= rustix::thread::UnshareFlags::NEWUTS;
            }
            // SAFETY: no file descriptor tables are unshared.
            unsafe { rustix::thread::unshare_unsafe(flags) }.unwrap();
            if let Some(h) = hostname {
                rustix::system::sethostname(h.as_bytes()).unwrap();
            }
            if net {
                loopback_up().unwrap();
            }
            let p = sockets();
            let mut kids: Vec<_> = (0..n)
                .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
                .collect();
            tx.send(kids.iter().map(|k| k.id()).collect::<Vec<_>>())
                .unwrap();
            let _ = stop_rx.recv();
            for k in &mut kids {
                let _ = k.kill();
                let _ = k.wait();
            }
            drop(p);
        });
        Box {
            pids: rx.recv().unwrap(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A proc root of chosen process entries: `<root>/<pid>/` with `ns/net`,
/// `ns/uts` and `ns/user` linking to a real process's, `comm`, `cgroup` and `stat` (with
/// the start time given) as given.
struct Proc(Scratch);

impl Proc {
    fn new() -> Proc {
        Proc(Scratch::new("labels-proc"))
    }

    fn root(&self) -> &str {
        self.0 .0.to_str().unwrap()
    }

    fn add(&self, as_pid: u32, real: u32, comm: &str, cgroup: Option<&str>) {
        self.add_started(
            as_pid,
            real,
            comm,
            cgroup.map(str::as_bytes),
            1000 + as_pid as u64,
        );
    }

    /// An entry whose network namespace is `real`'s and UTS namespace
    /// `uts`'s.
    fn add_mixed(&self, as_pid: u32, real: u32, uts: u32, comm: &str, cgroup: &str) {
        self.add_started(
            as_pid,
            real,
            comm,
            Some(cgroup.as_bytes()),
            1000 + as_pid as u64,
        );
        let link = self.0 .0.join(format!("{as_pid}/ns/uts"));
        std::fs::remove_file(&link).unwrap();
        symlink(format!("/proc/{uts}/ns/uts"), link).unwrap();
    }

    fn add_started(&self, as_pid: u32, real: u32, comm: &str, cgroup: Option<&[u8]>, start: u64) {
        let dir = self.0 .0.join(as_pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        for ns in ["net", "uts", "user"] {
            symlink(format!("/proc/{real}/ns/{ns}"), dir.join("ns").join(ns)).unwrap();
        }
        symlink(format!("/proc/{real}/net"), dir.join("net")).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        self.set_start(as_pid, comm, start);
        match cgroup {
            Some(text) => std::fs::write(dir.join("cgroup"), text).unwrap(),
            // Unreadable: a directory where the file should be.
            None => std::fs::create_dir(dir.join("cgroup")).unwrap(),
        }
    }

    /// Rewrites the entry's start time (a reused PID has another).
    fn set_start(&self, pid: u32, comm: &str, start: u64) {
        let stat =
            format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n");
        std::fs::write(self.0 .0.join(format!("{pid}/stat")), stat).unwrap();
    }

    fn set_cgroup(&self, pid: u32, text: &str) {
        let path = self.0 .0.join(format!("{pid}/cgroup"));
        let _ = std::fs::remove_dir(&path);
        std::fs::write(path, text).unwrap();
    }

    fn remove(&self, pid: u32) {
        std::fs::remove_dir_all(self.0 .0.join(pid.to_string())).unwrap();
    }
}

fn tags_of(out: &str) -> Vec<Vec<(String, String)>> {
    parse_metrics_any(out).into_iter().map(|m| m.1).collect()
}

fn t(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    tags(pairs)
}

fn docker_v1(id: &str) -> String {
    format!("12:pids:/docker/{id}\n0::/\n")
}

fn pod_cgroup(id: &str) -> String {
    let uid_ = UID.replace('-', "_");
    format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope\n"
    )
}

/// The W! lines of a run.
fn warnings(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("W! "))
        .map(str::to_string)
        .collect()
}

/// A pod (sandbox and app container, one network namespace, the pod's
/// hostname), a Docker container (cgroup v1, its short ID as hostname) and
/// a plain namespace: each named as its users know it, the pod by its
/// sandbox (the process that started first) whatever the PIDs' order and
/// whatever the app calls itself; none of it with --no-netns-labels.
fn pods_containers_and_plain_namespaces() {
    let pod = Box::new(Some("web-7f9c"), 2, || established(1, 0));
    let docker = Box::new(Some("4f1d2a3b5c6e"), 1, Population::default);
    let plain = Box::new(None, 1, Population::default);
    let p = Proc::new();
    // The app container has the lower PID and calls itself "pause"; the
    // sandbox started first.
    p.add_started(
        300,
        pod.pids[0],
        "pause",
        Some(pod_cgroup(APP).as_bytes()),
        5000,
    );
    p.add_started(
        301,
        pod.pids[1],
        "pause",
        Some(pod_cgroup(SANDBOX).as_bytes()),
        4000,
    );
    p.add(400, docker.pids[0], "sleep", Some(&docker_v1(DOCKER)));
    p.add(
        500,
        plain.pids[0],
        "sleep",
        Some("0::/user.slice/user-1000.slice/session-2.scope\n"),
    );
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    assert!(warnings(&out).is_empty(), "{out:?}");
    let out = String::from_utf8(out.stdout).unwrap();
    let got = tags_of(&out);
    assert!(
        got.contains(&t(&[
            ("container_id", SANDBOX),
            ("hostname", "web-7f9c"),
            ("netns", "pid:300"),
            ("pod_uid", UID)
        ])),
        "{out}"
    );
    assert!(
        got.contains(&t(&[
            ("container_id", DOCKER),
            ("hostname", "4f1d2a3b5c6e"),
            ("netns", "pid:400")
        ])),
        "{out}"
    );
    assert!(got.contains(&t(&[("netns", "pid:500")])), "{out}");
    // The pod's counts are there, under the labelled tags.
    let pod_line = out.lines().find(|l| l.contains(SANDBOX)).unwrap();
    assert!(pod_line.contains(",tcp_established=2i,"), "{pod_line}");
    // Every measurement of the namespace gets them, with --netns too.
    let path = format!("{}/301/ns/net", p.root());
    let out = run_ok(&[
        "--netns",
        &path,
        "--proc-root",
        p.root(),
        "--local-port",
        "1",
    ]);
    for tags in tags_of(&out) {
        assert!(tags.contains(&("pod_uid".into(), UID.into())), "{out}");
        assert!(
            tags.contains(&("container_id".into(), SANDBOX.into())),
            "{out}"
        );
    }
    // The old tag set on request.
    let out = run_ok(&["--all-netns", "--proc-root", p.root(), "--no-netns-labels"]);
    assert!(
        tags_of(&out)
            .iter()
            .all(|tags| tags.len() == 1 && tags[0].0 == "netns"),
        "{out}"
    );
    drop((pod, docker, plain));
}

/// The host's namespace (PID 1's) is never labelled from a process in it:
/// not from a hostNetwork pod's sandbox, not from a user's own UTS
/// namespace with a hostname of their choosing. Nor is our own namespace
/// when PID 1 cannot be looked at (it may be the host's).
fn the_host_namespace_is_never_labelled() {
    let me = std::process::id();
    let spoof = Box::uts_only("spoofed");
    let p = Proc::new();
    p.add(1, me, "systemd", Some("0::/init.scope\n"));
    // kube-proxy's sandbox, hostNetwork: in the host's network namespace.
    p.add_started(2, me, "pause", Some(pod_cgroup(SANDBOX).as_bytes()), 10);
    // `unshare -Ur --uts sh -c 'hostname spoofed; exec ./pause'`.
    p.add_mixed(
        3,
        me,
        spoof.pids[0],
        "pause",
        "0::/user.slice/user-65534.slice\n",
    );
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(tags_of(&stdout), [t(&[("netns", "host")])], "{out:?}");
    // Without PID 1 our namespace is `self`, and not labelled either.
    p.remove(1);
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(tags_of(&stdout), [t(&[("netns", "self")])], "{out:?}");
    drop(spoof);
}

/// Runtime-shaped cgroup names count only where the runtime creates them;
/// processes that disagree leave the labels out, with a W! line; a
/// container's sub-cgroup of any name (not UTF-8) keeps its labels.
fn only_unambiguous_evidence_labels() {
    let planted = Box::new(Some("planted"), 1, Population::default);
    let mixed = Box::new(None, 2, Population::default);
    let nested = Box::new(None, 1, Population::default);
    let p = Proc::new();
    // A user's delegated cgroup named like Docker's and a pod's.
    let uid_ = UID.replace('-', "_");
    p.add(
        700,
        planted.pids[0],
        "sleep",
        Some(&format!(
            "0::/user.slice/user-1000.slice/user@1000.service/kubepods-pod{uid_}.slice/docker-{DOCKER}.scope\n"
        )),
    );
    // Two containers, no pod, one namespace.
    p.add(710, mixed.pids[0], "sleep", Some(&docker_v1(DOCKER)));
    p.add(711, mixed.pids[1], "sleep", Some(&docker_v1(APP)));
    let mut text = format!("0::/system.slice/docker-{DOCKER}.scope/").into_bytes();
    text.extend_from_slice(b"\xff\xfe\n");
    p.add_started(720, nested.pids[0], "sleep", Some(&text), 1);
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got = tags_of(&stdout);
    // The hostname is the kernel's, from a namespace that is not the host's.
    assert!(
        got.contains(&t(&[("hostname", "planted"), ("netns", "pid:700")])),
        "{out:?}"
    );
    assert!(got.contains(&t(&[("netns", "pid:710")])), "{out:?}");
    assert!(
        got.contains(&t(&[("container_id", DOCKER), ("netns", "pid:720")])),
        "{out:?}"
    );
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "W! network namespace pid:710: its processes disagree on the container or pod"
        ),
        "{w:?}"
    );
    drop((planted, mixed, nested));
}

/// Labels are derived again when the process that named the namespace is
/// gone or its PID now belongs to another process (another start time): no
/// stale labels after a restart.
fn labels_follow_the_namespace_s_processes() {
    let b = Box::new(None, 2, Population::default);
    let p = Proc::new();
    p.add_started(
        800,
        b.pids[0],
        "sleep",
        Some(docker_v1(DOCKER).as_bytes()),
        100,
    );
    let mut plugin = Plugin::start(&["--execd", "--all-netns", "--proc-root", p.root()]);
    let next = |plugin: &mut Plugin| {
        plugin.tick("\n");
        plugin.line(std::time::Duration::from_secs(20))
    };
    let line = next(&mut plugin);
    assert!(line.contains(&format!("container_id={DOCKER}")), "{line}");
    // The container restarted in the same namespace: PID 800 is gone, 801
    // is the new container's.
    p.remove(800);
    p.add_started(
        801,
        b.pids[1],
        "sleep",
        Some(docker_v1(APP).as_bytes()),
        200,
    );
    let line = next(&mut plugin);
    assert!(line.contains(&format!("container_id={APP}")), "{line}");
    // PID 801 reused by another process (another start time, another
    // container).
    p.set_cgroup(801, &docker_v1(SANDBOX));
    p.set_start(801, "sleep", 300);
    let line = next(&mut plugin);
    assert!(line.contains(&format!("container_id={SANDBOX}")), "{line}");
    drop(plugin);
    drop(b);
}

/// A namespace whose process's cgroup cannot be read is still counted,
/// without labels, with one `W! ` line; in a loop the line is not repeated,
/// and the lookup is tried again at every gather: the labels come once the
/// process can be read.
fn unreadable_labels_are_said_once_and_tried_again() {
    let b = Box::new(Some("db-0"), 1, || established(1, 0));
    let p = Proc::new();
    p.add(600, b.pids[0], "sleep", None);
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("W! network namespace pid:600: no container, pod or hostname tags until its processes can be read (tried again at every gather): cannot read "), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        tags_of(&stdout).contains(&t(&[("netns", "pid:600")])),
        "{stdout}"
    );
    let mut plugin = Plugin::start(&["--execd", "--all-netns", "--proc-root", p.root()]);
    for _ in 0..3 {
        plugin.tick("\n");
        let line = plugin.line(std::time::Duration::from_secs(20));
        assert!(!line.contains("hostname="), "{line}");
    }
    p.set_cgroup(600, &docker_v1(DOCKER));
    plugin.tick("\n");
    let line = plugin.line(std::time::Duration::from_secs(20));
    assert!(
        line.contains(&format!("container_id={DOCKER},hostname=db-0,")),
        "{line}"
    );
    // Stdout lines come after the stderr lines of their gather, so every
    // warning is in by now... give the reader thread time to pass them on.
    drop(plugin.stdin.take());
    plugin.exit_within(std::time::Duration::from_secs(20));
    let said: Vec<String> = std::iter::from_fn(|| {
        plugin
            .stderr
            .recv_timeout(std::time::Duration::from_secs(5))
            .ok()
    })
    .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    drop(plugin);
    drop(b);
}

/// A user's own UTS namespace (`unshare -Urn --uts` as nobody) names no
/// pod: its hostname is left out (said with `D!`), while a namespace root
/// made keeps its hostname.
fn a_hostname_any_user_could_set_is_not_believed() {
    let mut child = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["unshare", "-Urn", "--uts", "sh", "-c"])
        .arg("hostname web-7f9c-victim && exec sleep 600")
        .spawn()
        .expect("cannot run setpriv and unshare (util-linux)");
    let pid = child.id();
    // unshare and sh exec in place: the PID is sleep's once it runs.
    poll_until(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let root_made = Box::new(Some("db-0"), 1, Population::default);
    let p = Proc::new();
    p.add(900, pid, "sleep", Some("0::/user.slice/user-65534.slice\n"));
    p.add(
        910,
        root_made.pids[0],
        "sleep",
        Some("0::/system.slice/db.service\n"),
    );
    let out = run(&["-v", "--all-netns", "--proc-root", p.root()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got = tags_of(&stdout);
    assert!(got.contains(&t(&[("netns", "pid:900")])), "{out:?}");
    assert!(
        got.contains(&t(&[("hostname", "db-0"), ("netns", "pid:910")])),
        "{out:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("D! network namespace pid:900: no hostname tag: its UTS namespace may belong to an unprivileged user"),
        "{stderr}"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(root_made);
}

/// A namespace that has no process when the loop starts (a pod's, made
/// before its sandbox starts in it) is labelled at the first gather after
/// one starts in it.
fn a_namespace_is_labelled_once_a_process_starts_in_it() {
    let b = Box::new(Some("late-0"), 1, Population::default);
    let p = Proc::new();
    p.add(1, std::process::id(), "systemd", Some("0::/init.scope\n"));
    let path = format!("/proc/{}/ns/net", b.pids[0]);
    let mut plugin = Plugin::start(&["--execd", "--netns", &path, "--proc-root", p.root()]);
    let next = |plugin: &mut Plugin| {
        plugin.tick("\n");
        plugin.line(std::time::Duration::from_secs(20))
    };
    for _ in 0..2 {
        let line = next(&mut plugin);
        assert!(
            !line.contains("container_id=") && !line.contains("hostname="),
            "{line}"
        );
    }
    // The sandbox starts in it.
    p.add(950, b.pids[0], "pause", Some(&docker_v1(DOCKER)));
    let line = next(&mut plugin);
    assert!(
        line.contains(&format!("container_id={DOCKER},hostname=late-0,")),
        "{line}"
    );
    drop(plugin);
    drop(b);
}

/// A hostname that cannot be read leaves the container's tags in place, and
/// the `W! ` line says exactly what is missing: the hostname tag only.
fn an_unreadable_hostname_is_said_as_such() {
    let b = Box::new(Some("db-1"), 1, Population::default);
    let p = Proc::new();
    p.add(620, b.pids[0], "sleep", Some(&docker_v1(DOCKER)));
    // A UTS "namespace" that cannot be entered: a plain file.
    let uts = p.0 .0.join("620/ns/uts");
    std::fs::remove_file(&uts).unwrap();
    std::fs::write(&uts, "").unwrap();
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("W! network namespace pid:620: no hostname tag until its processes can be read (tried again at every gather): cannot read the hostname of "),
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        tags_of(&stdout).contains(&t(&[("container_id", DOCKER), ("netns", "pid:620")])),
        "{stdout}"
    );
    drop(b);
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests: [(&str, fn()); 8] = [
        (
            "an_unreadable_hostname_is_said_as_such",
            an_unreadable_hostname_is_said_as_such,
        ),
        (
            "a_hostname_any_user_could_set_is_not_believed",
            a_hostname_any_user_could_set_is_not_believed,
        ),
        (
            "a_namespace_is_labelled_once_a_process_starts_in_it",
            a_namespace_is_labelled_once_a_process_starts_in_it,
        ),
        (
            "pods_containers_and_plain_namespaces",
            pods_containers_and_plain_namespaces,
        ),
        (
            "the_host_namespace_is_never_labelled",
            the_host_namespace_is_never_labelled,
        ),
        (
            "only_unambiguous_evidence_labels",
            only_unambiguous_evidence_labels,
        ),
        (
            "labels_follow_the_namespace_s_processes",
            labels_follow_the_namespace_s_processes,
        ),
        (
            "unreadable_labels_are_said_once_and_tried_again",
            unreadable_labels_are_said_once_and_tried_again,
        ),
    ];
    run_trials(args, setup, named("labels", &tests));
}
