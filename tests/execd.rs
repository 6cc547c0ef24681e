//! The long-running modes: timer pace, signals, error throttling, and memory
//! over many gathers.

mod support;

use std::time::{Duration, Instant};

use support::{parse_line, Plugin};

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

#[test]
fn interval_keeps_pace_and_sigterm_exits_promptly() {
    let mut p = Plugin::start(&["--interval", "200ms"]);
    let first = p.line(Duration::from_secs(2));
    parse_line(&first);
    let mut arrivals = Vec::new();
    for _ in 0..5 {
        let (t, l) = p
            .stdout
            .recv_timeout(Duration::from_secs(2))
            .expect("a line every 200ms");
        parse_line(&l);
        arrivals.push(t);
    }
    for w in arrivals.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(120) && gap <= Duration::from_millis(320),
            "gap {gap:?} between ticks of 200ms"
        );
    }
    let sent = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&p.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = p.exit_within(Duration::from_millis(100));
    assert_eq!(status.code(), Some(0), "after {:?}", sent.elapsed());
}

#[test]
fn sigint_exits_0_and_interval_mode_does_not_read_stdin() {
    let mut p = Plugin::start(&["--interval", "1h"]);
    p.line(Duration::from_secs(2));
    // stdin is not a trigger without --execd.
    p.tick("\n");
    p.no_line(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&p.child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    assert_eq!(p.exit_within(Duration::from_millis(100)).code(), Some(0));
}

#[test]
fn execd_with_interval_gathers_on_both() {
    let mut p = Plugin::start(&["--execd", "--interval", "1h"]);
    p.line(Duration::from_secs(2)); // the first timer tick, at once
    p.tick("\n");
    p.line(Duration::from_secs(2));
    drop(p.stdin.take());
    assert_eq!(p.exit_within(Duration::from_secs(1)).code(), Some(0));
}

#[test]
fn failing_gathers_are_logged_once_and_recovery_is_announced() {
    let root = std::env::temp_dir().join(format!("tn-execd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("net")).unwrap();
    let mut p = Plugin::start(&[
        "--execd",
        "--source",
        "proc",
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    // Spaced out, so that the ticks are not merged into one gather.
    for _ in 0..4 {
        p.tick("\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = p.stderr.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(
        first,
        format!(
            "E! gather failed: cannot read {}: No such file or directory (os error 2)\n",
            root.join("net/tcp").display()
        )
    );
    p.no_line(Duration::from_millis(300));
    assert!(p.stderr.try_recv().is_err(), "the same error was repeated");

    std::fs::write(root.join("net/tcp"), TCP_HEADER).unwrap();
    std::fs::write(root.join("net/udp"), TCP_HEADER).unwrap();
    p.tick("\n");
    let line = p.line(Duration::from_secs(2));
    assert!(parse_line(&line).iter().all(|f| f.1 == 0));
    assert_eq!(
        p.stderr.recv_timeout(Duration::from_secs(2)).unwrap(),
        "I! gather recovered after 4 failed gathers\n"
    );
    drop(p.stdin.take());
    assert_eq!(p.exit_within(Duration::from_secs(1)).code(), Some(0));
    std::fs::remove_dir_all(root).unwrap();
}

/// 10 000 gathers: RSS after 10 000 is within a few KiB of RSS after 1 000.
#[test]
fn memory_does_not_grow_over_10000_gathers() {
    let mut p = Plugin::start(&["--execd"]);
    let mut gather = |n: usize| {
        for _ in 0..n {
            p.tick("\n");
            p.line(Duration::from_secs(5));
        }
        p.rss_kib()
    };
    let after_1k = gather(1_000);
    let after_10k = gather(9_000);
    assert!(
        after_10k <= after_1k + 8,
        "RSS grew from {after_1k} KiB to {after_10k} KiB"
    );
    eprintln!("RSS after 1000 gathers: {after_1k} KiB, after 10000: {after_10k} KiB");
}

#[test]
fn a_closed_stdout_ends_the_loop_quietly() {
    support::expect_quiet_exit_on_closed_stdout(&["--interval", "50ms"]);
}

/// `--output` with `--interval`: a reader polling the file never sees a
/// partial one; the file is mode 0644; no temporary file is left behind.
#[test]
fn output_file_is_replaced_atomically_on_every_tick() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tn-output-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("netstat.prom");
    let mut p = Plugin::start(&[
        "--interval",
        "10ms",
        "--format",
        "prometheus",
        "--output",
        file.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(1);
    let (mut reads, mut versions) = (0, std::collections::HashSet::new());
    while Instant::now() < deadline {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        reads += 1;
        assert_eq!(text.lines().count(), 39, "partial file:\n{text}");
        assert!(
            text.ends_with('\n') && text.contains("\nnetstat_udp_socket "),
            "{text}"
        );
        versions.insert(std::fs::metadata(&file).unwrap().modified().unwrap());
    }
    assert!(
        reads > 100 && versions.len() >= 5,
        "{reads} reads, {} versions",
        versions.len()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&p.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(p.exit_within(Duration::from_millis(100)).code(), Some(0));
    p.no_line(Duration::from_millis(10));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("netstat.prom")]);
    std::fs::remove_dir_all(dir).unwrap();
}
