//! Running the binary in the calling thread's namespace, with or without netlink.

use super::*;

/// The binary with `args`, to run in the calling thread's namespace. A run
/// with `--all-netns` gets a private mount namespace with an empty tmpfs on
/// /run/netns, so the machine's own named namespaces (which an unprivileged
/// run could not enter) never leak into a test; `command_seeing_named`
/// keeps them.
pub fn command(args: &[&str]) -> Command {
    let mut c = command_seeing_named(args);
    if args.contains(&"--all-netns") {
        hide_named_namespaces(&mut c);
    }
    c
}

/// Runs `c` in a private mount namespace with an empty tmpfs on /run/netns
/// (needs root: register it before a `pre_exec` that drops privileges).
pub fn hide_named_namespaces(c: &mut Command) {
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                let fail = |what: &str| {
                    let e = std::io::Error::last_os_error();
                    std::io::Error::new(e.kind(), format!("{what}: {e}"))
                };
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(fail("unshare(CLONE_NEWNS)"));
                }
                let none = c"none".as_ptr();
                if libc::mount(
                    none,
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(fail("making / private"));
                }
                let dir = c"/run/netns".as_ptr();
                if libc::access(dir, libc::F_OK) == 0
                    && libc::mount(
                        c"tmpfs".as_ptr(),
                        dir,
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(fail("hiding /run/netns"));
                }
                Ok(())
            });
        }
    }
}

/// `command` without hiding the machine's named namespaces.
pub fn command_seeing_named(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("HOST_PROC");
    c
}

/// Runs the binary with `args` in the calling thread's namespace.
pub fn run(args: &[&str]) -> Output {
    command(args).output().expect("cannot run telegraf-netstat")
}

/// Polls `cond` every 10 ms until it holds; panics after `within`.
pub fn poll_until(within: Duration, cond: impl FnMut() -> bool) {
    assert!(
        wait_for(within, cond),
        "condition not met within {within:?}"
    );
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Every format and naming.
pub const FORMATS: [&[&str]; 4] = [
    &["--format", "influx"],
    &["--format", "json"],
    &["--format", "prometheus"],
    &["--format", "prometheus", "--prometheus-names", "native"],
];

/// Runs the binary and expects success with one line and a quiet stderr.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{args:?} wrote to stderr:\n{stderr}");
    String::from_utf8(out.stdout).expect("output is not UTF-8")
}

/// Makes the command's `socket(AF_NETLINK, ...)` fail with EPERM through a
/// seccomp filter, as container runtimes and sandboxes do.
pub fn block_netlink(cmd: &mut Command) -> &mut Command {
    refuse_syscall(cmd, libc::SYS_socket, 0, libc::AF_NETLINK as u32)
}

/// Makes the command's system call `nr` fail with EPERM when argument `arg`
/// (its low 32 bits) is `value`, through a seccomp filter, as container
/// runtimes and sandboxes do.
pub fn refuse_syscall(cmd: &mut Command, nr: libc::c_long, arg: u32, value: u32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    // struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }
    let low = 16 + 8 * arg + if cfg!(target_endian = "little") { 0 } else { 4 };
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let filter = [
        stmt(LD_W_ABS, 0),
        jump(JEQ_K, nr as u32, 0, 3),
        stmt(LD_W_ABS, low),
        jump(JEQ_K, value, 0, 1),
        stmt(RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(RET_K, SECCOMP_RET_ALLOW),
    ];
    // SAFETY: only prctl between fork and exec; the filter outlives the call.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs the binary with netlink blocked.
pub fn run_blocked(args: &[&str]) -> Output {
    block_netlink(Command::new(BIN).args(args).env_remove("HOST_PROC"))
        .output()
        .expect("cannot run telegraf-netstat")
}
