//! Servers the tests read our output with: a process on a loopback port
//! of the calling thread's namespace (`Server`), and InfluxDB 1.x
//! (`Influx`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, Scratch};

/// A server process on a loopback port of the calling thread's namespace,
/// killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (its stdout and stderr go to a log file in `scratch`) and
    /// waits up to 30 s until `GET ready` answers 2xx.
    pub fn start(mut cmd: Command, port: u16, ready: &str, scratch: &Scratch) -> Server {
        let log = scratch.0.join("server.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200..=299, _)) = server.try_http("GET", ready, "") {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{cmd:?} exited with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} not ready after 30 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.0 request; returns the status and the body.
    pub fn try_http(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other(format!("no header end: {response:?}")))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
        Ok((status, body.to_string()))
    }

    pub fn http(&self, method: &str, target: &str, body: &str) -> (u16, String) {
        self.try_http(method, target, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}\n{}", self.log()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a form or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// InfluxDB 1.x with a private config, data directory and loopback ports.
pub struct Influx {
    pub server: Server,
    _scratch: Scratch,
}

impl Influx {
    pub fn start() -> Influx {
        let scratch = Scratch::new("influxd");
        let (http, rpc) = (free_port(), free_port());
        let d = scratch.0.display();
        let config = format!(
            "reporting-disabled = true\n\
             bind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [subscriber]\n  enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n  pprof-enabled = false\n"
        );
        let path = scratch.0.join("influxdb.conf");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new("influxd");
        cmd.arg("-config").arg(&path);
        let server = Server::start(cmd, http, "/ping", &scratch);
        Influx {
            server,
            _scratch: scratch,
        }
    }

    /// Runs InfluxQL and returns the first statement's result.
    pub fn query(&self, q: &str) -> Value {
        let (status, body) = self
            .server
            .http("POST", "/query", &format!("q={}", encode(q)));
        assert_eq!(status, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let result = v["results"][0].clone();
        assert!(result.get("error").is_none(), "{q}: {body}");
        result
    }

    /// Writes line protocol; returns the status and the error text, if any.
    pub fn write(&self, db: &str, lines: &str) -> (u16, String) {
        self.server
            .http("POST", &format!("/write?db={}", encode(db)), lines)
    }
}
