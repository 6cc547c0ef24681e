//! What `ss` counts, to compare with.

use super::*;

/// `program` to run in the calling thread's namespace or, with `netns`, in
/// the namespace of that file (through nsenter).
pub fn tool_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={path}")).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Counts as `ss` sees them in the calling thread's namespace.
pub fn ss_counts() -> Counts {
    ss_counts_where(None, &[])
}

/// Counts as `ss` sees them, of the sockets that match the `ss` filter
/// `filter` (e.g. `["(", "sport", "=", ":443", ")"]`), in the calling
/// thread's namespace or, with `netns`, in that namespace (via nsenter).
pub fn ss_counts_where(netns: Option<&str>, filter: &[&str]) -> Counts {
    let ss = |args: &[&str]| {
        String::from_utf8(succeeded(tool_in(netns, "ss").args(args).args(filter))).unwrap()
    };
    let mut c = Counts::default();
    for line in ss(&["-H", "-t", "-a", "-n"]).lines() {
        let field = match line.split_whitespace().next() {
            Some("ESTAB") => &mut c.tcp_established,
            Some("SYN-SENT") => &mut c.tcp_syn_sent,
            Some("SYN-RECV") => &mut c.tcp_syn_recv,
            Some("FIN-WAIT-1") => &mut c.tcp_fin_wait1,
            Some("FIN-WAIT-2") => &mut c.tcp_fin_wait2,
            Some("TIME-WAIT") => &mut c.tcp_time_wait,
            Some("UNCONN") | Some("CLOSE") => &mut c.tcp_close,
            Some("CLOSE-WAIT") => &mut c.tcp_close_wait,
            Some("LAST-ACK") => &mut c.tcp_last_ack,
            Some("LISTEN") => &mut c.tcp_listen,
            Some("CLOSING") => &mut c.tcp_closing,
            other => panic!("unexpected ss state {other:?} in {line:?}"),
        };
        *field += 1;
    }
    c.udp_socket = ss(&["-H", "-u", "-a", "-n"]).lines().count() as u64;
    c
}

/// Waits (at most 20 s, a bound for a loaded machine) until `ss` shows
/// exactly `expected`: some transitions (FIN handshakes, TIME_WAIT) finish
/// in softirq after the syscall returns.
pub fn settle(expected: &Counts) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = ss_counts();
        if seen == *expected {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "population did not settle:\n  ss:       {seen:?}\n  expected: {expected:?}\n  {}",
                tcp_ext_counters()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The check every population gets: `ss` agrees with the expected counts,
/// and the netlink, proc and auto sources print exactly them, byte for byte
/// the same line.
pub fn check(expected: &Counts) {
    settle(expected);
    let netlink = run_ok(&["--source", "netlink"]);
    assert_eq!(parse_line(&netlink), fields(expected), "netlink: {netlink}");
    let proc = run_ok(&["--source", "proc"]);
    assert_eq!(proc, netlink, "--source proc differs from netlink");
    let auto = run_ok(&[]);
    assert_eq!(auto, netlink, "the default source differs from netlink");
    assert_eq!(
        ss_counts(),
        *expected,
        "the population changed during the check"
    );
}
