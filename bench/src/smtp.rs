//! A minimal SMTP client (RFC 5321) with STARTTLS (RFC 3207), AUTH PLAIN (RFC 4954,
//! RFC 4616) and PIPELINING (RFC 2920) when the server offers it.
//!
//! Hand-written because it is a load generator: it must measure one transaction
//! precisely and send exactly what we choose, which client libraries hide.

use anyhow::{bail, Context};
use base64::Engine;

use crate::conn::{Conn, Tls};

/// A complete (possibly multi-line) reply: code and the text of every line.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn is(&self, class: u16) -> bool {
        self.code / 100 == class
    }
}

/// Reads one reply: lines "CODE-text" until "CODE text" (RFC 5321 §4.2.1).
pub async fn read_reply(conn: &mut Conn) -> anyhow::Result<Reply> {
    let mut line = Vec::new();
    let mut lines = Vec::new();
    loop {
        conn.read_line(&mut line).await?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.len() < 3 || !text.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            bail!("malformed SMTP reply {text:?}");
        }
        let code: u16 = text[..3].parse()?;
        let more = text.as_bytes().get(3) == Some(&b'-');
        lines.push(text.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

fn expect(r: Reply, class: u16, what: &str) -> anyhow::Result<Reply> {
    if r.is(class) {
        Ok(r)
    } else {
        bail!("{what}: {} {}", r.code, r.lines.join(" / "))
    }
}

pub struct Session {
    conn: Conn,
    pipelining: bool,
}

/// How a session is opened.
pub struct SessionOptions<'a> {
    pub starttls: Option<&'a Tls>,
    /// (user, password) for AUTH PLAIN.
    pub auth: Option<(&'a str, &'a str)>,
    pub helo: &'a str,
}

impl Session {
    /// Greeting, EHLO, STARTTLS + EHLO, AUTH as asked.
    pub async fn open(mut conn: Conn, o: &SessionOptions<'_>) -> anyhow::Result<Session> {
        expect(read_reply(&mut conn).await?, 2, "greeting")?;
        let mut ehlo = ehlo(&mut conn, o.helo).await?;
        if let Some(tls) = o.starttls {
            if !has_ext(&ehlo, "STARTTLS") {
                bail!("server does not offer STARTTLS");
            }
            conn.send(b"STARTTLS\r\n").await?;
            expect(read_reply(&mut conn).await?, 2, "STARTTLS")?;
            conn = conn.start_tls(tls).await?;
            ehlo = ehlo_again(&mut conn, o.helo).await?;
        }
        if let Some((user, pass)) = o.auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
            conn.send(format!("AUTH PLAIN {token}\r\n").as_bytes())
                .await?;
            expect(read_reply(&mut conn).await?, 2, "AUTH PLAIN")?;
        }
        Ok(Session {
            pipelining: has_ext(&ehlo, "PIPELINING"),
            conn,
        })
    }

    /// One transaction: MAIL, RCPT…, DATA, the dot-stuffed message. Returns after the
    /// server's final reply to the data (success only on 250).
    pub async fn send(&mut self, from: &str, to: &[&str], stuffed: &[u8]) -> anyhow::Result<()> {
        let mut cmds = format!("MAIL FROM:<{from}>\r\n");
        for r in to {
            cmds.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        cmds.push_str("DATA\r\n");
        if self.pipelining {
            // RFC 2920 §3.1: MAIL, RCPT and DATA may be sent as one group.
            self.conn.send(cmds.as_bytes()).await?;
            let mut failure = None;
            for _ in 0..=to.len() {
                let r = read_reply(&mut self.conn).await?;
                if !r.is(2) && failure.is_none() {
                    failure = Some(r);
                }
            }
            let data = read_reply(&mut self.conn).await?;
            if let Some(f) = failure {
                if data.code == 354 {
                    // Cannot happen with a correct server after a failed RCPT-only
                    // transaction, but never leave DATA open.
                    self.conn.send(b".\r\n").await?;
                    read_reply(&mut self.conn).await?;
                }
                bail!("MAIL/RCPT: {} {}", f.code, f.lines.join(" / "));
            }
            expect(data, 3, "DATA")?;
        } else {
            for line in cmds.split_inclusive("\r\n") {
                self.conn.send(line.as_bytes()).await?;
                let r = read_reply(&mut self.conn).await?;
                let class = if line.starts_with("DATA") { 3 } else { 2 };
                expect(r, class, line.trim_end())?;
            }
        }
        self.conn.send(stuffed).await?;
        expect(read_reply(&mut self.conn).await?, 2, "end of DATA")?;
        Ok(())
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        self.conn.send(b"QUIT\r\n").await?;
        read_reply(&mut self.conn).await.map(|_| ())
    }
}

async fn ehlo(conn: &mut Conn, helo: &str) -> anyhow::Result<Reply> {
    conn.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
    expect(read_reply(conn).await?, 2, "EHLO").context("EHLO refused")
}

async fn ehlo_again(conn: &mut Conn, helo: &str) -> anyhow::Result<Reply> {
    ehlo(conn, helo).await.context("EHLO after STARTTLS")
}

fn has_ext(ehlo: &Reply, ext: &str) -> bool {
    ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(ext))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn transaction_with_pipelining_and_dot_stuffing() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            server
                .write_all(b"220 hi\r\n250-x\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Wait for the whole transaction (ends with CRLF.CRLF).
            while !got.ends_with(b"\r\n.\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"DATA\r\n") {
                    server
                        .write_all(b"250 ok\r\n250 ok\r\n354 go\r\n")
                        .await
                        .unwrap();
                }
            }
            server.write_all(b"250 queued\r\n").await.unwrap();
            got
        });
        let conn = Conn::memory(client);
        let o = SessionOptions {
            starttls: None,
            auth: None,
            helo: "bench",
        };
        let mut s = Session::open(conn, &o).await.unwrap();
        assert!(s.pipelining);
        let msg = crate::message::dot_stuff(b"Subject: x\r\n\r\n.hidden\r\n");
        s.send("a@x.test", &["b@y.test"], &msg).await.unwrap();
        let got = String::from_utf8(srv.await.unwrap()).unwrap();
        assert_eq!(
            got,
            "EHLO bench\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n\
             Subject: x\r\n\r\n..hidden\r\n.\r\n"
        );
    }

    #[tokio::test]
    async fn refused_recipient_is_an_error() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            server.write_all(b"220 hi\r\n250 x\r\n").await.unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let lines = got.split(|&b| b == b'\n').count() - 1;
                let reply: &[u8] = match lines {
                    2 => b"250 ok\r\n",
                    3 => b"550 5.1.1 unknown\r\n",
                    _ => continue,
                };
                server.write_all(reply).await.unwrap();
            }
        });
        let o = SessionOptions {
            starttls: None,
            auth: None,
            helo: "bench",
        };
        let mut s = Session::open(Conn::memory(client), &o).await.unwrap();
        assert!(!s.pipelining);
        let e = s.send("a@x", &["nobody@y"], b".\r\n").await.unwrap_err();
        assert!(e.to_string().contains("550"), "{e}");
    }
}
