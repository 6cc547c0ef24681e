//! Our output read by the real programs that consume it: InfluxDB 1.x,
//! `promtool` and node_exporter's textfile collector.
//!
//! Each server runs on loopback inside the test's private network namespace
//! and is killed afterwards. It is started only after the population has been
//! counted: its own sockets would change the counts.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use serde_json::Value;
use support::servers::{encode, Influx, Server};
use support::*;

/// The programs these tests need, with their Debian packages.
const TOOLS: [(&str, &str); 3] = [
    ("influxd", "influxdb"),
    ("promtool", "prometheus"),
    ("prometheus-node-exporter", "prometheus-node-exporter"),
];

/// A child process killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Our `--listen` exporter on a free loopback port of the calling thread's
/// namespace, with `args`; killed when dropped, so a failed assertion leaves
/// no exporter behind.
fn exporter(args: &[&str]) -> (Reaped, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = command(&[&["--listen", listen.as_str()][..], args].concat())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Reaped(child), port)
}

/// A Prometheus server scraping and evaluating every second, one job per
/// (name, port) on loopback, its configuration and data in `scratch`.
fn prometheus_scraping(jobs: &[(&str, u16)], scratch: &Scratch) -> Server {
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for (job, port) in jobs {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    prometheus_with(&config, scratch)
}

/// A Prometheus server with configuration `config`, its data in `scratch`.
fn prometheus_with(config: &str, scratch: &Scratch) -> Server {
    let path = scratch.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            scratch.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Server::start(cmd, port, "/-/ready", scratch)
}

/// The result vector of an instant query.
fn query(server: &Server, q: &str) -> Vec<Value> {
    let (status, body) = server.http("GET", &format!("/api/v1/query?query={}", encode(q)), "");
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Rows of a query result's only series, as (column name, value) maps.
fn rows(result: &Value) -> Vec<Vec<(String, Value)>> {
    let series = &result["series"];
    assert_eq!(series.as_array().map(Vec::len), Some(1), "{result}");
    let columns: Vec<String> = series[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            columns
                .iter()
                .cloned()
                .zip(row.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

/// Our line goes into InfluxDB as 13 integer fields with the namespace's
/// exact counts; into a database that the built-in plugin's integers created,
/// our points are accepted while the seed script's floats are refused.
fn influxdb_stores_our_fields_as_integers() {
    in_netns(|| {
        let p = everything();
        check(&p.expected);
        let ours = run_ok(&[]);
        let want = fields(&p.expected);
        let influx = Influx::start();

        influx.query("CREATE DATABASE ours");
        assert_eq!(influx.write("ours", &ours), (204, String::new()));
        let keys: Vec<(String, String)> =
            rows(&influx.query("SHOW FIELD KEYS ON ours FROM netstat"))
                .into_iter()
                .map(|row| {
                    let get = |k: &str| {
                        let (_, v) = row.iter().find(|(c, _)| c == k).unwrap();
                        v.as_str().unwrap().to_string()
                    };
                    (get("fieldKey"), get("fieldType"))
                })
                .collect();
        let expected_keys: Vec<(String, String)> = want
            .iter()
            .map(|(k, _)| (k.clone(), "integer".to_string()))
            .collect();
        assert_eq!(keys, expected_keys);

        let stored = rows(&influx.query("SELECT * FROM ours.autogen.netstat"));
        assert_eq!(stored.len(), 1, "{stored:?}");
        let mut got: Vec<(String, u64)> = stored[0]
            .iter()
            .filter(|(c, _)| c != "time")
            .map(|(c, v)| (c.clone(), v.as_u64().unwrap_or_else(|| panic!("{c}: {v}"))))
            .collect();
        got.sort();
        assert_eq!(got, want);

        // A database whose fields the built-in plugin created: integers, with
        // Telegraf's global `host` tag.
        influx.query("CREATE DATABASE migrated");
        let builtin: Vec<String> = want.iter().map(|(k, _)| format!("{k}=0i")).collect();
        let line = format!(
            "netstat,host=web1 {} 1700000000000000000\n",
            builtin.join(",")
        );
        assert_eq!(influx.write("migrated", &line), (204, String::new()));
        let ours_tagged = ours.replacen("netstat ", "netstat,host=web1 ", 1);
        assert_eq!(influx.write("migrated", &ours_tagged), (204, String::new()));
        // The seed script's style: one bare number (a float) per line.
        let (status, error) = influx.write("migrated", "netstat,host=web1 tcp_established=2\n");
        assert_eq!(status, 400, "{error}");
        assert!(error.contains("field type conflict"), "{error}");
        let n = rows(&influx.query("SELECT count(tcp_established) FROM migrated.autogen.netstat"));
        assert_eq!(n[0][1].1, 2, "{n:?}");
    })
}

/// promtool with `args`, run in `dir`: whether it succeeded, and what it said
/// on stdout and stderr.
fn promtool_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// promtool finds nothing to say about our exposition; it does complain
/// about a broken one, so its silence means something.
fn promtool_accepts_our_exposition() {
    in_netns(|| {
        let p = everything();
        check(&p.expected);
        let ours = run_ok(&["--format", "prometheus"]);
        assert_eq!(promtool(&ours), (true, String::new()));
        // With labels: one family per field, a sample per label set.
        let labelled = run_ok(&[
            "--format",
            "prometheus",
            "--by-family",
            "--include-unix",
            "--netns",
            "/proc/self/ns/net",
        ]);
        assert!(
            labelled.contains("netstat_tcp_listen{family=\"ipv6\",netns=\"/proc/self/ns/net\"} "),
            "{labelled}"
        );
        assert_eq!(promtool(&labelled), (true, String::new()));
        // Native names, every measurement, no lint either.
        let native = run_ok(&[
            "--format",
            "prometheus",
            "--prometheus-names",
            "native",
            "--by-family",
            "--listening-ports",
            "--listen-queues",
            "--counters=all",
            "--netns",
            "/proc/self/ns/net",
        ]);
        assert!(
            native.contains("\n# TYPE netstat_listen_drops_total counter\n")
                && native.contains("netstat_tcp_connections{family=\"ipv4\",netns=\"/proc/self/ns/net\",state=\"listen\"} "),
            "{native}"
        );
        assert_eq!(promtool(&native), (true, String::new()));

        let broken = ours.replacen(
            "# TYPE netstat_tcp_close gauge",
            "# TYPE netstat_tcp_close nonsense",
            1,
        );
        let (ok, said) = promtool(&broken);
        assert!(!ok && !said.is_empty(), "promtool accepted:\n{broken}");
    })
}

/// A real Prometheus server scraping our `--listen` exporter every second:
/// `up` is 1 and `netstat_tcp_established` is the known count of the
/// namespace the exporter counts; with `--all-netns`, one series per
/// namespace.
fn prometheus_scrapes_the_exporter() {
    let a = Netns::new(|| established(3, 2), 1);
    let b = Netns::new(|| established(1, 0), 1);
    in_netns(move || {
        let scratch = Scratch::new("prometheus");
        // Besides namespace a, a path that is none: its success gauge is 0.
        let (one, ours) = exporter(&[
            "--netns",
            &a.path(),
            "--netns",
            "/nonexistent/telegraf-netstat",
        ]);
        // --all-netns over a proc root holding just the two namespaces.
        let root = scratch.0.join("proc");
        std::fs::create_dir(&root).unwrap();
        for pid in [a.pids[0], b.pids[0]] {
            std::os::unix::fs::symlink(format!("/proc/{pid}"), root.join(pid.to_string())).unwrap();
        }
        let (both, all) = exporter(&["--all-netns", "--proc-root", root.to_str().unwrap()]);
        // Namespace b again, with native names.
        let (natively, native) = exporter(&["--prometheus-names", "native", "--netns", &b.path()]);
        let server =
            prometheus_scraping(&[("one", ours), ("all", all), ("native", native)], &scratch);
        let query = |q: &str| query(&server, q);
        let value = |r: &Value| r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
        // The populations are what `ss` sees in their namespaces.
        for ns in [&a, &b] {
            assert_eq!(ss_counts_where(Some(&ns.path()), &[]), ns.expected);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up: Vec<f64> = query("up").iter().map(value).collect();
            let est = query("netstat_tcp_established{job=\"one\"}");
            let series = query("netstat_tcp_established{job=\"all\"}");
            let success = query("netstat_gather_success{job=\"one\"}");
            let states = query("netstat_tcp_connections{job=\"native\"}");
            if up == [1.0, 1.0, 1.0]
                && est.len() == 1
                && series.len() == 2
                && success.len() == 2
                && states.len() == 11
            {
                let established: Vec<f64> = states
                    .iter()
                    .filter(|r| r["metric"]["state"] == "established")
                    .map(value)
                    .collect();
                assert_eq!(established, [b.expected.tcp_established as f64]);
                let mut by_ns: Vec<(String, f64)> = success
                    .iter()
                    .map(|r| (r["metric"]["netns"].as_str().unwrap().to_string(), value(r)))
                    .collect();
                by_ns.sort_by(|x, y| x.0.cmp(&y.0));
                let mut want = vec![
                    (a.tag(), 1.0),
                    ("/nonexistent/telegraf-netstat".to_string(), 0.0),
                ];
                want.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(by_ns, want);
                assert_eq!(value(&est[0]), a.expected.tcp_established as f64);
                let mut by_ns: Vec<(String, f64)> = series
                    .iter()
                    .map(|r| (r["metric"]["netns"].as_str().unwrap().to_string(), value(r)))
                    .collect();
                by_ns.sort_by(|x, y| x.0.cmp(&y.0));
                let mut want = vec![
                    (a.tag(), a.expected.tcp_established as f64),
                    (b.tag(), b.expected.tcp_established as f64),
                ];
                want.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(by_ns, want);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "up={up:?} est={est:?} series={series:?}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        drop((one, both, natively));
        drop((a, b));
    });
}

/// A real Prometheus server scrapes the exporter over HTTPS, checking its
/// certificate against the test's CA (`tls_config.ca_file`) and sending
/// basic-auth credentials: `up` is 1 and the counts are the namespace's.
/// A second job with a wrong password is refused (`up` 0, 401 in its
/// scrape error).
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let a = Netns::new(|| established(2, 1), 1);
    in_netns(move || {
        let scratch = Scratch::new("prometheus-tls");
        let ca = make_ca(&scratch, "ca");
        let server_cert = make_leaf(&scratch, &ca, "server");
        let web = scratch.join("web.yml");
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {}\n",
                bcrypt_hash("s3cret", 10)
            ),
        )
        .unwrap();
        let (_ours, port) = exporter(&[
            "--netns",
            &a.path(),
            "--web.config.file",
            web.to_str().unwrap(),
        ]);
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, password) in [("tls", "s3cret"), ("wrong", "guess")] {
            config.push_str(&format!(
                "  - job_name: {job}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['localhost:{port}']\n",
                ca.cert.display()
            ));
        }
        drop(server_cert);
        let server = prometheus_with(&config, &scratch);
        let value = |r: &Value| r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = query(&server, "up{job=\"tls\"}");
            let wrong = query(&server, "up{job=\"wrong\"}");
            let est = query(&server, "netstat_tcp_established{job=\"tls\"}");
            if up.len() == 1 && value(&up[0]) == 1.0 && est.len() == 1 && wrong.len() == 1 {
                assert_eq!(value(&est[0]), a.expected.tcp_established as f64);
                assert_eq!(value(&wrong[0]), 0.0);
                let (status, targets) = server.http("GET", "/api/v1/targets", "");
                assert_eq!(status, 200);
                assert!(targets.contains("401 Unauthorized"), "{targets}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "up={up:?} est={est:?} wrong={wrong:?}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(a);
    });
}

/// `netstat_port` and `netstat_listen`: InfluxDB stores their fields as
/// integers with their tags and the exact counts; promtool accepts the
/// Prometheus output with all three measurements (the drop counter typed
/// counter).
fn port_metrics_reach_influxdb_and_promtool() {
    in_netns(|| {
        let p = established(2, 1);
        check(&p.expected);
        let ours = run_ok(&["--listening-ports", "--remote-port", "9", "--listen-queues"]);
        let influx = Influx::start();
        influx.query("CREATE DATABASE ports");
        assert_eq!(influx.write("ports", &ours), (204, String::new()));
        let keys = rows(&influx.query("SHOW FIELD KEYS ON ports FROM netstat_port"));
        assert_eq!(keys.len(), 13);
        for row in &keys {
            assert_eq!(row[1].1, "integer", "{row:?}");
        }
        let listen_keys = rows(&influx.query("SHOW FIELD KEYS ON ports FROM netstat_listen"));
        let listen_keys: Vec<(String, String)> = listen_keys
            .iter()
            .map(|r| {
                (
                    r[0].1.as_str().unwrap().into(),
                    r[1].1.as_str().unwrap().into(),
                )
            })
            .collect();
        let integer = |k: &str| (k.to_string(), "integer".to_string());
        assert_eq!(
            listen_keys,
            ["backlog", "drops", "queue", "sockets", "syn_recv"].map(integer)
        );
        let tag_keys = rows(&influx.query("SHOW TAG KEYS ON ports FROM netstat_port"));
        let tag_keys: Vec<&str> = tag_keys.iter().map(|r| r[0].1.as_str().unwrap()).collect();
        assert_eq!(tag_keys, ["direction", "port"]);
        // The listeners' ports: both listeners and the three server ends.
        let stored = rows(&influx.query(
            "SELECT sum(tcp_listen), sum(tcp_established) FROM ports.autogen.netstat_port WHERE direction = 'local'",
        ));
        assert_eq!(
            (&stored[0][1].1, &stored[0][2].1),
            (&2.into(), &3.into()),
            "{stored:?}"
        );
        let remote = rows(&influx.query(
            "SELECT tcp_established FROM ports.autogen.netstat_port WHERE direction = 'remote' AND port = '9'",
        ));
        assert_eq!(remote[0][1].1, 0, "{remote:?}");
        let prom = run_ok(&[
            "--format",
            "prometheus",
            "--listening-ports",
            "--remote-port",
            "9",
            "--by-family",
            "--listen-queues",
        ]);
        assert!(
            prom.contains("# TYPE netstat_listen_drops_total counter"),
            "{prom}"
        );
        assert!(
            prom.contains("# TYPE netstat_port_tcp_established gauge"),
            "{prom}"
        );
        assert!(
            prom.contains(
                "netstat_port_tcp_established{direction=\"remote\",family=\"ipv4\",port=\"9\"} 0"
            ),
            "{prom}"
        );
        assert_eq!(promtool(&prom), (true, String::new()));
    })
}

/// `netstat_ephemeral` and `netstat_destination`: InfluxDB stores the counts
/// as integers and `utilization` as a float, with their tags; promtool
/// accepts both Prometheus namings.
fn destination_metrics_reach_influxdb_and_promtool() {
    in_netns(|| {
        // InfluxDB first: its own ports come from the default range.
        let influx = Influx::start();
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40009").unwrap();
        let p = established(3, 1);
        // Every output before talking to InfluxDB, whose connections would
        // be outbound too.
        let args = ["--ephemeral-ports", "--destinations", "1"];
        let ours = run_ok(&args);
        let prom = ["telegraf", "native"].map(|names| {
            let mut a = vec!["--format", "prometheus", "--prometheus-names", names];
            a.extend(args);
            (names, run_ok(&a))
        });
        influx.query("CREATE DATABASE out");
        assert_eq!(influx.write("out", &ours), (204, String::new()));
        let types = |m: &str| -> Vec<(String, String)> {
            rows(&influx.query(&format!("SHOW FIELD KEYS ON out FROM {m}")))
                .iter()
                .map(|r| {
                    (
                        r[0].1.as_str().unwrap().into(),
                        r[1].1.as_str().unwrap().into(),
                    )
                })
                .collect()
        };
        let eph = types("netstat_ephemeral");
        let of = |k: &str, t: &str| (k.to_string(), t.to_string());
        assert_eq!(
            eph,
            [
                of("destinations", "integer"),
                of("max_per_destination", "integer"),
                of("ports_used", "integer"),
                of("range_size", "integer"),
                of("utilization", "float"),
            ]
        );
        let dest = types("netstat_destination");
        assert_eq!(dest.len(), 14);
        assert_eq!(dest[13], of("utilization", "float"));
        // Three IPv4 clients to one listener, each from its own port of the
        // ten: 0.3; the IPv6 one is in the other row.
        let stored = rows(&influx.query(
            "SELECT utilization, tcp_established FROM out.autogen.netstat_destination WHERE address = '127.0.0.1'",
        ));
        assert_eq!(
            (&stored[0][1].1, &stored[0][2].1),
            (&0.3.into(), &3.into()),
            "{stored:?}"
        );
        let other = rows(&influx.query(
            "SELECT tcp_established FROM out.autogen.netstat_destination WHERE port = 'other'",
        ));
        assert_eq!(other[0][1].1, 1, "{other:?}");
        drop(p);
        for (names, prom) in prom {
            assert_eq!(promtool(&prom), (true, String::new()), "{names}");
            let line = if names == "native" {
                "netstat_ephemeral_utilization_ratio 0.3\n"
            } else {
                "netstat_ephemeral_utilization 0.3\n"
            };
            assert!(prom.contains(line), "{prom}");
        }
    })
}

/// node_exporter's textfile collector, pointed at our `--output` directory,
/// serves our values when scraped.
fn node_exporter_serves_our_textfile() {
    in_netns(|| {
        let p = everything();
        check(&p.expected);
        let scratch = Scratch::new("node-exporter");
        let textfiles = scratch.0.join("textfile");
        std::fs::create_dir(&textfiles).unwrap();
        let prom = textfiles.join("netstat.prom");
        let out = run(&[
            "--format",
            "prometheus",
            "--counters",
            "--output",
            prom.to_str().unwrap(),
        ]);
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{out:?}"
        );

        let port = free_port();
        let mut cmd = Command::new("prometheus-node-exporter");
        cmd.args([
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", textfiles.display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ]);
        let server = Server::start(cmd, port, "/metrics", &scratch);
        let (status, scrape) = server.http("GET", "/metrics", "");
        assert_eq!(status, 200);

        assert_eq!(
            sample(&scrape, "node_textfile_scrape_error"),
            Some(0.0),
            "{scrape}"
        );
        let got: Vec<(String, u64)> = fields(&p.expected)
            .into_iter()
            .map(|(k, _)| {
                let v = sample(&scrape, &format!("netstat_{k}"))
                    .unwrap_or_else(|| panic!("netstat_{k} not served:\n{scrape}"));
                (k, v as u64)
            })
            .collect();
        assert_eq!(got, fields(&p.expected));
        assert!(
            scrape.contains("# TYPE netstat_tcp_established gauge")
                && scrape.contains("# TYPE netstat_counters_TcpAttemptFails_total counter"),
            "{scrape}"
        );
    })
}

/// Refused connects in a namespace of our own, refused again and again.
fn refuse_connects_until(stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError::Timeout;
    while let Err(Timeout) = stop.recv_timeout(Duration::from_millis(50)) {
        let e = TcpStream::connect("127.0.0.1:1").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

/// `--counters`: InfluxDB stores every counter as an integer with the value
/// of the namespace; promtool accepts both namings; a real Prometheus
/// scraping the exporter answers `rate()` of the failed connects, in either
/// naming, while connects keep failing.
fn counter_metrics_reach_influxdb_promtool_and_prometheus() {
    in_netns(|| {
        for _ in 0..3 {
            let _ = TcpStream::connect("127.0.0.1:1").unwrap_err();
        }
        let ours = run_ok(&["--counters=all", "--only", "counters"]);
        let prom = ["telegraf", "native"].map(|names| {
            run_ok(&[
                "--format",
                "prometheus",
                "--prometheus-names",
                names,
                "--counters=all",
            ])
        });
        assert!(ours.starts_with("netstat_counters ") && ours.contains(",TcpAttemptFails=3i,"));
        let fields = ours.split(',').count();
        let influx = Influx::start();
        influx.query("CREATE DATABASE counters");
        assert_eq!(influx.write("counters", &ours), (204, String::new()));
        let keys = rows(&influx.query("SHOW FIELD KEYS ON counters FROM netstat_counters"));
        assert_eq!(keys.len(), fields);
        assert!(keys.iter().all(|r| r[1].1 == "integer"), "{keys:?}");
        let stored = rows(&influx.query(
            "SELECT TcpAttemptFails, Udp6RcvbufErrors FROM counters.autogen.netstat_counters",
        ));
        assert_eq!((&stored[0][1].1, &stored[0][2].1), (&3.into(), &0.into()));
        drop(influx);
        assert!(prom[0].contains("\nnetstat_counters_TcpAttemptFails_total 3\n"));
        assert!(prom[1].contains("\nnetstat_tcp_attempt_fails_total 3\n"));
        assert!(prom[1].contains("\nnetstat_udp_no_port_datagrams_total{family=\"ipv6\"} 0\n"));
        // Telegraf's names keep nstat's, which promtool's lint calls
        // camelCase (as it calls node_exporter's node_netstat_Tcp_*); it
        // finds nothing else. Native names: nothing at all.
        let (_, said) = promtool(&prom[0]);
        assert!(said.lines().count() > 200, "{said}");
        for l in said.lines() {
            assert!(
                l.starts_with("netstat_counters_")
                    && l.ends_with(
                        " metric names should be written in 'snake_case' not 'camelCase'"
                    ),
                "{l}"
            );
        }
        assert_eq!(promtool(&prom[1]), (true, String::new()));

        let scratch = Scratch::new("prometheus-counters");
        let (_t, telegraf) = exporter(&["--counters", "--only", "counters"]);
        let (_n, native) = exporter(&["--counters", "--prometheus-names", "native"]);
        let server = prometheus_scraping(&[("telegraf", telegraf), ("native", native)], &scratch);
        let (stop, stopped) = std::sync::mpsc::channel();
        let failing = std::thread::spawn(move || refuse_connects_until(stopped));
        let deadline = Instant::now() + Duration::from_secs(60);
        for q in [
            "rate(netstat_counters_TcpAttemptFails_total{job=\"telegraf\"}[5s]) > 0",
            "rate(netstat_tcp_attempt_fails_total{job=\"native\"}[5s]) > 0",
            "rate(netstat_udp_no_port_datagrams_total{job=\"native\",family=\"ipv4\"}[5s]) == 0",
        ] {
            while query(&server, q).is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "no answer to {q}\n{}",
                    server.log()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        drop(stop);
        failing.join().unwrap();
    })
}

/// The value of the unlabelled sample `name` in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.parse().unwrap())
    })
}

/// Which of the consumer programs are missing, with their packages.
/// What making certificates and bcrypt hashes needs.
fn tls_tools() -> Result<(), String> {
    tools_on_path(&[("openssl", "openssl"), ("htpasswd", "apache2-utils")])
}

/// The alerting rules in `deploy/prometheus/` pass `promtool check rules`,
/// and their unit tests (every alert firing and not firing) pass
/// `promtool test rules`; a wrong expectation makes them fail.
fn alert_rules_are_checked_and_tested() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let (ok, said) = promtool_in(&dir, &["check", "rules", "rules.yml"]);
    assert!(ok && said.contains("SUCCESS: 15 rules found"), "{said}");
    let (ok, said) = promtool_in(&dir, &["test", "rules", "rules.test.yml"]);
    assert!(ok, "{said}");
    // The tests can fail: the same file expecting a wrong port.
    let scratch = Scratch::new("rules");
    std::fs::copy(dir.join("rules.yml"), scratch.join("rules.yml")).unwrap();
    let wrong = std::fs::read_to_string(dir.join("rules.test.yml"))
        .unwrap()
        .replacen("port: \"443\"}", "port: \"444\"}", 1);
    std::fs::write(scratch.join("rules.test.yml"), wrong).unwrap();
    let (ok, _) = promtool_in(&scratch, &["test", "rules", "rules.test.yml"]);
    assert!(!ok, "a wrong expectation passed");
}

/// The Grafana dashboard in `deploy/grafana/`: the fields Grafana needs,
/// every panel's PromQL accepted by promtool, and every query, and the
/// recording rule, answered with data by a real Prometheus for every shipped
/// route, each run with its own file's flags.
fn grafana_dashboard_queries_return_data() {
    // The shipped routes' flags, checked before anything starts.
    assert_eq!(shipped_routes().len(), 5);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/telegraf-netstat.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        dash["title"].is_string() && dash["uid"].is_string(),
        "title and uid"
    );
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let mut exprs = Vec::new();
    let mut ids = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(p["type"].is_string() && p["title"].is_string(), "{p}");
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{p}");
        }
        ids.push(p["id"].as_u64().unwrap());
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            // What Grafana substitutes before it asks Prometheus.
            exprs.push(
                e.replace("$instance", ".*")
                    .replace("$__rate_interval", "1m"),
            );
        }
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids are unique");
    assert!(exprs.len() >= 11);

    // promtool parses every query (as recording rules).
    let scratch = Scratch::new("grafana");
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("      - record: dashboard:query_{i}\n        expr: '{e}'\n"))
        .collect();
    std::fs::write(
        scratch.join("rules.yml"),
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let (ok, said) = promtool_in(&scratch, &["check", "rules", "rules.yml"]);
    assert!(ok, "{said}");

    // A real Prometheus: every query returns data for every shipped route.
    every_shipped_route_feeds(&exprs, &scratch);
}

/// The flags of each shipped file that claims to feed the dashboard: the
/// packages' flags file, the exporter unit's default, the image's CMD, the
/// Kubernetes exporter's args, and the textfile unit's command line.
fn shipped_routes() -> Vec<(&'static str, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let args_file = read("dist/telegraf-netstat.default");
    let package = args_file
        .lines()
        .find_map(|l| l.strip_prefix("ARGS=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let unit = read("deploy/systemd/telegraf-netstat-exporter.service");
    let unit_default = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=\"ARGS="))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let docker = read("deploy/Dockerfile");
    let cmd: Vec<String> =
        serde_json::from_str(docker.lines().find_map(|l| l.strip_prefix("CMD ")).unwrap()).unwrap();
    let manifest = read("deploy/kubernetes/exporter.yaml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&manifest).unwrap();
    let k8s: Vec<String> = docs[1]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let textfile = read("deploy/systemd/telegraf-netstat.service");
    let exec = textfile
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/telegraf-netstat "))
        .unwrap();
    vec![
        ("package", words(package)),
        ("unit", words(unit_default)),
        ("image", cmd),
        ("kubernetes", k8s),
        ("textfile", words(exec)),
    ]
}

/// `args` without what says where to serve or write (the test chooses), and
/// the TLS configuration (tests/tls.rs serves the shipped one).
fn without_places(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" | "--web.config.file" | "--output" | "--interval" => {
                it.next();
            }
            "--web.systemd-socket" => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Each shipped route run with its own flags (`--all-netns` over a proc
/// root of this test's namespaces, PID 1's being ours): every dashboard
/// query and the recording rule return data for each.
fn every_shipped_route_feeds(exprs: &[String], scratch: &Scratch) {
    let routes = shipped_routes();
    let other = Netns::new(|| established(1, 1), 1);
    let other_pid = other.pids[0];
    let scratch_dir = scratch.0.clone();
    let exprs = exprs.to_vec();
    in_netns(move || {
        let p = established(3, 2);
        settle(&p.expected);
        let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        let proc_root = Scratch::new("routes-proc");
        let link = |target: String, name: &str| {
            std::os::unix::fs::symlink(target, proc_root.0.join(name)).unwrap()
        };
        link(format!("/proc/{}", sleeper.id()), "1");
        link(format!("/proc/{other_pid}"), &other_pid.to_string());
        link("/proc/sys".into(), "sys");
        link("/proc/self".into(), "self");
        link("/proc/thread-self".into(), "thread-self");
        let root = proc_root.0.to_str().unwrap().to_string();
        let mut keep = Vec::new();
        let mut jobs: Vec<(&str, u16)> = Vec::new();
        for (name, args) in &routes {
            let mut a = without_places(args);
            assert!(
                a.windows(2).any(|w| w == ["--prometheus-names", "native"]),
                "{name}: {args:?}"
            );
            if a.iter().any(|x| x == "--all-netns") {
                a.extend(["--proc-root".to_string(), root.clone()]);
            }
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            if *name != "textfile" {
                let (child, port) = exporter(&a);
                keep.push(child);
                jobs.push((name, port));
                continue;
            }
            // The textfile route: the unit's flags every second into a
            // directory node_exporter's textfile collector reads.
            let dir = scratch_dir.join("textfile");
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join("netstat.prom");
            let mut full = a.clone();
            full.extend(["--interval", "1s", "--output", out.to_str().unwrap()]);
            let child = command(&full)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            keep.push(Reaped(child));
            let port = free_port();
            let node = Command::new("prometheus-node-exporter")
                .args([
                    "--collector.disable-defaults",
                    "--collector.textfile",
                    &format!("--collector.textfile.directory={}", dir.display()),
                    &format!("--web.listen-address=127.0.0.1:{port}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            keep.push(Reaped(node));
            jobs.push((name, port));
        }
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules.yml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n",
            rules.display()
        );
        for (job, port) in &jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ));
        }
        let prom_dir = Scratch::new("routes-prometheus");
        let server = prometheus_with(&config, &prom_dir);
        let deadline = Instant::now() + Duration::from_secs(90);
        for (job, port) in &jobs {
            let instance = format!("127.0.0.1:{port}");
            let recorded = format!("node_tcp_connection_states{{instance=\"{instance}\"}}");
            for e in exprs
                .iter()
                .map(|e| e.replace("instance=~\".*\"", &format!("instance=\"{instance}\"")))
                .chain([recorded])
            {
                while query(&server, &e).is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "route {job}: no data for {e}\n{}",
                        server.log()
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        drop(keep);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        drop(p);
    });
    drop(other);
}

fn main() {
    let args = Arguments::from_args();
    let setup = namespace_setup().and_then(|()| tools_on_path(&TOOLS));
    let tests = tests![
        counter_metrics_reach_influxdb_promtool_and_prometheus,
        prometheus_scrapes_over_tls_with_basic_auth,
        destination_metrics_reach_influxdb_and_promtool,
        grafana_dashboard_queries_return_data,
        alert_rules_are_checked_and_tested,
        influxdb_stores_our_fields_as_integers,
        promtool_accepts_our_exposition,
        node_exporter_serves_our_textfile,
        port_metrics_reach_influxdb_and_promtool,
        prometheus_scrapes_the_exporter,
    ];
    // The Prometheus server itself only for the test that runs it.
    let prometheus = if on_path("prometheus") {
        Ok(())
    } else {
        Err("missing prometheus (Debian package prometheus)".to_string())
    };
    run_trials_needing(
        args,
        setup,
        named("consumer", &tests),
        &[
            ("prometheus_scrapes_the_exporter", prometheus.clone()),
            ("grafana_dashboard_queries_return_data", prometheus.clone()),
            (
                "counter_metrics_reach_influxdb_promtool_and_prometheus",
                prometheus.clone(),
            ),
            (
                "prometheus_scrapes_over_tls_with_basic_auth",
                prometheus.and(tls_tools()),
            ),
        ],
    );
}
