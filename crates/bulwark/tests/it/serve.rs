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
        .args(["--dir", d.path().to_str().unwrap(), "serve"])
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
        .args(["--dir", d.path().to_str().unwrap(), "serve"])
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
        .args(["--dir", d.path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("sender authentication cannot start"), "{e}");
}
