//! The binary as a long-running plugin (execd, interval): its lines, signals and promises.

use super::*;

/// The binary running as a long-lived plugin, driven the way Telegraf's
/// execd input drives it: lines written to stdin, output lines read with a
/// deadline.
pub struct Plugin {
    pub child: std::process::Child,
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: std::sync::mpsc::Receiver<(Instant, String)>,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

fn lines_of<R: Read + Send + 'static>(r: R) -> std::sync::mpsc::Receiver<(Instant, String)> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line + "\n")).is_err() {
                return;
            }
        }
    });
    rx
}

impl Plugin {
    pub fn start(args: &[&str]) -> Plugin {
        Plugin::spawn(command(args))
    }

    /// `start` of a command made by the caller (its environment set).
    pub fn spawn(mut cmd: std::process::Command) -> Plugin {
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start telegraf-netstat");
        let stdout = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        let (tx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (_, l) in err {
                let _ = tx.send(l);
            }
        });
        Plugin {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// What Telegraf's `signal = "STDIN"` does each interval.
    pub fn tick(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin closed");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    pub fn line(&self, within: Duration) -> String {
        self.stdout
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no output line within {within:?}: {e}"))
            .1
    }

    pub fn no_line(&self, within: Duration) {
        if let Ok((_, l)) = self.stdout.recv_timeout(within) {
            panic!("unexpected output: {l}");
        }
    }

    /// Waits for exit; panics if it takes longer than `within`.
    pub fn exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Sends `signal` and checks the promise: exit 0 within [`PROMISE`] of
    /// its delivery (see [`signal_kept_promise`]).
    pub fn signal_kept_promise(&mut self, signal: rustix::process::Signal) {
        signal_kept_promise(&mut self.child, signal);
    }

    /// Closes stdin and checks the promise: exit 0 within [`PROMISE`] of
    /// the EOF, plus [`LOADED_MARGIN`].
    pub fn eof_kept_promise(&mut self) {
        drop(self.stdin.take());
        let status = wait_at_most(&mut self.child, PROMISE + LOADED_MARGIN);
        assert_eq!(status.code(), Some(0), "after stdin EOF");
    }
}

/// The long-running modes exit within this long of SIGTERM, SIGINT or
/// stdin EOF, in every state.
pub const PROMISE: Duration = Duration::from_millis(100);

/// What a loaded 2-core machine (a build and other tests on both cores)
/// adds between a process's decision to exit and the test seeing the exit:
/// the exiting process and the test thread each wait for a core. Chosen
/// as one and a half promises; the suite has passed with it while four
/// builds and test runs shared the two cores.
pub const LOADED_MARGIN: Duration = Duration::from_millis(150);

/// Waits for `child` to exit; panics (killing it) after `within`.
pub fn wait_at_most(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `signal` is pending for the whole process `pid` (`ShdPnd` in
/// /proc/PID/status): a signal sent with kill(2) stays there until a thread
/// takes it, which happens only when that thread returns from the kernel
/// (a sock_diag dump runs inside one `recvmsg`, which a signal does not cut).
fn pending(pid: u32, signal: rustix::process::Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (signal.as_raw() - 1)) != 0
}

/// Sends `signal` to `child` and checks that it exits 0 within [`PROMISE`]
/// of the signal's *delivery* (when it stopped being pending), plus
/// [`LOADED_MARGIN`]; the delivery itself must come within 10 s.
pub fn signal_kept_promise(child: &mut std::process::Child, signal: rustix::process::Signal) {
    let sent = Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
    let mut delivered = None;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let at = delivered.unwrap_or_else(Instant::now);
            let took = at.elapsed();
            assert_eq!(s.code(), Some(0), "after {signal:?}");
            assert!(
                took < PROMISE + LOADED_MARGIN,
                "exited {took:?} after {signal:?} was delivered ({:?} after it was sent)",
                sent.elapsed()
            );
            return;
        }
        if delivered.is_none() && !pending(child.id(), signal) {
            delivered = Some(Instant::now());
        }
        let limit = match delivered {
            Some(at) => at + PROMISE + LOADED_MARGIN,
            None => sent + Duration::from_secs(10),
        };
        if Instant::now() > limit {
            let _ = child.kill();
            panic!(
                "{signal:?} sent {:?} ago, delivered {:?} ago, no exit",
                sent.elapsed(),
                delivered.map(|d| d.elapsed())
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with a stdout whose reader is already gone (EPIPE) and
/// expects it to exit 0 without a word on stderr.
pub fn expect_quiet_exit_on_closed_stdout(args: &[&str]) {
    let (read, write) = rustix::pipe::pipe().unwrap();
    drop(read);
    let out = Command::new(BIN)
        .args(args)
        .env_remove("HOST_PROC")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("cannot run telegraf-netstat");
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    assert!(
        out.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
