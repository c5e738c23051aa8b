//! The metrics endpoint's HTTP/1.1 exchange, without I/O: parse a request head, decide
//! (token, method, path), and build the response.
//!
//! Hand-written on purpose: the endpoint answers exactly one resource (`GET /metrics`),
//! one request per connection (`Connection: close`), with no body, no chunking and no
//! keep-alive. That is a few dozen lines of RFC 9112 §3 (request line) and §5 (header
//! fields), far less attack surface and build time than a second HTTP stack; the web
//! mail listeners will bring axum, and this can move onto it then.
//!
//! Access (DATA-PATHS "Scraper → metrics"): on loopback anyone local may read; bound
//! beyond loopback the listener runs HTTPS and every request must carry
//! `Authorization: Bearer <token>` (RFC 6750 §2.1), compared in constant time.

use sha2::{Digest, Sha256};

/// Largest request head accepted (request line and header fields), in octets.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest single line of it.
pub const MAX_LINE: usize = 4 * 1024;
/// Most header fields accepted.
pub const MAX_FIELDS: usize = 64;

/// Who may scrape.
#[derive(Clone)]
pub struct ScrapeAccess {
    token: Option<String>,
}

impl std::fmt::Debug for ScrapeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ScrapeAccess")
            .field("token_required", &self.token.is_some())
            .finish()
    }
}

impl ScrapeAccess {
    /// Anyone who can connect (the listener is on loopback).
    pub fn open() -> ScrapeAccess {
        ScrapeAccess { token: None }
    }
    /// Only requests with `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> ScrapeAccess {
        ScrapeAccess {
            token: Some(token.to_string()),
        }
    }
    /// Whether a bearer token is required (so the endpoint may face a network).
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }
}

/// The parts of a request the endpoint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method (`GET`, `HEAD`, …), as sent.
    pub method: String,
    /// The request-target, query included (RFC 9112 §3.2).
    pub target: String,
    authorization: Option<Vec<u8>>,
}

impl RequestHead {
    /// The request line for logs: method and path, never a header.
    pub fn describe(&self) -> String {
        let path = self.target.split('?').next().unwrap_or("");
        format!("{} {}", self.method, path)
    }
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 200 with the exposition (`head_only` for HEAD).
    Metrics {
        /// A HEAD request: headers only, no body.
        head_only: bool,
    },
    /// 401: no or wrong bearer token.
    Unauthorized,
    /// 404: only /metrics exists.
    NotFound,
    /// 405: only GET and HEAD.
    MethodNotAllowed,
    /// 400: not an HTTP/1.x request head we accept.
    BadRequest,
    /// 431: the head is too large.
    TooLarge,
}

/// Parses the lines of a request head (without their CRLF), request line first,
/// up to but not including the empty line (RFC 9112 §2.1).
pub fn parse_head(lines: &[Vec<u8>]) -> Result<RequestHead, Verdict> {
    let (first, fields) = lines.split_first().ok_or(Verdict::BadRequest)?;
    if fields.len() > MAX_FIELDS {
        return Err(Verdict::TooLarge);
    }
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version
    let line = std::str::from_utf8(first).map_err(|_| Verdict::BadRequest)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Verdict::BadRequest);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
    {
        return Err(Verdict::BadRequest);
    }
    let mut authorization = None;
    for f in fields {
        // RFC 9112 §5.2: obsolete line folding may be rejected; we do.
        if f.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(Verdict::BadRequest);
        }
        let colon = f
            .iter()
            .position(|b| *b == b':')
            .ok_or(Verdict::BadRequest)?;
        let (name, value) = (&f[..colon], &f[colon + 1..]);
        // RFC 9112 §5.1: no whitespace between the field name and the colon.
        if name.is_empty() || name.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(Verdict::BadRequest);
        }
        if value.iter().any(|b| *b == 0 || *b == b'\r' || *b == b'\n') {
            return Err(Verdict::BadRequest);
        }
        if name.eq_ignore_ascii_case(b"authorization") {
            if authorization.is_some() {
                return Err(Verdict::BadRequest);
            }
            authorization = Some(value.trim_ascii().to_vec());
        }
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        authorization,
    })
}

/// Compares secrets in time independent of where they differ (and of their lengths:
/// both sides are hashed first).
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// RFC 6750 §2.1: `Bearer <token>`, the scheme case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// Decides what a parsed request gets. Access is checked first, so an unauthenticated
/// client learns nothing (not even which paths exist).
pub fn decide(head: &RequestHead, access: &ScrapeAccess) -> Verdict {
    if let Some(expected) = &access.token {
        let ok = head
            .authorization
            .as_deref()
            .and_then(bearer_token)
            .is_some_and(|t| secret_eq(t, expected.as_bytes()));
        if !ok {
            return Verdict::Unauthorized;
        }
    }
    let head_only = match head.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Verdict::MethodNotAllowed,
    };
    let path = head.target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Verdict::NotFound;
    }
    Verdict::Metrics { head_only }
}

impl Verdict {
    /// The HTTP status code of the answer.
    pub fn status(self) -> u16 {
        match self {
            Verdict::Metrics { .. } => 200,
            Verdict::Unauthorized => 401,
            Verdict::NotFound => 404,
            Verdict::MethodNotAllowed => 405,
            Verdict::BadRequest => 400,
            Verdict::TooLarge => 431,
        }
    }
}

/// The full response. `exposition` is only called for a 200.
pub fn response(verdict: Verdict, exposition: impl FnOnce() -> String) -> Vec<u8> {
    let (status_line, extra, body, head_only) = match verdict {
        Verdict::Metrics { head_only } => (
            "200 OK",
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
            exposition(),
            head_only,
        ),
        Verdict::Unauthorized => (
            "401 Unauthorized",
            "WWW-Authenticate: Bearer realm=\"bulwark-metrics\"\r\nContent-Type: text/plain\r\n",
            "a bearer token is required\n".to_string(),
            false,
        ),
        Verdict::NotFound => (
            "404 Not Found",
            "Content-Type: text/plain\r\n",
            "only /metrics is served here\n".to_string(),
            false,
        ),
        Verdict::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\nContent-Type: text/plain\r\n",
            "only GET and HEAD\n".to_string(),
            false,
        ),
        Verdict::BadRequest => (
            "400 Bad Request",
            "Content-Type: text/plain\r\n",
            "malformed request\n".to_string(),
            false,
        ),
        Verdict::TooLarge => (
            "431 Request Header Fields Too Large",
            "Content-Type: text/plain\r\n",
            "request head too large\n".to_string(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status_line}\r\n{extra}Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Result<RequestHead, Verdict> {
        let v: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        parse_head(&v)
    }

    fn verdict(lines: &[&str], access: &ScrapeAccess) -> Verdict {
        match head(lines) {
            Ok(h) => decide(&h, access),
            Err(v) => v,
        }
    }

    #[test]
    fn open_access_serves_get_and_head_of_metrics_only() {
        let a = ScrapeAccess::open();
        assert_eq!(
            verdict(&["GET /metrics HTTP/1.1", "Host: x"], &a),
            Verdict::Metrics { head_only: false }
        );
        assert_eq!(
            verdict(&["HEAD /metrics?x=1 HTTP/1.0"], &a),
            Verdict::Metrics { head_only: true }
        );
        assert_eq!(verdict(&["GET / HTTP/1.1"], &a), Verdict::NotFound);
        assert_eq!(
            verdict(&["POST /metrics HTTP/1.1"], &a),
            Verdict::MethodNotAllowed
        );
    }

    #[test]
    fn bearer_token_is_required_and_checked() {
        let a = ScrapeAccess::bearer("0123456789abcdef0123");
        assert_eq!(
            verdict(&["GET /metrics HTTP/1.1"], &a),
            Verdict::Unauthorized
        );
        assert_eq!(
            verdict(
                &["GET /metrics HTTP/1.1", "Authorization: Bearer wrong"],
                &a
            ),
            Verdict::Unauthorized
        );
        assert_eq!(
            verdict(
                &["GET /metrics HTTP/1.1", "Authorization: Basic MDEyMzQ1"],
                &a
            ),
            Verdict::Unauthorized
        );
        // A prefix of the token is not the token.
        assert_eq!(
            verdict(
                &[
                    "GET /metrics HTTP/1.1",
                    "Authorization: Bearer 0123456789abcdef012"
                ],
                &a
            ),
            Verdict::Unauthorized
        );
        assert_eq!(
            verdict(
                &[
                    "GET /metrics HTTP/1.1",
                    "authorization:   bearer 0123456789abcdef0123  "
                ],
                &a
            ),
            Verdict::Metrics { head_only: false }
        );
        // Unauthenticated clients do not learn which paths exist.
        assert_eq!(verdict(&["GET /other HTTP/1.1"], &a), Verdict::Unauthorized);
    }

    #[test]
    fn malformed_heads_are_refused() {
        let a = ScrapeAccess::open();
        for bad in [
            vec!["GET /metrics"],
            vec!["GET  /metrics HTTP/1.1"],
            vec!["GET /metrics HTTP/2"],
            vec!["get /metrics HTTP/1.1"],
            vec!["GET metrics HTTP/1.1"],
            vec!["GET /metrics HTTP/1.1", "NoColon"],
            vec!["GET /metrics HTTP/1.1", "Host : x"],
            vec!["GET /metrics HTTP/1.1", "Host: x", " folded"],
            vec![
                "GET /metrics HTTP/1.1",
                "Authorization: Bearer a",
                "Authorization: Bearer b",
            ],
        ] {
            assert_eq!(verdict(&bad, &a), Verdict::BadRequest, "{bad:?}");
        }
        assert_eq!(head(&[]).unwrap_err(), Verdict::BadRequest);
        let many: Vec<String> = std::iter::once("GET /metrics HTTP/1.1".to_string())
            .chain((0..=MAX_FIELDS).map(|i| format!("X-{i}: y")))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(verdict(&many, &a), Verdict::TooLarge);
    }

    #[test]
    fn responses() {
        let ok = String::from_utf8(response(Verdict::Metrics { head_only: false }, || {
            "a 1\n".into()
        }))
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 4\r\n"));
        assert!(ok.ends_with("\r\n\r\na 1\n"));
        let head = String::from_utf8(response(Verdict::Metrics { head_only: true }, || {
            "a 1\n".into()
        }))
        .unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 4"));
        let denied = String::from_utf8(response(Verdict::Unauthorized, || {
            panic!("no exposition for a 401")
        }))
        .unwrap();
        assert!(denied.starts_with("HTTP/1.1 401 "));
        assert!(denied.contains("WWW-Authenticate: Bearer"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let a = ScrapeAccess::bearer("supersecrettoken1234");
        assert!(!format!("{a:?}").contains("supersecret"));
    }

    #[test]
    fn describe_has_no_query_or_headers() {
        let h = head(&["GET /metrics?token=x HTTP/1.1", "Authorization: Bearer s"]).unwrap();
        assert_eq!(h.describe(), "GET /metrics");
    }
}
