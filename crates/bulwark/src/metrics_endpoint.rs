//! The metrics listener: `GET /metrics` in the Prometheus text format.
//!
//! The HTTP exchange itself (parsing, token check, response) is
//! `bulwark_observe::scrape`, without I/O; this is the thin socket shell around it:
//! read one bounded request head under a timeout, answer, close. On loopback it is
//! plain HTTP for anyone local; bound beyond loopback, `serve` switches the listener to
//! TLS from the first byte and the bearer token from `[metrics]` is required.

use std::time::Duration;

use async_trait::async_trait;
use bulwark_net::{Connection, ReadError, SessionHandler};
use bulwark_observe::scrape::{self, ScrapeAccess, Verdict};
use metrics_exporter_prometheus::PrometheusHandle;

/// A scraper must send its whole request head within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MetricsEndpoint {
    access: ScrapeAccess,
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    pub fn new(handle: PrometheusHandle, access: ScrapeAccess) -> MetricsEndpoint {
        MetricsEndpoint { access, handle }
    }
}

enum HeadError {
    /// The client went away or sent nothing in time: close without an answer.
    Closed,
    Reply(Verdict),
}

/// Reads the request head, bounded in size, line length and field count.
async fn read_head(conn: &mut Connection) -> Result<Vec<Vec<u8>>, HeadError> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    loop {
        match conn.read_line(scrape::MAX_LINE).await {
            Ok(l) if l.bytes.is_empty() => {
                // RFC 9112 §2.2: an empty line before the request line may be ignored.
                if lines.is_empty() {
                    continue;
                }
                return Ok(lines);
            }
            Ok(l) => {
                total += l.bytes.len() + 2;
                if total > scrape::MAX_HEAD || lines.len() > scrape::MAX_FIELDS {
                    return Err(HeadError::Reply(Verdict::TooLarge));
                }
                if l.bytes.contains(&0) {
                    return Err(HeadError::Reply(Verdict::BadRequest));
                }
                lines.push(l.bytes);
            }
            Err(ReadError::TooLong { .. }) => return Err(HeadError::Reply(Verdict::TooLarge)),
            Err(ReadError::Eof) | Err(ReadError::Io(_)) => return Err(HeadError::Closed),
        }
    }
}

#[async_trait]
impl SessionHandler for MetricsEndpoint {
    async fn run(&self, mut conn: Connection) {
        let shutdown = conn.shutdown().clone();
        let head = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut conn)) => r,
        };
        let verdict = match head {
            Err(_) => {
                conn.log.event("no complete request in time; closed");
                return;
            }
            Ok(Err(HeadError::Closed)) => return,
            Ok(Err(HeadError::Reply(v))) => v,
            Ok(Ok(lines)) => match scrape::parse_head(&lines) {
                Ok(h) => {
                    // Only method and path are logged: never a header (the token).
                    conn.log.client(h.describe().as_bytes());
                    scrape::decide(&h, &self.access)
                }
                Err(v) => v,
            },
        };
        conn.log
            .server(format!("HTTP {}", verdict.status()).as_bytes());
        if verdict == Verdict::Unauthorized {
            tracing::info!(target: "bulwark::metrics", peer = %conn.peer(), "metrics request without a valid bearer token refused");
        }
        let response = scrape::response(verdict, || bulwark_observe::metrics::render(&self.handle));
        let _ = conn.send(&response).await;
        conn.close().await;
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    }
}
