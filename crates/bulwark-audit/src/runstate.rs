//! The server's run state, shared by `serve` (which writes it) and `report`/`audit`
//! (which read it): which listener kinds this version serves ([`availability`]), and
//! `DIR/run/listeners.json`, what a running `bulwark serve` actually bound.
//!
//! One answer to "which listeners does `serve` start" keeps the report honest: a path
//! this version does not serve is "not served" whether or not the server runs, so the
//! data-path table (and DATA-PATHS.md, generated from it) never claims a port that is
//! not opened.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use bulwark_config::ListenerKind;
use serde::{Deserialize, Serialize};

/// Whether this version of `bulwark serve` starts a listener of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// `serve` starts it when it is enabled.
    Served,
    /// `serve` never opens it, whatever the configuration says; the reason.
    NotServed(&'static str),
}

/// Why the web listeners are not opened; also the `skipped` reason in listeners.json.
pub const NO_WEB_SERVER: &str = "not served: no web server in this version";

/// Which listener kinds `serve` starts. `serve` skips every kind this calls
/// `NotServed` (and fails if it has no protocol for one called `Served`), so the
/// report and the server cannot disagree.
pub fn availability(kind: ListenerKind) -> Availability {
    match kind {
        ListenerKind::Smtp
        | ListenerKind::Submission
        | ListenerKind::Submissions
        | ListenerKind::Imap
        | ListenerKind::Imaps
        | ListenerKind::Pop3
        | ListenerKind::Pop3s
        | ListenerKind::Metrics => Availability::Served,
        ListenerKind::Http | ListenerKind::Https => Availability::NotServed(NO_WEB_SERVER),
    }
}

/// The server's own record of its listeners (`DIR/run/listeners.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// The process id of the server (checked to be alive before trusting the file).
    pub pid: u32,
    /// The listeners it started, with the addresses really bound.
    pub listeners: Vec<RunListener>,
    /// Enabled listeners the server did not start, with why (e.g. a protocol this
    /// version does not implement). Absent in files of older versions.
    #[serde(default)]
    pub skipped: Vec<SkippedListener>,
}

/// One listener a running server started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunListener {
    /// Which listener.
    pub kind: ListenerKind,
    /// The addresses it actually bound (real ports, also where the configuration says 0).
    pub addrs: Vec<SocketAddr>,
    /// "starttls", "implicit-tls" or "none".
    pub tls: String,
}

/// An enabled listener the server did not start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedListener {
    /// Which listener.
    pub kind: ListenerKind,
    /// Why, for the report's state column.
    pub reason: String,
}

impl RunState {
    /// Reads the file if a server wrote it and that server is still alive.
    pub fn read(run_dir: &Path) -> Option<RunState> {
        let text = std::fs::read_to_string(run_dir.join("listeners.json")).ok()?;
        let state: RunState = serde_json::from_str(&text).ok()?;
        process_alive(state.pid).then_some(state)
    }

    /// Writes `listeners.json` (atomically: a reader sees the old file or the new one)
    /// and `bulwark.pid` into `run_dir`, created with mode 0700 if missing.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(run_dir)?;
        std::fs::write(run_dir.join("bulwark.pid"), format!("{}\n", self.pid))?;
        let tmp = run_dir.join(".listeners.json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, run_dir.join("listeners.json"))
    }

    /// The started listener of `kind`, if any.
    pub fn listener(&self, kind: ListenerKind) -> Option<&RunListener> {
        self.listeners.iter().find(|l| l.kind == kind)
    }

    /// The skipped listener of `kind`, if it was skipped.
    pub fn skipped(&self, kind: ListenerKind) -> Option<&SkippedListener> {
        self.skipped.iter().find(|l| l.kind == kind)
    }
}

fn process_alive(pid: u32) -> bool {
    // Linux: /proc/<pid> exists while the process does. Elsewhere, trust the file
    // (serve removes it when it stops).
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Where to connect to reach a bound address from this machine: the loopback address
/// of the same family for a wildcard bind, the address itself otherwise.
pub fn probe_address(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        other => other,
    };
    SocketAddr::new(ip, bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_addresses() {
        assert_eq!(
            probe_address("0.0.0.0:25".parse().unwrap()),
            "127.0.0.1:25".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::]:25".parse().unwrap()),
            "[::1]:25".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::ffff:127.0.0.1]:9".parse().unwrap()),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            probe_address("192.0.2.1:25".parse().unwrap()),
            "192.0.2.1:25".parse().unwrap()
        );
    }

    #[test]
    fn reads_only_a_live_servers_file() {
        let d = tempfile::tempdir().unwrap();
        let write = |pid: u32| {
            std::fs::write(
                d.path().join("listeners.json"),
                format!(
                    r#"{{"pid":{pid},"listeners":[{{"kind":"smtp","addrs":["127.0.0.1:2525"],"tls":"starttls"}}],
                        "skipped":[{{"kind":"http","reason":"not available in this version"}}]}}"#
                ),
            )
            .unwrap();
        };
        write(std::process::id());
        let s = RunState::read(d.path()).unwrap();
        assert_eq!(
            s.listener(ListenerKind::Smtp).unwrap().addrs[0].port(),
            2525
        );
        assert!(s.skipped(ListenerKind::Http).is_some());
        write(u32::MAX - 1);
        assert!(RunState::read(d.path()).is_none(), "stale file ignored");
    }

    #[test]
    fn written_state_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let state = RunState {
            pid: std::process::id(),
            listeners: vec![RunListener {
                kind: ListenerKind::Imaps,
                addrs: vec!["127.0.0.1:993".parse().unwrap()],
                tls: "implicit-tls".into(),
            }],
            skipped: vec![SkippedListener {
                kind: ListenerKind::Https,
                reason: NO_WEB_SERVER.into(),
            }],
        };
        state.write(&run).unwrap();
        let back = RunState::read(&run).unwrap();
        assert_eq!(
            back.listener(ListenerKind::Imaps).unwrap().tls,
            "implicit-tls"
        );
        assert_eq!(
            back.skipped(ListenerKind::Https).unwrap().reason,
            NO_WEB_SERVER
        );
        assert_eq!(
            std::fs::read_to_string(run.join("bulwark.pid")).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
