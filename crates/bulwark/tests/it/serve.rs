//! `bulwark serve`: start-up, certificate reload on SIGHUP, graceful SIGTERM.

use std::time::Duration;

use crate::support::*;

#[test]
fn starts_reloads_on_sighup_and_stops_on_sigterm() {
    let d = DataDir::init();
    let mut s = Server::start(&d);
    assert!(d.path().join("run/bulwark.pid").exists());

    // A new certificate is picked up on SIGHUP.
    let out = d.cli(&["cert", "selfsigned", "--force"]);
    assert!(out.status.success());
    s.signal(libc::SIGHUP);
    s.wait_log("certificate reloaded", Duration::from_secs(10));

    // A broken one is refused and the server keeps running with the old one.
    std::fs::write(d.cert_path(), "not a certificate").unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("certificate reload failed", Duration::from_secs(10));

    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(40));
    assert!(st.success(), "exit status {st}\n{}", s.log());
    assert!(!d.path().join("run/listeners.json").exists());
    assert!(s.log().contains("stopped"));
}

#[test]
fn refuses_to_start_with_an_unusable_certificate() {
    let d = DataDir::init();
    std::fs::write(d.cert_path(), "garbage").unwrap();
    let out = std::process::Command::new(bin())
        .args(["--dir", d.path().to_str().unwrap(), "serve", "--allow-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("unusable certificate"), "{e}");
}

#[test]
fn refuses_an_invalid_configuration() {
    let d = DataDir::init();
    d.edit_config(|c| c["tls"]["min_version"] = toml_edit::value("1.0"));
    let out = std::process::Command::new(bin())
        .args(["--dir", d.path().to_str().unwrap(), "serve", "--allow-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bulwark.toml:"));
}

#[test]
fn refuses_to_start_when_dkim_signing_cannot_load_its_keys() {
    // Fail closed: no submission without the configured DKIM signing.
    let d = DataDir::init();
    let keys = d.path().join("dkim/example.test");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("broken.pem"), "not a key").unwrap();
    let out = std::process::Command::new(bin())
        .args(["--dir", d.path().to_str().unwrap(), "serve", "--allow-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("sender authentication cannot start"), "{e}");
}

/// `serve` as root: without a `[server] user` it refuses (unless `--allow-root`); with
/// one it binds, drops to that user and group for good, and mail still flows (the
/// store, opened after the drop, is writable). Checked in /proc/PID/status.
#[test]
fn as_root_binds_then_runs_as_the_configured_user() {
    if euid() != 0 {
        eprintln!("skipped: dropping privileges needs root (CI runs the tests as root)");
        return;
    }
    let d = DataDir::init();
    d.add_user("alice@example.test");
    let serve = |args: &[&str]| -> String {
        let out = std::process::Command::new(bin())
            .args(["--dir", d.path().to_str().unwrap(), "serve"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "serve started: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // No user configured: refused, with both ways out named.
    let e = serve(&[]);
    assert!(
        e.contains("refusing to run as root")
            && e.contains("[server] user")
            && e.contains("--allow-root"),
        "{e}"
    );
    // A user that does not exist: refused.
    d.edit_config(|c| c["server"]["user"] = toml_edit::value("no-such-user-bulwark-it"));
    let e = serve(&[]);
    assert!(e.contains("does not exist"), "{e}");
    // `nobody` (uid/gid 65534 on Debian), but the data directory is root's: refused
    // with the chown that fixes it.
    d.edit_config(|c| c["server"]["user"] = toml_edit::value("nobody"));
    let e = serve(&[]);
    assert!(
        e.contains("not owned by nobody") && e.contains("chown -R nobody:"),
        "{e}"
    );

    let st = std::process::Command::new("chown")
        .args(["-R", "nobody:", d.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let s = Server::start_with(d.path(), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // Real, effective, saved and file-system IDs all dropped; no other groups.
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Groups:"), ["65534"], "{status}");
    assert!(
        s.log().contains("running as an unprivileged user"),
        "{}",
        s.log()
    );

    // Mail flows: received on 25 (STARTTLS), stored, read back over POP3 (STLS).
    let script = r#"
import poplib, smtplib, ssl, sys
smtp_port, pop_port, cafile, user, pw = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=60)
s.starttls(context=ctx)
assert s.sendmail("x@remote.test", [user], b"From: x@remote.test\r\nSubject: dropped\r\n\r\nhello\r\n") == {}
s.quit()
p = poplib.POP3("127.0.0.1", int(pop_port), timeout=60)
p.stls(context=ctx)
p.user(user)
p.pass_(pw)
count, _ = p.stat()
assert count == 1, count
_, lines, _ = p.retr(1)
assert b"Subject: dropped" in lines, lines
p.quit()
"#;
    python_ok(
        script,
        &[
            &s.port("smtp").to_string(),
            &s.port("pop3").to_string(),
            &d.cert_path().display().to_string(),
            "alice@example.test",
            PASSWORD,
        ],
    );
    // What the server created after the drop belongs to the user.
    use std::os::unix::fs::MetadataExt;
    for entry in std::fs::read_dir(d.path().join("run")).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(
            std::fs::metadata(&p).unwrap().uid(),
            65534,
            "{}",
            p.display()
        );
    }
}

/// A port held by another program: `serve` says which listener and port failed and
/// how to get past it (move the ports, or stop the other server).
#[test]
fn a_port_in_use_names_the_listener_and_the_fix() {
    let d = DataDir::init();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    d.edit_config(|c| {
        let mut a = toml_edit::Array::new();
        a.push(format!("127.0.0.1:{port}"));
        c["listeners"]["smtp"]["bind"] = toml_edit::value(a);
    });
    let out = std::process::Command::new(bin())
        .args(["--dir", d.path().to_str().unwrap(), "serve", "--allow-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains(&format!("listeners.smtp: cannot bind 127.0.0.1:{port}")),
        "{e}"
    );
    assert!(e.contains("--port-base") && e.contains("Stop it"), "{e}");
    drop(other);
}

/// A base N such that every listener's standard port + N is free on 127.0.0.1 now,
/// below the kernel's ephemeral range (so OS-chosen ports of other tests do not land
/// there).
fn free_port_base(not: u16) -> u16 {
    const STD: [u16; 10] = [25, 587, 465, 143, 993, 110, 995, 80, 443, 9425];
    let start = 11_000 + (std::process::id() % 20) as u16 * 500;
    (0..24)
        .map(|i| 11_000 + (start - 11_000 + i * 500) % 12_000)
        .find(|b| {
            *b != not
                && STD
                    .iter()
                    .all(|p| std::net::TcpListener::bind(("127.0.0.1", b + p)).is_ok())
        })
        .expect("no free port base between 11000 and 23000")
}

/// `scripts/run.sh --listen ADDR --port-base N` initialises a data directory with
/// those ports; run again on the same directory with another base (this time from
/// `BULWARK_PORT_BASE`), it moves the existing configuration's listeners instead of
/// failing the same way again. As root it runs the server as `BULWARK_USER`.
#[test]
fn run_sh_takes_port_base_and_listen_for_new_and_existing_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/run.sh");
    let run = |args: &[&str], env: &[(&str, String)]| -> (Server, serde_json::Value) {
        let log = tmp.path().join("run.log");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(script)
            .args(args)
            .arg(&dir)
            .env("BULWARK_BIN", bin())
            // As root: a user every Debian system has, instead of creating one.
            .env("BULWARK_USER", "nobody")
            .env_remove("BULWARK_DIR")
            .env_remove("BULWARK_PORT_BASE")
            .env_remove("BULWARK_LISTEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let s = Server::adopt(cmd.spawn().unwrap(), &dir, &log);
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("run/listeners.json")).unwrap())
                .unwrap();
        (s, state)
    };
    let port_of = |state: &serde_json::Value, kind: &str| -> String {
        state["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} not running: {state:#}"))["addrs"][0]
            .as_str()
            .unwrap()
            .to_string()
    };

    let base = free_port_base(0);
    let (mut s, state) = run(
        &["--listen", "127.0.0.1", "--port-base", &base.to_string()],
        &[],
    );
    assert_eq!(port_of(&state, "smtp"), format!("127.0.0.1:{}", base + 25));
    assert_eq!(
        port_of(&state, "imaps"),
        format!("127.0.0.1:{}", base + 993)
    );
    assert_eq!(
        port_of(&state, "metrics"),
        format!("127.0.0.1:{}", base + 9425)
    );
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_exit(Duration::from_secs(40)).success(),
        "{}",
        s.log()
    );

    let base2 = free_port_base(base);
    let (mut s, state) = run(
        &[],
        &[
            ("BULWARK_PORT_BASE", base2.to_string()),
            ("BULWARK_LISTEN", "127.0.0.1".to_string()),
        ],
    );
    assert_eq!(
        port_of(&state, "submission"),
        format!("127.0.0.1:{}", base2 + 587)
    );
    assert_eq!(
        port_of(&state, "pop3s"),
        format!("127.0.0.1:{}", base2 + 995)
    );
    assert_eq!(
        port_of(&state, "metrics"),
        format!("127.0.0.1:{}", base2 + 9425)
    );
    assert!(dir.join("bulwark.toml.bak").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("bulwark.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "bulwark.toml must stay private: {mode:o}");
    if euid() == 0 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        assert!(
            status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
    }
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_exit(Duration::from_secs(40)).success(),
        "{}",
        s.log()
    );
}

/// 200 messages of 64 KiB received on port 25, then expunged over IMAP: the server's
/// background reclaim gives their space back (the gauges say so and the database
/// file shrinks), and `bulwark store compact` then finds nothing left to do.
#[test]
fn the_space_of_deleted_mail_is_given_back_in_the_background() {
    let d = DataDir::init();
    d.add_user("alice@example.test");
    d.edit_config(|c| c["store"]["reclaim_interval_secs"] = toml_edit::value(1));
    let s = Server::start(&d);
    let script = r#"
import imaplib, smtplib, ssl, sys
smtp_port, imaps_port, cafile, user, pw = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
body = ("x" * 76 + "\r\n") * 840
s = smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=60)
for i in range(200):
    msg = "From: x@remote.test\r\nSubject: %d\r\n\r\n%s" % (i, body)
    assert s.sendmail("x@remote.test", [user], msg.encode()) == {}
s.quit()
print("sent")
sys.stdout.flush()
sys.stdin.readline()
m = imaplib.IMAP4_SSL("127.0.0.1", int(imaps_port), ssl_context=ctx)
m.login(user, pw)
typ, data = m.select("INBOX")
assert data == [b"200"], data
m.store("1:*", "+FLAGS", "(\\Deleted)")
typ, data = m.expunge()
assert typ == "OK" and len(data) == 200, (typ, len(data))
m.logout()
"#;
    require_tool("python3");
    let mut py = std::process::Command::new("python3")
        .args(["-c", script])
        .args([
            &s.port("smtp").to_string(),
            &s.port("imaps").to_string(),
            &d.cert_path().display().to_string(),
            "alice@example.test",
            PASSWORD,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "sent");
    let db = d.path().join("store/bulwark.db");
    // The database's size as the server samples it (the file itself may still have
    // part of it in the WAL).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let full = loop {
        let m = crate::observe::scrape(&s);
        let size = crate::observe::metric(&m, "bulwark_store_size_bytes").unwrap_or(0.0) as u64;
        if size > 12 * 1024 * 1024 {
            break size;
        }
        assert!(std::time::Instant::now() < deadline, "size gauge: {size}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Expunge everything.
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), b"go\n").unwrap();
    assert!(py.wait().unwrap().success());

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = crate::observe::scrape(&s);
        let free = crate::observe::metric(&m, "bulwark_store_free_pages");
        let reclaimed = crate::observe::metric(&m, "bulwark_store_reclaimed_bytes_total");
        let size = crate::observe::metric(&m, "bulwark_store_size_bytes");
        let on_disk = std::fs::metadata(&db).unwrap().len();
        if free == Some(0.0)
            && reclaimed.unwrap_or(0.0) > 10.0 * 1024.0 * 1024.0
            && size.unwrap_or(f64::MAX) < (full / 4) as f64
            && on_disk < full / 4
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "space not given back: free {free:?}, reclaimed {reclaimed:?}, size {size:?}, file {on_disk} of {full}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = d.cli(&["store", "compact"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("store ") && !text.contains("rewritten"),
        "{text}"
    );
}

/// The SHA-256 fingerprint of the certificate a TLS listener presents, read with
/// openssl (an independent client).
fn served_fingerprint(addr: std::net::SocketAddr) -> String {
    require_tool("openssl");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -servername {HOSTNAME} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(text.contains("Fingerprint="), "openssl: {text}");
    text
}

fn file_fingerprint(path: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kill -HUP` applies the checks `serve` makes at start: a new certificate whose key
/// is readable by others is refused and the current certificate stays in use; once
/// the key is private again, the next HUP loads it.
#[test]
fn sighup_refuses_a_key_that_serve_would_refuse_at_start() {
    let d = DataDir::init();
    let mut s = Server::start(&d);
    let imaps = s.addr("imaps");
    let old = served_fingerprint(imaps);
    assert_eq!(old, file_fingerprint(&d.cert_path()));

    let out = d.cli(&["cert", "selfsigned", "--force"]);
    assert!(out.status.success());
    let new = file_fingerprint(&d.cert_path());
    assert_ne!(new, old);
    let key = d.path().join("tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("certificate reload failed", Duration::from_secs(10));
    assert!(s.log().contains("readable by other users"), "{}", s.log());
    assert!(!s.log().contains("certificate reloaded"), "{}", s.log());
    assert_eq!(
        served_fingerprint(imaps),
        old,
        "the refused key must not be served"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("certificate reloaded", Duration::from_secs(10));
    assert_eq!(served_fingerprint(imaps), new);
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(Duration::from_secs(40)).success());
}
