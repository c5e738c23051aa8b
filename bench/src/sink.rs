//! The "remote" SMTP server of the relay scenario: accepts every transaction on
//! loopback and counts the messages whose DATA completed. No STARTTLS, so both
//! servers' opportunistic TLS falls back to plain in the same way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct Sink {
    pub received: Arc<AtomicU64>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start(listen: SocketAddr) -> anyhow::Result<Sink> {
        let l = TcpListener::bind(listen).await?;
        let addr = l.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = session(s, counter).await;
                });
            }
        });
        Ok(Sink {
            received,
            addr,
            task,
        })
    }

    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

async fn session(s: tokio::net::TcpStream, counter: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut s = BufReader::new(s);
    s.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        if s.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" || line == b".\n" {
                in_data = false;
                counter.fetch_add(1, Ordering::Relaxed);
                s.get_mut().write_all(b"250 2.0.0 accepted\r\n").await?;
            }
            continue;
        }
        let verb = line
            .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(b"")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n",
            b"DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            b"QUIT" => {
                s.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 2.0.0 ok\r\n",
        };
        s.get_mut().write_all(reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use crate::smtp::{Session, SessionOptions};

    #[tokio::test]
    async fn counts_completed_messages() {
        let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let conn = Conn::connect(sink.addr, None).await.unwrap();
        let o = SessionOptions {
            starttls: None,
            auth: None,
            helo: "t",
        };
        let mut s = Session::open(conn, &o).await.unwrap();
        let m = crate::message::dot_stuff(&crate::message::build(1, 2000, "a@x", "b@y"));
        s.send("a@x", &["b@y", "c@y"], &m).await.unwrap();
        s.send("a@x", &["b@y"], &m).await.unwrap();
        s.quit().await.unwrap();
        assert_eq!(sink.count(), 2);
    }
}
