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
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut flags = rustix::thread::UnshareFlags::NEWNET;
            if hostname.is_some() {
                flags |= rustix::thread::UnshareFlags::NEWUTS;
            }
            // SAFETY: no file descriptor tables are unshared.
            unsafe { rustix::thread::unshare_unsafe(flags) }.unwrap();
            if let Some(h) = hostname {
                rustix::system::sethostname(h.as_bytes()).unwrap();
            }
            loopback_up().unwrap();
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

/// A proc root of chosen process entries: `<root>/<pid>/` with `ns/net` and
/// `ns/uts` linking to a real process's, `comm` and `cgroup` as given.
struct Proc(Scratch);

impl Proc {
    fn new() -> Proc {
        Proc(Scratch::new("labels-proc"))
    }

    fn root(&self) -> &str {
        self.0 .0.to_str().unwrap()
    }

    fn add(&self, as_pid: u32, real: u32, comm: &str, cgroup: Option<&str>) {
        let dir = self.0 .0.join(as_pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        for ns in ["net", "uts"] {
            symlink(format!("/proc/{real}/ns/{ns}"), dir.join("ns").join(ns)).unwrap();
        }
        symlink(format!("/proc/{real}/net"), dir.join("net")).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        match cgroup {
            Some(text) => std::fs::write(dir.join("cgroup"), text).unwrap(),
            // Unreadable: a directory where the file should be.
            None => std::fs::create_dir(dir.join("cgroup")).unwrap(),
        }
    }
}

fn tags_of(out: &str) -> Vec<Vec<(String, String)>> {
    parse_metrics_any(out).into_iter().map(|m| m.1).collect()
}

fn t(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    tags(pairs)
}

/// A pod (sandbox and app container, one network namespace, the pod's
/// hostname), a Docker container (cgroup v1, its short ID as hostname) and
/// a plain namespace: each named as its users know it, the pod by its
/// sandbox whatever the PIDs' order; none of it with --no-netns-labels.
fn pods_containers_and_plain_namespaces() {
    let pod = Box::new(Some("web-7f9c"), 2, || established(1, 0));
    let docker = Box::new(Some("4f1d2a3b5c6e"), 1, Population::default);
    let plain = Box::new(None, 1, Population::default);
    let p = Proc::new();
    let uid_ = UID.replace('-', "_");
    let pod_cgroup = |id: &str| {
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope\n"
        )
    };
    // The app container has the lower PID; the sandbox ("pause") names the pod.
    p.add(300, pod.pids[0], "nginx", Some(&pod_cgroup(APP)));
    p.add(301, pod.pids[1], "pause", Some(&pod_cgroup(SANDBOX)));
    p.add(
        400,
        docker.pids[0],
        "sleep",
        Some(&format!("12:pids:/docker/{DOCKER}\n0::/\n")),
    );
    p.add(
        500,
        plain.pids[0],
        "sleep",
        Some("0::/user.slice/user-1000.slice/session-2.scope\n"),
    );
    let out = run_ok(&["--all-netns", "--proc-root", p.root()]);
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

/// A namespace whose process's cgroup cannot be read is still counted,
/// without those tags, with one `W! ` line; in a loop the line is not
/// repeated (the lookup is once per namespace).
fn unreadable_labels_are_said_once() {
    let b = Box::new(Some("db-0"), 1, || established(1, 0));
    let p = Proc::new();
    p.add(600, b.pids[0], "sleep", None);
    let out = run(&["--all-netns", "--proc-root", p.root()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("W! network namespace pid:600: no container or hostname tags from process 600: cannot read "), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The hostname could still be read.
    assert!(
        tags_of(&stdout).contains(&t(&[("hostname", "db-0"), ("netns", "pid:600")])),
        "{stdout}"
    );
    let mut plugin = Plugin::start(&["--execd", "--all-netns", "--proc-root", p.root()]);
    for _ in 0..3 {
        plugin.tick("\n");
        plugin.line(std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let said: Vec<String> = plugin.stderr.try_iter().collect();
    assert_eq!(said.len(), 1, "{said:?}");
    drop(plugin);
    drop(b);
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests: [(&str, fn()); 2] = [
        (
            "pods_containers_and_plain_namespaces",
            pods_containers_and_plain_namespaces,
        ),
        (
            "unreadable_labels_are_said_once",
            unreadable_labels_are_said_once,
        ),
    ];
    run_trials(args, setup, named("labels", &tests));
}
