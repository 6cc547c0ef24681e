//! Whether each namespace shares the host's TCP hash table
//! (`netstat_tcp_hash_shared`), and the `I!` line when many do, on
//! namespaces the tests make with and without
//! `net.ipv4.tcp_child_ehash_entries`.

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::*;

const CHILD_EHASH: &str = "/proc/sys/net/ipv4/tcp_child_ehash_entries";

/// Idle processes, each in a new network namespace, killed when dropped.
struct Sleepers(Vec<Child>);

impl Sleepers {
    /// `n` namespaces; with `own_table`, made while the host's
    /// `tcp_child_ehash_entries` is 128 (then put back), so each gets a TCP
    /// hash table of its own.
    fn new(n: usize, own_table: bool) -> Sleepers {
        // The setting is the host's: one test at a time makes namespaces.
        static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = SETTING.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::fs::read_to_string(CHILD_EHASH).unwrap();
        if own_table {
            std::fs::write(CHILD_EHASH, "128").unwrap();
        }
        let own = std::fs::metadata("/proc/self/ns/net").unwrap();
        let children: Vec<Child> = (0..n)
            .map(|_| {
                Command::new("unshare")
                    .args(["-n", "sleep", "600"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Each has left our namespace before the setting is put back.
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &children {
            use std::os::unix::fs::MetadataExt;
            let path = format!("/proc/{}/ns/net", c.id());
            while std::fs::metadata(&path).map_or(true, |m| m.ino() == own.ino()) {
                assert!(Instant::now() < deadline, "unshare -n did not happen");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::fs::write(CHILD_EHASH, old.trim()).unwrap();
        Sleepers(children)
    }

    fn args(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|c| ["--netns".to_string(), format!("/proc/{}/ns/net", c.id())])
            .collect()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A namespace made before the setting shares the host's table (1), one made
/// after has its own (0), and the process's own namespace is what its
/// `tcp_ehash_entries` says.
fn shared_and_own_tables_are_told_apart() {
    let (a, b) = (Sleepers::new(1, false), Sleepers::new(1, true));
    let mut args = vec!["--format".to_string(), "prometheus".into()];
    args.extend(a.args());
    args.extend(b.args());
    let out = run_ok(&strs(&args));
    let sample = |s: &Sleepers, v: u8| {
        format!(
            "\nnetstat_tcp_hash_shared{{netns=\"pid:{}\"}} {v}\n",
            s.0[0].id()
        )
    };
    assert!(
        out.contains(&sample(&a, 1)) && out.contains(&sample(&b, 0)),
        "{out}"
    );
    assert!(
        out.contains("\n# TYPE netstat_tcp_hash_shared gauge\n"),
        "{out}"
    );
    let own: i64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = run_ok(&["--format", "prometheus"]);
    let want = format!("\nnetstat_tcp_hash_shared {}\n", u8::from(own < 0));
    assert!(out.contains(&want), "{out}");
    // Influx and JSON print rows only.
    assert!(!run_ok(&strs(&a.args())).contains("hash"));
}

/// Sixty namespaces sharing the host's table: one `I!` line with the
/// gather's CPU; sixty with tables of their own: nothing.
fn many_sharing_namespaces_are_said_with_the_cost() {
    let shared = Sleepers::new(60, false);
    let out = run(&strs(&shared.args()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(
            "I! 60 of the 60 network namespaces counted share the host's TCP hash table"
        ) && lines[0].contains(" ms of CPU")
            && lines[0].contains("net.ipv4.tcp_child_ehash_entries"),
        "{stderr}"
    );
    drop(shared);
    let own = Sleepers::new(60, true);
    let out = run_ok(&strs(&own.args()));
    assert_eq!(out.lines().count(), 60);
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup().and_then(|()| {
        let probe = std::fs::OpenOptions::new().write(true).open(CHILD_EHASH);
        probe.map(drop).map_err(|e| {
            format!("{CHILD_EHASH} cannot be written ({e}): Linux 6.1+ and root needed")
        })
    });
    let tests = tests![
        shared_and_own_tables_are_told_apart,
        many_sharing_namespaces_are_said_with_the_cost,
    ];
    run_trials(args, setup, named("tcphash", &tests));
}
