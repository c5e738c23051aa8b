//! Minimal SMTP, IMAP, POP3 and HTTP client dialogues for probing: greeting,
//! capabilities, the STARTTLS/STLS upgrade, and a few harmless questions (is AUTH
//! accepted in cleartext, is a remote recipient accepted without AUTH). Hand-written on
//! purpose: a probe must see exactly what the server sends, which client libraries
//! hide (they refuse cleartext AUTH, upgrade silently, or do not expose capabilities).

use bulwark_wire::{ReplyBuffer, ReplyError};

use super::conn::{ProbeConn, ProbeError};

/// Which dialect to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SMTP (RFC 5321): EHLO, STARTTLS.
    Smtp,
    /// IMAP (RFC 9051): CAPABILITY, STARTTLS.
    Imap,
    /// POP3 (RFC 1939, RFC 2449): CAPA, STLS.
    Pop3,
}

/// What a capability listing said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    /// The upgrade (STARTTLS / STLS) is listed.
    pub starttls: bool,
    /// Authentication offered: SASL mechanisms, plus `LOGIN` for IMAP's LOGIN command
    /// (when not LOGINDISABLED) and `USER` for POP3 USER/PASS.
    pub auth: Vec<String>,
    /// IMAP announced LOGINDISABLED (RFC 9051 §6.2.3).
    pub logindisabled: bool,
}

/// An SMTP reply (RFC 5321 §4.2): code and the text of each line (enhanced code
/// included, as the server wrote it). Framed and bounded by the wire vocabulary's
/// reply parser (`bulwark_wire::ReplyBuffer`), the one the queue's client uses.
async fn smtp_reply(c: &mut ProbeConn) -> Result<(u16, Vec<String>), ProbeError> {
    let mut buf = ReplyBuffer::default();
    loop {
        let l = c.read_line().await?;
        buf.push(l.as_bytes());
        buf.push(b"\r\n");
        match buf.next_reply() {
            Ok(Some(r)) => return Ok((r.code.get(), r.lines)),
            Ok(None) => {}
            Err(ReplyError::Malformed(_)) => return Err(ProbeError::Unexpected(l)),
            Err(e) => return Err(ProbeError::Unexpected(e.to_string())),
        }
    }
}

/// Most lines of one IMAP or POP3 reply we read.
const MAX_REPLY_LINES: usize = 200;

/// IMAP: untagged lines until the tagged completion; returns (status line, untagged).
async fn imap_tagged(c: &mut ProbeConn, tag: &str) -> Result<(String, Vec<String>), ProbeError> {
    let mut untagged = Vec::new();
    loop {
        let l = c.read_line().await?;
        if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return Ok((rest.to_string(), untagged));
        }
        untagged.push(l);
        if untagged.len() > MAX_REPLY_LINES {
            return Err(ProbeError::Unexpected("endless reply".into()));
        }
    }
}

/// POP3 multi-line response body (RFC 1939 §3) after a `+OK` line.
async fn pop3_multiline(c: &mut ProbeConn) -> Result<Vec<String>, ProbeError> {
    let mut lines = Vec::new();
    loop {
        let l = c.read_line().await?;
        if l == "." {
            return Ok(lines);
        }
        lines.push(l);
        if lines.len() > MAX_REPLY_LINES {
            return Err(ProbeError::Unexpected("endless reply".into()));
        }
    }
}

fn status_ok(s: &str) -> bool {
    s.split(' ')
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("OK"))
}

impl Dialect {
    /// Reads the greeting; an error when it is not a ready greeting.
    pub async fn greeting(self, c: &mut ProbeConn) -> Result<String, ProbeError> {
        match self {
            Dialect::Smtp => {
                let (code, lines) = smtp_reply(c).await?;
                if code != 220 {
                    return Err(ProbeError::Unexpected(format!(
                        "{code} {}",
                        lines.join(" ")
                    )));
                }
                Ok(format!(
                    "{code} {}",
                    lines.first().cloned().unwrap_or_default()
                ))
            }
            Dialect::Imap | Dialect::Pop3 => {
                let l = c.read_line().await?;
                let ok = match self {
                    Dialect::Imap => l.starts_with("* OK") || l.starts_with("* PREAUTH"),
                    _ => l.starts_with("+OK"),
                };
                if !ok {
                    return Err(ProbeError::Unexpected(l));
                }
                Ok(l)
            }
        }
    }

    /// EHLO / CAPABILITY / CAPA.
    pub async fn capabilities(self, c: &mut ProbeConn) -> Result<Caps, ProbeError> {
        let mut caps = Caps::default();
        match self {
            Dialect::Smtp => {
                c.send_line("EHLO bulwark-audit.invalid").await?;
                let (code, lines) = smtp_reply(c).await?;
                if code != 250 {
                    return Err(ProbeError::Unexpected(format!("EHLO: {code}")));
                }
                for l in lines.iter().skip(1) {
                    let upper = l.to_ascii_uppercase();
                    let mut words = upper.split([' ', '=']);
                    match words.next() {
                        Some("STARTTLS") => caps.starttls = true,
                        Some("AUTH") => {
                            for m in words.filter(|w| !w.is_empty()) {
                                if !caps.auth.iter().any(|x| x == m) {
                                    caps.auth.push(m.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Dialect::Imap => {
                c.send_line("p1 CAPABILITY").await?;
                let (status, untagged) = imap_tagged(c, "p1").await?;
                if !status_ok(&status) {
                    return Err(ProbeError::Unexpected(format!("CAPABILITY: {status}")));
                }
                let mut login_command = true;
                for l in untagged {
                    let upper = l.to_ascii_uppercase();
                    let Some(list) = upper.strip_prefix("* CAPABILITY ") else {
                        continue;
                    };
                    for cap in list.split(' ') {
                        if cap == "STARTTLS" {
                            caps.starttls = true;
                        } else if cap == "LOGINDISABLED" {
                            caps.logindisabled = true;
                            login_command = false;
                        } else if let Some(m) = cap.strip_prefix("AUTH=") {
                            caps.auth.push(m.to_string());
                        }
                    }
                }
                if login_command {
                    caps.auth.insert(0, "LOGIN".into());
                    caps.auth.dedup();
                }
            }
            Dialect::Pop3 => {
                c.send_line("CAPA").await?;
                let l = c.read_line().await?;
                if !l.starts_with("+OK") {
                    // RFC 2449 servers answer CAPA; one that does not offers nothing.
                    return Ok(caps);
                }
                for l in pop3_multiline(c).await? {
                    let upper = l.to_ascii_uppercase();
                    let mut words = upper.split(' ');
                    match words.next() {
                        Some("STLS") => caps.starttls = true,
                        Some("USER") => caps.auth.insert(0, "USER".into()),
                        Some("SASL") => caps.auth.extend(words.map(str::to_string)),
                        _ => {}
                    }
                }
            }
        }
        Ok(caps)
    }

    /// Asks to start TLS; Ok when the server agreed (the handshake comes next).
    pub async fn starttls(self, c: &mut ProbeConn) -> Result<(), ProbeError> {
        match self {
            Dialect::Smtp => {
                c.send_line("STARTTLS").await?;
                let (code, lines) = smtp_reply(c).await?;
                if code != 220 {
                    return Err(ProbeError::Unexpected(format!(
                        "STARTTLS: {code} {}",
                        lines.join(" ")
                    )));
                }
            }
            Dialect::Imap => {
                c.send_line("p2 STARTTLS").await?;
                let (status, _) = imap_tagged(c, "p2").await?;
                if !status_ok(&status) {
                    return Err(ProbeError::Unexpected(format!("STARTTLS: {status}")));
                }
            }
            Dialect::Pop3 => {
                c.send_line("STLS").await?;
                let l = c.read_line().await?;
                if !l.starts_with("+OK") {
                    return Err(ProbeError::Unexpected(format!("STLS: {l}")));
                }
            }
        }
        Ok(())
    }

    /// Greeting, (EHLO,) STARTTLS: everything before a handshake on a STARTTLS port.
    pub async fn preamble(self, c: &mut ProbeConn) -> Result<(), ProbeError> {
        self.greeting(c).await?;
        if self == Dialect::Smtp {
            c.send_line("EHLO bulwark-audit.invalid").await?;
            smtp_reply(c).await?;
        }
        self.starttls(c).await
    }

    /// Starts a PLAIN authentication without credentials and cancels it at the first
    /// challenge (RFC 4954 §4, RFC 3501 §6.2.2: "*" cancels). Returns Some(reply) when
    /// the server was ready to take a password on this connection, None when it
    /// refused. For POP3, `USER` is sent instead (no password follows).
    pub async fn try_cleartext_auth(self, c: &mut ProbeConn) -> Result<Option<String>, ProbeError> {
        match self {
            Dialect::Smtp => {
                c.send_line("AUTH PLAIN").await?;
                let (code, lines) = smtp_reply(c).await?;
                let reply = format!("{code} {}", lines.join(" "));
                if code == 334 {
                    c.send_line("*").await?;
                    smtp_reply(c).await?;
                    return Ok(Some(reply));
                }
                Ok(None)
            }
            Dialect::Imap => {
                c.send_line("p3 AUTHENTICATE PLAIN").await?;
                let l = c.read_line().await?;
                if l.starts_with('+') {
                    c.send_line("*").await?;
                    imap_tagged(c, "p3").await?;
                    return Ok(Some(l));
                }
                if !l.starts_with("p3 ") {
                    imap_tagged(c, "p3").await?;
                }
                Ok(None)
            }
            Dialect::Pop3 => {
                c.send_line("USER bulwark-audit-probe").await?;
                let l = c.read_line().await?;
                Ok(l.starts_with("+OK").then_some(l))
            }
        }
    }

    /// SMTP only: MAIL FROM:<> then RCPT TO a remote address, no AUTH. Returns the RCPT
    /// reply when it was accepted (an open relay), None when refused. Ends with RSET:
    /// no message is ever sent.
    pub async fn try_relay(self, c: &mut ProbeConn) -> Result<Option<String>, ProbeError> {
        if self != Dialect::Smtp {
            return Ok(None);
        }
        c.send_line("MAIL FROM:<>").await?;
        let (code, _) = smtp_reply(c).await?;
        if code / 100 != 2 {
            return Ok(None);
        }
        c.send_line("RCPT TO:<bulwark-audit-probe@relay-test.invalid>")
            .await?;
        let (code, lines) = smtp_reply(c).await?;
        c.send_line("RSET").await?;
        smtp_reply(c).await?;
        Ok((code / 100 == 2).then(|| format!("{code} {}", lines.join(" "))))
    }

    /// Says goodbye; errors are irrelevant by then.
    pub async fn quit(self, c: &mut ProbeConn) {
        let _ = match self {
            Dialect::Smtp => c.send_line("QUIT").await,
            Dialect::Imap => c.send_line("p9 LOGOUT").await,
            Dialect::Pop3 => c.send_line("QUIT").await,
        };
        let _ = c.read_line().await;
    }
}

/// HTTP/1.1 GET; returns the status code and the `Location` header.
pub async fn http_get(
    c: &mut ProbeConn,
    host: &str,
    path: &str,
) -> Result<(u16, Option<String>, String), ProbeError> {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: bulwark-audit\r\n\r\n").as_bytes())
        .await?;
    let raw = c.read_to_close(4 * 1024 * 1024).await?;
    let text = String::from_utf8_lossy(&raw);
    let status_line = text.lines().next().unwrap_or("");
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| {
            if raw.is_empty() {
                ProbeError::Closed("without an HTTP response")
            } else {
                ProbeError::Unexpected(status_line.chars().take(80).collect())
            }
        })?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let location = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Ok((code, location, body.to_string()))
}
