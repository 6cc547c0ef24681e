//! Processes: limits and measurements (descriptors, resident memory), and
//! starting one in a cgroup.

use super::*;

/// Raises this test process's soft descriptor limit to its hard one, for
/// tests that hold thousands of sockets. Called from `main` before any test
/// thread starts: the limit is process-wide.
pub fn raise_fd_limit() {
    let mut l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    l.current = l.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, l);
}

/// Runs `cmd`, panicking with it and its stderr if it fails: its stdout.
pub fn succeeded(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A long-running `--execd` with `args` (one line per gather), after
/// `first` gathers and after `then` more: its RSS in KiB each time.
pub fn rss_over_gathers(args: &[&str], first: usize, then: usize) -> (u64, u64) {
    let mut a = vec!["--execd"];
    a.extend(args);
    let mut plugin = Plugin::start(&a);
    let mut gather = |n: usize| {
        for _ in 0..n {
            plugin.tick("\n");
            plugin.line(Duration::from_secs(5));
        }
        plugin.rss_kib()
    };
    let before = gather(first);
    (before, gather(then))
}

/// Makes `cmd` start with RLIMIT_NOFILE `soft`/`hard` (the binary raises its
/// soft limit to the hard one at start).
pub fn with_fd_limit(cmd: &mut Command, soft: u64, hard: u64) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Process `pid`'s resident memory, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many descriptors process `pid` holds.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Has `cmd`'s process move itself into cgroup `dir` (a cgroup v2
/// directory) before it starts: it writes 0 to `dir/cgroup.procs`.
pub fn start_in_cgroup(cmd: &mut Command, dir: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: only async-signal-safe calls (open, write, close) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
}

/// CPU seconds (user + system) process `pid` has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0] + f[1]) as f64 / 100.0
}

/// Cgroup directories made for the test (parents only if they did not
/// exist), removed afterwards, deepest first, once their processes are gone.
#[derive(Default)]
pub struct Cgroups {
    pub made: Vec<std::path::PathBuf>,
}

impl Cgroups {
    pub fn make(&mut self, path: &std::path::Path) {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_path_buf());
            p = p.parent().unwrap();
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).unwrap();
            self.made.push(dir);
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // Processes leave a cgroup a moment after they are reaped.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
