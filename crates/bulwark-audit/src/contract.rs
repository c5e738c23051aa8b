//! DATA-PATHS.md, the data-path contract, generated from the code of `bulwark report`.
//!
//! The document is the report's table for a fresh configuration (every default, the
//! standard ports) between fixed text: what the contract promises, the rules that hold
//! on every path, and what this version does not build. Because the table comes from
//! [`crate::datapath::build`] and [`crate::runstate::availability`] — the same code
//! `bulwark report` and `bulwark serve` use — the document cannot promise a path the
//! server does not open; a test compares the committed file with [`document`] and
//! fails when they differ (`BULWARK_BLESS=1` rewrites it).

use bulwark_config::{Config, ConfigError, LoadedConfig};

/// The host name the document's table is computed for.
const EXAMPLE_HOSTNAME: &str = "mail.example.org";

const INTRO: &str = "\
# Data paths — the security contract

<!-- Generated from crates/bulwark-audit/src/contract.rs and the table of `bulwark report`.
     Do not edit by hand: `BULWARK_BLESS=1 cargo test -p bulwark-audit data_paths_document`
     rewrites this file, and the test fails while it differs from what the code says. -->

Every way data enters or leaves Bulwark, with its defaults. `bulwark report` prints
this table from the live configuration (`--markdown` in this form, `--json` for
machines, `--probe` adds what the running listeners really offer), and
`bulwark audit` flags every path whose configuration is weaker than the default here.
Changing a default needs a reason written next to it.

## The paths of a fresh installation

The table below is `bulwark report --markdown` for a fresh `bulwark init` with the
standard ports (host name mail.example.org). A path marked **not served** is not
opened by this version, whatever the configuration says; `bulwark serve` and
`bulwark report` take that from one list (`bulwark_audit::runstate::availability`).
The live report adds a row for every `[[smtp.accept_policy]]` network, every listener
that accepts PROXY protocol headers, and every `[[outbound.connector]]`.

";

const RULES: &str = "
## Rules that hold on every path

1. No password, token or AUTH payload ever crosses a connection without TLS, and none
   is ever written to a log. Listeners refuse credentials before TLS (SMTP AUTH, IMAP
   LOGINDISABLED, POP3 USER/PASS/AUTH before STLS); the protocol log replaces every
   secret by `***`, with no setting to turn that off; outbound connectors send
   credentials only over TLS, and the configuration refuses credentials on a TLS
   level that allows cleartext.
2. TLS 1.2 is the floor (`[tls] min_version` may raise it to 1.3, nothing can lower
   it); TLS 1.3 is preferred. rustls offers only AEAD cipher suites: no export, RC4,
   3DES, CBC or anonymous suites exist in the server.
3. An outbound peer is checked as its connector says: `verify` checks the chain
   against the trust anchors and the host name, `pinned` the configured SHA-256
   fingerprint of the certificate or its key; `opportunistic` and `required` encrypt
   without authenticating the peer (RFC 7435), and `bulwark audit` says so when
   credentials travel that way.
4. A failed authentication answers the same way whether the user exists or not, and
   costs the attacker time (a delay, then throttling per address and per account).

## Not in this version

These paths are part of the design but are not built; nothing above claims them:

- web mail and the JSON API (the `http` and `https` listeners are not opened);
- direct trust: mutual TLS with pinned certificates between an edge and an internal
  server, the internal server's recipient-list push, client certificates on port 25;
- per-user encryption at rest (S/MIME, OpenPGP): the store is protected by file
  permissions only;
- DNSSEC validation, DANE and MTA-STS for outbound delivery; certificate revocation
  lists.
";

/// The configuration the document describes: every default, standard ports.
fn default_config() -> Result<LoadedConfig, ConfigError> {
    let text = format!("[server]\nhostname = \"{EXAMPLE_HOSTNAME}\"\n");
    Ok(LoadedConfig {
        dir: "/var/lib/bulwark".into(),
        file: "/var/lib/bulwark/bulwark.toml".into(),
        config: Config::parse(&text, "bulwark.toml")?,
    })
}

/// The whole of DATA-PATHS.md. Fails only if the default configuration does not
/// load, which bulwark-config's own tests rule out.
pub fn document() -> Result<String, ConfigError> {
    let report = crate::datapath::build(&default_config()?, None);
    let mut out = String::from(INTRO);
    out.push_str(&report.markdown_table());
    out.push_str(RULES);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed DATA-PATHS.md is exactly what the code generates.
    #[test]
    fn data_paths_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../DATA-PATHS.md");
        let want = document().unwrap();
        if std::env::var_os("BULWARK_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "DATA-PATHS.md differs from what `bulwark report` computes; run \
             `BULWARK_BLESS=1 cargo test -p bulwark-audit data_paths_document` and commit \
             the file.\n--- generated ---\n{want}"
        );
    }

    #[test]
    fn document_claims_nothing_this_version_does_not_serve() {
        let doc = document().unwrap();
        let table: Vec<&str> = doc.lines().filter(|l| l.starts_with("| ")).collect();
        let row = |needle: &str| -> &str {
            table
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no row {needle}:\n{doc}"))
        };
        for web in ["Browser → web mail", "Browser → Bulwark (HTTP"] {
            let r = row(web);
            assert!(r.ends_with("| not served |"), "{r}");
            assert!(!r.contains("yes") && !r.contains("redirects"), "{r}");
        }
        assert!(row("IMAP client → Bulwark (implicit TLS)").contains("| 993/TCP |"));
        assert!(row("Scraper → metrics").contains("9425/TCP on 127.0.0.1"));
        for l in &table {
            assert!(
                !l.contains("not in this version") && !l.contains("later"),
                "{l}"
            );
        }
    }
}
