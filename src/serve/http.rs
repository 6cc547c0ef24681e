//! HTTP/1.x for the exporter: a request head parsed by `httparse` (the
//! parser hyper uses: bare-LF line endings and leading empty lines accepted
//! as RFC 9112 §2.2 allows, anything but `HTTP/1.0`/`HTTP/1.1` refused),
//! routed to a scrape, the landing page or an error answer; answers carry
//! `Date`, `Content-Length` and `Connection: close`.
//!
//! Parsing one head of at most 8 KiB costs about a microsecond, nothing
//! beside a gather.

use std::sync::Arc;
use std::time::SystemTime;

/// Request line and headers, at most.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Headers in one request, at most.
const MAX_HEADERS: usize = 64;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An answer: status line and headers, then the body (shared by every
/// scrape of one gather).
pub struct Answer {
    pub head: Vec<u8>,
    pub body: Arc<Vec<u8>>,
    /// An answer to `HEAD`: the body is left out.
    pub head_only: bool,
}

impl Answer {
    pub fn new(
        status: &str,
        content_type: &str,
        body: Arc<Vec<u8>>,
        head_only: bool,
        extra: &str,
    ) -> Answer {
        let head = format!(
            "HTTP/1.1 {status}\r\nDate: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            httpdate::fmt_http_date(SystemTime::now()),
            body.len()
        )
        .into_bytes();
        let body = if head_only { Arc::default() } else { body };
        Answer {
            head,
            body,
            head_only,
        }
    }

    pub fn text(status: &str, body: &str, head_only: bool, extra: &str) -> Answer {
        Answer::new(
            status,
            "text/plain; charset=utf-8",
            Arc::new(body.as_bytes().to_vec()),
            head_only,
            extra,
        )
    }

    /// Adds header lines (`Name: value\r\n` each) before the blank line
    /// that ends the head.
    pub fn add_headers(&mut self, lines: &str) {
        let end = self.head.len() - 2;
        self.head.splice(end..end, lines.bytes());
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// The bytes from offset `done` on, up to the end of the part they are in.
    pub fn rest(&self, done: usize) -> &[u8] {
        match done.checked_sub(self.head.len()) {
            None => &self.head[done..],
            Some(b) => &self.body[b..],
        }
    }
}

/// What a request asks for.
pub enum Route {
    /// A scrape: wait for a gather (`HEAD` if true).
    Metrics(bool),
    /// An answer of ours (landing page, 404, 405): given to those let in.
    Answer(Answer),
    /// Not a request we can serve (400, 414, 431): answered before any
    /// authentication, as Go's server does.
    Refused(Answer),
}

impl Route {
    /// Whether the request was a `HEAD`.
    pub fn head_only(&self) -> bool {
        match self {
            Route::Metrics(head_only) => *head_only,
            Route::Answer(a) | Route::Refused(a) => a.head_only,
        }
    }
}

/// Credentials of `Authorization: Basic` (RFC 7617), as Go's
/// `Request.BasicAuth` reads them.
#[derive(Debug, PartialEq, Eq)]
pub struct Basic {
    pub user: String,
    pub password: String,
}

/// What the bytes received so far make.
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    Done(Route, Option<Basic>),
}

fn bad_request() -> Parsed {
    Parsed::Done(
        Route::Refused(Answer::text("400 Bad Request", "bad request\n", false, "")),
        None,
    )
}

/// Parses the request head in `buf` (what has arrived so far).
pub fn parse(buf: &[u8], metrics_path: &str) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_REQUEST => {
            Parsed::Done(route(&req, metrics_path), basic(&req))
        }
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => too_large(buf),
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST => too_large(buf),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => bad_request(),
    }
}

/// 414 when the request line alone is too long, else 431.
fn too_large(buf: &[u8]) -> Parsed {
    let line_done = buf[..buf.len().min(MAX_REQUEST)].contains(&b'\n');
    let (status, body) = if line_done {
        ("431 Request Header Fields Too Large", "request too large\n")
    } else {
        ("414 URI Too Long", "request line too long\n")
    };
    Parsed::Done(Route::Refused(Answer::text(status, body, false, "")), None)
}

/// The first `Authorization` header's basic credentials: `Basic ` (any
/// case), base64 of `user:password`; `None` when absent or malformed.
fn basic(req: &httparse::Request<'_, '_>) -> Option<Basic> {
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))?;
    let v = h.value;
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64_decode(&v[6..])?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Standard base64 with padding (RFC 4648 §4), as Go's `StdEncoding`
/// decodes it; `None` for anything else. Written here: a dozen lines
/// against a crate for one header.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (i, q) in s.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// The path of a request target: origin form as it is, absolute form
/// (`http://host/path`, RFC 9112 §3.2.2) without scheme and authority;
/// the query left out.
fn target_path(target: &str) -> Option<&str> {
    let path = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        Some(_) => return None,
        None if target.starts_with('/') => target,
        // `*` (OPTIONS) and authority form (CONNECT): no path of ours.
        None => return None,
    };
    Some(path.split(['?', '#']).next().unwrap_or(path))
}

fn route(req: &httparse::Request<'_, '_>, metrics_path: &str) -> Route {
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Route::Refused(Answer::text("400 Bad Request", "bad request\n", false, ""));
    };
    // HTTP/1.1 requests carry exactly one Host (RFC 9112 §3.2).
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if version == 1 && hosts != 1 || hosts > 1 {
        return Route::Refused(Answer::text(
            "400 Bad Request",
            "exactly one Host header\n",
            false,
            "",
        ));
    }
    if !framing_valid(req) {
        return Route::Refused(Answer::text(
            "400 Bad Request",
            "invalid Content-Length or Transfer-Encoding\n",
            false,
            "",
        ));
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Route::Answer(Answer::text(
            "405 Method Not Allowed",
            "only GET and HEAD\n",
            false,
            "Allow: GET, HEAD\r\n",
        ));
    }
    match target_path(target) {
        Some(p) if p == metrics_path => Route::Metrics(head_only),
        Some("/") => Route::Answer(landing(metrics_path, head_only)),
        _ => Route::Answer(Answer::text("404 Not Found", "not found\n", head_only, "")),
    }
}

/// Whether the request's body framing is valid (RFC 9112 §6.3): every
/// `Content-Length` a decimal number, all of them (and the items of a
/// list) the same, and not together with `Transfer-Encoding`, which a
/// proxy in front might read differently (request smuggling). The body
/// itself is never read, only drained.
fn framing_valid(req: &httparse::Request<'_, '_>) -> bool {
    let mut length: Option<&[u8]> = None;
    let mut encoded = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for item in h.value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                    return false;
                }
                if length.is_some_and(|l| l != item) {
                    return false;
                }
                length = Some(item);
            }
        }
    }
    !(encoded && length.is_some())
}

/// `s` with HTML's special characters escaped.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn landing(path: &str, head_only: bool) -> Answer {
    let version = env!("CARGO_PKG_VERSION");
    let path = html_escape(path);
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>telegraf-netstat</title></head>\n<body>\n\
         <h1>telegraf-netstat {version}</h1>\n\
         <p>TCP connections by state and UDP sockets, counted over NETLINK_SOCK_DIAG at every scrape.</p>\n\
         <p><a href=\"{path}\">Metrics</a></p>\n</body></html>\n"
    );
    Answer::new(
        "200 OK",
        "text/html; charset=utf-8",
        Arc::new(page.into_bytes()),
        head_only,
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(buf: &[u8]) -> String {
        match parse(buf, "/metrics") {
            Parsed::Partial => "partial".into(),
            Parsed::Done(Route::Metrics(h), _) => format!("metrics head={h}"),
            Parsed::Done(Route::Answer(a) | Route::Refused(a), _) => {
                String::from_utf8_lossy(&a.head)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            }
        }
    }

    #[test]
    fn routes() {
        for (request, want) in [
            (
                &b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                "metrics head=false",
            ),
            (
                b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                "metrics head=false",
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
                "metrics head=true",
            ),
            (b"GET /metrics HTTP/1.0\r\n\r\n", "metrics head=false"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK"),
            (
                b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
                "HTTP/1.1 404 Not Found",
            ),
            (
                b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"nonsense\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            // Bare LF line endings and a leading empty line (RFC 9112 §2.2).
            (b"GET /metrics HTTP/1.1\nHost: a\n\n", "metrics head=false"),
            (
                b"\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
                "metrics head=false",
            ),
            // Absolute form (§3.2.2).
            (
                b"GET http://h:1/metrics HTTP/1.1\r\nHost: h:1\r\n\r\n",
                "metrics head=false",
            ),
            (
                b"GET http://h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            (
                b"GET ftp://h/metrics HTTP/1.1\r\nHost: h\r\n\r\n",
                "HTTP/1.1 404 Not Found",
            ),
            // Body framing (RFC 9112 §6.3).
            (
                b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                "metrics head=false",
            ),
            (
                b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            // Versions and Host (§3.2).
            (
                b"GET /metrics HTTP/1.banana\r\nHost: a\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (
                b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"GET /metrics HTTP/1.1\r\nHost: a\r\n", "partial"),
            (b"GET /met", "partial"),
        ] {
            assert_eq!(
                status(request),
                want,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn too_large_heads() {
        let mut line = b"GET /".to_vec();
        line.resize(9 * 1024, b'a');
        assert_eq!(status(&line), "HTTP/1.1 414 URI Too Long");
        let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        head.resize(9 * 1024, b'a');
        assert_eq!(
            status(&head),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let mut many = b"GET /metrics HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            status(&many),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn basic_credentials_as_go_reads_them() {
        let creds = |header: &str| {
            let r = format!("GET /metrics HTTP/1.1\r\nHost: a\r\n{header}\r\n\r\n");
            match parse(r.as_bytes(), "/metrics") {
                Parsed::Done(_, b) => b.map(|b| (b.user, b.password)),
                Parsed::Partial => panic!("partial"),
            }
        };
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        // "alice:open sesame", "bob:", ":x", "a:b:c", "é:ü".
        assert_eq!(
            creds("Authorization: Basic YWxpY2U6b3BlbiBzZXNhbWU="),
            pair("alice", "open sesame")
        );
        assert_eq!(creds("authorization: basic Ym9iOg=="), pair("bob", ""));
        assert_eq!(creds("Authorization: BASIC Ong="), pair("", "x"));
        assert_eq!(creds("Authorization: Basic YTpiOmM="), pair("a", "b:c"));
        assert_eq!(creds("Authorization: Basic w6k6w7w="), pair("é", "ü"));
        for bad in [
            "X-Other: Basic YTpi",
            "Authorization: Bearer YTpi",
            "Authorization: Basic YTpi=",
            "Authorization: Basic YT=pi",
            "Authorization: Basic YWxpY2U",
            "Authorization: Basic !!!!",
            "Authorization: Basic bm9jb2xvbg==",
            "Authorization: Basic",
        ] {
            assert_eq!(creds(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_have_a_date_and_escape_the_landing_page() {
        let a = Answer::text("200 OK", "x", false, "");
        let head = String::from_utf8(a.head.clone()).unwrap();
        let date = head.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(a.rest(0), &a.head[..]);
        assert_eq!(a.rest(a.head.len()), b"x");
        let page = landing("/m<\"&'>", false);
        let body = String::from_utf8(page.body.to_vec()).unwrap();
        assert!(
            body.contains("href=\"/m&lt;&quot;&amp;&#39;&gt;\""),
            "{body}"
        );
    }
}
