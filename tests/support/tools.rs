//! Outside tools the tests drive: promtool, openssl, bcrypt; scratch directories.

use super::*;

/// A fresh directory for one test, removed with everything in it when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "telegraf-netstat-{what}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `promtool check metrics` on `text`; returns its exit status and
/// everything it printed.
pub fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Runs `program` with `args`, panicking with its stderr if it fails.
fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    succeeded(Command::new(program).args(args))
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new self-signed CA `name` (P-256) in `dir`, by openssl.
pub fn make_ca(dir: &std::path::Path, name: &str) -> CertFiles {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    CertFiles { cert, key }
}

/// A certificate `name` signed by `ca`, for `localhost` and 127.0.0.1
/// (server and client use), by openssl.
pub fn make_leaf(dir: &std::path::Path, ca: &CertFiles, name: &str) -> CertFiles {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    sign(dir, ca, name, Some(&ext))
}

/// A certificate `name` signed by `ca` without extensions: X.509 version 1,
/// as `openssl x509 -req` makes it without `-extfile` (its request is
/// `{name}.csr` in `dir`).
pub fn make_v1_leaf(dir: &std::path::Path, ca: &CertFiles, name: &str) -> CertFiles {
    sign(dir, ca, name, None)
}

/// A new P-256 key and certificate `name` in `dir`, signed by `ca` with
/// the extensions in `ext`, by openssl.
fn sign(
    dir: &std::path::Path,
    ca: &CertFiles,
    name: &str,
    ext: Option<&std::path::Path>,
) -> CertFiles {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let csr = dir.join(format!("{name}.csr"));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    tool(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &path(&key),
            "-out",
            &path(&csr),
        ],
    );
    let serial = std::process::id().to_string();
    let mut x509 = vec![
        "x509".to_string(),
        "-req".into(),
        "-days".into(),
        "2".into(),
        "-in".into(),
        path(&csr),
        "-CA".into(),
        path(&ca.cert),
        "-CAkey".into(),
        path(&ca.key),
        "-set_serial".into(),
        serial,
        "-out".into(),
        path(&cert),
    ];
    if let Some(ext) = ext {
        x509.extend(["-extfile".into(), path(ext)]);
    }
    tool(
        "openssl",
        &x509.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    CertFiles { cert, key }
}

/// A bcrypt hash of `password` at `cost`, by Apache's `htpasswd -B`.
pub fn bcrypt_hash(password: &str, cost: u32) -> String {
    let out = tool(
        "htpasswd",
        &["-nbB", "-C", &cost.to_string(), "u", password],
    );
    let line = String::from_utf8(out).unwrap();
    line.trim().strip_prefix("u:").unwrap().to_string()
}

/// `Ok` when every program of `tools` (name, Debian package) is on `PATH`;
/// otherwise what is missing and where it comes from.
pub fn tools_on_path(tools: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(bin, _)| !on_path(bin))
        .map(|(bin, pkg)| format!("{bin} (Debian package {pkg})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

/// Whether `systemd-socket-activate` (what a `.socket` unit does) runs here.
pub fn socket_activation_available() -> Result<(), String> {
    match Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("systemd-socket-activate (Debian package systemd) is not installed".to_string()),
    }
}

/// Whether `bin` is a file in one of `PATH`'s directories.
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// The first code block in `lang` of `page` (relative to the source tree)
/// after `marker`, without its fences: what the tests that run the
/// documentation read.
pub fn documented_block(page: &str, marker: &str, lang: &str) -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(page))
        .unwrap();
    text.split(marker)
        .nth(1)
        .and_then(|r| r.split(&format!("```{lang}\n")).nth(1))
        .and_then(|r| r.split("\n```").next())
        .unwrap_or_else(|| panic!("no {lang} block after {marker} in {page}"))
        .to_string()
}

/// A web config in `dir` serving `server.crt`/`server.key`, with `more`.
pub fn web_config(dir: &std::path::Path, more: &str) -> String {
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{more}"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// A directory with a CA (`ca.crt`) and a server certificate it signed.
pub fn pki(what: &str) -> (Scratch, CertFiles) {
    let dir = Scratch::new(what);
    let ca = make_ca(&dir, "ca");
    make_leaf(&dir, &ca, "server");
    (dir, ca)
}
