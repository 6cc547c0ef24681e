//! `--web.config.file`: the web configuration file every Prometheus
//! exporter built on the exporter-toolkit reads (docs/web-configuration.md
//! and web/tls_config.go in prometheus/exporter-toolkit, v0.17.1-12), parsed
//! and checked into one [`WebConfig`]: TLS (`tls_server_config`), response
//! headers (`http_server_config`), basic auth (`basic_auth_users`) and
//! `rate_limit`.
//!
//! Read as the toolkit reads it: unknown keys are errors (it unmarshals
//! strictly); the defaults are its own (TLS 1.2 to 1.3, `NoClientCert`,
//! `prefer_server_cipher_suites: true`); TLS is on when any of
//! the certificate, key, client CA or client auth keys is set; relative
//! file names are taken from the file's directory; a client CA without a
//! client auth policy, an unknown policy, a header other than the five the
//! toolkit allows (or a value it does not allow) and a password that is not
//! a bcrypt hash are errors.
//!
//! Two keys are refused rather than half-done: `client_allowed_sans`
//! (webpki, which verifies client certificates here, does not list a
//! certificate's names to compare) and any cipher suite or curve rustls
//! does not offer (`web`). `http2` is checked and moot: HTTP/1.1 only.
//!
//! Crates: `yaml-rust2` (maintained, pure Rust, no `unsafe` in its parser)
//! reads YAML into a tree we walk ourselves, so every unknown key is named
//! with its path (serde would need a derive crate and still not name the
//! path); `bcrypt` (the RustCrypto-based crate most Rust servers use) checks
//! the hashes here and passwords when serving, with a constant-time
//! comparison (`subtle`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use telegraf_netstat::values::ValueError;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{ScanError, Yaml, YamlLoader};

/// The most nodes the file may make once its aliases are expanded. A web
/// config has a few dozen; an alias bomb (each level a list of aliases of
/// the one before) makes billions from a few hundred bytes, which the YAML
/// library would build by copying.
const MAX_NODES: u64 = 10_000;
/// The deepest nesting: the YAML library loads (and drops) a tree
/// recursively, so a file of a million `[` would overflow the stack.
const MAX_DEPTH: usize = 32;
/// The longest name or value an error message repeats.
const MAX_SHOWN: usize = 64;

/// Whether `s` may appear in a message: a short name or value made of
/// letters, digits and `_-.:/=`. Anything else (a line of `/etc/shadow`
/// named as the config, a certificate, a password) is never repeated.
fn plain(s: &str) -> bool {
    s.len() <= MAX_SHOWN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.=/ ".contains(c))
}

/// `s` for a message: itself if [`plain`], else words saying it is not shown.
pub fn shown(s: &str) -> String {
    if plain(s) {
        format!("{s:?}")
    } else {
        "(a value not shown)".to_string()
    }
}

/// A key for a message, as [`shown`] but unquoted.
fn key_shown(s: &str) -> &str {
    if plain(s) {
        s
    } else {
        "(a key not shown)"
    }
}

/// Why a web config is refused: where in it, and what is wrong. Names
/// and values another user wrote appear only as [`shown`] lets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The bytes are not UTF-8.
    NotText,
    /// Not YAML, in the YAML library's words (or fewer) and its position.
    Yaml {
        what: String,
        line: usize,
        column: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep { line: usize },
    /// Aliases that expand past [`MAX_NODES`].
    TooManyNodes { line: usize },
    /// More than one YAML document.
    Documents,
    /// A key the toolkit does not know: its path.
    UnknownKey(String),
    /// The value at this key's path is wrong.
    At { at: String, why: Why },
}

/// What is wrong with a value of the web config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    KeyNotString,
    NotMapping,
    NotString,
    NotBoolean,
    NotList,
    NotWholeNumber,
    OutOfRange,
    /// Not a TLS version name ([`shown`]).
    TlsVersion(String),
    /// A header the toolkit does not let a file set ([`shown`]).
    Header(String),
    /// A header value it does not allow ([`shown`]), and those it does.
    HeaderValue {
        value: String,
        allowed: &'static [&'static str],
    },
    /// A duration that does not parse, and why, when it may be repeated.
    Duration(Option<ValueError>),
    /// A whole `htpasswd` line where the hash alone goes.
    HtpasswdLine,
    NotBcrypt,
    /// `client_allowed_sans` (see the module's doc).
    Unsupported,
    MissingCert,
    MissingKey,
    /// A `client_auth_type` no policy has ([`shown`]).
    ClientAuth(String),
    CaWithoutPolicy,
    VersionsReversed,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NotText => f.write_str("not UTF-8 text"),
            ConfigError::Yaml { what, line, column } => {
                write!(f, "not YAML: {what} at line {line} column {column}")
            }
            ConfigError::TooDeep { line } => {
                write!(f, "nested deeper than {MAX_DEPTH} levels at line {line}")
            }
            ConfigError::TooManyNodes { line } => write!(
                f,
                "its aliases expand to more than {MAX_NODES} nodes (line {line}); a web config needs no aliases"
            ),
            ConfigError::Documents => f.write_str("more than one YAML document"),
            ConfigError::UnknownKey(key) => write!(f, "unknown key {key}"),
            ConfigError::At { at, why } => write!(f, "{at}: {why}"),
        }
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::KeyNotString => f.write_str("a key is not a string"),
            Why::NotMapping => f.write_str("expected a mapping"),
            Why::NotString => f.write_str("expected a string"),
            Why::NotBoolean => f.write_str("expected true or false"),
            Why::NotList => f.write_str("expected a list"),
            Why::NotWholeNumber => f.write_str("expected a whole number"),
            Why::OutOfRange => f.write_str("out of range"),
            Why::TlsVersion(v) => {
                write!(f, "unknown TLS version {v} (TLS10, TLS11, TLS12 or TLS13)")
            }
            Why::Header(name) => write!(f, "HTTP header {name} can not be configured"),
            Why::HeaderValue { value, allowed } => write!(f, "{value} is not one of {allowed:?}"),
            Why::Duration(Some(e)) => write!(f, "{e}"),
            Why::Duration(None) => f.write_str("not a duration (e.g. 1s or 250ms)"),
            Why::HtpasswdLine => f.write_str("not a bcrypt hash: this is a whole htpasswd line (user:hash); keep only the hash after the first colon"),
            Why::NotBcrypt => f.write_str("not a bcrypt hash (make one with htpasswd -nBC 10 USER and keep what follows the colon)"),
            Why::Unsupported => f.write_str("not supported by this exporter (leave it out)"),
            Why::MissingCert => f.write_str("missing one of cert or cert_file"),
            Why::MissingKey => f.write_str("missing one of key or key_file"),
            Why::ClientAuth(v) => write!(f, "invalid value {v}"),
            Why::CaWithoutPolicy => f.write_str(
                "a client CA is configured without a client auth policy (client_auth_type)",
            ),
            Why::VersionsReversed => f.write_str("min_version is above max_version"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `why` about the value at `place`.
fn at(place: &str, why: Why) -> ConfigError {
    ConfigError::At {
        at: place.into(),
        why,
    }
}

/// A key the toolkit does not know, by its path.
fn unknown(path: &str) -> ConfigError {
    ConfigError::UnknownKey(path.into())
}

/// What the YAML library says is wrong, in its words and position; its
/// message for a duplicated key repeats the key, so that one is reworded.
fn yaml_error(e: &ScanError) -> ConfigError {
    let m = e.marker();
    let what = if e.info().contains("duplicated key") {
        "a key given twice"
    } else if plain(e.info()) || e.info().starts_with("while ") || e.info().starts_with("did not") {
        e.info()
    } else {
        "malformed"
    };
    ConfigError::Yaml {
        what: what.into(),
        line: m.line(),
        column: m.col() + 1,
    }
}

/// Refuses a file whose tree, aliases expanded, would exceed [`MAX_NODES`]
/// or [`MAX_DEPTH`], from the parser's events alone (nothing is built):
/// each anchored node's size is noted when it ends, an alias counts that
/// size, and every open collection's running size is checked.
fn check_size(text: &str) -> Result<(), ConfigError> {
    let mut parser = Parser::new_from_str(text);
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut anchors: Vec<(usize, u64)> = Vec::new();
    let mut total = 0u64;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| yaml_error(&e))?;
        let ended = match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_DEPTH {
                    return Err(ConfigError::TooDeep { line: mark.line() });
                }
                open.push((anchor, 1));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop(),
            Event::Scalar(_, _, anchor, _) => Some((anchor, 1)),
            Event::Alias(id) => {
                let size = anchors.iter().rev().find(|a| a.0 == id).map_or(1, |a| a.1);
                Some((0, size))
            }
            _ => None,
        };
        let Some((anchor, size)) = ended else {
            continue;
        };
        if anchor > 0 {
            anchors.push((anchor, size));
        }
        let into = match open.last_mut() {
            Some(parent) => &mut parent.1,
            None => &mut total,
        };
        *into = into.saturating_add(size);
        if *into > MAX_NODES {
            return Err(ConfigError::TooManyNodes { line: mark.line() });
        }
    }
}

/// Where a certificate, key or CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

/// `client_auth_type`, named as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    /// Also spelled `RequireClientCert` (kept by the toolkit).
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: Pem,
    pub key: Pem,
    pub client_auth: ClientAuth,
    pub client_ca: Option<Pem>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Go's names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...); empty:
    /// the library's defaults.
    pub cipher_suites: Vec<String>,
    /// Go's names (`X25519`, `CurveP256`, ...); empty: the defaults.
    pub curve_preferences: Vec<String>,
    pub prefer_server_cipher_suites: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsConfig>,
    /// Response headers, in the file's order.
    pub headers: Vec<(String, String)>,
    /// User and bcrypt hash, in the file's order; empty: no basic auth.
    pub users: Vec<(String, String)>,
    /// `rate_limit`: at most `burst` requests at once, one more per
    /// `interval`; `None` when absent or the interval is 0.
    pub rate_limit: Option<(Duration, u32)>,
}

/// Headers the toolkit lets a file set, and the values it allows (`None`:
/// any) (`extraHTTPHeaders` in web/handler.go).
const HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// A mapping's entries, with string keys.
fn entries<'a>(y: &'a Yaml, place: &str) -> Result<Vec<(&'a str, &'a Yaml)>, ConfigError> {
    match y {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| match k {
                Yaml::String(k) => Ok((k.as_str(), v)),
                _ => Err(at(place, Why::KeyNotString)),
            })
            .collect(),
        _ => Err(at(place, Why::NotMapping)),
    }
}

fn string(y: &Yaml, place: &str) -> Result<String, ConfigError> {
    match y {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Integer(n) => Ok(n.to_string()),
        Yaml::Null => Ok(String::new()),
        _ => Err(at(place, Why::NotString)),
    }
}

fn boolean(y: &Yaml, place: &str) -> Result<bool, ConfigError> {
    match y {
        Yaml::Boolean(b) => Ok(*b),
        _ => Err(at(place, Why::NotBoolean)),
    }
}

fn strings(y: &Yaml, place: &str) -> Result<Vec<String>, ConfigError> {
    match y {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Array(a) => a.iter().map(|v| string(v, place)).collect(),
        _ => Err(at(place, Why::NotList)),
    }
}

fn version(s: &str, place: &str) -> Result<TlsVersion, ConfigError> {
    Ok(match s {
        "TLS10" => TlsVersion::Tls10,
        "TLS11" => TlsVersion::Tls11,
        "TLS12" => TlsVersion::Tls12,
        "TLS13" => TlsVersion::Tls13,
        _ => return Err(at(place, Why::TlsVersion(shown(s)))),
    })
}

/// Parses the file's text; relative file names are taken from `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, ConfigError> {
    check_size(text)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| yaml_error(&e))?;
    let root = match docs.as_slice() {
        [] => &Yaml::Null,
        [one] => one,
        _ => return Err(ConfigError::Documents),
    };
    let mut c = WebConfig {
        tls: None,
        headers: Vec::new(),
        users: Vec::new(),
        rate_limit: None,
    };
    for (key, v) in entries(root, "the file")? {
        match key {
            "tls_server_config" => c.tls = tls(v, dir)?,
            "http_server_config" => {
                for (k, v) in entries(v, key)? {
                    let place = format!("{key}.{}", key_shown(k));
                    match k {
                        // Checked, then moot: this exporter speaks HTTP/1.1
                        // only (it offers no ALPN, so a client asking for
                        // HTTP/2 over TLS goes on with HTTP/1.1).
                        "http2" => {
                            boolean(v, &place)?;
                        }
                        "headers" => {
                            for (name, value) in entries(v, &place)? {
                                let value = string(value, &format!("{place}.{}", key_shown(name)))?;
                                let Some((_, allowed)) = HEADERS.iter().find(|h| h.0 == name)
                                else {
                                    return Err(at(&place, Why::Header(shown(name))));
                                };
                                if let Some(allowed) = allowed {
                                    if !allowed.contains(&value.as_str()) {
                                        return Err(at(
                                            &format!("{place}.{name}"),
                                            Why::HeaderValue {
                                                value: shown(&value),
                                                allowed,
                                            },
                                        ));
                                    }
                                }
                                c.headers.push((name.to_string(), value));
                            }
                        }
                        _ => return Err(unknown(&format!("{key}.{}", key_shown(k)))),
                    }
                }
            }
            "basic_auth_users" => {
                for (user, hash) in entries(v, key)? {
                    let place = format!("{key}.{}", key_shown(user));
                    let hash = string(hash, &place)?;
                    c.users.push((user.to_string(), bcrypt_hash(hash, &place)?));
                }
            }
            "rate_limit" => {
                let (mut interval, mut burst) = (Duration::ZERO, 0u32);
                for (k, v) in entries(v, key)? {
                    let place = format!("{key}.{}", key_shown(k));
                    match k {
                        "interval" => {
                            let s = string(v, &place)?;
                            interval =
                                telegraf_netstat::values::parse_duration(&s).map_err(|e| {
                                    at(&place, Why::Duration(Some(e).filter(|_| plain(&s))))
                                })?;
                        }
                        "burst" => {
                            burst = match v {
                                Yaml::Integer(n) => {
                                    u32::try_from(*n).map_err(|_| at(&place, Why::OutOfRange))?
                                }
                                _ => return Err(at(&place, Why::NotWholeNumber)),
                            }
                        }
                        _ => return Err(unknown(&format!("{key}.{}", key_shown(k)))),
                    }
                }
                c.rate_limit = (!interval.is_zero()).then_some((interval, burst));
            }
            _ => return Err(unknown(key_shown(key))),
        }
    }
    Ok(c)
}

/// A `basic_auth_users` value checked to be a bcrypt hash. A whole
/// `htpasswd -nB` line (`user:$2y$...`) gets a hint; the value itself is
/// never repeated (it may be a password).
fn bcrypt_hash(value: String, place: &str) -> Result<String, ConfigError> {
    if value.parse::<bcrypt::HashParts>().is_ok() {
        return Ok(value);
    }
    let line = value
        .split_once(':')
        .is_some_and(|(_, h)| h.parse::<bcrypt::HashParts>().is_ok());
    Err(at(
        place,
        if line {
            Why::HtpasswdLine
        } else {
            Why::NotBcrypt
        },
    ))
}

fn tls(y: &Yaml, dir: &Path) -> Result<Option<TlsConfig>, ConfigError> {
    const AT: &str = "tls_server_config";
    let file = |s: String| {
        Pem::File(if Path::new(&s).is_absolute() {
            s.into()
        } else {
            dir.join(s)
        })
    };
    let (mut cert, mut cert_file, mut key, mut key_file) = (None, None, None, None);
    let (mut ca, mut ca_file, mut auth) = (None, None, None);
    let mut t = TlsConfig {
        cert: Pem::Inline(String::new()),
        key: Pem::Inline(String::new()),
        client_auth: ClientAuth::NoClientCert,
        client_ca: None,
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        cipher_suites: Vec::new(),
        curve_preferences: Vec::new(),
        prefer_server_cipher_suites: true,
    };
    for (k, v) in entries(y, AT)? {
        let place = format!("{AT}.{}", key_shown(k));
        let s = || string(v, &place).map(|s| Some(s).filter(|s| !s.is_empty()));
        match k {
            "cert" => cert = s()?,
            "cert_file" => cert_file = s()?,
            "key" => key = s()?,
            "key_file" => key_file = s()?,
            "client_ca" => ca = s()?,
            "client_ca_file" => ca_file = s()?,
            "client_auth_type" => auth = s()?,
            // Go checks the names against the certificate's DNS, e-mail,
            // IP and URI names; the verifier here (webpki) lists none of
            // them, so the key is refused rather than ignored.
            "client_allowed_sans" if !strings(v, &place)?.is_empty() => {
                return Err(at(&place, Why::Unsupported))
            }
            "client_allowed_sans" => {}
            "min_version" => t.min_version = version(&string(v, &place)?, &place)?,
            "max_version" => t.max_version = version(&string(v, &place)?, &place)?,
            "cipher_suites" => t.cipher_suites = strings(v, &place)?,
            "curve_preferences" => t.curve_preferences = strings(v, &place)?,
            "prefer_server_cipher_suites" => t.prefer_server_cipher_suites = boolean(v, &place)?,
            _ => return Err(unknown(&format!("{AT}.{}", key_shown(k)))),
        }
    }
    let enabled = [&cert, &cert_file, &key, &key_file, &ca, &ca_file, &auth]
        .iter()
        .any(|v| v.is_some());
    if !enabled {
        return Ok(None);
    }
    t.cert = match (cert_file, cert) {
        (Some(f), _) => file(f),
        (None, Some(pem)) => Pem::Inline(pem),
        (None, None) => return Err(at(AT, Why::MissingCert)),
    };
    t.key = match (key_file, key) {
        (Some(f), _) => file(f),
        (None, Some(pem)) => Pem::Inline(pem),
        (None, None) => return Err(at(AT, Why::MissingKey)),
    };
    t.client_ca = match (ca_file, ca) {
        (Some(f), _) => Some(file(f)),
        (None, pem) => pem.map(Pem::Inline),
    };
    t.client_auth = match auth.as_deref() {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        Some("RequireAnyClientCert" | "RequireClientCert") => ClientAuth::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => {
            return Err(at(
                &format!("{AT}.client_auth_type"),
                Why::ClientAuth(shown(other)),
            ))
        }
    };
    if t.client_ca.is_some() && t.client_auth == ClientAuth::NoClientCert {
        return Err(at(AT, Why::CaWithoutPolicy));
    }
    if t.min_version > t.max_version {
        return Err(at(AT, Why::VersionsReversed));
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn ok(text: &str) -> WebConfig {
        parse(text, Path::new("/etc/x")).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text, Path::new("/etc/x")).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_file_is_plain_http_without_auth() {
        let c = ok("");
        assert_eq!((c.tls, c.users.len(), c.rate_limit), (None, 0, None));
        assert_eq!(ok("tls_server_config:\n").tls, None);
    }

    #[test]
    fn tls_with_the_toolkit_s_defaults_and_relative_files() {
        let c = ok("tls_server_config:\n  cert_file: server.crt\n  key_file: /k/server.key\n");
        let t = c.tls.unwrap();
        assert_eq!(t.cert, Pem::File("/etc/x/server.crt".into()));
        assert_eq!(t.key, Pem::File("/k/server.key".into()));
        assert_eq!(
            (t.min_version, t.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
        assert_eq!(t.client_auth, ClientAuth::NoClientCert);
        assert!(t.prefer_server_cipher_suites);
        let m = ok("tls_server_config:\n  cert: |\n    PEM\n  key: K\n  client_auth_type: RequireClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n");
        let t = m.tls.unwrap();
        assert_eq!(t.cert, Pem::Inline("PEM\n".into()));
        assert_eq!(t.client_auth, ClientAuth::RequireAnyClientCert);
        assert_eq!(t.client_ca, Some(Pem::File("/etc/x/ca.pem".into())));
        assert_eq!(t.min_version, TlsVersion::Tls13);
    }

    #[test]
    fn what_the_toolkit_refuses_is_refused_with_its_place() {
        for (text, says) in [
            ("tls_server_config:\n  cert_file: a\n", "missing one of key or key_file"),
            ("tls_server_config:\n  key_file: a\n", "missing one of cert or cert_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "without a client auth policy"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n", "client_auth_type: invalid value \"Maybe\""),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n", "unknown TLS version"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", "min_version is above max_version"),
            ("tls_server_config:\n  cert_fil: a\n", "unknown key tls_server_config.cert_fil"),
            ("basic_auth: {}\n", "unknown key basic_auth"),
            ("http_server_config:\n  headers:\n    Server: x\n", "\"Server\" can not be configured"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "is not one of"),
            ("basic_auth_users:\n  alice: secret\n", "basic_auth_users.alice: not a bcrypt hash"),
            ("rate_limit:\n  interval: soon\n", "rate_limit.interval"),
            ("http_server_config:\n  http2: maybe\n", "http_server_config.http2: expected true or false"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n", "client_allowed_sans: not supported"),
            ("- a\n", "expected a mapping"),
            ("a: [\n", "not YAML"),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn users_headers_and_rate_limit() {
        let c = ok(&format!(
            "basic_auth_users:\n  alice: {HASH}\n  bob: '{HASH}'\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=3600\nrate_limit:\n  interval: 1s\n  burst: 5\n"
        ));
        assert_eq!(
            c.users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(
            c.headers[1],
            ("Strict-Transport-Security".into(), "max-age=3600".into())
        );
        assert_eq!(c.rate_limit, Some((Duration::from_secs(1), 5)));
        // The toolkit's own fixed hash is of "fakepassword".
        assert!(bcrypt::verify("fakepassword", HASH).unwrap());
    }

    /// The 430-byte bomb of issue 30: nine levels of nine aliases of the
    /// level before, 9^9 nodes expanded; refused from the events alone, in
    /// milliseconds. So is nesting deep enough to overflow the loader's
    /// recursion.
    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_before_loading() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=9 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let t = std::time::Instant::now();
        let e = err(&bomb);
        assert!(e.contains("expand to more than 10000 nodes"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let e = err(&deep(100));
        assert!(e.contains("nested deeper than 32 levels"), "{e}");
        // The scanner's own limit comes first there.
        assert!(err(&deep(1 << 20)).contains("recursion limit exceeded"));
        // A few aliases of small nodes are fine.
        let c = ok(&format!(
            "basic_auth_users:\n  alice: &h '{HASH}'\n  bob: *h\n"
        ));
        assert_eq!(c.users[1].1, HASH);
    }

    /// What the file holds is never repeated in a message: a key, value or
    /// password that is not a short plain name is described, not quoted.
    #[test]
    fn messages_do_not_repeat_the_file_s_content() {
        for (text, says, hidden) in [
            ("root:$6$saltsalt$hashhash:19000:0:99999:7:::\n", "", "saltsalt"),
            ("'root:*:19000:0:99999:7:::': 1\n", "unknown key (a key not shown)", "19000"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: 'secret value!'\n", "unknown TLS version (a value not shown)", "secret"),
            ("basic_auth_users:\n  alice: hunter2-password!\n", "alice: not a bcrypt hash", "hunter2"),
            ("a: 1\na: 2\n", "a key given twice", "a: 1"),
        ] {
            let e = err(text);
            assert!(e.contains(says) && !e.contains(hidden), "{text:?}: {e}");
        }
    }

    /// `htpasswd -nB` prints `user:hash`; pasted whole it gets a hint.
    #[test]
    fn a_whole_htpasswd_line_gets_a_hint() {
        let e = err(&format!("basic_auth_users:\n  alice: 'alice:{HASH}'\n"));
        assert!(
            e.contains(
                "a whole htpasswd line (user:hash); keep only the hash after the first colon"
            ),
            "{e}"
        );
        assert!(!e.contains("QOauh"), "{e}");
    }
}
