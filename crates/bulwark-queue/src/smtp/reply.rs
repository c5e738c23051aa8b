//! SMTP replies (RFC 5321 §4.2) and the capabilities an EHLO reply announces.
//!
//! Framing and parsing of replies, bounded against a hostile server, are the wire
//! vocabulary's (`bulwark_wire::ReplyBuffer`); the EHLO keywords are parsed by
//! `smtp-proto`, the parser of a mail-server team.

use smtp_proto::EhloResponse;

pub use bulwark_wire::reply::{parse, MAX_REPLY};
pub use bulwark_wire::{Reply, ReplyBuffer, ReplyError};

/// What the server announced in its EHLO reply (RFC 5321 §4.1.1.1) that we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The reply was to EHLO (false after a HELO fallback: no extensions at all).
    pub esmtp: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// PIPELINING (RFC 2920): commands may be sent in groups.
    pub pipelining: bool,
    /// 8BITMIME (RFC 6152): BODY=8BITMIME is accepted.
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531): UTF-8 addresses and headers.
    pub smtputf8: bool,
    /// DSN (RFC 3461): NOTIFY/ORCPT/RET/ENVID are accepted.
    pub dsn: bool,
    /// AUTH PLAIN (RFC 4616) is offered.
    pub auth_plain: bool,
    /// AUTH LOGIN is offered.
    pub auth_login: bool,
    /// AUTH with any mechanism is offered.
    pub auth: bool,
    /// SIZE limit (RFC 1870), None when not announced or announced without a number.
    pub size: Option<u64>,
}

impl Capabilities {
    /// From the raw octets of a 250 reply to EHLO.
    pub fn from_ehlo(raw: &[u8]) -> Result<Capabilities, ReplyError> {
        let e = EhloResponse::parse(&mut raw.iter())
            .map_err(|e| ReplyError::Malformed(format!("EHLO reply: {e:?}")))?;
        let has = |c: u32| e.has_capability(c);
        Ok(Capabilities {
            esmtp: true,
            starttls: has(smtp_proto::EXT_START_TLS),
            pipelining: has(smtp_proto::EXT_PIPELINING),
            eight_bit_mime: has(smtp_proto::EXT_8BIT_MIME),
            smtputf8: has(smtp_proto::EXT_SMTP_UTF8),
            dsn: has(smtp_proto::EXT_DSN),
            auth: has(smtp_proto::EXT_AUTH),
            auth_plain: e.auth() & smtp_proto::AUTH_PLAIN != 0,
            auth_login: e.auth() & smtp_proto::AUTH_LOGIN != 0,
            size: (has(smtp_proto::EXT_SIZE) && e.size > 0).then_some(e.size as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_capabilities() {
        let raw = b"250-mx.remote.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-8BITMIME\r\n250-DSN\r\n250-AUTH LOGIN PLAIN\r\n250 SMTPUTF8\r\n";
        let c = Capabilities::from_ehlo(raw).unwrap();
        assert!(c.esmtp && c.starttls && c.pipelining && c.eight_bit_mime && c.dsn);
        assert!(c.smtputf8 && c.auth && c.auth_plain && c.auth_login);
        assert_eq!(c.size, Some(1000));
        let c = Capabilities::from_ehlo(b"250-x\r\n250-SIZE\r\n250 X-UNKNOWN foo\r\n").unwrap();
        assert_eq!(c.size, None);
        assert!(!c.starttls && !c.auth);
        let c = Capabilities::from_ehlo(b"250 x\r\n").unwrap();
        assert_eq!(
            c,
            Capabilities {
                esmtp: true,
                ..Default::default()
            }
        );
    }
}
