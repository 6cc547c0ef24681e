//! `--tcp-info` on connections made in private network namespaces: the RTT
//! buckets of idle loopback connections equal what `ss -tin` shows for the
//! same sockets (`rtt:`), per port and per top destination, the kernel's
//! filter passes only the selected sockets (the debug line's byte count), a connection over a veth pair
//! shaped with `tbf` lands in a higher bucket than loopback ones, a peer
//! whose ACKs are dropped shows loss recovery and RTO backoff as `ss -tin`
//! does (`backoff:`), and the /proc source has none of it.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;

/// The RTT bucket bounds in microseconds and their fields.
const BUCKETS: [(u64, &str); 13] = [
    (100, "rtt_le_0_0001"),
    (250, "rtt_le_0_00025"),
    (500, "rtt_le_0_0005"),
    (1_000, "rtt_le_0_001"),
    (2_500, "rtt_le_0_0025"),
    (5_000, "rtt_le_0_005"),
    (10_000, "rtt_le_0_01"),
    (25_000, "rtt_le_0_025"),
    (50_000, "rtt_le_0_05"),
    (100_000, "rtt_le_0_1"),
    (250_000, "rtt_le_0_25"),
    (500_000, "rtt_le_0_5"),
    (1_000_000, "rtt_le_1"),
];

/// The `netstat_port_tcp_info` rows of an influx output, by (direction,
/// port): field name to value as written.
fn rows(out: &str) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    out.lines()
        .filter(|l| l.starts_with("netstat_port_tcp_info,"))
        .map(|line| {
            let (series, fields) = line.split_once(' ').unwrap();
            let (_, tags): (String, BTreeMap<String, String>) = parse_series(series);
            let fields = fields
                .split(',')
                .map(|f| {
                    let (k, v) = f.split_once('=').unwrap();
                    (k.to_string(), v.trim_end_matches('i').to_string())
                })
                .collect();
            ((tags["direction"].clone(), tags["port"].clone()), fields)
        })
        .collect()
}

fn int(row: &BTreeMap<String, String>, field: &str) -> u64 {
    row[field]
        .parse()
        .unwrap_or_else(|_| panic!("{field} in {row:?}"))
}

/// What `ss -tin` shows of some connections: each one's smoothed RTT in
/// microseconds (if it has one) and its RTO backoff.
type SsInfo = Vec<(Option<u64>, u64)>;

/// `ss -Htin` in the calling thread's namespace for `filter`: per
/// connection, its smoothed RTT in microseconds (`rtt:` in ms, printed as
/// `tcpi_rtt / 1000` with `%g`, so exact), and its RTO backoff.
fn ss_info(filter: &str) -> SsInfo {
    let out = Command::new("ss")
        .args(["-Htin", "state", "connected", filter])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // Each socket is a line of addresses, then a line of its tcp_info.
    text.lines()
        .filter(|l| l.starts_with(|c: char| c.is_whitespace()))
        .map(|l| {
            let value = |key: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(|v| v.split('/').next().unwrap().to_string())
            };
            let rtt = value("rtt:").map(|ms| (ms.parse::<f64>().unwrap() * 1000.0).round() as u64);
            let backoff = value("backoff:").map_or(0, |b| b.parse().unwrap());
            (rtt, backoff)
        })
        .collect()
}

/// `n` connections to `l`, each with a few request/response round trips so
/// both ends have RTT samples.
fn talking_pairs(l: &TcpListener, n: usize) -> Vec<(TcpStream, TcpStream)> {
    (0..n)
        .map(|_| {
            let (mut c, mut s) = connect_pair(l, |_| {});
            for _ in 0..5 {
                let mut b = [0; 100];
                c.write_all(&[1; 100]).unwrap();
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
                c.read_exact(&mut b).unwrap();
            }
            (c, s)
        })
        .collect()
}

/// How `--tcp-info` asked the kernel, from its debug line.
#[derive(Debug, PartialEq)]
enum Asked {
    /// The filtered walk: the records and bytes it returned.
    Walk(u64, u64),
    /// Lookups one by one: the sockets asked for, the records answered and
    /// their bytes.
    Lookups(u64, u64, u64),
}

/// The debug line of `--tcp-info -v`'s extra dump or lookups in `line`.
fn asked(line: &str) -> Option<Asked> {
    let num = |s: &str| s.parse::<u64>().unwrap();
    if let Some((_, rest)) = line.split_once("--tcp-info: the filtered dump returned ") {
        let (records, rest) = rest.split_once(" sockets in ")?;
        return Some(Asked::Walk(num(records), num(rest.strip_suffix(" bytes")?)));
    }
    let rest = line.split_once("--tcp-info: looked up ")?.1;
    let (sockets, rest) = rest.split_once(" sockets one by one: ")?;
    let (records, rest) = rest.split_once(" answered in ")?;
    let bytes = num(rest.strip_suffix(" bytes")?);
    Some(Asked::Lookups(num(sockets), num(records), bytes))
}

/// `--tcp-info -v` with `ports`: its rows, and how the kernel was asked
/// from the debug line (`None`: nothing asked).
fn run_tcp_info(ports: &[&str]) -> (String, Option<Asked>) {
    let out = command(&[&["--tcp-info", "-v"], ports].concat())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut lines = stderr.lines().filter_map(asked);
    let dumped = lines.next();
    assert!(lines.next().is_none(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), dumped)
}

/// Whether a row's buckets, count, sum and connections equal `ss`'s view.
fn matches_ss(row: &BTreeMap<String, String>, ss: &[(Option<u64>, u64)]) -> bool {
    let rtts: Vec<u64> = ss.iter().filter_map(|s| s.0).collect();
    let sum_us = (row["rtt_sum_seconds"].parse::<f64>().unwrap() * 1e6).round() as u64;
    BUCKETS
        .iter()
        .all(|(le, f)| int(row, f) == rtts.iter().filter(|&&r| r <= *le).count() as u64)
        && int(row, "rtt_samples") == rtts.len() as u64
        && int(row, "rtt_le_inf") == rtts.len() as u64
        && int(row, "connections") == ss.len() as u64
        && sum_us == rtts.iter().sum::<u64>()
}

fn buckets_equal_ss_and_only_the_selected_sockets_are_dumped() {
    in_netns(|| {
        let a = TcpListener::bind("127.0.0.1:7001").unwrap();
        let b = TcpListener::bind("127.0.0.1:7002").unwrap();
        let other = TcpListener::bind("127.0.0.1:7003").unwrap();
        let _a = talking_pairs(&a, 3);
        let _b = talking_pairs(&b, 2);
        let _other = talking_pairs(&other, 200);
        let ports = ["--local-port", "7001", "--remote-port", "7002"];
        // Idle connections keep their smoothed RTT; a gather between two
        // equal views of ss is compared with them.
        let mut last = None;
        poll_until(Duration::from_secs(10), || {
            let before = (ss_info("sport = :7001"), ss_info("dport = :7002"));
            let (out, dumped) = run_tcp_info(&ports);
            let after = (ss_info("sport = :7001"), ss_info("dport = :7002"));
            let r = rows(&out);
            let ok = before == after
                && r.len() == 2
                && matches_ss(&r[&("local".into(), "7001".into())], &before.0)
                && matches_ss(&r[&("remote".into(), "7002".into())], &before.1);
            last = Some((out, dumped, before));
            ok
        });
        let (out, dumped, ss) = last.unwrap();
        assert_eq!((ss.0.len(), ss.1.len()), (3, 2), "{out}");
        // 5 of 405 connections (810 sockets with their peers) are looked
        // up, with tcp_info each: a few hundred bytes apiece, not 810 of them.
        let Some(Asked::Lookups(5, 5, bytes)) = dumped else {
            panic!("{dumped:?}: not 5 sockets looked up\n{out}");
        };
        assert!((5 * 300..=5 * 600).contains(&bytes), "{bytes} bytes");
        eprintln!(
            "--tcp-info: 5 sockets in {bytes} bytes ({} per socket)",
            bytes / 5
        );
    })
}

/// `n` connections to `to` (accepted by `l`), talking as `talking_pairs`'.
fn talking_to(l: &TcpListener, to: &str, n: usize) -> Vec<(TcpStream, TcpStream)> {
    (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(to).unwrap();
            let (mut s, _) = l.accept().unwrap();
            for _ in 0..5 {
                let mut b = [0; 100];
                c.write_all(&[1; 100]).unwrap();
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
                c.read_exact(&mut b).unwrap();
            }
            (c, s)
        })
        .collect()
}

/// The `netstat_destination_tcp_info` lines of `out` in the form of port
/// rows, for [`rows`]: `address` as `direction`.
fn destination_rows(out: &str) -> String {
    out.lines()
        .filter(|l| l.starts_with("netstat_destination_tcp_info,"))
        .map(|l| l.replace("netstat_destination_tcp_info,", "netstat_port_tcp_info,"))
        .map(|l| l.replacen("address=", "direction=", 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Gathers until the destination rows are exactly 127.0.0.1:7001's and
/// 127.0.0.2:7002's, each equal to what `ss -tin` shows of the same sockets,
/// which did not change meanwhile: the last gather's output and how it
/// asked, and what `ss` showed of each destination.
fn destinations_matching_ss<T>(
    mut gather: impl FnMut() -> (String, T),
) -> (String, T, (SsInfo, SsInfo)) {
    let mut last = None;
    poll_until(Duration::from_secs(10), || {
        let before = (ss_info("dst 127.0.0.1:7001"), ss_info("dst 127.0.0.2:7002"));
        let (out, asked) = gather();
        let after = (ss_info("dst 127.0.0.1:7001"), ss_info("dst 127.0.0.2:7002"));
        let r = rows(&destination_rows(&out));
        let ok = before == after
            && r.len() == 2
            && matches_ss(&r[&("127.0.0.1".into(), "7001".into())], &before.0)
            && matches_ss(&r[&("127.0.0.2".into(), "7002".into())], &before.1);
        last = Some((out, asked, before));
        ok
    });
    last.unwrap()
}

fn the_top_destinations_get_a_row_each() {
    in_netns(|| {
        let a = TcpListener::bind("0.0.0.0:7001").unwrap();
        let b = TcpListener::bind("0.0.0.0:7002").unwrap();
        let _a = talking_to(&a, "127.0.0.1:7001", 3);
        let _b = talking_to(&b, "127.0.0.2:7002", 2);
        let (out, dumped, ss) = destinations_matching_ss(|| run_tcp_info(&["--destinations", "5"]));
        assert_eq!((ss.0.len(), ss.1.len()), (3, 2), "{out}");
        // Destinations are known only after the main pass: the filtered
        // walk, whose filter passed the 5 client ends and not their peers.
        let Some(Asked::Walk(5, bytes)) = dumped else {
            panic!("{dumped:?}: not a walk returning 5 sockets\n{out}");
        };
        assert!((5 * 300..=5 * 600).contains(&bytes), "{bytes} bytes");
        // Only the busiest one with --destinations 1: its 3 sockets dumped.
        let (out, dumped) = run_tcp_info(&["--destinations", "1"]);
        let r = rows(&destination_rows(&out));
        assert_eq!(
            r.keys().collect::<Vec<_>>(),
            [&("127.0.0.1".into(), "7001".into())]
        );
        assert!(
            matches!(dumped, Some(Asked::Walk(3, _))),
            "{dumped:?}\n{out}"
        );
    })
}

/// `--execd --tcp-info -v` with `args`, two gathers: its output, and how
/// the kernel was asked at each.
fn two_gathers(args: &[&str]) -> (String, Vec<Asked>) {
    let mut child = command(&[&["--execd", "--tcp-info", "-v"], args].concat())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A line, its gather's debug line, then the second line: lines read
    // at once are answered by one gather.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.lines().any(|l| asked(l).is_some()) {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "no debug line from the first gather: {said}");
        said.push_str(&line);
    }
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    stderr.read_to_string(&mut said).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}\n{said}");
    let asked = said.lines().filter_map(asked).collect();
    (String::from_utf8(out.stdout).unwrap(), asked)
}

fn the_last_gathers_top_destinations_are_looked_up() {
    in_netns(|| {
        let _held = two_destinations();
        // The rows are the second gather's (each row's last line).
        let (out, asked, _) = destinations_matching_ss(|| two_gathers(&["--destinations", "5"]));
        // The first gather knew its destinations only after its pass: the
        // walk; the second kept their sockets in its pass and asked for
        // each.
        let [Asked::Walk(5, _), Asked::Lookups(5, 5, bytes)] = asked[..] else {
            panic!("{asked:?}\n{out}");
        };
        assert!((5 * 300..=5 * 600).contains(&bytes), "{bytes} bytes");
    })
}

/// Listeners on 7001 and 7002 with 3 and 2 connections to 127.0.0.1:7001
/// and 127.0.0.2:7002, and 60 idle listeners (so that 5 lookups are few
/// beside the namespace's 72 sockets), held until dropped.
type Destinations = (Vec<(TcpStream, TcpStream)>, Vec<TcpListener>);

fn two_destinations() -> Destinations {
    let a = TcpListener::bind("0.0.0.0:7001").unwrap();
    let b = TcpListener::bind("0.0.0.0:7002").unwrap();
    let mut pairs = talking_to(&a, "127.0.0.1:7001", 3);
    pairs.extend(talking_to(&b, "127.0.0.2:7002", 2));
    let mut listeners: Vec<TcpListener> = (0..60)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.extend([a, b]);
    (pairs, listeners)
}

/// A one-shot `--tcp-info -v --destinations N --state-file FILE` (and
/// `extra`), killed and failed if it has not ended within 20 s (nothing it
/// may find at FILE can block it): its output, its stderr and how the
/// kernel was asked.
fn with_state_in(
    c: &mut Command,
    n: &str,
    file: &std::path::Path,
) -> (String, String, Option<Asked>) {
    use std::process::Stdio;
    c.args(["--tcp-info", "-v", "--destinations", n, "--state-file"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    wait_at_most(&mut child, Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let asked = stderr.lines().find_map(asked);
    (String::from_utf8(out.stdout).unwrap(), stderr, asked)
}

fn with_state(n: &str, file: &std::path::Path) -> (String, String, Option<Asked>) {
    with_state_in(&mut command(&[]), n, file)
}

/// The destination lines of a state file.
fn kept(file: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("telegraf-netstat state 1"),
        "{text}"
    );
    text.lines().skip(1).map(str::to_owned).collect()
}

fn a_state_file_carries_the_top_destinations_to_the_next_run() {
    in_netns(|| {
        let _held = two_destinations();
        let dir = Scratch::new("tcpinfo-state");
        let file = dir.join("netstat.state");
        // The first run knows its destinations only after its pass: the
        // walk. It keeps both.
        let (out, stderr, asked) = with_state("5", &file);
        assert!(matches!(asked, Some(Asked::Walk(5, _))), "{asked:?}\n{out}");
        assert!(!stderr.contains("W! "), "{stderr}");
        let both = kept(&file);
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[0].ends_with(" 00000000000000000000ffff7f000001 7001"));
        assert!(both[1].ends_with(" 00000000000000000000ffff7f000002 7002"));
        // The next runs kept their sockets in the pass and asked for each,
        // with the rows ss shows.
        let (out, asked, _) = destinations_matching_ss(|| {
            let (out, _, asked) = with_state("5", &file);
            (out, asked)
        });
        let Some(Asked::Lookups(5, 5, bytes)) = asked else {
            panic!("{asked:?}\n{out}");
        };
        assert!((5 * 300..=5 * 600).contains(&bytes), "{bytes} bytes");
        // --destinations 1 selects 7001 and looks up its 3 sockets alone;
        // it keeps 7002 too, just below the top one.
        let (out, _, asked) = with_state("1", &file);
        assert!(matches!(asked, Some(Asked::Lookups(3, 3, _))), "{asked:?}");
        assert_eq!(rows(&destination_rows(&out)).len(), 1, "{out}");
        assert_eq!(kept(&file), both);
        // So 7002 moving into the top ones is looked up too.
        let (_, _, asked) = with_state("2", &file);
        assert!(matches!(asked, Some(Asked::Lookups(5, 5, _))), "{asked:?}");
        // A file keeping 7001 alone: 7002's sockets were not kept, so the
        // walk, never a row short.
        std::fs::write(&file, format!("telegraf-netstat state 1\n{}\n", both[0])).unwrap();
        let (out, stderr, asked) = with_state("5", &file);
        assert!(matches!(asked, Some(Asked::Walk(5, _))), "{asked:?}\n{out}");
        assert!(!stderr.contains("W! "), "{stderr}");
        assert_eq!(rows(&destination_rows(&out)).len(), 2, "{out}");
        assert_eq!(kept(&file), both);
    })
}

fn an_ipv4_mapped_destination_is_kept_and_looked_up() {
    in_netns(|| {
        // IPv6 sockets to an IPv4-mapped address: records of AF_INET6, a
        // destination in the IPv4 form it is printed in.
        let l = TcpListener::bind("[::]:7003").unwrap();
        let _pairs = talking_to(&l, "[::ffff:127.0.0.3]:7003", 2);
        let _idle: Vec<TcpListener> = (0..60)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let dir = Scratch::new("tcpinfo-mapped-state");
        let file = dir.join("netstat.state");
        let (_, _, asked) = with_state("5", &file);
        assert!(matches!(asked, Some(Asked::Walk(2, _))), "{asked:?}");
        assert_eq!(kept(&file).len(), 1);
        assert!(kept(&file)[0].ends_with(" 00000000000000000000ffff7f000003 7003"));
        let (out, _, asked) = with_state("5", &file);
        assert!(
            matches!(asked, Some(Asked::Lookups(2, 2, _))),
            "{asked:?}\n{out}"
        );
        let r = rows(&destination_rows(&out));
        let row = &r[&("127.0.0.3".into(), "7003".into())];
        assert_eq!(int(row, "connections"), 2, "{out}");
        assert_eq!(int(row, "rtt_samples"), 2, "{out}");
    })
}

/// What can be found at a state file's path and is not the program's: how
/// to plant it (with the good file's bytes at hand, and a path elsewhere),
/// and what the `W!` line says of it.
type Plant = (fn(&std::path::Path, &std::path::Path, &[u8]), &'static str);

const PLANTS: [Plant; 9] = [
    (
        |f, elsewhere, good| {
            std::fs::write(elsewhere, good).unwrap();
            std::os::unix::fs::symlink(elsewhere, f).unwrap();
        },
        "it is a symbolic link",
    ),
    (
        |f, _, good| {
            std::fs::write(f, good).unwrap();
            std::os::unix::fs::chown(f, Some(65534), Some(65534)).unwrap();
        },
        "it is owned by another user",
    ),
    (
        // Telegraf's own state file, as its packages make it (root:telegraf,
        // 0660), named by mistake.
        |f, _, _| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(f, "{}\n").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o660)).unwrap();
        },
        "it is writable by group or others",
    ),
    (
        |f, _, _| std::fs::write(f, "{}\n").unwrap(),
        "its line 1 is not one it writes",
    ),
    (
        |f, _, good| std::fs::write(f, [good, b"tcp-info-destination x\n"].concat()).unwrap(),
        "its line 4 is not one it writes",
    ),
    (
        |f, _, _| std::fs::write(f, vec![b'#'; 4 << 20 | 1]).unwrap(),
        "it is longer than 4194304 bytes",
    ),
    (
        |f, _, _| assert!(Command::new("mkfifo").arg(f).status().unwrap().success()),
        "it is not a regular file",
    ),
    (
        // /dev/null's numbers: never opened, only looked at.
        |f, _, _| {
            let made = Command::new("mknod").arg(f).args(["c", "1", "3"]).status();
            assert!(made.unwrap().success());
        },
        "it is not a regular file",
    ),
    (
        |f, _, _| std::fs::create_dir(f).unwrap(),
        "it is not a regular file",
    ),
];

/// What is at `path`, to tell that it was left as it is: its type, owner,
/// mode and (for a regular file or a link) its bytes or target.
fn entry(path: &std::path::Path) -> (std::fs::FileType, u32, u32, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    let bytes = match m.file_type() {
        t if t.is_symlink() => std::fs::read_link(path)
            .unwrap()
            .into_os_string()
            .into_encoded_bytes(),
        t if t.is_file() => std::fs::read(path).unwrap(),
        _ => Vec::new(),
    };
    (m.file_type(), m.uid(), m.mode(), bytes)
}

fn what_is_not_the_programs_at_a_state_file_is_said_and_left_as_it_is() {
    in_netns(|| {
        let _held = two_destinations();
        let dir = Scratch::new("tcpinfo-hostile-state");
        let file = dir.join("netstat.state");
        with_state("5", &file);
        let good = std::fs::read(&file).unwrap();
        let elsewhere = dir.join("elsewhere");
        for (plant, says) in PLANTS {
            match std::fs::symlink_metadata(&file) {
                Ok(m) if m.is_dir() => std::fs::remove_dir(&file).unwrap(),
                _ => std::fs::remove_file(&file).unwrap(),
            }
            plant(&file, &elsewhere, &good);
            let planted = entry(&file);
            let (out, stderr, asked) = with_state("5", &file);
            let warned: Vec<_> = stderr.lines().filter(|l| l.starts_with("W! ")).collect();
            let expected = format!(
                "W! --state-file {}: not this program's file ({says}): left as it is, ",
                file.display()
            );
            assert!(
                warned.len() == 1 && warned[0].starts_with(&expected),
                "{says}: {stderr}"
            );
            // Counted as without the file, which is as it was.
            assert!(
                matches!(asked, Some(Asked::Walk(5, _))),
                "{says}: {asked:?}\n{out}"
            );
            assert!(entry(&file) == planted, "{says}: changed");
        }
        assert_eq!(
            std::fs::read(&elsewhere).unwrap(),
            good,
            "never written through the link"
        );
        // Removed, the program's own file comes back, mode 0600.
        std::fs::remove_dir(&file).unwrap();
        let (_, stderr, _) = with_state("5", &file);
        assert!(!stderr.contains("W! "), "{stderr}");
        assert_eq!(std::fs::read(&file).unwrap(), good);
        let (kind, uid, mode, _) = entry(&file);
        assert!(
            kind.is_file() && uid == 0 && mode & 0o777 == 0o600,
            "{mode:o}"
        );
    })
}

fn a_state_file_that_cannot_be_written_is_said_and_the_run_goes_on() {
    in_netns(|| {
        let _held = two_destinations();
        let dir = Scratch::new("tcpinfo-readonly-state");
        let file = dir.join("netstat.state");
        // Its directory read-only (a bind mount in a mount namespace of the
        // run's own): said, and the run prints as without the flag.
        let d = dir.to_str().unwrap();
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && exec \"$0\" \"$@\""
            ))
            .arg(BIN)
            .env_remove("HOST_PROC");
        let (out, stderr, asked) = with_state_in(&mut c, "5", &file);
        let expected = format!(
            "W! --state-file {}: cannot create files in its directory: ",
            file.display()
        );
        assert!(stderr.lines().any(|l| l.starts_with(&expected)), "{stderr}");
        assert!(matches!(asked, Some(Asked::Walk(5, _))), "{asked:?}\n{out}");
        assert_eq!(rows(&destination_rows(&out)).len(), 2, "{out}");
        assert!(!file.exists());
        // The --output file under another name (through a link to its
        // directory): a usage error.
        std::os::unix::fs::symlink(&*dir, dir.join("link")).unwrap();
        let out = command(&["--tcp-info", "--destinations", "5", "--output"])
            .arg(&file)
            .arg("--state-file")
            .arg(dir.join("link/netstat.state"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("it is the --output file"), "{stderr}");
    })
}

fn a_shaped_path_lands_in_a_higher_bucket_than_loopback() {
    in_netns(|| {
        let peer = Peer::new("10.77.0.1/24", "10.77.0.2/24");
        let out = Command::new("tc")
            .args(["qdisc", "add", "dev", "tn0", "root", "tbf"])
            .args(["rate", "1mbit", "burst", "5kb", "latency", "2s"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tc: {out:?}");
        let far = TcpListener::bind("10.77.0.1:7100").unwrap();
        let near = TcpListener::bind("127.0.0.1:7001").unwrap();
        let _near = talking_pairs(&near, 2);
        peer.connect(far.local_addr().unwrap());
        let (mut s, _) = far.accept().unwrap();
        // 150 KB queue behind a 1 Mbit/s bucket: about a second of delay.
        s.set_nonblocking(true).unwrap();
        let _ = s.write(&[0; 150_000]);
        let ports = ["--local-port", "7001,7100"];
        let mut last = String::new();
        poll_until(Duration::from_secs(20), || {
            last = run_tcp_info(&ports).0;
            let r = rows(&last);
            let (far, near) = (
                &r[&("local".into(), "7100".into())],
                &r[&("local".into(), "7001".into())],
            );
            // The shaped connection above 25 ms, loopback's at or below it.
            int(far, "rtt_samples") == 1
                && int(far, "rtt_le_0_025") == 0
                && int(near, "rtt_le_0_025") == int(near, "rtt_samples")
                && int(near, "rtt_samples") == 2
        });
        let r = rows(&last);
        let far = &r[&("local".into(), "7100".into())];
        assert!(
            int(far, "unacked_bytes") + int(far, "notsent_bytes") > 0,
            "{last}"
        );
        drop(s);
        drop(peer);
    })
}

fn loss_recovery_and_backoff_of_a_peer_gone_away() {
    in_netns(|| {
        let l = TcpListener::bind("127.0.0.1:7004").unwrap();
        let pairs = talking_pairs(&l, 2);
        // The peer's ACKs vanish: the client's data is never acknowledged.
        let out = Command::new("iptables")
            .args(["-A", "INPUT", "-p", "tcp", "--sport", "7004", "-j", "DROP"])
            .output()
            .unwrap();
        assert!(out.status.success(), "iptables: {out:?}");
        let mut c = pairs[0].0.try_clone().unwrap();
        c.write_all(b"lost").unwrap();
        let ports = ["--remote-port", "7004"];
        poll_until(Duration::from_secs(10), || {
            ss_info("dport = :7004").iter().any(|s| s.1 > 0)
        });
        let mut last = String::new();
        poll_until(Duration::from_secs(10), || {
            let before = ss_info("dport = :7004");
            last = run_tcp_info(&ports).0;
            let after = ss_info("dport = :7004");
            let r = rows(&last);
            let row = &r[&("remote".into(), "7004".into())];
            let backing_off = before.iter().filter(|s| s.1 > 0).count() as u64;
            before
                .iter()
                .map(|s| s.1 > 0)
                .eq(after.iter().map(|s| s.1 > 0))
                && int(row, "rto_backoff") == backing_off
                && int(row, "loss_recovery") == 1
                && int(row, "unacked_bytes") == 4
                && int(row, "connections") == 2
        });
        drop(pairs);
    })
}

fn proc_has_none_and_nothing_selected_dumps_nothing() {
    in_netns(|| {
        let l = TcpListener::bind("127.0.0.1:7001").unwrap();
        let _pairs = talking_pairs(&l, 1);
        // Netlink refused: /proc, said once, and no rows.
        let out = run_blocked(&["--tcp-info", "--local-port", "7001"]);
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = stderr.lines().filter(|l| l.contains("tcp_info")).collect();
        assert_eq!(said.len(), 1, "{stderr}");
        assert!(said[0].starts_with("W! "), "{stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(rows(&stdout).is_empty(), "{stdout}");
        assert!(stdout.contains("netstat_port,"), "{stdout}");
        // --source proc: a usage error.
        let out = run(&["--tcp-info", "--source", "proc", "--local-port", "7001"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        // No port named (the listening ports are not selected): no dump.
        for ports in [&[][..], &["--listening-ports"]] {
            let (out, dumped) = run_tcp_info(ports);
            assert_eq!(dumped, None, "{ports:?}");
            assert!(rows(&out).is_empty(), "{out}");
        }
        let (out, dumped) = run_tcp_info(&["--local-port", "7001"]);
        // One lookup for three sockets: more than one in ten, the walk.
        assert!(matches!(dumped, Some(Asked::Walk(1, _))), "{dumped:?}");
        assert_eq!(rows(&out).len(), 1);
        // Without the flag: no dump and no rows.
        let out = run_ok(&["--local-port", "7001", "-v"]);
        assert!(rows(&out).is_empty(), "{out}");
    })
}

fn main() {
    let args = Arguments::from_args();
    let tools = tools_on_path(&[
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("tc", "iproute2"),
    ]);
    let setup = namespace_setup()
        .and(tools)
        .and(needs_root("veth, tc and iptables in the namespace"));
    let tests = tests![
        the_top_destinations_get_a_row_each,
        the_last_gathers_top_destinations_are_looked_up,
        a_state_file_carries_the_top_destinations_to_the_next_run,
        what_is_not_the_programs_at_a_state_file_is_said_and_left_as_it_is,
        an_ipv4_mapped_destination_is_kept_and_looked_up,
        a_state_file_that_cannot_be_written_is_said_and_the_run_goes_on,
        buckets_equal_ss_and_only_the_selected_sockets_are_dumped,
        a_shaped_path_lands_in_a_higher_bucket_than_loopback,
        loss_recovery_and_backoff_of_a_peer_gone_away,
        proc_has_none_and_nothing_selected_dumps_nothing,
    ];
    run_trials(args, setup, named("tcpinfo", &tests));
}
