//! SASL PLAIN (RFC 4616) and LOGIN decoding, shared by SMTP AUTH, IMAP AUTHENTICATE
//! and POP3 AUTH. Hand-written because each is a few lines of base64 and NUL
//! splitting; the mail crates we use parse the commands, not the SASL payloads.

use base64::Engine;

/// Longest SASL client response line, CRLF included, in every protocol (SMTP AUTH,
/// IMAP AUTHENTICATE, POP3 AUTH). RFC 4954 §4 requires SMTP servers to take at least
/// 12,288 octets of base64 (plus CRLF: 12,290); we take IMAP's 16 KiB, the largest of
/// the limits the protocols had, since PLAIN with the bounds below needs under 2 KiB
/// and the line is read once per exchange, so a larger bound costs nothing and still
/// caps what a client can make us buffer.
pub const MAX_SASL_LINE: usize = 16 * 1024;
/// Longest user name: an address (RFC 5321 §4.5.3.1: 64-octet local part, `@`,
/// 255-octet domain).
pub const MAX_USERNAME: usize = 64 + 1 + 255;
/// Longest password. Argon2 takes any length; this bounds the work one attempt costs.
pub const MAX_PASSWORD: usize = 1024;

/// A password or other secret. It cannot be printed: Debug and Display show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s` so that it is no longer printed.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one place that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why a SASL client response was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The response is not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL passwd`, not UTF-8, an empty user name, or a
    /// field over `MAX_USERNAME` / `MAX_PASSWORD`.
    #[error("malformed SASL message")]
    Malformed,
    /// A non-empty authorization identity other than the user (RFC 4616 §2): we do
    /// not let one user act as another.
    #[error("authorization identity differs from authentication identity")]
    AuthzMismatch,
    /// The client sent `*` (RFC 4954 §4, RFC 9051 §6.2.2).
    #[error("authentication cancelled by client")]
    Cancelled,
}

/// The result of a PLAIN exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authentication identity (authcid): the user logging in.
    pub username: String,
    /// The password (passwd).
    pub password: Secret,
}

/// Decodes one base64 client response. "*" cancels (RFC 4954 §4, RFC 9051 §6.2.2).
pub fn decode_response(b64: &str) -> Result<Vec<u8>, SaslError> {
    let t = b64.trim();
    if t == "*" {
        return Err(SaslError::Cancelled);
    }
    if t == "=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|_| SaslError::Base64)
}

/// Parses PLAIN's `authzid NUL authcid NUL passwd`. We do not support acting as another
/// user: a non-empty authzid must equal the authcid.
pub fn parse_plain(message: &[u8]) -> Result<PlainCredentials, SaslError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let authz = std::str::from_utf8(authz).map_err(|_| SaslError::Malformed)?;
    let authc = std::str::from_utf8(authc).map_err(|_| SaslError::Malformed)?;
    let pass = std::str::from_utf8(pass).map_err(|_| SaslError::Malformed)?;
    if authc.is_empty() || authc.len() > MAX_USERNAME || pass.len() > MAX_PASSWORD {
        return Err(SaslError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
        return Err(SaslError::AuthzMismatch);
    }
    Ok(PlainCredentials {
        username: authc.to_string(),
        password: Secret::new(pass.to_string()),
    })
}

/// PLAIN from a base64 initial response or continuation line.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, SaslError> {
    parse_plain(&decode_response(b64)?)
}

/// The LOGIN mechanism's first prompt ("Username:"), base64-encoded.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The LOGIN mechanism's second prompt ("Password:"), base64-encoded.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// One LOGIN response (user name or password) as UTF-8 text.
pub fn decode_login_field(b64: &str) -> Result<String, SaslError> {
    let raw = decode_response(b64)?;
    let s = String::from_utf8(raw).map_err(|_| SaslError::Malformed)?;
    if s.len() > MAX_PASSWORD.max(MAX_USERNAME) || s.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_bounds_are_the_shared_ones() {
        let user = |n: usize| format!("{}@{}", "u".repeat(64), "d".repeat(n - 65));
        let plain = |u: &str, p: &str| format!("\0{u}\0{p}").into_bytes();
        assert!(parse_plain(&plain(&user(MAX_USERNAME), "pw")).is_ok());
        assert_eq!(
            parse_plain(&plain(&user(MAX_USERNAME + 1), "pw")),
            Err(SaslError::Malformed)
        );
        assert!(parse_plain(&plain("u", &"p".repeat(MAX_PASSWORD))).is_ok());
        assert_eq!(
            parse_plain(&plain("u", &"p".repeat(MAX_PASSWORD + 1))),
            Err(SaslError::Malformed)
        );
        // The largest PLAIN response, base64-encoded with CRLF, fits one SASL line,
        // and the line takes RFC 4954 §4's 12,288 octets of base64.
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(plain(&user(MAX_USERNAME), &"p".repeat(MAX_PASSWORD)));
        assert!(b64.len() + 2 <= MAX_SASL_LINE);
        const { assert!(MAX_SASL_LINE >= 12_288 + 2) };
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn plain() {
        let c = decode_plain(&b64(b"\0alice@example.test\0pw d")).unwrap();
        assert_eq!(c.username, "alice@example.test");
        assert_eq!(c.password.expose(), "pw d");
        assert!(!format!("{c:?}").contains("pw d"));
        assert!(decode_plain(&b64(b"alice@example.test\0alice@example.test\0x")).is_ok());
        assert_eq!(
            decode_plain(&b64(b"bob\0alice\0x")),
            Err(SaslError::AuthzMismatch)
        );
        assert_eq!(decode_plain(&b64(b"\0alice")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0\0x")), Err(SaslError::Malformed));
        assert_eq!(decode_plain("!!!"), Err(SaslError::Base64));
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
    }

    #[test]
    fn login() {
        assert_eq!(decode_login_field(&b64(b"alice")).unwrap(), "alice");
        assert_eq!(
            decode_login_field(LOGIN_USERNAME_CHALLENGE).unwrap(),
            "Username:"
        );
        assert!(decode_login_field(&b64(b"a\0b")).is_err());
    }
}
