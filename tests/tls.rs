//! `--web.config.file`: the exporter behind TLS and basic authentication,
//! checked with curl and openssl's certificates in a private network
//! namespace: 401s, headers, plain HTTP to the TLS port, mutual TLS in each
//! client-auth mode, certificates and users replaced on disk without a
//! restart, an invalid file (at startup: exit 2; later: the last good one
//! kept, said once), and stalled handshakes and floods of guesses that
//! never hold up a scrape. Prometheus itself scrapes over TLS in
//! `consumers`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::*;

/// One HTTPS request by curl: its exit code and what it printed (status
/// line, headers and body with `-i`).
fn curl(port: u16, path: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The status code of an answer printed by `curl -i`.
fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("none")
}

/// Without credentials, with a wrong password or an unknown user: 401 with
/// `WWW-Authenticate: Basic`, for the landing page too; with the right
/// ones: the namespace's counts. The configured headers are on every
/// answer.
fn basic_auth_over_tls() {
    let ns = Netns::new(|| established(3, 1), 1);
    in_netns(move || {
        let (dir, ca) = pki("tls-auth");
        let config = web_config(
            &dir,
            &format!(
                "basic_auth_users:\n  alice: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
                bcrypt_hash("open sesame", 10)
            ),
        );
        let e = Exporter::start(&["--netns", &ns.path(), "--web.config.file", &config]);
        let cacert = ["--cacert", ca.cert.to_str().unwrap()];
        for (path, user) in [
            ("/metrics", None),
            ("/metrics", Some("alice:guess")),
            ("/metrics", Some("mallory:open sesame")),
            ("/", None),
            ("/nothing", None),
        ] {
            let mut args = cacert.to_vec();
            if let Some(u) = user {
                args.extend(["-u", u]);
            }
            let (code, answer) = curl(e.port, path, &args);
            assert_eq!(code, 0, "{answer}");
            assert_eq!(status(&answer), "401", "{path} {user:?}: {answer}");
            assert!(
                answer.contains("\r\nWWW-Authenticate: Basic\r\n"),
                "{answer}"
            );
            assert!(answer.contains("\r\nX-Frame-Options: deny\r\n"), "{answer}");
        }
        let (code, answer) = curl(
            e.port,
            "/metrics",
            &[&cacert[..], &["-u", "alice:open sesame"]].concat(),
        );
        assert_eq!((code, status(&answer)), (0, "200"), "{answer}");
        assert!(
            answer.contains("\r\nStrict-Transport-Security: max-age=31536000\r\n"),
            "{answer}"
        );
        let established = format!("{{netns=\"{}\"}} {}", ns.tag(), ns.expected.tcp_established);
        assert!(
            answer
                .lines()
                .any(|l| l.strip_prefix("netstat_tcp_established") == Some(&established)),
            "{answer}"
        );
        // HEAD: refused or not, the head without the body.
        let roots = roots_of(&ca);
        for (auth, status) in [
            ("", "401"),
            ("Authorization: Basic YWxpY2U6b3BlbiBzZXNhbWU=\r\n", "200"),
        ] {
            let request = format!("HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n");
            let answer = tls_request(e.port, &roots, &request);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")) && answer.ends_with("\r\n\r\n"),
                "{answer:?}"
            );
        }
        // promtool reads the exposition, the reload self-metric included.
        let exposition = answer.split_once("\r\n\r\n").unwrap().1;
        assert!(exposition.contains("\nnetstat_web_config_last_reload_successful 1\n"));
        let (ok, said) = promtool(exposition);
        assert!(ok && said.trim().is_empty(), "{said}");
        // Remembered: the same credentials again, and the landing page.
        let (_, answer) = curl(
            e.port,
            "/",
            &[&cacert[..], &["-u", "alice:open sesame"]].concat(),
        );
        assert_eq!(status(&answer), "200", "{answer}");
        let port = e.port;
        let err = e.stop();
        assert!(!err.contains("E! "), "{err}");
        assert!(
            err.contains(&format!(
                "I! listening on 127.0.0.1:{port}: serving /metrics, TLS on, "
            )),
            "{err}"
        );
        drop(ns);
    });
}

/// A plain-HTTP request to the TLS port is answered with nothing (the
/// connection closes, no HTTP and no TLS alert); the port keeps serving
/// TLS.
fn plain_http_to_the_tls_port_gets_no_answer() {
    in_netns(|| {
        let (dir, ca) = pki("tls-plain");
        let config = web_config(&dir, "");
        let e = Exporter::start(&["--web.config.file", &config]);
        let mut s = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        assert!(read.is_ok() || got.is_empty(), "{read:?}");
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        let (code, answer) = curl(e.port, "/metrics", &["--cacert", ca.cert.to_str().unwrap()]);
        assert_eq!((code, status(&answer)), (0, "200"), "{answer}");
        e.stop();
    });
}

/// Each client-auth mode with a client certificate from the configured
/// CA, from another CA, and none: refused handshakes give no HTTP answer.
fn mutual_tls_in_each_client_auth_mode() {
    in_netns(|| {
        let (dir, ca) = pki("tls-mtls");
        let good = make_leaf(&dir, &ca, "client");
        let other_ca = make_ca(&dir, "other-ca");
        let bad = make_leaf(&dir, &other_ca, "stranger");
        let cacert = ca.cert.to_str().unwrap();
        let with = |c: &CertFiles| {
            vec![
                "--cert".to_string(),
                c.cert.to_str().unwrap().to_string(),
                "--key".to_string(),
                c.key.to_str().unwrap().to_string(),
            ]
        };
        // Served (true) or refused, for: no certificate, ours, a stranger's.
        for (mode, want) in [
            ("RequireAndVerifyClientCert", [false, true, false]),
            ("VerifyClientCertIfGiven", [true, true, false]),
            ("RequireAnyClientCert", [false, true, true]),
            ("RequestClientCert", [true, true, true]),
        ] {
            let config = web_config(
                &dir,
                &format!("  client_auth_type: {mode}\n  client_ca_file: ca.crt\n"),
            );
            let e = Exporter::start(&["--web.config.file", &config]);
            for (i, cert) in [vec![], with(&good), with(&bad)].iter().enumerate() {
                let mut args = vec!["--cacert", cacert];
                args.extend(cert.iter().map(String::as_str));
                let (code, answer) = curl(e.port, "/metrics", &args);
                let served = code == 0 && status(&answer) == "200";
                assert_eq!(served, want[i], "{mode}, client {i}: curl {code} {answer}");
                if !served {
                    assert!(!answer.starts_with("HTTP/"), "{mode}: {answer}");
                }
            }
            // Each refusal is one D! line (the exporter runs with -v).
            let err = e.stop();
            let refused = want.iter().filter(|w| !**w).count();
            let lines = err
                .lines()
                .filter(|l| l.starts_with("D! TLS with 127.0.0.1:"))
                .count();
            assert_eq!(lines, refused, "{mode}: {err}");
        }
    });
}

/// A client certificate of X.509 version 1 (what `openssl x509 -req`
/// makes without `-extfile`) is refused under `RequireAndVerifyClientCert`
/// (webpki verifies version 3 only; Go's crypto/x509 would accept it), and
/// a `W! ` line at the default verbosity says why, once a minute at most;
/// docs/tls.md's recipe for a version 3 certificate, run as written, makes
/// one that is served.
fn a_version_1_client_certificate_is_refused_and_said() {
    in_netns(|| {
        let (dir, ca) = pki("tls-v1");
        // The request the documented recipe signs again: client.csr.
        let CertFiles { cert, key } = make_v1_leaf(&dir, &ca, "client");
        let p = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
        let config = web_config(
            &dir,
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        );
        let e = Exporter::start(&["--web.config.file", &config]);
        for _ in 0..2 {
            let (code, answer) = curl(
                e.port,
                "/metrics",
                &[
                    "--cacert",
                    &p(&ca.cert),
                    "--cert",
                    &p(&cert),
                    "--key",
                    &p(&key),
                ],
            );
            assert!(code != 0 && !answer.starts_with("HTTP/"), "{code} {answer}");
        }
        // docs/tls.md's recipe for a version 3 certificate, run as written
        // there (in the certificates' directory): served.
        let recipe = documented_block(
            "docs/tls.md",
            "**Client certificates must be X.509 version 3.**",
            "console",
        );
        let recipe: Vec<&str> = recipe
            .lines()
            .map(|l| l.strip_prefix("$ ").expect("a command after a prompt"))
            .collect();
        assert!(
            recipe.len() == 2 && recipe[1].starts_with("openssl x509 -req "),
            "{recipe:?}"
        );
        succeeded(
            Command::new("sh")
                .args(["-ec", &recipe.join("\n")])
                .current_dir(&dir.0),
        );
        let v3 = p(&dir.join("client.crt"));
        let (code, answer) = curl(
            e.port,
            "/metrics",
            &["--cacert", &p(&ca.cert), "--cert", &v3, "--key", &p(&key)],
        );
        assert_eq!((code, status(&answer)), (0, "200"), "{answer}");
        let err = e.stop();
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("W! TLS with 127.0.0.1:"))
            .collect();
        assert_eq!(said.len(), 1, "{err}");
        assert!(
            said[0].contains("client certificate of X.509 version 1"),
            "{err}"
        );
    });
}

/// Certificates and users replaced on disk are served from the next
/// connection on, by the same process; a file that no longer loads keeps
/// the last good configuration and says so once, and a good one is loaded
/// again.
fn changes_on_disk_apply_without_a_restart() {
    in_netns(|| {
        let (dir, ca) = pki("tls-rotate");
        let hash = |p| bcrypt_hash(p, 4);
        let config = web_config(&dir, &format!("basic_auth_users:\n  u: {}\n", hash("one")));
        let e = Exporter::start(&["--web.config.file", &config]);
        let get = |ca: &CertFiles, user: &str| {
            let (code, answer) = curl(
                e.port,
                "/metrics",
                &["--cacert", ca.cert.to_str().unwrap(), "-u", user],
            );
            (code, status(&answer).to_string())
        };
        // netstat_web_config_last_reload_successful in a scrape's answer.
        let loaded = |ca: &CertFiles, user: &str| {
            let (_, answer) = curl(
                e.port,
                "/metrics",
                &["--cacert", ca.cert.to_str().unwrap(), "-u", user],
            );
            answer
                .lines()
                .find_map(|l| l.strip_prefix("netstat_web_config_last_reload_successful "))
                .unwrap_or_else(|| panic!("no reload metric: {answer}"))
                .to_string()
        };
        assert_eq!(get(&ca, "u:one"), (0, "200".into()));
        assert_eq!(loaded(&ca, "u:one"), "1");
        // A new CA's certificate moved into place, as cert-manager does.
        let new = Scratch::new("tls-rotate-new");
        let ca2 = make_ca(&new, "ca2");
        let leaf = make_leaf(&new, &ca2, "server");
        std::fs::copy(&leaf.key, dir.join("server.key.tmp")).unwrap();
        std::fs::copy(&leaf.cert, dir.join("server.crt.tmp")).unwrap();
        std::fs::rename(dir.join("server.key.tmp"), dir.join("server.key")).unwrap();
        std::fs::rename(dir.join("server.crt.tmp"), dir.join("server.crt")).unwrap();
        assert_eq!(get(&ca2, "u:one"), (0, "200".into()));
        assert_ne!(
            get(&ca, "u:one").0,
            0,
            "the old certificate is still served"
        );
        // A new password for the user.
        web_config(&dir, &format!("basic_auth_users:\n  u: {}\n", hash("two")));
        assert_eq!(get(&ca2, "u:two"), (0, "200".into()));
        assert_eq!(get(&ca2, "u:one"), (0, "401".into()));
        // A broken file: the last good configuration serves, one E! line;
        // put back, it is said to be in use again.
        let good = std::fs::read(&config).unwrap();
        std::fs::write(
            &config,
            "tls_server_config:\n  cert_file: server.crt\n  key_fil: x\n",
        )
        .unwrap();
        for _ in 0..3 {
            assert_eq!(get(&ca2, "u:two"), (0, "200".into()));
        }
        assert_eq!(loaded(&ca2, "u:two"), "0");
        std::fs::write(&config, good).unwrap();
        assert_eq!(get(&ca2, "u:two"), (0, "200".into()));
        assert_eq!(loaded(&ca2, "u:two"), "1");
        // A new good file.
        web_config(
            &dir,
            &format!("basic_auth_users:\n  u: {}\n", hash("three")),
        );
        assert_eq!(get(&ca2, "u:three"), (0, "200".into()));
        let pid = e.child.id();
        let err = e.stop();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("E! ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            errors[0].contains(&config)
                && errors[0].contains("unknown key tls_server_config.key_fil")
                && errors[0].contains("serving with the last good configuration"),
            "{err}"
        );
        let reloads = err
            .lines()
            .filter(|l| l.starts_with("I! web config") && l.ends_with("reloaded"))
            .count();
        assert_eq!(reloads, 3, "pid {pid}: {err}");
        let again = err
            .lines()
            .filter(|l| l.starts_with("I! web config") && l.ends_with("is again the one in use"))
            .count();
        assert_eq!(again, 1, "{err}");
    });
}

/// An invalid file at startup is a usage error (exit 2) naming the problem.
fn an_invalid_file_at_startup_exits_2() {
    let (dir, _ca) = pki("tls-invalid");
    let other = make_leaf(&dir, &make_ca(&dir, "ca-b"), "other");
    let web = |text: &str| {
        let p = dir.join("bad.yml");
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    // A FIFO in a key's place would block a reader that opened it.
    let fifo = std::ffi::CString::new(dir.join("fifo.key").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    for (text, says) in [
        (
            format!("{tls}  client_auth: x\n"),
            "unknown key tls_server_config.client_auth",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n".into(),
            "missing.key: No such file",
        ),
        (
            format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: {}\n",
                other.key.display()
            ),
            "server.crt and",
        ),
        (
            format!("{tls}  min_version: TLS10\n  max_version: TLS11\n"),
            "TLS 1.2 and 1.3 only",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "needs client_ca_file",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "is not offered by this exporter",
        ),
        (
            "basic_auth_users:\n  u: plain\n".into(),
            "basic_auth_users.u: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: /dev/null\n  key_file: server.key\n".into(),
            "cannot read /dev/null: not a regular file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: fifo.key\n".into(),
            "fifo.key: not a regular file",
        ),
    ] {
        let path = web(&text);
        let out = run(&["--listen", "127.0.0.1:0", "--web.config.file", &path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.starts_with(&format!("E! invalid --web.config.file {path}: "))
                && err.contains(says),
            "{text}: {err}"
        );
    }
    let out = run(&["--web.config.file", "/x.yml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --listen"));
}

/// Clients stalled mid-handshake and a flood of new passwords to check
/// never delay a scrape with known credentials: it is answered while the
/// guesses still wait for bcrypt; the stalled handshakes are cut off after
/// the request timeout; SIGTERM still ends the exporter at once.
fn stalls_and_guesses_never_block_a_scrape() {
    in_netns(|| {
        let (dir, ca) = pki("tls-stall");
        let config = web_config(
            &dir,
            &format!("basic_auth_users:\n  u: {}\n", bcrypt_hash("right", 10)),
        );
        let e = Exporter::start(&["--web.config.file", &config]);
        let port = e.port;
        let cacert = ca.cert.to_str().unwrap().to_string();
        let scrape = {
            let cacert = cacert.clone();
            move |user: &str| {
                let (code, answer) = curl(port, "/metrics", &["--cacert", &cacert, "-u", user]);
                (code, status(&answer).to_string(), Instant::now())
            }
        };
        // The right password, checked once and remembered.
        assert_eq!(scrape("u:right").1, "200");
        // Handshakes that stall after a TLS record header.
        let stalled: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
                s
            })
            .collect();
        let started = Instant::now();
        // Eight new guesses: bcrypt takes them one after the other.
        let guesses: Vec<_> = (0..8)
            .map(|i| {
                let scrape = scrape.clone();
                std::thread::spawn(move || scrape(&format!("u:guess{i}")))
            })
            .collect();
        // Once the first guess is refused, the others are still queued.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !guesses.iter().any(|g| g.is_finished()) {
            assert!(Instant::now() < deadline, "no guess was answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (code, st, answered) = scrape("u:right");
        assert_eq!((code, st.as_str()), (0, "200"));
        let guessed: Vec<(i32, String, Instant)> =
            guesses.into_iter().map(|g| g.join().unwrap()).collect();
        assert!(guessed.iter().all(|g| g.1 == "401"), "{guessed:?}");
        // bcrypt on the serving thread would answer it after (nearly) all
        // of them; off it, while most still wait.
        let before = guessed.iter().filter(|g| g.2 < answered).count();
        assert!(
            before <= guessed.len() / 2,
            "the scrape waited for the guesses: answered after {before} of them, at {:?}, guesses at {:?}",
            answered - started,
            guessed.iter().map(|g| g.2 - started).collect::<Vec<_>>()
        );
        // The stalled handshakes are closed after REQUEST_TIMEOUT (5 s).
        for mut s in stalled {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut b = [0u8; 16];
            assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
        }
        assert!(
            started.elapsed() >= Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        // SIGTERM with checks queued and a handshake stalled.
        let _stall = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _queued: Vec<_> = (0..4)
            .map(|i| {
                let scrape = scrape.clone();
                std::thread::spawn(move || scrape(&format!("u:late{i}")))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let err = e.stop();
        assert!(!err.contains("E! "), "{err}");
    });
}

/// The Kubernetes Secret's `web.yml`, the container's arguments and where
/// the DaemonSet mounts the Secret.
fn kubernetes_example(root: &Path) -> (String, Vec<String>, String) {
    use yaml_rust2::YamlLoader;
    let text = std::fs::read_to_string(root.join("deploy/kubernetes/exporter.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let web = docs[0]["stringData"]["web.yml"]
        .as_str()
        .unwrap()
        .to_string();
    let container = &docs[1]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    let items: Vec<String> = docs[1]["spec"]["template"]["spec"]["volumes"][0]["projected"]
        ["sources"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|s| s["secret"]["items"].as_vec().unwrap().iter())
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(items, ["web.yml", "tls.crt", "tls.key"]);
    (web, args, mount)
}

/// The systemd unit's commented `web.yml` and command line (`$ARGS` as the
/// packages' flags file sets it).
fn systemd_example(root: &Path) -> (String, String) {
    let unit =
        std::fs::read_to_string(root.join("deploy/systemd/telegraf-netstat-exporter.service"))
            .unwrap();
    let tls_part = unit.split("# TLS and basic authentication").nth(1).unwrap();
    let unit_web: String = tls_part
        .split("# with web.yml naming the files beside it:\n")
        .nth(1)
        .unwrap()
        .lines()
        .map_while(|l| l.strip_prefix("#   "))
        .map(|l| format!("{l}\n"))
        .collect();
    // $ARGS is what the packages' flags file sets.
    let flags = std::fs::read_to_string(root.join("dist/telegraf-netstat.default")).unwrap();
    let shipped_args = flags
        .lines()
        .find_map(|l| l.strip_prefix("ARGS=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let exec = tls_part
        .lines()
        .filter_map(|l| l.strip_prefix("#   ExecStart="))
        .find(|l| !l.is_empty())
        .unwrap()
        .replace("$ARGS", shipped_args);
    (unit_web, exec)
}

/// The examples in `deploy/` serve as shipped: the Kubernetes Secret's
/// `web.yml` in the directory the DaemonSet mounts, with the files its
/// projected volume puts there and the container's arguments (the port
/// aside), answers 401 without credentials and 200 with the documented
/// example password; the systemd unit's `web.yml` and command line (`%d`
/// being the credentials directory), on a socket passed as a `.socket`
/// unit passes it, serve TLS the same way.
fn the_shipped_examples_serve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (web, args, mount) = kubernetes_example(root);
    let (unit_web, exec) = systemd_example(root);
    in_netns(move || {
        for (what, web, args) in [
            ("kubernetes", web, args),
            (
                "systemd",
                unit_web.replace(
                    "<htpasswd -nBC 10 prometheus>",
                    &bcrypt_hash("change-me", 10),
                ),
                exec.split(' ').skip(1).map(String::from).collect(),
            ),
        ] {
            let dir = Scratch::new(&format!("tls-shipped-{what}"));
            let ca = make_ca(&dir, "ca");
            let leaf = make_leaf(&dir, &ca, "leaf");
            std::fs::rename(&leaf.cert, dir.join("tls.crt")).unwrap();
            std::fs::rename(&leaf.key, dir.join("tls.key")).unwrap();
            std::fs::write(dir.join("web.yml"), &web).unwrap();
            let config = dir.join("web.yml").to_str().unwrap().to_string();
            // Their arguments but the listening address and the file's place.
            let mut ours: Vec<String> = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--listen" => {
                        it.next();
                    }
                    // The test counts its own namespace, not the machine's
                    // (tests/consumers.rs serves these flags with --all-netns).
                    "--all-netns" => {}
                    "--web.config.file" => {
                        let v = it.next().unwrap();
                        let want = if what == "systemd" {
                            "%d/web.yml".to_string()
                        } else {
                            format!("{mount}/web.yml")
                        };
                        assert_eq!(*v, want);
                        ours.extend([a.clone(), config.clone()]);
                    }
                    _ => ours.push(a.clone()),
                }
            }
            assert!(
                ours.contains(&"--web.config.file".to_string()),
                "{what}: {args:?}"
            );
            let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
            let served = |port: u16| {
                let cacert = ca.cert.to_str().unwrap();
                let (_, answer) = curl(port, "/metrics", &["--cacert", cacert]);
                assert_eq!(status(&answer), "401", "{what}: {answer}");
                let (_, answer) = curl(
                    port,
                    "/metrics",
                    &["--cacert", cacert, "-u", "prometheus:change-me"],
                );
                assert_eq!(status(&answer), "200", "{what}: {answer}");
                assert!(
                    answer.contains("\nnetstat_tcp_connections{state=\"established\"}"),
                    "{what}: {answer}"
                );
            };
            if what == "systemd" {
                // On a socket systemd passes, as the unit runs it
                // (systemd-socket-activate holds the port and starts the
                // program on the first connection).
                let port = free_port();
                let mut child = Command::new("systemd-socket-activate")
                    .arg("-l")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg(BIN)
                    .args(&ours)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(5);
                while TcpStream::connect(("127.0.0.1", port)).is_err() {
                    assert!(Instant::now() < deadline, "nothing listens on {port}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                served(port);
                rustix::process::kill_process(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::TERM,
                )
                .unwrap();
                assert_eq!(child.wait().unwrap().code(), Some(0));
            } else {
                let e = Exporter::start(&ours);
                served(e.port);
                // The start-up line says TLS and basic auth are on.
                let said = e.stderr.lock().unwrap().clone();
                let want = format!(
                    "I! listening on 127.0.0.1:{}: serving /metrics, TLS on, basic auth on (--web.config.file)",
                    e.port
                );
                assert!(said.lines().any(|l| l.starts_with(&want)), "{said}");
                e.stop();
            }
        }
    });
}

/// docs/tls.md's complete TLS setup, run as written: its `sh` block after
/// "A complete setup" (openssl, htpasswd, the web config, the exporter on
/// :10273, curl over TLS with basic auth). It writes /etc/telegraf-netstat:
/// here /etc is an overlay whose writes go to a tmpfs of a private mount
/// namespace, the network namespace is private, and `telegraf-netstat` on the
/// PATH is the binary under test.
fn the_tls_recipe_runs_as_written() {
    let recipe = documented_block("docs/tls.md", "**A complete setup**", "sh");
    let bin_dir = Path::new(BIN)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out = in_netns(move || {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c"])
            .arg(
                r#"set -euo pipefail
                   t=$(mktemp -d)
                   mount -t tmpfs tmpfs "$t"
                   mkdir "$t/up" "$t/work"
                   mount -t overlay overlay -o "lowerdir=/etc,upperdir=$t/up,workdir=$t/work" /etc
                   PATH=$2:$PATH bash -euo pipefail -c "$1""#,
            )
            .args(["_", &recipe, &bin_dir])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("netstat_tcp_established "),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(": serving /metrics, TLS on, basic auth on (--web.config.file)"),
        "{stderr}"
    );
}

/// The roots a rustls client trusts: `ca`'s certificate.
fn roots_of(ca: &CertFiles) -> std::sync::Arc<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca.cert).unwrap();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    std::sync::Arc::new(roots)
}

/// One request over TLS by a rustls client: the whole answer (the server
/// ends it with `close_notify`).
fn tls_request(port: u16, roots: &std::sync::Arc<rustls::RootCertStore>, request: &str) -> String {
    use rustls::pki_types::ServerName;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(std::sync::Arc::clone(roots))
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // One write: pieces would go out as small records, each waiting on
    // Nagle's algorithm and delayed acknowledgements.
    tls.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).unwrap();
    out
}

/// Over 2 000 TLS scrapes (each a handshake, the file and its certificates
/// read again, the credentials found remembered), the exporter's
/// descriptors and memory stay flat.
fn tls_descriptors_and_memory_stay_flat() {
    in_netns(|| {
        let (dir, ca) = pki("tls-flat");
        let config = web_config(
            &dir,
            &format!("basic_auth_users:\n  u: {}\n", bcrypt_hash("p", 4)),
        );
        let e = Exporter::start(&["--web.config.file", &config]);
        let pid = e.child.id();
        let roots = roots_of(&ca);
        // "u:p"
        let scrape = |n: usize| {
            for _ in 0..n {
                let answer = tls_request(
                    e.port,
                    &roots,
                    "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic dTpw\r\n\r\n",
                );
                assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
            }
        };
        let fds = || fd_count(pid);
        let rss = || rss_kib(pid);
        scrape(500);
        let (fds_500, rss_500) = (fds(), rss());
        scrape(1_500);
        let rss_2k = rss();
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds() > fds_500 {
            assert!(
                Instant::now() < deadline,
                "{} descriptors after 2 000 scrapes, {fds_500} after 500",
                fds()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            rss_2k <= rss_500 + 64,
            "RSS grew from {rss_500} to {rss_2k} KiB"
        );
        e.stop();
    });
}

fn main() {
    let args = Arguments::from_args();
    let tools = tools_on_path(&[
        ("curl", "curl"),
        ("openssl", "openssl"),
        ("htpasswd", "apache2-utils"),
        ("promtool", "prometheus"),
    ]);
    let tests = tests![
        a_version_1_client_certificate_is_refused_and_said,
        tls_descriptors_and_memory_stay_flat,
        the_shipped_examples_serve,
        the_tls_recipe_runs_as_written,
        basic_auth_over_tls,
        plain_http_to_the_tls_port_gets_no_answer,
        mutual_tls_in_each_client_auth_mode,
        changes_on_disk_apply_without_a_restart,
        an_invalid_file_at_startup_exits_2,
        stalls_and_guesses_never_block_a_scrape,
    ];
    let activate = socket_activation_available();
    run_trials_needing(
        args,
        namespace_setup().and(tools),
        named("tls", &tests),
        &[("the_shipped_examples_serve", activate)],
    );
}
