//! The long-running modes: timer pace, signals, error throttling, and memory
//! over many gathers.

mod support;

use std::time::{Duration, Instant};

use support::{parse_line, signal_kept_promise, wait_at_most, Plugin, LOADED_MARGIN, PROMISE};

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
    p.signal_kept_promise(rustix::process::Signal::TERM);
}

#[test]
fn sigint_exits_0_and_interval_mode_does_not_read_stdin() {
    let mut p = Plugin::start(&["--interval", "1h"]);
    p.line(Duration::from_secs(2));
    // stdin is not a trigger without --execd.
    p.tick("\n");
    p.no_line(Duration::from_millis(300));
    p.signal_kept_promise(rustix::process::Signal::INT);
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
    use rustix::fs::inotify;
    let scratch = support::Scratch::new("execd-failing");
    let root = scratch.0.clone();
    std::fs::create_dir_all(root.join("net")).unwrap();
    // net/tcp is there and net/udp is not: each gather reads tcp, then fails
    // on udp. Its read of tcp is what tells this test a gather ran, so the
    // ticks are never merged into one gather, however loaded the machine.
    let tcp = root.join("net/tcp");
    std::fs::write(&tcp, TCP_HEADER).unwrap();
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&ino, &tcp, inotify::WatchFlags::CLOSE_NOWRITE).unwrap();
    let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
    let mut reads = inotify::Reader::new(&ino, &mut buf);
    let mut p = Plugin::start(&[
        "--execd",
        "--source",
        "proc",
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    // Five gathers, each waited for: when the fifth has read tcp, the
    // fourth has ended, error and all.
    for _ in 0..5 {
        p.tick("\n");
        reads.next().unwrap();
    }
    let first = p.stderr.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        first,
        format!(
            "E! gather failed: cannot read {}: No such file or directory (os error 2)\n",
            root.join("net/udp").display()
        )
    );
    p.no_line(Duration::from_millis(300));
    assert!(p.stderr.try_recv().is_err(), "the same error was repeated");

    std::fs::write(root.join("net/udp"), TCP_HEADER).unwrap();
    p.tick("\n");
    let line = p.line(Duration::from_secs(10));
    assert!(parse_line(&line).iter().all(|f| f.1 == 0));
    // Five failed, unless a loaded machine held the fifth back between its
    // read of tcp and its look for udp until udp was there: then four.
    let recovered = p.stderr.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        recovered == "I! gather recovered after 5 failed gathers\n"
            || recovered == "I! gather recovered after 4 failed gathers\n",
        "{recovered:?}"
    );
    drop(p.stdin.take());
    assert_eq!(p.exit_within(Duration::from_secs(5)).code(), Some(0));
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
    let scratch = support::Scratch::new("execd-output");
    let dir = scratch.0.clone();
    let file = dir.join("netstat.prom");
    let mut p = Plugin::start(&[
        "--interval",
        "10ms",
        "--format",
        "prometheus",
        "--output",
        file.to_str().unwrap(),
    ]);
    let hash_known = std::path::Path::new("/proc/sys/net/ipv4/tcp_ehash_entries").exists();
    // Read as fast as we can until five versions and a hundred reads have
    // been seen (a bound for a loaded machine, not a rate).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut reads, mut versions) = (0, std::collections::HashSet::new());
    while Instant::now() < deadline && (reads <= 100 || versions.len() < 5) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        reads += 1;
        // 13 families of 3 lines, then 3 self-metric families of 3 lines (4
        // where the kernel says whether the namespace shares the host's TCP
        // hash table), the gather time last.
        let families = if hash_known { 4 } else { 3 };
        assert_eq!(
            text.lines().count(),
            39 + 3 * families,
            "partial file:\n{text}"
        );
        assert!(
            text.contains("\nnetstat_udp_socket ")
                && text
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("netstat_gather_duration_seconds ")
                && text.ends_with('\n'),
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
    p.signal_kept_promise(rustix::process::Signal::TERM);
    p.no_line(Duration::from_millis(10));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("netstat.prom")]);
}

/// A proc root whose TCP table holds `lines` sockets: a /proc gather on it
/// takes long enough (hundreds of ms in a debug build) to be interrupted.
fn big_proc_root(name: &str, lines: usize) -> support::Scratch {
    use std::fmt::Write;
    let scratch = support::Scratch::new(&format!("big-{name}"));
    let root = &scratch.0;
    std::fs::create_dir_all(root.join("net")).unwrap();
    let mut tcp = String::from(TCP_HEADER);
    for i in 0..lines {
        let _ = writeln!(
            tcp,
            "{i:6}: 0100007F:1388 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 1 1"
        );
    }
    std::fs::write(root.join("net/tcp"), tcp).unwrap();
    std::fs::write(root.join("net/udp"), TCP_HEADER).unwrap();
    scratch
}

/// Gathers that take longer than the interval: the loop is always overdue
/// and always mid-gather, and still exits 0 within 100 ms of SIGTERM, and
/// of stdin EOF.
#[test]
fn overdue_and_mid_gather_loops_hear_sigterm_and_stdin_eof() {
    let root = big_proc_root("overdue", 300_000);
    let r = root.0.to_str().unwrap();
    for by_eof in [false, true] {
        let mut p = Plugin::start(&["--source", "proc", "--proc-root", r, "--interval", "10ms"]);
        let line = p.line(Duration::from_secs(20));
        assert_eq!(parse_line(&line)[3], ("tcp_established".into(), 300_000));
        // The next gather started at once; stop it once it has read a
        // megabyte of the tables (about 7 000 sockets of 300 000).
        let read = || {
            let io = std::fs::read_to_string(format!("/proc/{}/io", p.child.id())).unwrap();
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let before = read();
        support::poll_until(Duration::from_secs(20), || read() > before + (1 << 20));
        if by_eof {
            p.eof_kept_promise();
        } else {
            p.signal_kept_promise(rustix::process::Signal::TERM);
        }
    }
}

/// `--interval` with stdin on /dev/null (a shell, systemd) keeps running
/// until a signal; on a pipe (Telegraf's execd with `signal = "none"`) it
/// ends on EOF.
#[test]
fn interval_ends_on_stdin_eof_only_when_stdin_is_a_pipe() {
    let mut p = Plugin::start(&["--interval", "1h"]);
    p.line(Duration::from_secs(2));
    p.eof_kept_promise();

    // On /dev/null (EOF at once): three gathers come, so EOF did not end it.
    let mut child = std::process::Command::new(support::BIN)
        .args(["--interval", "50ms"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..3 {
        assert!(
            lines.next().is_some_and(|l| l.is_ok()),
            "exited on /dev/null"
        );
    }
    assert!(child.try_wait().unwrap().is_none(), "exited on /dev/null");
    signal_kept_promise(&mut child, rustix::process::Signal::TERM);
}

/// A pipe of `size` bytes whose write end is handed to the child.
fn small_pipe(size: i32, nonblocking: bool) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let (r, w) = rustix::pipe::pipe().unwrap();
    // SAFETY: fcntl on a pipe we own.
    unsafe {
        assert!(libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size) >= size);
        if nonblocking {
            let fl = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
            assert_eq!(
                libc::fcntl(w.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK),
                0
            );
        }
    }
    (r, w)
}

/// A reader that stops reading fills the pipe; the blocked loop still exits
/// 0 within 100 ms of SIGTERM, and of stdin EOF.
#[test]
fn a_stalled_reader_does_not_deafen_the_loop() {
    for by_eof in [false, true] {
        let (read_end, write_end) = small_pipe(4096, false);
        let mut child = std::process::Command::new(support::BIN)
            .args(["--interval", "10ms"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::from(write_end))
            .spawn()
            .unwrap();
        // 4096 bytes hold about 14 lines: polled until the pipe cannot take
        // another line (a line is under 300 bytes), and then a while longer
        // with nothing drained, so the loop is blocked on it.
        let full = 4096 - 300;
        let deadline = Instant::now() + Duration::from_secs(20);
        while rustix::io::ioctl_fionread(&read_end).unwrap() < full {
            assert!(Instant::now() < deadline, "the pipe never filled");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Blocked: waiting in poll(2) for the reader, the pipe still full.
        let wchan = format!("/proc/{}/wchan", child.id());
        support::poll_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("poll"))
        });
        assert!(rustix::io::ioctl_fionread(&read_end).unwrap() >= full);
        assert!(child.try_wait().unwrap().is_none());
        if by_eof {
            drop(child.stdin.take());
            let status = wait_at_most(&mut child, PROMISE + LOADED_MARGIN);
            assert_eq!(status.code(), Some(0), "blocked on a stalled reader");
        } else {
            signal_kept_promise(&mut child, rustix::process::Signal::TERM);
        }
        drop(read_end);
    }
}

/// An inherited non-blocking stdout whose reader is behind: EAGAIN waits
/// for the reader instead of failing, and every line arrives whole.
#[test]
fn a_non_blocking_stdout_waits_instead_of_failing() {
    use std::io::BufRead;
    let (read_end, write_end) = small_pipe(4096, true);
    let mut child = std::process::Command::new(support::BIN)
        .args(["--execd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::from(write_end))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // More than the pipe holds, while nobody reads: each tick waits for its
    // gather's line to land in the pipe (so ticks are not merged), until
    // the pipe cannot take another line.
    let full = 4096 - 300;
    let deadline = Instant::now() + Duration::from_secs(30);
    let queued = || rustix::io::ioctl_fionread(&read_end).unwrap();
    let mut ticks = 0;
    while queued() < full {
        use std::io::Write;
        let before = queued();
        stdin.write_all(b"\n").unwrap();
        ticks += 1;
        while queued() == before {
            assert!(Instant::now() < deadline, "no line after tick {ticks}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Then more gathers, whose lines meet a full pipe: EAGAIN.
    for _ in 0..3 {
        use std::io::Write;
        stdin.write_all(b"\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "exited on EAGAIN");
    let reader = std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufReader::new(std::fs::File::from(read_end))
            .lines()
            .map(Result::unwrap)
            .collect();
        lines
    });
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = reader.join().unwrap();
    assert!(
        lines.len() > ticks,
        "{} lines after {ticks} ticks",
        lines.len()
    );
    for l in lines {
        parse_line(&(l + "\n"));
    }
}

/// Newlines queued while the program could not read (here: stopped) are
/// one request: one gather, as Telegraf means them.
#[test]
fn queued_newlines_are_one_gather() {
    let mut p = Plugin::start(&["--execd"]);
    p.tick("\n");
    p.line(Duration::from_secs(2));
    let pid = rustix::process::Pid::from_child(&p.child);
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    p.tick(&"\n".repeat(10_000));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    p.line(Duration::from_secs(2));
    p.no_line(Duration::from_millis(400));
    drop(p.stdin.take());
    assert_eq!(p.exit_within(Duration::from_secs(1)).code(), Some(0));
}

/// A line that arrives together with EOF (`echo | telegraf-netstat --execd`)
/// is answered with one gather before the loop ends; EOF alone answers
/// nothing.
#[test]
fn a_line_with_eof_is_answered_once() {
    use std::io::Write;
    for (input, lines) in [("\n", 1), ("\n\n\n", 1), ("", 0)] {
        let mut child = support::command(&["--execd"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Written and closed at once, as `echo |` does.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{input:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), lines, "{input:?}: {text}");
        for l in text.lines() {
            parse_line(&format!("{l}\n"));
        }
    }
}
