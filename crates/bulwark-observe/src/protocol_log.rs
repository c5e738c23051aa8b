//! The protocol log: `DIR/log/<listener>.log`, JSON lines, rotated by size and age.
//!
//! Each line: `{"ts":…,"listener":…,"session":…,"peer":…,"tls":…,"user":…,"dir":…,"line":…}`
//! where `dir` is `C` (client), `S` (server) or `*` (an event such as a connect or
//! a TLS upgrade). Message bodies are never passed here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::redact::{redact, Redactor};

/// When a log file is rotated and how many old ones are kept.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// Rotate once the file reaches this many bytes (`[log] rotate_size`).
    pub max_size: u64,
    /// Rotate once the file is this old (`[log] rotate_age_secs`).
    pub max_age: Duration,
    /// How many rotated files to keep (`[log] keep`).
    pub keep: u32,
}

struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<(File, u64, Instant)>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl LogFile {
    fn write_line(&self, line: &str) {
        let mut st = self.state.lock();
        if st.1 >= self.rotation.max_size || st.2.elapsed() >= self.rotation.max_age {
            if let Err(e) = self.rotate(&mut st) {
                tracing::error!(target: "bulwark::observe", path = %self.path.display(), error = %e, "protocol log rotation failed");
            }
        }
        match st.0.write_all(line.as_bytes()) {
            Ok(()) => st.1 += line.len() as u64,
            Err(e) => {
                tracing::error!(target: "bulwark::observe", path = %self.path.display(), error = %e, "protocol log write failed")
            }
        }
    }

    fn rotate(&self, st: &mut (File, u64, Instant)) -> std::io::Result<()> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        std::fs::rename(&self.path, &rotated)?;
        *st = (open_append(&self.path)?, 0, Instant::now());
        // Keep the newest `keep` rotated files.
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let prefix = format!(
            "{}.",
            self.path.file_name().and_then(|n| n.to_str()).unwrap_or("")
        );
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        old.sort();
        let excess = old.len().saturating_sub(self.rotation.keep as usize);
        for p in old.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

/// A listener's protocol log; disabled unless the listener sets `protocol_log = true`.
#[derive(Clone)]
pub struct ProtocolLog {
    listener: &'static str,
    redactor: Redactor,
    file: Option<Arc<LogFile>>,
}

impl ProtocolLog {
    /// A log that writes nothing, for a listener without `protocol_log = true`.
    pub fn disabled(listener: &'static str, redactor: Redactor) -> ProtocolLog {
        ProtocolLog {
            listener,
            redactor,
            file: None,
        }
    }

    /// Opens (creating, mode 0600, directory 0700) `dir/<listener>.log`.
    pub fn open(
        dir: &Path,
        listener: &'static str,
        redactor: Redactor,
        rotation: Rotation,
    ) -> std::io::Result<ProtocolLog> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join(format!("{listener}.log"));
        let f = open_append(&path)?;
        let size = f.metadata()?.len();
        Ok(ProtocolLog {
            listener,
            redactor,
            file: Some(Arc::new(LogFile {
                path,
                rotation,
                state: Mutex::new((f, size, Instant::now())),
            })),
        })
    }

    /// Whether lines are written anywhere (callers skip formatting otherwise).
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// The listener's config name, written in every line.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The log of one new session from `peer`; TLS and user are unknown yet.
    pub fn session(&self, session_id: &str, peer: SocketAddr) -> SessionLog {
        SessionLog {
            log: self.clone(),
            session: session_id.to_string(),
            peer,
            tls: None,
            user: None,
        }
    }
}

/// One session's view of the protocol log; carries what is known about the session.
pub struct SessionLog {
    log: ProtocolLog,
    session: String,
    peer: SocketAddr,
    tls: Option<String>,
    user: Option<String>,
}

impl SessionLog {
    /// TLS was negotiated; `description` (version and cipher) goes in every later line.
    pub fn set_tls(&mut self, description: String) {
        self.tls = Some(description);
    }

    /// The authenticated user from now on (`None`: nobody is logged in).
    pub fn set_user(&mut self, user: Option<String>) {
        self.user = user;
    }

    /// A PROXY protocol header revealed the real client.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
    }

    /// The session's id, written in every line.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    fn write(&self, dir: &str, text: &str) {
        let Some(f) = &self.log.file else { return };
        let v = serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "listener": self.log.listener,
            "session": self.session,
            "peer": self.peer.to_string(),
            "tls": self.tls,
            "user": self.user,
            "dir": dir,
            "line": text,
        });
        let mut line = v.to_string();
        line.push('\n');
        f.write_line(&line);
    }

    /// A command line from the client, redacted by the listener's protocol rules.
    pub fn client(&self, line: &[u8]) {
        if self.log.file.is_some() {
            self.write("C", &redact(self.log.redactor, line));
        }
    }

    /// A client line that is a secret as a whole (an AUTH continuation): logged as `***`.
    pub fn client_secret(&self) {
        self.write("C", "***");
    }

    /// A reply line. Replies never contain client secrets; control characters are
    /// escaped all the same.
    pub fn server(&self, line: &[u8]) {
        if self.log.file.is_some() {
            self.write("S", &redact(Redactor::None, line));
        }
    }

    /// A session event (connect, TLS upgrade, disconnect, refusal).
    pub fn event(&self, text: &str) {
        self.write("*", text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot(max_size: u64) -> Rotation {
        Rotation {
            max_size,
            max_age: Duration::from_secs(3600),
            keep: 2,
        }
    }

    #[test]
    fn lines_are_json_and_redacted() {
        let d = tempfile::tempdir().unwrap();
        let log = ProtocolLog::open(d.path(), "submission", Redactor::Smtp, rot(1 << 20)).unwrap();
        let mut s = log.session("abc", "192.0.2.1:4000".parse().unwrap());
        s.event("connect");
        s.client(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        s.client_secret();
        s.set_tls("TLSv1.3".into());
        s.set_user(Some("alice@example.test".into()));
        s.server(b"235 2.7.0 ok");
        let text = std::fs::read_to_string(d.path().join("submission.log")).unwrap();
        assert!(!text.contains("AGFsaWNlAHNlY3JldA"), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1]["line"], "AUTH PLAIN ***");
        assert_eq!(lines[2]["line"], "***");
        assert_eq!(lines[3]["tls"], "TLSv1.3");
        assert_eq!(lines[3]["user"], "alice@example.test");
        assert_eq!(lines[0]["session"], "abc");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("submission.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let d = tempfile::tempdir().unwrap();
        let log = ProtocolLog::open(d.path(), "imap", Redactor::Imap, rot(200)).unwrap();
        let s = log.session("x", "127.0.0.1:1".parse().unwrap());
        for i in 0..40 {
            s.client(format!("a{i} NOOP").as_bytes());
            std::thread::sleep(Duration::from_millis(2));
        }
        let files: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(files.len(), 3, "current + 2 kept");
    }

    #[test]
    fn disabled_writes_nothing() {
        let log = ProtocolLog::disabled("pop3", Redactor::Pop3);
        assert!(!log.enabled());
        log.session("x", "127.0.0.1:1".parse().unwrap())
            .client(b"PASS x");
    }
}
