//! The harness every integration test uses: a data directory made by the real
//! `bulwark init`, the real `bulwark serve` on OS-chosen loopback ports, and helpers
//! for independent clients (Python's standard library, curl, openssl, rustls).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "example.test";
pub const HOSTNAME: &str = "mail.example.test";
pub const PASSWORD: &str = "correct horse battery";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bulwark")
}

/// A data directory initialised by `bulwark init` with every listener on 127.0.0.1
/// and an OS-chosen port.
pub struct DataDir {
    tmp: tempfile::TempDir,
}

impl DataDir {
    pub fn init() -> DataDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir { tmp };
        let out = d.cli(&[
            "init",
            "--domain",
            DOMAIN,
            "--hostname",
            HOSTNAME,
            "--listen",
            "127.0.0.1",
            "--ephemeral-ports",
        ]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Sender checks (SPF/DKIM/DMARC on port 25) ask DNS, and tests never touch the
        // Internet: tests that want them turn them on with a loopback DNS server
        // (see senderauth.rs).
        d.edit_config(|c| c["senderauth"]["enabled"] = toml_edit::value(false));
        // Tests never query the real Internet: every server runs the outbound delivery
        // worker (MX lookups) and sender checks, so DNS goes to a loopback port that
        // refuses, unless a test points `[dns] resolvers` at its own TestDns.
        d.edit_config(|c| {
            let mut a = toml_edit::Array::new();
            a.push("127.0.0.1:9");
            c["dns"]["resolvers"] = toml_edit::value(a);
        });
        d
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("bulwark.toml")
    }

    /// Runs `bulwark --dir DIR args…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, "")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(bin())
            .arg("--dir")
            .arg(self.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("BULWARK_DIR")
            .spawn()
            .expect("spawn bulwark");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Creates an account with `PASSWORD`.
    pub fn add_user(&self, address: &str) {
        let out = self.cli_stdin(
            &["user", "add", address, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        );
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Edits bulwark.toml in place (keeping its comments).
    pub fn edit_config(&self, f: impl FnOnce(&mut toml_edit::DocumentMut)) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        f(&mut doc);
        std::fs::write(self.config_path(), doc.to_string()).unwrap();
    }

    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(self.path().join("tls/cert.pem")).unwrap()
    }

    pub fn cert_path(&self) -> PathBuf {
        self.path().join("tls/cert.pem")
    }
}

/// A running `bulwark serve`. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub listeners: HashMap<String, Vec<SocketAddr>>,
    log_path: PathBuf,
    dir: PathBuf,
}

impl Server {
    /// Starts the server and waits until `DIR/run/listeners.json` shows it is up.
    pub fn start(data: &DataDir) -> Server {
        Server::start_in(data.path())
    }

    /// Tests run as root in CI: `--allow-root` (a no-op otherwise), since their data
    /// directories configure no `[server] user` (see privilege.rs for the drop).
    pub fn start_in(dir: &Path) -> Server {
        Server::start_full(dir, &["--allow-root"], |_| {})
    }

    /// Starts `bulwark serve` with these arguments after `serve`.
    pub fn start_with(dir: &Path, serve_args: &[&str]) -> Server {
        Server::start_full(dir, serve_args, |_| {})
    }

    /// Like `start_in`, letting the test adjust the command first (environment,
    /// resource limits through `pre_exec`).
    pub fn start_adjusted(dir: &Path, adjust: impl FnOnce(&mut Command)) -> Server {
        Server::start_full(dir, &["--allow-root"], adjust)
    }

    /// Starts `bulwark serve SERVE_ARGS…`, adjusted by `adjust` before the spawn.
    pub fn start_full(
        dir: &Path,
        serve_args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        let run = dir.join("run/listeners.json");
        let _ = std::fs::remove_file(&run);
        let log_path = dir.join(format!("server-{}.log", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("--dir")
            .arg(dir)
            .arg("serve")
            .args(serve_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn serve");
        Server::adopt(child, dir, &log_path)
    }

    /// Waits until `child` (a `bulwark serve`, or a script that execs one) has written
    /// `DIR/run/listeners.json`; `log_path` is where its stderr goes.
    pub fn adopt(child: Child, dir: &Path, log_path: &Path) -> Server {
        let run = dir.join("run/listeners.json");
        let pid = child.id();
        let mut s = Server {
            child: Some(child),
            listeners: HashMap::new(),
            log_path: log_path.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&run) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if v["pid"].as_u64() == Some(u64::from(pid)) {
                        for l in v["listeners"].as_array().unwrap() {
                            let addrs = l["addrs"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|a| a.as_str().unwrap().parse().unwrap())
                                .collect();
                            s.listeners
                                .insert(l["kind"].as_str().unwrap().to_string(), addrs);
                        }
                        return s;
                    }
                }
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first address of a listener ("smtp", "imaps", …).
    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.listeners
            .get(kind)
            .and_then(|a| a.first().copied())
            .unwrap_or_else(|| {
                panic!(
                    "listener {kind} is not running; running: {:?}",
                    self.listeners.keys().collect::<Vec<_>>()
                )
            })
    }

    pub fn port(&self, kind: &str) -> u16 {
        self.addr(kind).port()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    // The tests' calls into libc are allowed one by one (the workspace denies
    // `unsafe_code`); each says why it is sound.
    #[allow(unsafe_code)]
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("server already reaped");
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the server log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A rustls client configuration that trusts the data directory's certificate.
pub fn tls_client_config(data: &DataDir) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(data.cert_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Requires a tool the test command (`scripts/test.sh`) installs; fails with the fix
/// instead of silently skipping.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed; run the tests with ./scripts/test.sh, which installs it"
    );
}

/// Runs a Python 3 script (standard library only) with arguments; returns its output.
pub fn python(script: &str, args: &[&str]) -> Output {
    require_tool("python3");
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3")
}

/// Asserts a Python script succeeded and returns its stdout.
pub fn python_ok(script: &str, args: &[&str]) -> String {
    let out = python(script, args);
    assert!(
        out.status.success(),
        "python failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tests' effective user ID (root in CI: some tests need it, others skip).
#[allow(unsafe_code)]
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
