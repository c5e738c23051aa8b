//! The administrator's command line: init, config check, users, domains, aliases, certs.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_creates_a_private_secure_directory() {
    let d = DataDir::init();
    assert_eq!(mode(d.path()), 0o700);
    assert_eq!(mode(&d.path().join("tls/key.pem")), 0o600);
    assert_eq!(mode(&d.config_path()), 0o600);
    assert_eq!(mode(&d.path().join("store")), 0o700);
    let text = std::fs::read_to_string(d.config_path()).unwrap();
    for section in [
        "[listeners.smtp]",
        "[listeners.submission]",
        "[listeners.submissions]",
        "[listeners.imap]",
        "[listeners.imaps]",
        "[listeners.pop3]",
        "[listeners.pop3s]",
        "[listeners.http]",
        "[listeners.https]",
        "[listeners.metrics]",
        "min_version = \"1.2\"",
    ] {
        assert!(text.contains(section), "missing {section}");
    }
    assert!(
        text.contains("LOGINDISABLED"),
        "sections explain what they protect"
    );
    let out = d.cli(&["domain", "list"]);
    assert_eq!(stdout(&out), "example.test\n");
    let out = d.cli(&["cert", "show"]);
    assert!(
        stdout(&out).contains("mail.example.test"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("(self-signed)"));
}

#[test]
fn init_twice_refuses_without_force_and_keeps_the_store() {
    let d = DataDir::init();
    d.add_user("alice@example.test");
    let args = [
        "init",
        "--domain",
        "example.test",
        "--hostname",
        "mail.example.test",
    ];
    let out = d.cli(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = d.cli(
        &[
            &args[..],
            &["--force", "--listen", "127.0.0.1", "--ephemeral-ports"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&d.cli(&["user", "list"])),
        "alice@example.test\n",
        "the store survives --force"
    );
}

#[test]
fn port_base_offsets_standard_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = std::process::Command::new(bin())
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "init",
            "--domain",
            "example.test",
        ])
        .args([
            "--hostname",
            "mail.example.test",
            "--listen",
            "127.0.0.1",
            "--port-base",
            "10000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("bulwark.toml")).unwrap();
    assert!(text.contains("bind = [\"127.0.0.1:10025\"]"));
    assert!(text.contains("bind = [\"127.0.0.1:10993\"]"));
    assert!(text.contains("bind = [\"127.0.0.1:10443\"]"));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "--dir",
            tmp.path().to_str().unwrap(),
            "init",
            "--domain",
            "nodots",
        ])
        .args(["--hostname", "mail.example.test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a valid domain"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
    // Commands on a directory without a configuration explain how to create one.
    let out = std::process::Command::new(bin())
        .args(["--dir", tmp.path().to_str().unwrap(), "user", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bulwark init"), "{}", stderr(&out));
}

#[test]
fn users_domains_aliases() {
    let d = DataDir::init();
    d.add_user("alice@example.test");
    d.add_user("bob@example.test");
    // Duplicate, unknown domain, short password: errors, not panics.
    let out = d.cli_stdin(
        &["user", "add", "alice@example.test", "--password-stdin"],
        "another password\n",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("already exists"),
        "{}",
        stderr(&out)
    );
    let out = d.cli_stdin(
        &["user", "add", "x@other.test", "--password-stdin"],
        "another password\n",
    );
    assert!(
        stderr(&out).contains("domain add other.test"),
        "{}",
        stderr(&out)
    );
    let out = d.cli_stdin(
        &["user", "add", "carol@example.test", "--password-stdin"],
        "short\n",
    );
    assert!(stderr(&out).contains("at least 8"), "{}", stderr(&out));
    assert_eq!(
        stdout(&d.cli(&["user", "list"])),
        "alice@example.test\nbob@example.test\n"
    );

    // The password is stored as an Argon2id hash, never in clear.
    // (With WAL the rows may still be in the -wal file: read every store file.)
    let mut db = Vec::new();
    for e in std::fs::read_dir(d.path().join("store")).unwrap() {
        db.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    let hay = String::from_utf8_lossy(&db);
    assert!(!hay.contains(PASSWORD));
    assert!(hay.contains("$argon2id$"));

    let out = d.cli_stdin(
        &["user", "passwd", "bob@example.test", "--password-stdin"],
        "a brand new one\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli_stdin(
        &["user", "passwd", "nobody@example.test", "--password-stdin"],
        "a brand new one\n",
    );
    assert!(!out.status.success());

    assert!(d.cli(&["domain", "add", "other.test"]).status.success());
    assert!(!d.cli(&["domain", "add", "other.test"]).status.success());
    assert!(d
        .cli(&["alias", "add", "sales@example.test", "alice@example.test"])
        .status
        .success());
    assert!(d
        .cli(&["alias", "add", "sales@example.test", "bob@example.test"])
        .status
        .success());
    assert_eq!(
        stdout(&d.cli(&["alias", "list"])),
        "postmaster@example.test -> alice@example.test\nsales@example.test -> alice@example.test\nsales@example.test -> bob@example.test\n",
        "the domain's first account receives postmaster mail"
    );
    let out = d.cli(&["alias", "add", "x@example.test", "ghost@example.test"]);
    assert!(!out.status.success());
    assert!(d
        .cli(&["alias", "del", "sales@example.test", "bob@example.test"])
        .status
        .success());
    assert!(d
        .cli(&["alias", "del", "postmaster@example.test"])
        .status
        .success());
    assert_eq!(
        stdout(&d.cli(&["alias", "list"])),
        "sales@example.test -> alice@example.test\n"
    );
    let out = d.cli(&["domain", "del", "example.test"]);
    assert!(
        stderr(&out).contains("delete them first"),
        "{}",
        stderr(&out)
    );
    assert!(d
        .cli(&["user", "send-as", "bob@example.test", "ceo@example.test"])
        .status
        .success());
    assert!(d.cli(&["user", "del", "bob@example.test"]).status.success());
    assert_eq!(stdout(&d.cli(&["user", "list"])), "alice@example.test\n");
    assert!(d.cli(&["domain", "del", "other.test"]).status.success());
}

#[test]
fn config_check_reports_each_problem_with_a_fix() {
    let d = DataDir::init();
    let ok = d.cli(&["config", "check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // Unknown key: file, line and key named.
    let good = std::fs::read_to_string(d.config_path()).unwrap();
    std::fs::write(
        d.config_path(),
        good.replace("[tls]\n", "[tls]\ncertfile = \"x\"\n"),
    )
    .unwrap();
    let out = d.cli(&["config", "check"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("bulwark.toml:") && e.contains("unknown field `certfile`"),
        "{e}"
    );

    // Bad address.
    std::fs::write(
        d.config_path(),
        good.replace("127.0.0.1:0", "127.0.0.300:0"),
    )
    .unwrap();
    assert!(stderr(&d.cli(&["config", "check"])).contains("invalid socket address"));

    // Missing certificate.
    std::fs::write(d.config_path(), &good).unwrap();
    let cert = std::fs::read(d.cert_path()).unwrap();
    std::fs::remove_file(d.cert_path()).unwrap();
    let e = stderr(&d.cli(&["config", "check"]));
    assert!(e.contains("cannot read") && e.contains("fix:"), "{e}");

    // Key that does not match the certificate.
    let other = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "--dir",
            other.path().to_str().unwrap(),
            "init",
            "--domain",
            "example.test",
        ])
        .args(["--hostname", "mail.example.test"])
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::copy(other.path().join("tls/cert.pem"), d.cert_path()).unwrap();
    let e = stderr(&d.cli(&["config", "check"]));
    assert!(e.contains("does not belong to the certificate"), "{e}");

    // World-readable key.
    std::fs::write(d.cert_path(), &cert).unwrap();
    let key = d.path().join("tls/key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = stderr(&d.cli(&["config", "check"]));
    assert!(
        e.contains("readable by other users") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(d.cli(&["config", "check"]).status.success());
}

#[test]
fn expired_certificate_is_an_error() {
    let d = DataDir::init();
    let out = d.cli(&["cert", "selfsigned", "--days", "0", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Valid from one hour ago until now: expired by the time we check.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = d.cli(&["config", "check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[test]
fn cert_import_validates_and_csr_prints() {
    let d = DataDir::init();
    let other = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "--dir",
            other.path().to_str().unwrap(),
            "init",
            "--domain",
            "example.test",
        ])
        .args(["--hostname", "mail.example.test"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let (oc, ok) = (
        other.path().join("tls/cert.pem"),
        other.path().join("tls/key.pem"),
    );
    // Mismatched pair refused, live files untouched.
    let before = d.cert_pem();
    let out = d.cli(&[
        "cert",
        "import",
        "--cert",
        oc.to_str().unwrap(),
        "--key",
        d.path().join("tls/key.pem").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(d.cert_pem(), before);
    let out = d.cli(&[
        "cert",
        "import",
        "--cert",
        oc.to_str().unwrap(),
        "--key",
        ok.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.cert_pem(), std::fs::read_to_string(&oc).unwrap());
    assert_eq!(mode(&d.path().join("tls/key.pem")), 0o600);
    let out = d.cli(&["cert", "csr"]);
    assert!(stdout(&out).starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
}

#[test]
fn help_explains_every_command() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["serve", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["domain", "--help"],
        vec!["alias", "--help"],
        vec!["cert", "--help"],
        vec!["config", "check", "--help"],
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).len() > 80, "{args:?}: {}", stdout(&out));
    }
}

#[test]
fn init_refuses_a_non_empty_foreign_directory_and_a_too_large_port_base() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("someone-elses.txt"), "x").unwrap();
    let init = |extra: &[&str]| {
        std::process::Command::new(bin())
            .args([
                "--dir",
                dir.to_str().unwrap(),
                "init",
                "--domain",
                "example.test",
            ])
            .args(["--hostname", "mail.example.test"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert!(!dir.join("bulwark.toml").exists());
    assert_eq!(mode(&dir), 0o755, "a foreign directory keeps its mode");
    // --force proceeds but still leaves the directory's mode alone.
    let out = init(&["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join("bulwark.toml")), 0o600);

    let fresh = tmp.path().join("fresh");
    let out = std::process::Command::new(bin())
        .args([
            "--dir",
            fresh.to_str().unwrap(),
            "init",
            "--domain",
            "example.test",
        ])
        .args(["--hostname", "mail.example.test", "--port-base", "60000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--port-base 60000 is too large"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("internal"));
    assert!(!fresh.exists(), "nothing is created for a refused init");
}
