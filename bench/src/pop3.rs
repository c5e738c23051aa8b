//! A minimal POP3 client (RFC 1939): USER/PASS, STAT, RETR (multi-line, dot-unstuffed),
//! STLS (RFC 2595), QUIT. Hand-written for the same reason as the other clients.

use anyhow::{bail, Context};

use crate::conn::{Conn, Tls};

pub struct Client {
    conn: Conn,
    line: Vec<u8>,
}

impl Client {
    pub async fn open(conn: Conn, stls: Option<&Tls>) -> anyhow::Result<Client> {
        let mut c = Client {
            conn,
            line: Vec::new(),
        };
        c.status("greeting").await?;
        if let Some(tls) = stls {
            c.command("STLS").await?;
            c.conn = c.conn.start_tls(tls).await?;
        }
        Ok(c)
    }

    async fn status(&mut self, what: &str) -> anyhow::Result<String> {
        self.conn.read_line(&mut self.line).await?;
        let text = String::from_utf8_lossy(&self.line).trim_end().to_string();
        if !text.starts_with("+OK") {
            bail!("{what}: {text}");
        }
        Ok(text)
    }

    async fn command(&mut self, cmd: &str) -> anyhow::Result<String> {
        self.conn.send(format!("{cmd}\r\n").as_bytes()).await?;
        let verb = cmd.split_whitespace().next().unwrap_or("").to_string();
        self.status(&verb).await
    }

    pub async fn login(&mut self, user: &str, pass: &str) -> anyhow::Result<()> {
        self.command(&format!("USER {user}")).await?;
        self.conn
            .send(format!("PASS {pass}\r\n").as_bytes())
            .await?;
        self.status("PASS").await.map(|_| ())
    }

    /// STAT: (messages, octets).
    pub async fn stat(&mut self) -> anyhow::Result<(u64, u64)> {
        let s = self.command("STAT").await?;
        let mut w = s.split_whitespace().skip(1);
        let n = w
            .next()
            .and_then(|x| x.parse().ok())
            .context("STAT count")?;
        let o = w.next().and_then(|x| x.parse().ok()).context("STAT size")?;
        Ok((n, o))
    }

    /// RETR n; returns the message with the dot-stuffing removed (RFC 1939 §3).
    pub async fn retr(&mut self, n: u64) -> anyhow::Result<Vec<u8>> {
        self.command(&format!("RETR {n}")).await?;
        let mut msg = Vec::new();
        loop {
            self.conn.read_line(&mut self.line).await?;
            if self.line == b".\r\n" || self.line == b".\n" {
                return Ok(msg);
            }
            let l = match self.line.strip_prefix(b".") {
                Some(rest) => rest,
                None => &self.line[..],
            };
            msg.extend_from_slice(l);
        }
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        self.command("QUIT").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn retr_unstuffs() {
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut s = BufReader::new(server);
            s.get_mut().write_all(b"+OK POP3\r\n").await.unwrap();
            let mut line = String::new();
            for reply in [
                &b"+OK\r\n"[..],
                b"+OK\r\n",
                b"+OK 1 20\r\n",
                b"+OK 20 octets\r\nA: b\r\n\r\n..dot\r\nx\r\n.\r\n",
            ] {
                line.clear();
                s.read_line(&mut line).await.unwrap();
                s.get_mut().write_all(reply).await.unwrap();
            }
        });
        let mut c = Client::open(Conn::memory(client), None).await.unwrap();
        c.login("u", "p").await.unwrap();
        assert_eq!(c.stat().await.unwrap(), (1, 20));
        assert_eq!(c.retr(1).await.unwrap(), b"A: b\r\n\r\n.dot\r\nx\r\n");
    }
}
