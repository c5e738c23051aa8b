//! DKIM signing of mail our users submit (RFC 6376, rsa-sha256; RFC 8463,
//! ed25519-sha256) with keys kept per domain under `DIR/<key_dir>/<domain>/`, and
//! generation of those keys with the DNS record to publish.
//!
//! Layout: `DIR/dkim/<domain>/<selector>.pem`, mode 0600 in a 0700 directory. The file
//! name is the selector (`bulwark-rsa`, `bulwark-ed25519`); the key inside says the
//! algorithm (file formats: `keyfile.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mail_auth::common::crypto::{Algorithm, DkimKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::DkimSigner as MaDkimSigner;

use crate::keyfile::{read_key_file, write_key_file, KeyMaterial};

/// Why a DKIM key cannot be made, read or used, or a message cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file or its directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key we can sign with.
    #[error("{path}: not a usable DKIM key: {reason}")]
    BadKey {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file is already there and replacing it was not asked for.
    #[error("{path} already exists; use --force to replace it (and republish the DNS record)")]
    Exists {
        /// The file.
        path: String,
    },
    /// Group or others may read or write the private key.
    #[error("{path}: the DKIM private key is readable by others (mode {mode:o}); anyone who reads it can sign mail as this domain\n  fix: chmod 600 {path}")]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The signing domain (d=) is not a domain name.
    #[error("{0:?} is not a domain name")]
    BadDomain(String),
    /// The selector (s=) is not a DNS label sequence.
    #[error("{0:?} is not a DKIM selector (DNS labels: letters, digits, hyphens)")]
    BadSelector(String),
    /// Key generation failed.
    #[error("cannot generate the key: {0}")]
    Generate(String),
    /// mail-auth's signer refused the message.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// The header section holds a line that is not a field (by line number, from 1).
    #[error("will not sign: header line {0} is not a header field (RFC 5322 §2.2)")]
    HeaderSyntax(usize),
}

/// The kind of a DKIM key (RFC 6376 §3.3 signing algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RFC 8463. Small, fast; not every verifier knows it yet, so sign with both.
    Ed25519,
    /// RFC 6376 / RFC 8301: 2048 bits.
    Rsa2048,
}

impl KeyAlgorithm {
    /// The selector suffix and the `k=` tag value.
    pub fn suffix(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa",
        }
    }
}

/// A key just written, and what to publish in DNS.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The signing domain (d=).
    pub domain: String,
    /// The selector (s=).
    pub selector: String,
    /// The kind of key.
    pub algorithm: KeyAlgorithm,
    /// The private key file written.
    pub path: PathBuf,
    /// `<selector>._domainkey.<domain>`
    pub dns_name: String,
    /// `v=DKIM1; k=...; p=...`
    pub dns_txt: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `<key_dir>/<domain>/<selector_prefix>-<alg>.pem` (PKCS#8, 0600) and
/// returns the DNS record to publish. Refuses to replace an existing key unless `force`.
pub fn generate_key(
    key_dir: &Path,
    domain: &str,
    selector_prefix: &str,
    algorithm: KeyAlgorithm,
    force: bool,
) -> Result<GeneratedKey, SignError> {
    let domain = checked_domain(domain)?;
    let selector = format!("{selector_prefix}-{}", algorithm.suffix());
    let key = KeyMaterial::generate(algorithm).map_err(SignError::Generate)?;
    let path = write_key_file(key_dir, &domain, &selector, &key, force)?;
    Ok(GeneratedKey::new(domain, selector, &key, path))
}

/// `init` and `domain add`: the domain's keys (RSA and Ed25519 under
/// `<selector_prefix>-rsa` / `-ed25519`), generated where missing, existing ones kept
/// (their DNS records may already be published). Returns each key's record, and
/// whether it was made now.
pub fn ensure_keys(
    key_dir: &Path,
    domain: &str,
    selector_prefix: &str,
) -> Result<Vec<(GeneratedKey, bool)>, SignError> {
    let domain = checked_domain(domain)?;
    let mut out = Vec::new();
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::Ed25519] {
        let selector = format!("{selector_prefix}-{}", alg.suffix());
        let path = key_dir.join(&domain).join(format!("{selector}.pem"));
        if path.exists() {
            let key = read_key_file(&path)?;
            out.push((
                GeneratedKey::new(domain.clone(), selector, &key, path),
                false,
            ));
        } else {
            out.push((
                generate_key(key_dir, &domain, selector_prefix, alg, false)?,
                true,
            ));
        }
    }
    Ok(out)
}

/// `bulwark dkim import`: reads an RSA or Ed25519 key in PKCS#8 or PKCS#1 PEM (as
/// `openssl genpkey` writes it) and stores it as `<key_dir>/<domain>/<selector>.pem`
/// in PKCS#8, mode 0600, like a generated key.
pub fn import_key(
    key_dir: &Path,
    domain: &str,
    selector: &str,
    source: &Path,
    force: bool,
) -> Result<GeneratedKey, SignError> {
    let domain = checked_domain(domain)?;
    if !is_selector(selector) {
        return Err(SignError::BadSelector(selector.to_string()));
    }
    let key = read_key_file(source)?;
    let path = write_key_file(key_dir, &domain, selector, &key, force)?;
    Ok(GeneratedKey::new(domain, selector.to_string(), &key, path))
}

/// RFC 6376 §3.1: a selector is one or more DNS labels (dot-separated).
fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn checked_domain(domain: &str) -> Result<String, SignError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !crate::spf::is_valid_spf_domain(&domain) {
        return Err(SignError::BadDomain(domain));
    }
    Ok(domain)
}

impl GeneratedKey {
    fn new(domain: String, selector: String, key: &KeyMaterial, path: PathBuf) -> GeneratedKey {
        GeneratedKey {
            dns_name: format!("{selector}._domainkey.{domain}"),
            dns_txt: key.dns_txt(),
            domain,
            selector,
            algorithm: key.algorithm,
            path,
        }
    }
}

/// Headers that carry what the reader sees and who sent it: each is listed once more
/// than it occurs ("oversigning", RFC 6376 §8.15; once when absent), so a copy added
/// after signing — a second From above ours, an added Sender or Reply-To — breaks the
/// signature instead of riding on it.
const OVERSIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "To",
    "Cc",
    "Date",
    "Message-ID",
];

/// Further headers signed when present (RFC 6376 §5.4.1's recommendations).
const SIGNED_HEADERS: &[&str] = &[
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
];

/// The `h=` list for a message: every oversigned header once more than it occurs.
/// (mail-auth signs every occurrence of a listed name and lists each name that does
/// not occur again at the end, so naming a present header twice yields its
/// occurrences plus one empty instance.)
fn header_list(message: &[u8]) -> Vec<&'static str> {
    let present: Vec<Vec<u8>> = mail_auth::AuthenticatedMessage::parse(message)
        .map(|m| {
            m.headers
                .iter()
                .map(|(n, _)| n.trim_ascii().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let mut h = Vec::new();
    for name in OVERSIGNED_HEADERS {
        h.push(*name);
        if present
            .iter()
            .any(|p| p.as_slice() == name.to_ascii_lowercase().as_bytes())
        {
            h.push(*name);
        }
    }
    h.extend_from_slice(SIGNED_HEADERS);
    h
}

/// Private key files under `key_dir` (`<domain>/*.pem`) that group or others may
/// read or write, with their modes. A DKIM key lets anyone sign mail as our domains.
pub fn insecure_key_files(key_dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let Ok(domains) = fs::read_dir(key_dir) else {
        return out;
    };
    for d in domains.flatten() {
        let Ok(files) = fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|x| x == "pem") {
                if let Ok(m) = f.metadata() {
                    let mode = m.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        out.push((p, mode));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

struct LoadedKey {
    selector: String,
    key: DkimKey,
}

/// Every domain's keys, loaded once; signs a message with each key of its From domain.
pub struct DkimSigner {
    keys: BTreeMap<String, Vec<LoadedKey>>,
}

impl DkimSigner {
    /// Loads `<key_dir>/<domain>/*.pem`. A missing directory means "no keys".
    pub fn load(key_dir: &Path) -> Result<DkimSigner, SignError> {
        let mut keys: BTreeMap<String, Vec<LoadedKey>> = BTreeMap::new();
        let entries = match fs::read_dir(key_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DkimSigner { keys }),
            Err(e) => return Err(io(key_dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(key_dir))?;
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let domain = entry.file_name().to_string_lossy().to_ascii_lowercase();
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pem"))
                .collect();
            files.sort();
            for f in files {
                // Fail closed: a key others can read is a key others can sign with.
                let mode = fs::metadata(&f).map_err(io(&f))?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SignError::Permissions {
                        path: f.display().to_string(),
                        mode,
                    });
                }
                let key = read_key_file(&f)?.key;
                let selector = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                keys.entry(domain.clone())
                    .or_default()
                    .push(LoadedKey { selector, key });
            }
        }
        Ok(DkimSigner { keys })
    }

    /// Domains with at least one key.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(|s| s.as_str())
    }

    /// `(domain, selector)` of every loaded key.
    pub fn selectors(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .flat_map(|(d, ks)| ks.iter().map(move |k| (d.clone(), k.selector.clone())))
            .collect()
    }

    /// The DKIM-Signature header line(s) (CRLF-terminated) to prepend for the From
    /// domain of `message`, or `None` when we hold no key for it.
    pub fn sign(&self, message: &[u8]) -> Result<Option<String>, SignError> {
        let Some(domain) = from_domain(message) else {
            return Ok(None);
        };
        self.sign_as(&domain, message)
    }

    /// Signs with the keys of `domain` (d=domain).
    pub fn sign_as(&self, domain: &str, message: &[u8]) -> Result<Option<String>, SignError> {
        let Some(keys) = self.keys.get(&domain.to_ascii_lowercase()) else {
            return Ok(None);
        };
        // mail-auth ends the header section at any line without a colon, IMAP only at
        // the empty line (`bulwark_mime::header`): a signature over a section the two
        // read differently would vouch for fields the signer never hashed as headers.
        if let Some(n) = bulwark_mime::header::scan(message).bad_line {
            return Err(SignError::HeaderSyntax(n));
        }
        let mut out = String::new();
        for k in keys {
            let sig = MaDkimSigner::from_key(KeyRef(&k.key))
                .domain(domain.to_ascii_lowercase())
                .selector(k.selector.clone())
                .headers(header_list(message))
                .sign(message)
                .map_err(|e| SignError::Sign(e.to_string()))?;
            out.push_str(&sig.to_header());
        }
        Ok(Some(out))
    }
}

/// mail-auth's signer takes its key by value and ring key pairs are not Clone; our
/// keys are loaded once, so the signer borrows them through this.
struct KeyRef<'a>(&'a DkimKey);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// The domain of the single From address (None when absent or ambiguous).
pub fn from_domain(message: &[u8]) -> Option<String> {
    let msg = mail_auth::AuthenticatedMessage::parse(message)?;
    let froms = msg.froms();
    if froms.len() != 1 {
        return None;
    }
    froms[0]
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_section_the_parsers_read_differently_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        generate_key(
            dir.path(),
            "example.test",
            "t",
            KeyAlgorithm::Ed25519,
            false,
        )
        .unwrap();
        let signer = DkimSigner::load(dir.path()).unwrap();
        let forged = b"From: alice@example.test\r\n\x0c\r\nSender: bob@example.test\r\n\r\nx\r\n";
        assert!(matches!(
            signer.sign_as("example.test", forged),
            Err(SignError::HeaderSyntax(2))
        ));
        let clean = b"From: alice@example.test\r\nSender: bob@example.test\r\n\r\nx\r\n";
        let sig = signer.sign_as("example.test", clean).unwrap().unwrap();
        assert!(sig.starts_with("DKIM-Signature:"), "{sig}");
    }
}
