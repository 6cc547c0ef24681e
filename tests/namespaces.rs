//! Several network namespaces at once (`--netns`, `--all-netns`), and the
//! breakdown options (`--by-family`, `--include-unix`), on known socket
//! populations in namespaces the tests create.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use libtest_mimic::Arguments;
use support::*;
use telegraf_netstat::Counts;

/// `--netns` on two namespaces: one metric each, in the order given, tagged
/// `netns=pid:PID`, with exact counts from either source.
fn netns_paths_get_one_metric_each() {
    let a = Netns::new(|| established(2, 1), 1);
    let b = Netns::new(
        || {
            let mut p = listeners();
            p.merge(time_wait(3));
            p.merge(udp());
            p
        },
        1,
    );
    let want = vec![
        (tags(&[("netns", &a.tag())]), fields(&a.expected)),
        (tags(&[("netns", &b.tag())]), fields(&b.expected)),
    ];
    for source in ["netlink", "proc", "auto"] {
        let out = run_ok(&[
            "--source",
            source,
            "--netns",
            &a.path(),
            "--netns",
            &b.path(),
        ]);
        assert_eq!(parse_metrics(&out), want, "--source {source}:\n{out}");
    }
    // Two paths to one namespace: counted once, under the first.
    let twice = run_ok(&[
        "--netns",
        &a.path(),
        "--netns",
        &b.path(),
        "--netns",
        &a.path(),
    ]);
    assert_eq!(parse_metrics(&twice), want);
    // The namespace of this process, under a path that is not /proc/PID.
    let own = run_ok(&["--netns", "/proc/self/ns/net"]);
    let m = parse_metrics(&own);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].0, tags(&[("netns", "/proc/self/ns/net")]));
}

/// A fake proc root whose entries are symlinks to real /proc/PID
/// directories: `--all-netns` sees exactly the processes the test chose.
struct FakeProc(Scratch);

impl FakeProc {
    fn new() -> FakeProc {
        FakeProc(Scratch::new("proc"))
    }

    /// Shows process `pid` as `<fake>/as_pid`.
    fn add(&self, as_pid: u32, pid: u32) {
        std::os::unix::fs::symlink(format!("/proc/{pid}"), self.0 .0.join(as_pid.to_string()))
            .unwrap();
    }

    fn root(&self) -> &str {
        self.0 .0.to_str().unwrap()
    }
}

/// The metrics tagged `host` or `pid:…`: the ones from the fake proc root
/// (named namespaces of the machine may come on top).
fn from_proc(out: &str) -> Vec<Parsed> {
    parse_metrics(out)
        .into_iter()
        .filter(|(t, _)| {
            t.len() == 1 && t[0].0 == "netns" && (t[0].1 == "host" || t[0].1.starts_with("pid:"))
        })
        .collect()
}

/// `--all-netns`: every namespace once, PID 1's tagged `host`, the others
/// by their lowest PID; from either source.
fn all_netns_finds_every_namespace_once() {
    let a = Netns::new(|| established(1, 1), 2);
    let b = Netns::new(
        || {
            let mut p = udp();
            p.merge(half_closed(2));
            p
        },
        2,
    );
    let fake = FakeProc::new();
    fake.add(1, a.pids[0]);
    fake.add(a.pids[1], a.pids[1]);
    for &p in &b.pids {
        fake.add(p, p);
    }
    let lowest_b = *b.pids.iter().min().unwrap();
    let want = vec![
        (tags(&[("netns", "host")]), fields(&a.expected)),
        (
            tags(&[("netns", &format!("pid:{lowest_b}"))]),
            fields(&b.expected),
        ),
    ];
    for source in ["netlink", "proc"] {
        let out = run_ok(&[
            "--all-netns",
            "--proc-root",
            fake.root(),
            "--source",
            source,
        ]);
        assert_eq!(from_proc(&out), want, "--source {source}:\n{out}");
    }
}

/// In an execd loop `--all-netns` re-scans at every gather: a namespace
/// that disappeared is dropped without a word, a new one is picked up.
fn execd_all_netns_follows_namespaces() {
    let a = Netns::new(|| established(1, 0), 1);
    let b = Netns::new(|| time_wait(2), 1);
    let fake = FakeProc::new();
    fake.add(1, a.pids[0]);
    fake.add(b.pids[0], b.pids[0]);
    let mut plugin = Plugin::start(&["--execd", "--all-netns", "--proc-root", fake.root()]);
    let wait = Duration::from_secs(5);
    // One gather's lines arrive in one write; named namespaces of the
    // machine (another test may be making one) may come on top of ours.
    let gather = |plugin: &mut Plugin| {
        plugin.tick("\n");
        let mut text = plugin.line(wait);
        while let Ok((_, l)) = plugin.stdout.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&l);
        }
        from_proc(&text)
    };
    assert_eq!(
        gather(&mut plugin),
        vec![
            (tags(&[("netns", "host")]), fields(&a.expected)),
            (tags(&[("netns", &b.tag())]), fields(&b.expected)),
        ]
    );
    // B's process exits and its sockets close; its entry now dangles.
    drop(b);
    let c = Netns::new(|| established(0, 2), 1);
    fake.add(c.pids[0], c.pids[0]);
    assert_eq!(
        gather(&mut plugin),
        vec![
            (tags(&[("netns", "host")]), fields(&a.expected)),
            (tags(&[("netns", &c.tag())]), fields(&c.expected)),
        ]
    );
    drop(plugin.stdin.take());
    assert_eq!(plugin.exit_within(Duration::from_secs(1)).code(), Some(0));
    let said: Vec<String> = plugin.stderr.try_iter().collect();
    assert!(said.is_empty(), "unexpected stderr: {said:?}");
}

/// A namespace made by `ip netns add` (root only), deleted when dropped.
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A namespace under /run/netns is tagged by its name, through `--netns`
/// and through `--all-netns`, where a process inside it does not make it
/// count twice. Needs real root (`ip netns add` mounts on /run/netns).
fn named_namespaces_are_tagged_by_name() {
    let name = format!("telegraf-netstat-test-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`ip netns add {name}` failed");
    let named = Named(name.clone());
    let path = format!("/run/netns/{name}");
    // Sockets and a process inside it, from a thread that joined it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let enter = path.clone();
    let holder = std::thread::spawn(move || {
        let f = std::fs::File::open(&enter).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        loopback_up().unwrap();
        let p = listeners();
        settle(&p.expected);
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        tx.send((sleeper.id(), p.expected)).unwrap();
        let _ = stop_rx.recv();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        drop(p);
    });
    let (pid, expected) = rx.recv().unwrap();

    let out = run_ok(&["--netns", &path]);
    assert_eq!(
        parse_metrics(&out),
        vec![(tags(&[("netns", &name)]), fields(&expected))]
    );
    // The proc source finds a process inside to read /proc/PID/net from.
    assert_eq!(run_ok(&["--netns", &path, "--source", "proc"]), out);
    let fake = FakeProc::new();
    fake.add(pid, pid);
    let out = succeeded(&mut command_seeing_named(&[
        "--all-netns",
        "--proc-root",
        fake.root(),
    ]));
    let out = String::from_utf8(out).unwrap();
    let ours: Vec<Parsed> = parse_metrics(&out)
        .into_iter()
        .filter(|(t, _)| {
            t.iter()
                .any(|(_, v)| *v == name || *v == format!("pid:{pid}"))
        })
        .collect();
    assert_eq!(
        ours,
        vec![(tags(&[("netns", &name)]), fields(&expected))],
        "{out}"
    );

    drop(stop_tx);
    holder.join().unwrap();
    drop(named);
}

/// A named namespace whose name looks like a tag this program makes up
/// (`pid:N` of an unnamed namespace, `host`) can never produce the same tag
/// set as that namespace: it is tagged `name:NAME`.
fn names_never_pass_for_synthetic_tags() {
    let a = Netns::new(|| established(1, 0), 1);
    let b = Netns::new(|| time_wait(1), 1);
    let fake = FakeProc::new();
    fake.add(1, a.pids[0]);
    fake.add(b.pids[0], b.pids[0]);
    let fake_b = format!("pid:{}", b.pids[0]);
    let mut named = Vec::new();
    // `a` and `a\`: influx cannot end a tag with a backslash, and the name
    // must not lose it and meet the other.
    let plain = format!("tn-a-{}", std::process::id());
    let trailing = format!("{plain}\\");
    for name in [fake_b.clone(), "host".to_string(), plain.clone(), trailing] {
        if std::path::Path::new("/run/netns").join(&name).exists() {
            panic!("/run/netns/{name} exists on this machine");
        }
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
        named.push(Named(name));
    }
    let out = command_seeing_named(&["--all-netns", "--proc-root", fake.root()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = parse_metrics(&String::from_utf8(out.stdout).unwrap());
    let tags_seen: Vec<&str> = got.iter().map(|(t, _)| t[0].1.as_str()).collect();
    let mut unique = tags_seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        tags_seen.len(),
        "duplicate tags: {tags_seen:?}"
    );
    let find = |tag: &str| {
        got.iter()
            .find(|(t, _)| t[0].1 == tag)
            .map(|(_, f)| f.clone())
    };
    assert_eq!(find("host"), Some(fields(&a.expected)));
    assert_eq!(find(&fake_b), Some(fields(&b.expected)));
    let empty = Some(fields(&Counts::default()));
    assert_eq!(find(&format!("name:{fake_b}")), empty);
    assert_eq!(find("name:host"), empty);
    assert_eq!(find(&plain), empty);
    assert_eq!(find(&format!("{plain}\\x5c")), empty);
    drop(named);
}

/// The namespace the program runs in is tagged `self` when it is not PID
/// 1's, also when PID 1 cannot be looked at (an unprivileged `telegraf`
/// user): the same tag at every run, not `pid:<some PID>`.
fn the_own_namespace_is_tagged_self() {
    in_netns(|| {
        let p = established(1, 1);
        settle(&p.expected);
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        let other = Netns::new(|| time_wait(2), 1);
        let fake = FakeProc::new();
        fake.add(sleeper.id(), sleeper.id());
        fake.add(other.pids[0], other.pids[0]);
        let out = run_ok(&["--all-netns", "--proc-root", fake.root()]);
        assert_eq!(
            parse_metrics(&out),
            vec![
                (tags(&[("netns", "self")]), fields(&p.expected)),
                (tags(&[("netns", &other.tag())]), fields(&other.expected)),
            ]
        );
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    })
}

/// A proc root where no process can be looked at (an empty or foreign
/// HOST_PROC) finds no unnamed namespace, not even this program's own: an
/// error (`E! `), not an empty success; with nothing counted at all, exit 1.
fn an_empty_proc_root_is_said() {
    let fake = FakeProc::new();
    let out = run(&["--all-netns", "--proc-root", fake.root()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "E! found no process under {} whose network namespace can be looked at: \
             only the namespaces named in /run/netns are counted\n",
            fake.root()
        )
    );
}

/// With `--source proc`, a named namespace that no process runs in cannot be
/// read (/proc/PID/net needs a process): an error and exit 3, not a silent
/// drop; the namespaces that can be read are printed.
fn proc_source_says_which_named_namespace_it_cannot_read() {
    let name = format!("telegraf-netstat-empty-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(ok.is_ok_and(|s| s.success()));
    let named = Named(name.clone());
    let a = Netns::new(|| established(1, 0), 1);
    let fake = FakeProc::new();
    fake.add(1, a.pids[0]);
    let out = command_seeing_named(&[
        "--all-netns",
        "--source",
        "proc",
        "--proc-root",
        fake.root(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "E! gather failed in network namespace {name}: no process runs in network namespace /run/netns/{name}"
        )),
        "{stderr}"
    );
    let got = parse_metrics(&String::from_utf8(out.stdout).unwrap());
    assert!(got.contains(&(tags(&[("netns", "host")]), fields(&a.expected))));
    drop(named);
}

/// More namespaces than the soft descriptor limit allows sockets: the
/// program raises its soft limit to the hard one and counts them all.
fn more_namespaces_than_the_soft_fd_limit() {
    let spaces: Vec<Netns> = (0..24)
        .map(|_| Netns::new(Population::default, 1))
        .collect();
    let mut args: Vec<String> = Vec::new();
    for n in &spaces {
        args.push("--netns".into());
        args.push(n.path());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args);
    with_fd_limit(&mut cmd, 16, 4096);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        parse_metrics(&String::from_utf8(out.stdout).unwrap()).len(),
        24
    );
}

/// Runs the binary in the calling thread's namespace without
/// CAP_SYS_ADMIN: dropped from the bounding set, so not even root's exec
/// gets it back.
fn run_without_cap_sys_admin(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("HOST_PROC");
    // SAFETY: prctl is async-signal-safe; nothing else runs after fork.
    unsafe {
        cmd.pre_exec(|| {
            // CAP_SYS_ADMIN, linux/capability.h
            const CAP_SYS_ADMIN: libc::c_ulong = 21;
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// Runs the binary as user `nobody` when the tests run as real root;
/// `None` inside a user namespace, where only root is mapped.
fn nobody_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("HOST_PROC").current_dir("/");
    if args.contains(&"--all-netns") {
        hide_named_namespaces(&mut cmd);
    }
    as_nobody(cmd)
}

/// `cmd` run as `nobody`.
fn as_nobody(mut cmd: Command) -> Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let nobody = 65534;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(nobody) != 0
                || libc::setuid(nobody) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The tests run as `nobody` need real root to become it (in a user
/// namespace of our own, `nobody` is not mapped).
fn can_become_nobody() -> Result<(), String> {
    match nobody_command(&["--version"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{BIN} --version as nobody: {}", out.status)),
        Err(e) => Err(format!("cannot become nobody (not real root): {e}")),
    }
}

fn run_as_nobody(args: &[&str]) -> Output {
    nobody_command(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN} as nobody: {e}"))
}

/// Namespace `a` cannot be counted by `run` while this thread's can: one
/// `E! ` line, `said(tag, path)`, the other namespace still printed, exit 3.
fn the_others_still_count(a: &Netns, run: fn(&[&str]) -> Output, said: fn(&str, &str) -> String) {
    let (a_path, a_tag) = (a.path(), a.tag());
    in_netns(move || {
        let p = established(2, 2);
        settle(&p.expected);
        let out = run(&["--netns", &a_path, "--netns", "/proc/self/ns/net"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert_eq!(stderr, said(&a_tag, &a_path));
        assert_eq!(
            parse_metrics(&String::from_utf8(out.stdout).unwrap()),
            vec![(tags(&[("netns", "/proc/self/ns/net")]), fields(&p.expected))]
        );
    });
}

/// Without CAP_SYS_ADMIN another namespace cannot be entered: one `E! `
/// line naming it and the capability, the other namespaces are still
/// printed, exit 3. When nothing can be counted: exit 1.
fn without_cap_sys_admin_the_others_still_count() {
    let a = Netns::new(|| established(1, 0), 1);
    the_others_still_count(&a, run_without_cap_sys_admin, |tag, path| {
        format!(
            "E! gather failed in network namespace {tag}: cannot enter network namespace \
             {path}: Operation not permitted (os error 1); joining another network \
             namespace needs CAP_SYS_ADMIN over it\n"
        )
    });
    let out = run_without_cap_sys_admin(&["--netns", &a.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let out = run(&["--netns", "/run/netns/telegraf-netstat-none"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "E! gather failed in network namespace telegraf-netstat-none: cannot open network \
         namespace /run/netns/telegraf-netstat-none: No such file or directory (os error 2)\n"
    );
    drop(a);
}

/// An unprivileged user cannot even open root's /proc/PID/ns/net: one `E! `
/// line naming the namespace and what it needs, the others printed, exit 3.
fn as_nobody_others_namespaces_cannot_be_opened() {
    let a = Netns::new(|| established(1, 0), 1);
    the_others_still_count(&a, run_as_nobody, |tag, path| {
        format!(
            "E! gather failed in network namespace {tag}: cannot open network namespace \
             {path}: Permission denied (os error 13); opening another process's \
             /proc/PID/ns/net needs ptrace access to it (CAP_SYS_PTRACE)\n"
        )
    });
    drop(a);
}

/// `--all-netns` without ptrace access to every process (here: as `nobody`,
/// who cannot look at root's processes, the host's PID 1 among them) says
/// how many processes it could not look at and the capability missing, and
/// exits 3: the namespaces only they are in are missing from the output.
fn all_netns_says_what_it_cannot_see() {
    // Hermetic: a proc root showing one process of root's in another
    // namespace (nobody cannot look at it) and one of nobody's in this
    // test's own, whatever else runs on the machine.
    let other = Netns::new(|| established(1, 0), 1);
    let other_pid = other.pids[0];
    in_netns(move || {
        let mut sleep = Command::new("sleep");
        sleep.arg("600");
        let mut mine = as_nobody(sleep).spawn().unwrap();
        let fake = FakeProc::new();
        fake.add(other_pid, other_pid);
        fake.add(mine.id(), mine.id());
        let args = ["--all-netns", "--proc-root", fake.root()];
        let out = run_as_nobody(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert_eq!(
            stderr,
            format!(
                "E! cannot look at the network namespace of 1 processes under {} \
                 (CAP_SYS_PTRACE is missing): namespaces that only they are in are not counted\n",
                fake.root()
            )
        );
        // What could be counted is still printed: our own namespace.
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("netns=self"),
            "{out:?}"
        );
        // The Prometheus self-metric says how many, as the E! line does.
        let mut a = args.to_vec();
        a.extend(["--format", "prometheus"]);
        let prom = run_as_nobody(&a);
        let text = String::from_utf8_lossy(&prom.stdout);
        assert!(
            text.contains("\nnetstat_scan_unreadable_processes 1\n"),
            "{text}"
        );
        let _ = mine.kill();
        let _ = mine.wait();
    });
    drop(other);
}

/// `--by-family` splits every field between IPv4 and IPv6; with `--netns`
/// both tags are there, sorted.
fn by_family_splits_ipv4_and_ipv6() {
    let build = || {
        let mut p = listeners(); // 3 IPv4, 2 IPv6
        p.merge(established(3, 2)); // each: a listener per family
        p.merge(udp()); // IPv4: 5, IPv6: 3
        p
    };
    let v4 = Counts {
        tcp_listen: 4,
        tcp_established: 6,
        udp_socket: 5,
        ..Counts::default()
    };
    let v6 = Counts {
        tcp_listen: 3,
        tcp_established: 4,
        udp_socket: 3,
        ..Counts::default()
    };
    in_netns(move || {
        let p = build();
        check(&p.expected);
        let want = vec![
            (tags(&[("family", "ipv4")]), fields(&v4)),
            (tags(&[("family", "ipv6")]), fields(&v6)),
        ];
        for source in ["netlink", "proc"] {
            let out = run_ok(&["--by-family", "--source", source]);
            assert_eq!(parse_metrics(&out), want, "--source {source}:\n{out}");
        }
    });
    let n = Netns::new(build, 1);
    let out = run_ok(&["--by-family", "--netns", &n.path()]);
    assert_eq!(
        parse_metrics(&out),
        vec![
            (
                tags(&[("family", "ipv4"), ("netns", &n.tag())]),
                fields(&v4)
            ),
            (
                tags(&[("family", "ipv6"), ("netns", &n.tag())]),
                fields(&v6)
            ),
        ]
    );
}

/// Unix sockets the way `ss -x` counts them, by netid.
fn ss_unix() -> (u64, u64, u64) {
    let out = Command::new("ss")
        .args(["-H", "-x", "-a", "-n"])
        .output()
        .unwrap();
    let (mut stream, mut dgram, mut seq) = (0, 0, 0);
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        match line.split_whitespace().next() {
            Some("u_str") => stream += 1,
            Some("u_dgr") => dgram += 1,
            Some("u_seq") => seq += 1,
            other => panic!("unexpected ss -x netid {other:?} in {line:?}"),
        }
    }
    (stream, dgram, seq)
}

/// `--include-unix`: datagram sockets in `udp_socket`, stream and seqpacket
/// sockets in `tcp_none`, each socket once; netlink and /proc/net/unix agree.
fn include_unix_counts_unix_sockets() {
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
    in_netns(|| {
        let scratch = Scratch::new("unix");
        let dir = &scratch.0;
        let mut p = udp();
        // Stream: a listener, a connected pair through it, a socketpair: 5.
        let l = UnixListener::bind(dir.join("s.sock")).unwrap();
        let client = UnixStream::connect(dir.join("s.sock")).unwrap();
        let (server, _) = l.accept().unwrap();
        p.keep((l, client, server, UnixStream::pair().unwrap()));
        // Datagram: a bound one, an unbound one, a socketpair: 4.
        p.keep(UnixDatagram::bind(dir.join("d.sock")).unwrap());
        p.keep(UnixDatagram::unbound().unwrap());
        p.keep(UnixDatagram::pair().unwrap());
        // Seqpacket: a socketpair: 2.
        p.keep(
            rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .unwrap(),
        );
        assert_eq!(ss_unix(), (5, 4, 2));
        let plain = p.expected;
        let mut with_unix = plain;
        with_unix.tcp_none = 5 + 2;
        with_unix.udp_socket += 4;

        let netlink = run_ok(&["--include-unix", "--source", "netlink"]);
        assert_eq!(parse_line(&netlink), fields(&with_unix), "{netlink}");
        assert_eq!(run_ok(&["--include-unix", "--source", "proc"]), netlink);
        assert_eq!(run_ok(&["--include-unix"]), netlink);
        // Without the option, unix sockets are not counted.
        assert_eq!(parse_line(&run_ok(&[])), fields(&plain));
        // With --by-family they get their own metric.
        let m = parse_metrics(&run_ok(&["--include-unix", "--by-family"]));
        let unix = Counts {
            tcp_none: 7,
            udp_socket: 4,
            ..Counts::default()
        };
        assert_eq!(m.len(), 3);
        assert_eq!(m[2], (tags(&[("family", "unix")]), fields(&unix)));
        drop(p);
    })
}

/// Unix socket names are chosen by any local user and printed raw in
/// /proc/net/unix: names with newlines (one shaped like the start of a
/// record, one repeating another socket's whole record, abstract and on the
/// filesystem) neither fail the /proc source nor change its counts, which
/// equal netlink's and the sockets made.
fn unix_names_with_newlines_do_not_fool_the_proc_source() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
    in_netns(|| {
        let scratch = Scratch::new("unix-names");
        let mut p = Population::default();
        for name in [&b"\n"[..], b"evil\nname", b"x\n\n\ny", b"a\nb c d e f g"] {
            let addr = SocketAddr::from_abstract_name(name).unwrap();
            p.keep(UnixListener::bind_addr(&addr).unwrap());
        }
        p.keep(UnixDatagram::bind(scratch.0.join("new\nline")).unwrap());
        p.keep(UnixDatagram::bind(scratch.0.join("trailing\n")).unwrap());
        // A name that repeats the record of an existing socket (its inode).
        let victim = UnixDatagram::unbound().unwrap();
        let ino = {
            use std::os::unix::fs::MetadataExt;
            let fd = std::os::fd::AsFd::as_fd(&victim)
                .try_clone_to_owned()
                .unwrap();
            std::fs::File::from(fd).metadata().unwrap().ino()
        };
        let forged = format!("y\n0000000000000000: 00000002 00000000 00000000 0002 07 {ino:5}");
        let addr = SocketAddr::from_abstract_name(forged.as_bytes()).unwrap();
        p.keep(UnixListener::bind_addr(&addr).unwrap());
        p.keep(victim);
        // (`ss -x` prints these names raw too, so the expectation is ours.)
        let with_unix = Counts {
            tcp_none: 5,
            udp_socket: 3,
            ..Counts::default()
        };
        let netlink = run_ok(&["--include-unix", "--source", "netlink"]);
        assert_eq!(parse_line(&netlink), fields(&with_unix), "{netlink}");
        assert_eq!(run_ok(&["--include-unix", "--source", "proc"]), netlink);
        drop(p);
    })
}

/// SIGTERM in the middle of an `--all-netns` gather: the rest of the
/// namespaces are dropped and the program exits 0 at once instead of
/// finishing the gather: it prints nothing of it.
fn sigterm_between_namespaces_exits_at_once() {
    // 300 namespaces, and 10 000 TIME_WAIT entries elsewhere (no descriptors
    // held) that every one of their TCP dumps walks past in the host-wide
    // table: the first gather takes a few hundred ms.
    let busy = Netns::new(|| time_wait(10_000), 1);
    let spaces: Vec<Netns> = (0..300)
        .map(|_| Netns::new(Population::default, 1))
        .collect();
    let fake = FakeProc::new();
    for n in &spaces {
        fake.add(n.pids[0], n.pids[0]);
    }
    let mut plugin = Plugin::start(&["--execd", "--all-netns", "--proc-root", fake.root()]);
    // Two whole gathers first (the first also opens a socket per namespace):
    // the second's time is what an interrupted one would take.
    let mut gather = || {
        let start = std::time::Instant::now();
        plugin.tick("\n");
        let _first = plugin.line(Duration::from_secs(60));
        let took = start.elapsed();
        // The rest of the gather's lines come with the first.
        while plugin
            .stdout
            .recv_timeout(Duration::from_millis(300))
            .is_ok()
        {}
        took
    };
    gather();
    let whole = gather();
    // The claim needs a gather long enough to be cut in the middle.
    assert!(
        whole >= Duration::from_millis(40),
        "a gather takes only {whole:?}: too short to interrupt"
    );
    let start = std::time::Instant::now();
    plugin.tick("\n");
    std::thread::sleep(whole / 4);
    plugin.signal_kept_promise(rustix::process::Signal::TERM);
    let _ = start;
    // Cut off: the interrupted gather printed nothing (SIGTERM came a
    // quarter of the way into it).
    if let Ok((_, l)) = plugin.stdout.recv_timeout(Duration::from_millis(200)) {
        panic!("the interrupted gather printed {l:?} (a whole gather takes {whole:?})");
    }
    drop((spaces, busy));
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup();
    let tests = tests![
        as_nobody_others_namespaces_cannot_be_opened,
        all_netns_says_what_it_cannot_see,
        netns_paths_get_one_metric_each,
        all_netns_finds_every_namespace_once,
        execd_all_netns_follows_namespaces,
        without_cap_sys_admin_the_others_still_count,
        by_family_splits_ipv4_and_ipv6,
        include_unix_counts_unix_sockets,
        named_namespaces_are_tagged_by_name,
        names_never_pass_for_synthetic_tags,
        the_own_namespace_is_tagged_self,
        an_empty_proc_root_is_said,
        proc_source_says_which_named_namespace_it_cannot_read,
        more_namespaces_than_the_soft_fd_limit,
        unix_names_with_newlines_do_not_fool_the_proc_source,
        sigterm_between_namespaces_exits_at_once,
    ];
    let named_ok = setup.clone().and_then(|()| named_namespaces_available());
    let nobody_ok = setup.clone().and_then(|()| can_become_nobody());
    run_trials_needing(
        args,
        setup,
        named("namespaces", &tests),
        &[
            ("named_namespaces_are_tagged_by_name", named_ok.clone()),
            ("names_never_pass_for_synthetic_tags", named_ok.clone()),
            (
                "proc_source_says_which_named_namespace_it_cannot_read",
                named_ok,
            ),
            (
                "as_nobody_others_namespaces_cannot_be_opened",
                nobody_ok.clone(),
            ),
            ("all_netns_says_what_it_cannot_see", nobody_ok),
        ],
    );
}
