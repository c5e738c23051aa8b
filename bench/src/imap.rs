//! A minimal IMAP4rev1 client (RFC 3501): tagged commands, untagged responses with
//! literals, LOGIN, SELECT, FETCH, SEARCH, STATUS, APPEND, IDLE (RFC 2177), STARTTLS.
//!
//! Hand-written because it is a load generator: it counts responses and octets as they
//! stream in instead of building a model of the mailbox.

use anyhow::{bail, Context};

use crate::conn::{Conn, Tls};

pub struct Client {
    conn: Conn,
    next_tag: u32,
    buf: Vec<u8>,
    line: Vec<u8>,
}

/// A literal announcement `{N}` at the end of a server line (RFC 3501 §4.3), without
/// the CRLF.
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&l[open + 1..]).ok()?.parse().ok()
}

/// Quotes a string for LOGIN / SELECT (RFC 3501 §4.3 quoted).
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// What a command's untagged responses added up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Untagged {
    /// "* N FETCH" responses.
    pub fetches: u64,
    /// "* N EXISTS", the last seen.
    pub exists: Option<u64>,
    /// Numbers of "* SEARCH" responses.
    pub search: Vec<u32>,
    /// "* STATUS … (MESSAGES N)".
    pub status_messages: Option<u64>,
    /// Octets of all untagged responses, literals included.
    pub octets: u64,
}

fn absorb(u: &mut Untagged, resp: &[u8]) {
    u.octets += resp.len() as u64;
    let head = &resp[..resp.len().min(200)];
    let text = String::from_utf8_lossy(head);
    let mut w = text.split_whitespace();
    let _star = w.next();
    let (a, b) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
    if b.eq_ignore_ascii_case("FETCH") {
        u.fetches += 1;
    } else if b.eq_ignore_ascii_case("EXISTS") {
        u.exists = a.parse().ok();
    } else if a.eq_ignore_ascii_case("SEARCH") {
        let all = String::from_utf8_lossy(resp);
        u.search.extend(
            all.split_whitespace()
                .skip(2)
                .filter_map(|n| n.parse::<u32>().ok()),
        );
    } else if a.eq_ignore_ascii_case("STATUS") {
        let all = String::from_utf8_lossy(resp).to_ascii_uppercase();
        if let Some(i) = all.find("MESSAGES ") {
            u.status_messages = all[i + 9..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok());
        }
    }
}

impl Client {
    /// Reads the greeting; with `starttls` upgrades the connection first.
    pub async fn open(conn: Conn, starttls: Option<&Tls>) -> anyhow::Result<Client> {
        let mut c = Client {
            conn,
            next_tag: 1,
            buf: Vec::new(),
            line: Vec::new(),
        };
        c.read_response().await?;
        if !c.buf.starts_with(b"* OK") && !c.buf.starts_with(b"* PREAUTH") {
            bail!(
                "IMAP greeting: {}",
                String::from_utf8_lossy(&c.buf).trim_end()
            );
        }
        if let Some(tls) = starttls {
            c.run("STARTTLS").await?;
            c.conn = c.conn.start_tls(tls).await?;
        }
        Ok(c)
    }

    /// Reads one complete response (a line and every literal it announces) into
    /// `self.buf`.
    async fn read_response(&mut self) -> anyhow::Result<()> {
        self.buf.clear();
        loop {
            self.conn.read_line(&mut self.line).await?;
            self.buf.extend_from_slice(&self.line);
            match literal_len(&self.line) {
                Some(n) => self.conn.read_exact_append(n, &mut self.buf).await?,
                None => return Ok(()),
            }
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("b{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Reads until the tagged completion of `tag`; errors unless it is OK.
    async fn complete(&mut self, tag: &str, what: &str) -> anyhow::Result<Untagged> {
        let mut u = Untagged::default();
        loop {
            self.read_response().await?;
            if self.buf.starts_with(b"* ") {
                absorb(&mut u, &self.buf);
                continue;
            }
            if self.buf.starts_with(tag.as_bytes()) && self.buf.get(tag.len()) == Some(&b' ') {
                let status = &self.buf[tag.len() + 1..];
                if status.len() >= 2 && status[..2].eq_ignore_ascii_case(b"OK") {
                    return Ok(u);
                }
                bail!("{what}: {}", String::from_utf8_lossy(&self.buf).trim_end());
            }
            if self.buf.starts_with(b"+") {
                bail!("{what}: unexpected continuation request");
            }
            // Another tag: not ours to judge; ignore.
        }
    }

    /// Sends one command (no literal) and waits for its tagged OK.
    pub async fn run(&mut self, command: &str) -> anyhow::Result<Untagged> {
        let tag = self.tag();
        self.conn
            .send(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let verb = command.split_whitespace().next().unwrap_or("").to_string();
        self.complete(&tag, &verb).await
    }

    pub async fn login(&mut self, user: &str, pass: &str) -> anyhow::Result<()> {
        self.run(&format!("LOGIN {} {}", quote(user), quote(pass)))
            .await
            .context("LOGIN")
            .map(|_| ())
    }

    /// SELECT; returns EXISTS.
    pub async fn select(&mut self, mailbox: &str) -> anyhow::Result<u64> {
        let u = self.run(&format!("SELECT {}", quote(mailbox))).await?;
        u.exists.context("SELECT without EXISTS")
    }

    pub async fn status_messages(&mut self, mailbox: &str) -> anyhow::Result<u64> {
        let u = self
            .run(&format!("STATUS {} (MESSAGES)", quote(mailbox)))
            .await?;
        u.status_messages.context("STATUS without MESSAGES")
    }

    /// APPEND with a synchronising literal (RFC 3501 §6.3.11).
    pub async fn append(&mut self, mailbox: &str, message: &[u8]) -> anyhow::Result<()> {
        let tag = self.tag();
        self.conn
            .send(format!("{tag} APPEND {} {{{}}}\r\n", quote(mailbox), message.len()).as_bytes())
            .await?;
        self.read_response().await?;
        if !self.buf.starts_with(b"+") {
            bail!("APPEND: {}", String::from_utf8_lossy(&self.buf).trim_end());
        }
        self.conn.write_all(message).await?;
        self.conn.send(b"\r\n").await?;
        self.complete(&tag, "APPEND").await.map(|_| ())
    }

    /// Starts IDLE (RFC 2177) and returns once the server accepted it.
    pub async fn idle_start(&mut self) -> anyhow::Result<String> {
        let tag = self.tag();
        self.conn.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
        loop {
            self.read_response().await?;
            if self.buf.starts_with(b"+") {
                return Ok(tag);
            }
            if !self.buf.starts_with(b"* ") {
                bail!("IDLE: {}", String::from_utf8_lossy(&self.buf).trim_end());
            }
        }
    }

    pub async fn idle_done(&mut self, tag: &str) -> anyhow::Result<()> {
        self.conn.send(b"DONE\r\n").await?;
        self.complete(tag, "IDLE").await.map(|_| ())
    }

    pub async fn logout(mut self) -> anyhow::Result<()> {
        let tag = self.tag();
        self.conn
            .send(format!("{tag} LOGOUT\r\n").as_bytes())
            .await?;
        self.complete(&tag, "LOGOUT").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {0}\r\n"), Some(0));
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
        assert_eq!(literal_len(b"* OK done\r\n"), None);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[tokio::test]
    async fn fetch_with_literals_and_tagged_completion() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut s = BufReader::new(server);
            s.get_mut().write_all(b"* OK ready\r\n").await.unwrap();
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            assert_eq!(line, "b1 LOGIN \"u@x\" \"p w\"\r\n");
            s.get_mut().write_all(b"b1 OK logged in\r\n").await.unwrap();
            line.clear();
            s.read_line(&mut line).await.unwrap();
            assert_eq!(line, "b2 SELECT \"INBOX\"\r\n");
            s.get_mut()
                .write_all(b"* 2 EXISTS\r\n* OK [UIDVALIDITY 1]\r\nb2 OK [READ-WRITE] done\r\n")
                .await
                .unwrap();
            line.clear();
            s.read_line(&mut line).await.unwrap();
            // A literal that itself contains a line looking like a tagged reply.
            s.get_mut()
                .write_all(
                    b"* 1 FETCH (BODY[] {14}\r\nb3 OK fake\r\n\r\n)\r\n* 2 FETCH (FLAGS ())\r\n\
                      b3 OK fetched\r\n",
                )
                .await
                .unwrap();
            line.clear();
            s.read_line(&mut line).await.unwrap();
            s.get_mut()
                .write_all(b"* SEARCH 3 7 9\r\nb4 OK\r\n")
                .await
                .unwrap();
            line.clear();
            s.read_line(&mut line).await.unwrap();
            s.get_mut()
                .write_all(b"b5 NO [ALERT] nope\r\n")
                .await
                .unwrap();
        });
        let mut c = Client::open(Conn::memory(client), None).await.unwrap();
        c.login("u@x", "p w").await.unwrap();
        assert_eq!(c.select("INBOX").await.unwrap(), 2);
        let u = c.run("FETCH 1:* (BODY[])").await.unwrap();
        assert_eq!(u.fetches, 2);
        let u = c.run("SEARCH TEXT x").await.unwrap();
        assert_eq!(u.search, vec![3, 7, 9]);
        let e = c.run("NOOP").await.unwrap_err();
        assert!(e.to_string().contains("NO [ALERT]"), "{e}");
        srv.await.unwrap();
    }
}
