//! The exporter (`--listen`) under test.

use super::*;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Our `--listen` exporter on a free loopback port, verbose (a `D!` line per gather),
/// its stderr read by a thread (a full pipe would block it).
pub struct Exporter {
    pub child: Child,
    pub port: u16,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    pub fn start(extra: &[&str]) -> Exporter {
        Exporter::start_with(extra, |_| {})
    }

    pub fn start_with(
        extra: &[&str],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Exporter {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", &addr, "-v"];
        args.extend(extra);
        let mut cmd = command(&args);
        configure(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the exporter did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Exporter {
            child,
            port,
            stderr,
            reader: Some(reader),
        }
    }

    /// A connection to the exporter, its reads timing out after 5 s.
    pub fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    }

    /// One request; the whole answer (the server closes the connection),
    /// or what cut it short.
    pub fn try_request(&self, raw: &str) -> std::io::Result<String> {
        let mut s = self.connect()?;
        s.write_all(raw.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// One request; the whole answer. A failure says whether the exporter
    /// still runs and what it logged, so a rare one can be told apart.
    pub fn request(&self, raw: &str) -> String {
        self.try_request(raw).unwrap_or_else(|e| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
            let state = stat.map_or("gone".into(), |s| {
                let after = s.rsplit_once(") ").map_or("", |(_, r)| r);
                format!("state {}", after.split(' ').next().unwrap_or("?"))
            });
            let said = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("{raw:?}: {e}; the exporter: {state}; it said:\n{said}")
        })
    }

    /// Whether the exporter has accepted every connection made to it: its
    /// listener's accept queue is empty, as `ss` says.
    pub fn accepted_all(&self) -> bool {
        let out = Command::new("ss")
            .args(["-Hltn", "sport", "=", &format!(":{}", self.port)])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1) == Some("0")
    }

    /// Whether its stderr says `text`.
    pub fn said(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().contains(text)
    }

    pub fn get(&self, path: &str) -> String {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
    }

    /// SIGTERM, and the promise checked (exit 0 within [`PROMISE`] of its
    /// delivery); returns what the exporter said on stderr.
    pub fn stop(mut self) -> String {
        signal_kept_promise(&mut self.child, rustix::process::Signal::TERM);
        self.reader.take().unwrap().join().unwrap();
        let err = self.stderr.lock().unwrap().clone();
        err
    }
}
