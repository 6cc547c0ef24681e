//! `--web.config.file` at run time: the file and the certificates it names
//! read safely, turned into one [`Web`] (a rustls server configuration,
//! the basic-auth users, the response headers), and loaded again when one
//! of them changes, so that a certificate replaced on disk is served from
//! the next connection on without a restart, as with the exporter-toolkit
//! (which reads them for every connection, `GetConfigForClient` in its
//! web/tls_config.go).
//!
//! The serving thread never reads or parses them: before it accepts
//! connections it compares the files' `stat` (device, inode, size, change
//! times; no descriptor needed, so it works out of descriptors too) with
//! those of the last load, and on a change hands the load to the `web`
//! thread, accepting nothing until the result is there (at most
//! [`LOAD_WAIT`]; the kernel queues the connections meanwhile), so the next
//! connection is served with the new files. The load thread reads the files
//! and parses only what changed. A change that does not load keeps the
//! last good configuration and says why once (`E! `); the next good one is
//! said too (`I! `). A file that cannot be read *now* (out of descriptors
//! or memory) is not a refusal: the configuration in use stays, one `W! `
//! line says so, and the next connection tries again. Whether the port
//! speaks TLS is fixed at startup: a file that turns TLS on or off later is
//! refused like any other error.
//!
//! TLS is rustls (0.23) with its `ring` provider: pure Rust but for ring's
//! small C and assembly core, which builds for the static musl targets
//! with a C compiler for the target (`dist/build`). TLS 1.2 and 1.3 only:
//! rustls offers nothing older, so `min_version: TLS10` or `TLS11` serves
//! from TLS 1.2 (said at startup) and a `max_version` below 1.2 is refused.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log::Logger;
use rustix::io::Errno;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use super::webconfig::{self, ClientAuth, Pem, TlsConfig, TlsVersion, WebConfig};

/// The most a web config, certificate or key file may hold.
const MAX_FILE: u64 = 1 << 20;
/// How long new connections wait for a changed file to load; beyond, they
/// are served with the configuration in use.
pub const LOAD_WAIT: Duration = Duration::from_secs(1);

/// One loaded configuration, shared by the connections accepted under it.
pub struct Web {
    pub tls: Option<Arc<ServerConfig>>,
    /// User and bcrypt hash; empty: no authentication.
    pub users: Vec<(String, String)>,
    /// What an unknown user's password is checked against: the users'
    /// hash of the highest cost (`auth`).
    pub dummy: String,
    /// `http_server_config.headers`, as header lines (`Name: value\r\n`).
    pub headers: String,
}

impl Web {
    /// Plain HTTP, no authentication: serving without `--web.config.file`.
    pub fn plain() -> Arc<Web> {
        Arc::new(Web {
            tls: None,
            users: Vec::new(),
            dummy: String::new(),
            headers: String::new(),
        })
    }
}

/// The file's bytes and those of the files it names, in order: what a
/// change of content is detected on, once `stat` says something changed.
type Snapshot = Vec<Vec<u8>>;

/// A file as `stat` sees it: `None` if it cannot be looked at.
type Stamp = Option<[i64; 7]>;

fn stamp(path: &Path) -> Stamp {
    let st = rustix::fs::stat(path).ok()?;
    Some([
        st.st_dev as i64,
        st.st_ino as i64,
        st.st_size as i64,
        st.st_mtime as i64,
        st.st_mtime_nsec as i64,
        st.st_ctime as i64,
        st.st_ctime_nsec as i64,
    ])
}

/// The self-metric saying whether the web config's last change loaded, in
/// the Prometheus text format (the exporter serves nothing else).
pub fn encode_loaded(loaded: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"# HELP netstat_web_config_last_reload_successful Whether the last change to --web.config.file or a file it names loaded (1), or was refused and the last good configuration still serves (0; the reason is in the log).\n\
          # TYPE netstat_web_config_last_reload_successful gauge\n\
          netstat_web_config_last_reload_successful ",
    );
    out.extend_from_slice(if loaded { b"1\n" } else { b"0\n" });
}

/// Why a file was not read or its configuration not served: `now` is true
/// when the reason is passing (out of descriptors or memory), not the
/// file's fault.
struct ReadError {
    why: WebError,
    now: bool,
}

/// Why the web config is not served.
#[derive(Debug)]
pub enum WebError {
    /// A file (the config or one it names) could not be read.
    Read(PathBuf, Unreadable),
    /// The config's text is refused.
    Config(webconfig::ConfigError),
    /// Its TLS settings cannot be served.
    Tls(TlsError),
    /// A change turns TLS on or off.
    TlsToggled,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum Unreadable {
    Os(std::io::Error),
    NotRegular,
    TooLarge,
}

/// What is wrong with the TLS settings or the files they name; names are
/// [`pem_name`]'s, values another user wrote as [`webconfig::shown`] lets
/// them appear.
#[derive(Debug)]
pub enum TlsError {
    /// PEM text that is not what it should be.
    Pem {
        name: String,
        problem: &'static str,
    },
    NoCertificate(String),
    NoKey {
        name: String,
        problem: &'static str,
    },
    /// `max_version` below TLS 1.2.
    VersionsNotOffered,
    /// rustls refuses the versions, or the client verifier.
    Rustls(String),
    /// A policy that verifies client certificates, without a CA.
    NeedsCa(ClientAuth),
    NotCa(String),
    /// The certificate and key are not usable together.
    Pair {
        cert: String,
        key: String,
        problem: &'static str,
    },
    /// A cipher suite not offered, and the TLS 1.2 suites that are.
    Suite {
        name: String,
        offered: String,
    },
    /// A curve not offered.
    Curve(String),
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebError::Read(path, why) => write!(f, "cannot read {}: {why}", path.display()),
            WebError::Config(e) => write!(f, "{e}"),
            WebError::Tls(e) => write!(f, "{e}"),
            WebError::TlsToggled => f.write_str("turning TLS on or off needs a restart"),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Os(e) => write!(f, "{e}"),
            Unreadable::NotRegular => f.write_str("not a regular file"),
            Unreadable::TooLarge => write!(f, "larger than {MAX_FILE} bytes"),
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Pem { name, problem } => write!(f, "{name}: {problem}"),
            TlsError::NoCertificate(name) => write!(f, "{name}: no PEM certificate"),
            TlsError::NoKey { name, problem } => write!(f, "{name}: no private key ({problem})"),
            TlsError::VersionsNotOffered => f.write_str(
                "tls_server_config.max_version: this exporter offers TLS 1.2 and 1.3 only",
            ),
            TlsError::Rustls(e) => write!(f, "tls_server_config: {e}"),
            TlsError::NeedsCa(auth) => write!(
                f,
                "tls_server_config: client_auth_type {auth:?} needs client_ca_file (or client_ca)"
            ),
            TlsError::NotCa(name) => write!(f, "{name}: a certificate that is not a usable CA"),
            TlsError::Pair { cert, key, problem } => write!(f, "{cert} and {key}: {problem}"),
            TlsError::Suite { name, offered } => write!(
                f,
                "tls_server_config.cipher_suites: {name} is not offered by this exporter (TLS 1.2 suites: {offered})"
            ),
            TlsError::Curve(name) => write!(
                f,
                "tls_server_config.curve_preferences: {name} is not offered by this exporter (X25519, CurveP256, CurveP384)"
            ),
        }
    }
}

impl std::error::Error for WebError {}

/// Reads a regular file of at most [`MAX_FILE`] bytes. Opened without
/// blocking, so a FIFO put in a certificate's place cannot hang the
/// loader; symbolic links are followed (a Kubernetes Secret's files are
/// links).
fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    use rustix::fs::{fstat, open, FileType, Mode, OFlags};
    let passing = |e: Errno| matches!(e, Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::INTR);
    let why = |e: Unreadable, now: bool| ReadError {
        why: WebError::Read(path.to_path_buf(), e),
        now,
    };
    let os = |e: Errno| why(Unreadable::Os(e.into()), passing(e));
    let fd = open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(os)?;
    let st = fstat(&fd).map_err(os)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(why(Unreadable::NotRegular, false));
    }
    match crate::sink::read_at_most(fd, MAX_FILE) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(why(Unreadable::TooLarge, false)),
        Err(e) => Err(why(Unreadable::Os(e), false)),
    }
}

/// The files a configuration names, in a fixed order.
fn named_files(c: &WebConfig) -> Vec<&Path> {
    let Some(t) = &c.tls else {
        return Vec::new();
    };
    [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|p| match p {
            Pem::File(f) => Some(f.as_path()),
            Pem::Inline(_) => None,
        })
        .collect()
}

/// The files the loader looks at: the configuration, then those it names.
fn watched(path: &Path, c: &WebConfig) -> Vec<PathBuf> {
    std::iter::once(path)
        .chain(named_files(c))
        .map(Path::to_path_buf)
        .collect()
}

/// Reads the files `c` names, after `text` (the file's own bytes).
fn read_named(c: &WebConfig, text: Vec<u8>) -> Result<Snapshot, ReadError> {
    let mut snapshot = vec![text];
    for f in named_files(c) {
        snapshot.push(read_file(f)?);
    }
    Ok(snapshot)
}

/// Parses the file's bytes `text` (read from `path`).
fn parse(path: &Path, text: &[u8]) -> Result<WebConfig, ReadError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::str::from_utf8(text)
        .map_err(|_| webconfig::ConfigError::NotText)
        .and_then(|t| webconfig::parse(t, dir))
        .map_err(|e| ReadError {
            why: WebError::Config(e),
            now: false,
        })
}

/// What a load ended with, for the serving thread.
struct Loaded {
    current: Arc<Web>,
    /// The files to watch, and their `stat` taken before they were read;
    /// `None`: look again at the next connection (the read could not
    /// happen now).
    stamps: Option<(Vec<PathBuf>, Vec<Stamp>)>,
}

/// The load thread's side: what was last parsed, read and built.
struct Loader {
    path: PathBuf,
    parsed: WebConfig,
    snapshot: Snapshot,
    current: Arc<Web>,
    /// The last problem said, with what was read: said once, not per
    /// change.
    refused: Option<(String, Snapshot)>,
    /// Whether the last read could not happen (said once, `W! `).
    unreadable: bool,
    /// The files the last new parse named.
    named: Vec<PathBuf>,
    /// False while a change is refused: the gather thread reads it for
    /// `netstat_web_config_last_reload_successful`.
    loaded: Arc<AtomicBool>,
    log: Logger,
}

impl Loader {
    /// The files as they are now, loaded if they changed.
    fn load(&mut self) -> Loaded {
        let files = watched(&self.path, &self.parsed);
        let stamps: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
        let result = self.reload();
        if let Err((e, _)) = &result {
            if e.now {
                if !std::mem::replace(&mut self.unreadable, true) {
                    self.log.warn(format_args!(
                        "web config {}: {}; the configuration in use serves, and the files are read again with the next connection (said once)",
                        self.path.display(),
                        e.why
                    ));
                }
                return Loaded {
                    current: Arc::clone(&self.current),
                    stamps: None,
                };
            }
        }
        self.unreadable = false;
        self.loaded.store(result.is_ok(), Ordering::Relaxed);
        if let Err((e, snapshot)) = result {
            let problem = (e.why.to_string(), snapshot);
            if self.refused.as_ref() != Some(&problem) {
                self.log.error(format_args!(
                    "web config {}: {}; serving with the last good configuration",
                    self.path.display(),
                    problem.0
                ));
                self.refused = Some(problem);
            }
        }
        // Watched as they were before this read: a change made since is
        // seen at the next connection. Files a new parse names (loaded or
        // refused: a missing certificate that appears) are looked at now.
        let (mut files, mut stamps) = (files, stamps);
        for f in std::mem::take(&mut self.named) {
            if !files.contains(&f) {
                stamps.push(stamp(&f));
                files.push(f);
            }
        }
        Loaded {
            current: Arc::clone(&self.current),
            stamps: Some((files, stamps)),
        }
    }

    /// Loads the file again if it or a file it names changed; `Err` holds
    /// the problem and what was read (to say each problem once).
    fn reload(&mut self) -> Result<(), (ReadError, Snapshot)> {
        // Each file read once: an unchanged file keeps its parse, and the
        // files it names, read to compare, are the new snapshot if changed.
        let text = read_file(&self.path).map_err(|e| (e, Vec::new()))?;
        let (parsed, snapshot) = if text == self.snapshot[0] {
            let snapshot = read_named(&self.parsed, text).map_err(|e| (e, Vec::new()))?;
            if snapshot == self.snapshot {
                // Back to what is served after a refused change: said, so
                // the E! line is not left standing.
                if self.refused.take().is_some() {
                    self.log.info(format_args!(
                        "web config {} is again the one in use",
                        self.path.display()
                    ));
                }
                return Ok(());
            }
            (self.parsed.clone(), snapshot)
        } else {
            let parsed = parse(&self.path, &text).map_err(|e| (e, Vec::new()))?;
            self.named = watched(&self.path, &parsed);
            let snapshot = read_named(&parsed, text).map_err(|e| (e, Vec::new()))?;
            (parsed, snapshot)
        };
        let refuse = |why: WebError| ReadError { why, now: false };
        if parsed.tls.is_some() != self.parsed.tls.is_some() {
            return Err((refuse(WebError::TlsToggled), snapshot));
        }
        let web =
            build(&parsed, &snapshot).map_err(|e| (refuse(WebError::Tls(e)), snapshot.clone()))?;
        self.log
            .info(format_args!("web config {} reloaded", self.path.display()));
        self.current = web;
        self.parsed = parsed;
        self.snapshot = snapshot;
        self.refused = None;
        Ok(())
    }
}

/// The serving thread's side of `--web.config.file`: the configuration in
/// use, the files watched, and the load thread.
pub struct WebFile {
    current: Arc<Web>,
    files: Vec<PathBuf>,
    /// `None`: unknown, load before the next connection.
    stamps: Option<Vec<Stamp>>,
    /// A load asked for and not finished, since when.
    loading: Option<Instant>,
    /// The load thread's queue, once started; before, what it will own.
    jobs: Result<mpsc::Sender<()>, Option<Box<Loader>>>,
    done: Arc<Mutex<Option<Loaded>>>,
    rate_limit: Option<(Duration, u32)>,
    loaded: Arc<AtomicBool>,
}

impl WebFile {
    /// Loads the file at startup; `Err` names the problem (a usage error).
    pub fn open(path: &Path, log: &Logger) -> Result<WebFile, WebError> {
        let text = read_file(path).map_err(|e| e.why)?;
        let parsed = parse(path, &text).map_err(|e| e.why)?;
        let files = watched(path, &parsed);
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let snapshot = read_named(&parsed, text).map_err(|e| e.why)?;
        let current = build(&parsed, &snapshot).map_err(WebError::Tls)?;
        if let Some(t) = &parsed.tls {
            if t.min_version < TlsVersion::Tls12 {
                log.warn(format_args!(
                    "web config {}: min_version below TLS12 serves from TLS 1.2 (this exporter offers TLS 1.2 and 1.3)",
                    path.display()
                ));
            }
        }
        let loaded = Arc::new(AtomicBool::new(true));
        let rate_limit = parsed.rate_limit;
        let loader = Loader {
            path: path.to_path_buf(),
            parsed,
            snapshot,
            current: Arc::clone(&current),
            refused: None,
            unreadable: false,
            named: Vec::new(),
            loaded: Arc::clone(&loaded),
            log: *log,
        };
        Ok(WebFile {
            current,
            files,
            stamps: Some(stamps),
            loading: None,
            jobs: Err(Some(Box::new(loader))),
            done: Arc::new(Mutex::new(None)),
            rate_limit,
            loaded,
        })
    }

    /// Starts the load thread, which writes a byte to `wake` after each
    /// load.
    pub fn start(&mut self, wake: OwnedFd) -> std::io::Result<()> {
        let Err(Some(mut loader)) = std::mem::replace(&mut self.jobs, Err(None)) else {
            return Ok(());
        };
        let (jobs, queue) = mpsc::channel::<()>();
        let theirs = Arc::clone(&self.done);
        std::thread::Builder::new()
            .name("web".into())
            .spawn(move || {
                for () in queue {
                    let result = loader.load();
                    *theirs.lock().unwrap() = Some(result);
                    let _ = rustix::io::write(&wake, b"w");
                }
            })?;
        self.jobs = Ok(jobs);
        Ok(())
    }

    /// Whether the last change loaded, shared with the gather thread.
    pub fn loaded(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.loaded)
    }

    /// What the start-up line says: TLS on or off, basic auth on or off.
    pub fn describe(&self) -> String {
        format!(
            "TLS {}, basic auth {}",
            if self.current.tls.is_some() {
                "on"
            } else {
                "off"
            },
            if self.current.users.is_empty() {
                "off"
            } else {
                "on"
            }
        )
    }

    /// `rate_limit` as read at startup (the toolkit reads it once too).
    pub fn rate_limit(&self) -> Option<(Duration, u32)> {
        self.rate_limit
    }

    /// Whether connections may be accepted now, each to be served with
    /// [`WebFile::current`]: not while a changed file loads (for at most
    /// [`LOAD_WAIT`]). Starts that load when a watched file's `stat`
    /// changed.
    pub fn ready(&mut self, now: Instant) -> bool {
        if let Some(since) = self.loading {
            return now >= since + LOAD_WAIT;
        }
        let stamps: Vec<Stamp> = self.files.iter().map(|f| stamp(f)).collect();
        if self.stamps.as_ref() == Some(&stamps) {
            return true;
        }
        if !matches!(&self.jobs, Ok(jobs) if jobs.send(()).is_ok()) {
            return true;
        }
        self.loading = Some(now);
        false
    }

    /// When accepting may resume without the load's result.
    pub fn wait_until(&self) -> Option<Instant> {
        self.loading.map(|since| since + LOAD_WAIT)
    }

    /// Takes the load thread's result, if it finished.
    pub fn finished(&mut self) {
        let Some(loaded) = self.done.lock().unwrap().take() else {
            return;
        };
        self.loading = None;
        self.current = loaded.current;
        match loaded.stamps {
            Some((files, stamps)) => {
                self.files = files;
                self.stamps = Some(stamps);
            }
            None => self.stamps = None,
        }
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<Web> {
        Arc::clone(&self.current)
    }
}

/// Builds a [`Web`] from a parsed file and the bytes read for it.
fn build(c: &WebConfig, snapshot: &Snapshot) -> Result<Arc<Web>, TlsError> {
    let tls = match &c.tls {
        Some(t) => Some(Arc::new(server_config(t, &snapshot[1..])?)),
        None => None,
    };
    let headers = c
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let cost = |h: &str| h.parse::<bcrypt::HashParts>().map_or(0, |p| p.get_cost());
    let dummy = c
        .users
        .iter()
        .max_by_key(|(_, h)| cost(h))
        .map(|(_, h)| h.clone())
        .unwrap_or_default();
    Ok(Arc::new(Web {
        tls,
        users: c.users.clone(),
        dummy,
        headers,
    }))
}

/// The PEM text of `pem`: inline, or the next of `files` (read in
/// [`named_files`]'s order).
fn pem_bytes<'a>(pem: &'a Pem, files: &mut impl Iterator<Item = &'a Vec<u8>>) -> &'a [u8] {
    match pem {
        Pem::Inline(s) => s.as_bytes(),
        Pem::File(_) => files.next().map_or(&[], |b| b.as_slice()),
    }
}

/// What the file names, for messages.
fn pem_name(pem: &Pem, key: &str) -> String {
    match pem {
        Pem::File(f) => f.display().to_string(),
        Pem::Inline(_) => format!("tls_server_config.{key}"),
    }
}

/// What is wrong with PEM text, in words: the library's messages quote
/// the offending lines, which may be anything (a key, a password file).
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "malformed PEM: a section has no END line",
        Error::IllegalSectionStart { .. } => "malformed PEM: a malformed BEGIN line",
        Error::Base64Decode(_) => "malformed PEM: a section is not valid base64",
        Error::NoItemsFound => "no PEM section of the expected kind",
        Error::SectionTooLarge => "malformed PEM: a section is too large",
        _ => "malformed PEM",
    }
}

/// Why rustls refuses a certificate and key, in words.
fn key_problem(e: &rustls::Error) -> &'static str {
    use rustls::InconsistentKeys;
    match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate"
        }
        rustls::Error::InconsistentKeys(_) => {
            "the private key cannot be checked against the certificate"
        }
        rustls::Error::InvalidCertificate(_) => "the certificate is not valid",
        _ => "the certificate and key are not usable together",
    }
}

fn certs(pem: &Pem, bytes: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            name: pem_name(pem, key),
            problem: pem_problem(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(pem_name(pem, key)));
    }
    Ok(certs)
}

/// The rustls server configuration for `t`; `files` are the bytes of the
/// files it names.
fn server_config(t: &TlsConfig, files: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let mut files = files.iter();
    let cert_pem = pem_bytes(&t.cert, &mut files);
    let key_pem = pem_bytes(&t.key, &mut files);
    let chain = certs(&t.cert, cert_pem, "cert")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        name: pem_name(&t.key, "key"),
        problem: pem_problem(&e),
    })?;
    let provider = Arc::new(provider(t)?);
    let mut versions = Vec::new();
    if t.min_version <= TlsVersion::Tls12 && t.max_version >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(TlsError::VersionsNotOffered);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuth::NoClientCert => Arc::new(rustls::server::NoClientAuth),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: t.client_auth == ClientAuth::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(ca) = &t.client_ca else {
                return Err(TlsError::NeedsCa(t.client_auth));
            };
            let mut roots = RootCertStore::empty();
            for c in certs(ca, pem_bytes(ca, &mut files), "client_ca")? {
                roots
                    .add(c)
                    .map_err(|_| TlsError::NotCa(pem_name(ca, "client_ca")))?;
            }
            let b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let b = if t.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| TlsError::Rustls(e.to_string()))?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair {
            cert: pem_name(&t.cert, "cert"),
            key: pem_name(&t.key, "key"),
            problem: key_problem(&e),
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites;
    Ok(config)
}

/// ring's suites and groups, narrowed and ordered by `cipher_suites` and
/// `curve_preferences` (Go's names). As in Go, `cipher_suites` orders TLS
/// 1.2 only; TLS 1.3's three are always offered.
fn provider(t: &TlsConfig) -> Result<CryptoProvider, TlsError> {
    let mut p = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut suites: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        for name in &t.cipher_suites {
            let tls13 = [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
            ];
            if tls13.contains(&name.as_str()) {
                continue;
            }
            let Some(s) = p
                .cipher_suites
                .iter()
                .find(|s| s.tls13().is_none() && format!("{:?}", s.suite()) == *name)
            else {
                return Err(TlsError::Suite {
                    name: webconfig::shown(name),
                    offered: tls12_names(&p),
                });
            };
            suites.push(*s);
        }
        p.cipher_suites = suites;
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &t.curve_preferences {
            let g = match name.as_str() {
                "X25519" => ring::kx_group::X25519,
                "CurveP256" => ring::kx_group::SECP256R1,
                "CurveP384" => ring::kx_group::SECP384R1,
                _ => return Err(TlsError::Curve(webconfig::shown(name))),
            };
            groups.push(g);
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn tls12_names(p: &CryptoProvider) -> String {
    let names: Vec<String> = p
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    names.join(", ")
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is
/// asked for (and required if `mandatory`) but not checked against any CA,
/// as Go does; the client still proves it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown user's password is checked against the hash that costs
    /// the most, so that the time taken does not single out the users.
    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let (cheap, dear) = (bcrypt::hash("a", 4).unwrap(), bcrypt::hash("b", 6).unwrap());
        let text = format!("basic_auth_users:\n  a: '{cheap}'\n  b: '{dear}'\n  c: '{cheap}'\n");
        let c = webconfig::parse(&text, Path::new("/")).unwrap();
        assert_eq!(build(&c, &vec![text.into_bytes()]).unwrap().dummy, dear);
    }
}
