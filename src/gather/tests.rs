//! The gather loop with a fake collector: what is counted, what fails, what
//! stops, and the rows it hands on.

use std::cell::Cell;

use telegraf_netstat::measure::netstat::count::{ByFamily, Counts};

use super::*;
use crate::cli::Config;
use crate::signals::Uninterrupted;

thread_local! {
    /// The fake's next gather fails with this errno.
    static FAIL: Cell<Option<i32>> = const { Cell::new(None) };
    /// The fake's next gather is cut off (`Error::Stopped`).
    static STOP: Cell<bool> = const { Cell::new(false) };
}

/// Counts one established connection more at each of its gathers.
struct Fake {
    target: Option<Target>,
    gathers: u64,
    /// What it was told a previous run selected, handed back as selected.
    recalled: Vec<Destination>,
}

impl Count for Fake {
    fn for_namespace(_: &Options, target: Option<Target>) -> Self {
        Fake {
            target,
            gathers: 0,
            recalled: Vec::new(),
        }
    }

    fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    fn retarget(&mut self, target: Target) {
        self.target = Some(target);
    }

    fn shares_host_tcp_hash(&mut self) -> bool {
        false
    }

    fn supply_tcp(&mut self, _: Option<(&TcpStates, &[Queued; 2])>) {}

    fn tcp_info_destinations(&self) -> Vec<Destination> {
        self.recalled.clone()
    }

    fn recall_tcp_info_destinations(&mut self, last: &mut dyn Iterator<Item = Destination>) {
        self.recalled.extend(last);
    }

    fn gather(
        &mut self,
        _: &mut Buffers,
        _: &mut dyn FnMut(Event),
        _: &mut dyn FnMut() -> bool,
    ) -> Result<Gathered<'_>, Error> {
        if STOP.take() {
            return Err(Error::Stopped);
        }
        if let Some(errno) = FAIL.take() {
            let source = std::io::Error::from_raw_os_error(errno);
            return Err(match (&self.target, errno) {
                // A namespace file that is gone: the namespace vanished.
                (Some(t), libc::ENOENT) => Error::NetnsOpen {
                    path: t.path.clone(),
                    source,
                },
                _ => Error::NetlinkOpen(source),
            });
        }
        self.gathers += 1;
        let by_family = ByFamily {
            ipv4: Counts {
                tcp_established: self.gathers,
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(Gathered::counts(by_family, Default::default()))
    }
}

/// Asks to stop at once.
struct Now;

impl Interrupt for Now {
    fn stop_requested(&mut self) -> bool {
        true
    }
    fn wait_writable(&mut self, _: std::os::fd::BorrowedFd<'_>) -> std::io::Result<bool> {
        Ok(false)
    }
}

fn gatherer(args: &[&str]) -> Gatherer<Fake> {
    let config = Config::parse(
        std::iter::once("telegraf-netstat").chain(args.iter().copied()),
        &crate::cli::Env::default(),
    )
    .expect("flags");
    Gatherer::new(&config)
}

fn influx(g: &Gatherer<Fake>) -> String {
    let mut out = Vec::new();
    g.rows().encode(Format::Influx, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_own_namespace_keeps_its_collector_between_gathers() {
    let mut g = gatherer(&[]);
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
    assert!(influx(&g).starts_with("netstat tcp_close=0i,"));
    assert!(influx(&g).contains(",tcp_established=1i,"));
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
    assert!(
        influx(&g).contains(",tcp_established=2i,"),
        "{}",
        influx(&g)
    );
}

#[test]
fn a_failed_gather_of_the_only_namespace_is_a_failed_gather() {
    let mut g = gatherer(&[]);
    FAIL.set(Some(libc::EIO));
    assert_eq!(g.collect(&mut Uninterrupted), Collected::Failed);
    assert_eq!(influx(&g), "", "no rows from a failed gather");
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
}

#[test]
fn listed_namespaces_count_once_and_failures_are_counted() {
    // The same namespace twice (counted once) and a path that is none.
    let mut g = gatherer(&[
        "--netns",
        "/proc/self/ns/net",
        "--netns",
        "/nonexistent/telegraf-netstat",
        "--netns",
        "/proc/thread-self/ns/net",
    ]);
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 1 }
    );
    let out = influx(&g);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("netstat,netns=/proc/self/ns/net "), "{out}");

    // Nothing that resolves: the gather failed.
    let mut g = gatherer(&["--netns", "/nonexistent/telegraf-netstat"]);
    assert_eq!(g.collect(&mut Uninterrupted), Collected::Failed);
}

#[test]
fn a_stop_drops_the_gather() {
    let mut g = gatherer(&[]);
    assert_eq!(g.collect(&mut Now), Collected::Stopped);
    // A collector cut off mid-gather.
    STOP.set(true);
    assert_eq!(g.collect(&mut Uninterrupted), Collected::Stopped);
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
}

#[test]
fn rows_follow_the_flags() {
    let mut g = gatherer(&["--by-family", "--timestamp"]);
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
    let out = influx(&g);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("netstat,family=ipv4 "), "{out}");
    assert!(lines[1].starts_with("netstat,family=ipv6 "), "{out}");
    // --timestamp: each line ends with the gather time in nanoseconds.
    assert!(lines[0].rsplit(' ').next().unwrap().len() >= 19, "{out}");
}

#[test]
fn a_namespace_gone_since_the_scan_is_not_a_failure_but_is_not_counted() {
    // --all-netns over a proc root holding only this process.
    let root = std::env::temp_dir().join(format!("telegraf-netstat-gather-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let me = std::process::id().to_string();
    std::os::unix::fs::symlink(format!("/proc/{me}"), root.join(&me)).unwrap();
    let r = root.to_str().unwrap();
    let mut g = gatherer(&["--all-netns", "--proc-root", r, "--format", "prometheus"]);
    FAIL.set(Some(libc::ENOENT));
    let collected = g.collect(&mut Uninterrupted);
    let mut out = Vec::new();
    g.rows().encode(Format::Prometheus, &mut out);
    let text = String::from_utf8(out).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    // Not a failure (exit 0, no E! line), but its gauge says it was not
    // counted this time.
    assert_eq!(collected, Collected::Counted { failed: 0 });
    let zeros = text
        .lines()
        .filter(|l| l.starts_with("netstat_gather_success") && l.ends_with(" 0"))
        .count();
    assert_eq!(zeros, 1, "{text}");
}

#[test]
fn each_namespace_is_told_its_own_recalled_destinations_once() {
    let own = NsId::own().expect("/proc/self/ns/net");
    let other = NsId {
        dev: own.dev,
        ino: own.ino.wrapping_add(1),
    };
    let d = |last: u8| ([last; 16], 443);
    let mut g = gatherer(&["--netns", "/proc/self/ns/net"]);
    g.recall_tcp_info(vec![(other, d(1)), (own, d(3)), (own, d(2))]);
    assert_eq!(
        g.collect(&mut Uninterrupted),
        Collected::Counted { failed: 0 }
    );
    assert_eq!(
        g.tcp_info_destinations(),
        vec![(own, d(2)), (own, d(3))],
        "its own, in order; not another namespace's"
    );
    assert_eq!(g.recalled, vec![(other, d(1))], "told once");
    g.collect(&mut Uninterrupted);
    assert_eq!(g.tcp_info_destinations().len(), 2, "not told again");
}
