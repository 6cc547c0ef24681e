//! `--web.config.file` at run time: the file and the certificates it names
//! read safely, turned into one [`Web`] (a rustls server configuration,
//! the basic-auth users, the response headers), and read again for every
//! new connection, as the exporter-toolkit does (`GetConfigForClient` in
//! its web/tls_config.go), so that a certificate replaced on disk is served
//! on the next connection without a restart.
//!
//! Re-reading costs a few small reads per connection: the bytes of the file
//! and of the files it names are compared with the last ones, and only a
//! change is parsed and built again. A change that does not load keeps the
//! last good configuration and says why once (`E! `); the next good one is
//! said too (`I! `). Whether the port speaks TLS is fixed at startup: a
//! file that turns TLS on or off later is refused like any other error.
//!
//! TLS is rustls (0.23) with its `ring` provider: pure Rust but for ring's
//! small C and assembly core, which builds for the static musl targets
//! with a C compiler for the target (`dist/build`). TLS 1.2 and 1.3 only:
//! rustls offers nothing older, so `min_version: TLS10` or `TLS11` serves
//! from TLS 1.2 (said at startup) and a `max_version` below 1.2 is refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use telegraf_netstat::log::Logger;

use super::webconfig::{self, ClientAuth, Pem, TlsConfig, TlsVersion, WebConfig};

/// The most a web config, certificate or key file may hold.
const MAX_FILE: u64 = 1 << 20;

/// One loaded configuration, shared by the connections accepted under it.
pub struct Web {
    pub tls: Option<Arc<ServerConfig>>,
    /// User and bcrypt hash; empty: no authentication.
    pub users: Vec<(String, String)>,
    /// `http_server_config.headers`, as header lines (`Name: value\r\n`).
    pub headers: String,
}

impl Web {
    /// Plain HTTP, no authentication: serving without `--web.config.file`.
    pub fn plain() -> Arc<Web> {
        Arc::new(Web {
            tls: None,
            users: Vec::new(),
            headers: String::new(),
        })
    }
}

/// The file's bytes and those of the files it names, in order: what a
/// change is detected on.
type Snapshot = Vec<Vec<u8>>;

/// The configuration file and what was last loaded from it.
pub struct WebFile {
    path: PathBuf,
    parsed: WebConfig,
    snapshot: Snapshot,
    current: Arc<Web>,
    /// The last problem said, with what was read: said once, not per
    /// connection.
    refused: Option<(String, Snapshot)>,
    /// False while a change is refused: the gather thread reads it for
    /// `netstat_web_config_last_reload_successful`.
    loaded: Arc<AtomicBool>,
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

/// Reads a regular file of at most [`MAX_FILE`] bytes. Opened without
/// blocking, so a FIFO put in a certificate's place cannot hang the
/// exporter's loop; symbolic links are followed (a Kubernetes Secret's
/// files are links).
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    use rustix::fs::{fstat, open, FileType, Mode, OFlags};
    let why = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let fd = open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| why(&e))?;
    let st = fstat(&fd).map_err(|e| why(&e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(why(&"not a regular file"));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::from(fd), MAX_FILE + 1),
        &mut bytes,
    )
    .map_err(|e| why(&e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(why(&format_args!("larger than {MAX_FILE} bytes")));
    }
    Ok(bytes)
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

/// Parses the file's bytes `text` (read from `path`) and reads the files
/// it names.
fn parse_and_read(path: &Path, text: Vec<u8>) -> Result<(WebConfig, Snapshot), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let parsed = std::str::from_utf8(&text)
        .map_err(|_| "not UTF-8 text".to_string())
        .and_then(|t| webconfig::parse(t, dir))?;
    let mut snapshot = vec![text];
    for f in named_files(&parsed) {
        snapshot.push(read_file(f)?);
    }
    Ok((parsed, snapshot))
}

impl WebFile {
    /// Loads the file at startup; `Err` names the problem (a usage error).
    pub fn open(path: &Path, log: &Logger) -> Result<WebFile, String> {
        let (parsed, snapshot) = parse_and_read(path, read_file(path)?)?;
        let current = build(&parsed, &snapshot)?;
        if let Some(t) = &parsed.tls {
            if t.min_version < TlsVersion::Tls12 {
                log.warn(format_args!(
                    "web config {}: min_version below TLS12 serves from TLS 1.2 (this exporter offers TLS 1.2 and 1.3)",
                    path.display()
                ));
            }
        }
        Ok(WebFile {
            path: path.to_path_buf(),
            parsed,
            snapshot,
            current,
            refused: None,
            loaded: Arc::new(AtomicBool::new(true)),
        })
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
    pub fn rate_limit(&self) -> Option<(std::time::Duration, u32)> {
        self.parsed.rate_limit
    }

    /// The configuration for a new connection: the file and its
    /// certificates read again, loaded again if they changed.
    pub fn current(&mut self, log: &Logger) -> Arc<Web> {
        let result = self.reload(log);
        self.loaded.store(result.is_ok(), Ordering::Relaxed);
        if let Err(problem) = result {
            if self.refused.as_ref() != Some(&problem) {
                log.error(format_args!(
                    "web config {}: {}; serving with the last good configuration",
                    self.path.display(),
                    problem.0
                ));
                self.refused = Some(problem);
            }
        }
        Arc::clone(&self.current)
    }

    /// Loads the file again if it or a file it names changed; `Err` holds
    /// the problem and what was read (to say each problem once).
    fn reload(&mut self, log: &Logger) -> Result<(), (String, Snapshot)> {
        // Each file read once: an unchanged file keeps its parse, and the
        // files it names, read to compare, are the new snapshot if changed.
        let text = read_file(&self.path).map_err(|e| (e, Vec::new()))?;
        let (parsed, snapshot) = if text == self.snapshot[0] {
            let mut snapshot = vec![text];
            for f in named_files(&self.parsed) {
                snapshot.push(read_file(f).map_err(|e| (e, Vec::new()))?);
            }
            if snapshot == self.snapshot {
                // Back to what is served after a refused change: said, so
                // the E! line is not left standing.
                if self.refused.take().is_some() {
                    log.info(format_args!(
                        "web config {} is again the one in use",
                        self.path.display()
                    ));
                }
                return Ok(());
            }
            (self.parsed.clone(), snapshot)
        } else {
            parse_and_read(&self.path, text).map_err(|e| (e, Vec::new()))?
        };
        if parsed.tls.is_some() != self.parsed.tls.is_some() {
            return Err((
                "turning TLS on or off needs a restart".to_string(),
                snapshot,
            ));
        }
        let web = build(&parsed, &snapshot).map_err(|e| (e, snapshot.clone()))?;
        log.info(format_args!("web config {} reloaded", self.path.display()));
        self.current = web;
        self.parsed = parsed;
        self.snapshot = snapshot;
        self.refused = None;
        Ok(())
    }
}

/// Builds a [`Web`] from a parsed file and the bytes read for it.
fn build(c: &WebConfig, snapshot: &Snapshot) -> Result<Arc<Web>, String> {
    let tls = match &c.tls {
        Some(t) => Some(Arc::new(server_config(t, &snapshot[1..])?)),
        None => None,
    };
    let headers = c
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    Ok(Arc::new(Web {
        tls,
        users: c.users.clone(),
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

fn certs(pem: &Pem, bytes: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", pem_name(pem, key)))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", pem_name(pem, key)));
    }
    Ok(certs)
}

/// The rustls server configuration for `t`; `files` are the bytes of the
/// files it names.
fn server_config(t: &TlsConfig, files: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let mut files = files.iter();
    let cert_pem = pem_bytes(&t.cert, &mut files);
    let key_pem = pem_bytes(&t.key, &mut files);
    let chain = certs(&t.cert, cert_pem, "cert")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{}: no private key ({e})", pem_name(&t.key, "key")))?;
    let provider = Arc::new(provider(t)?);
    let mut versions = Vec::new();
    if t.min_version <= TlsVersion::Tls12 && t.max_version >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(
            "tls_server_config.max_version: this exporter offers TLS 1.2 and 1.3 only".into(),
        );
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
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
                return Err(format!(
                    "tls_server_config: client_auth_type {:?} needs client_ca_file (or client_ca)",
                    t.client_auth
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in certs(ca, pem_bytes(ca, &mut files), "client_ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", pem_name(ca, "client_ca")))?;
            }
            let b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let b = if t.client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| format!("tls_server_config: {e}"))?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {}: {e}",
                pem_name(&t.cert, "cert"),
                pem_name(&t.key, "key")
            )
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites;
    Ok(config)
}

/// ring's suites and groups, narrowed and ordered by `cipher_suites` and
/// `curve_preferences` (Go's names). As in Go, `cipher_suites` orders TLS
/// 1.2 only; TLS 1.3's three are always offered.
fn provider(t: &TlsConfig) -> Result<CryptoProvider, String> {
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
                return Err(format!(
                    "tls_server_config.cipher_suites: {name:?} is not offered by this exporter (TLS 1.2 suites: {})",
                    tls12_names(&p)
                ));
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
                _ => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: {name:?} is not offered by this exporter (X25519, CurveP256, CurveP384)"
                    ))
                }
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
