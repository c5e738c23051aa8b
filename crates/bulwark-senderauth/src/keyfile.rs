//! DKIM private key files: what `serve` reads, what `dkim generate` / `dkim import` /
//! `init` write, and the DNS record each key needs.
//!
//! Read: PEM `PRIVATE KEY` (PKCS#8, RFC 5958: OpenSSL 3's default for RSA and Ed25519,
//! v1 or v2) and `RSA PRIVATE KEY` (PKCS#1, RFC 8017 Appendix A.1.2: older OpenSSL).
//! Write: always PKCS#8 v1, the form every OpenSSL reads (ring's own Ed25519 v2
//! documents are refused by OpenSSL 3, so they are never written). Parsing goes
//! through RustCrypto's `pkcs8`/`pkcs1`/`spki` (via `rsa`) and rustls' PEM reader;
//! nothing here decodes DER by hand.
//!
//! Must not: sign or verify (that is `sign.rs`), or decide where keys live.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::Encode;
use rsa::pkcs8::spki::{AlgorithmIdentifierRef, EncodePublicKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::sign::{KeyAlgorithm, SignError};

/// id-Ed25519, RFC 8410 §3.
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// rsaEncryption, RFC 8017 Appendix A.1.
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A private key read from (or made for) a key file: the signing key, its canonical
/// PKCS#8 v1 encoding, and the DNS record value that publishes its public half.
pub struct KeyMaterial {
    /// Which kind of key it is (Ed25519 or RSA).
    pub algorithm: KeyAlgorithm,
    /// The key, ready for mail-auth's signer.
    pub key: DkimKey,
    /// PKCS#8 v1 DER (what we write).
    pkcs8: Vec<u8>,
    /// `p=` of the DKIM record: SubjectPublicKeyInfo for RSA (what most records
    /// publish and every verifier accepts), the raw 32 octets for Ed25519 (RFC 8463 §4.2).
    public: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// A new key: RSA 2048 bits (RFC 8301 §3.2) or Ed25519.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<KeyMaterial, String> {
        match algorithm {
            KeyAlgorithm::Rsa2048 => {
                let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                    .map_err(|e| e.to_string())?;
                let der = k.to_pkcs8_der().map_err(|e| e.to_string())?;
                KeyMaterial::from_rsa(der.as_bytes())
            }
            KeyAlgorithm::Ed25519 => {
                let mut seed = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
                KeyMaterial::from_ed25519_seed(&seed, None)
            }
        }
    }

    /// Parses a PEM key file: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
    pub fn from_pem(text: &[u8]) -> Result<KeyMaterial, String> {
        if contains(text, b"ENCRYPTED PRIVATE KEY") {
            return Err("the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN.pem) — the server must read it unattended".into());
        }
        let der = PrivateKeyDer::from_pem_slice(text).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key found (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)".to_string()
            }
            e => format!("not a readable PEM key: {e:?}"),
        })?;
        match der {
            PrivateKeyDer::Pkcs1(d) => {
                let k = rsa::RsaPrivateKey::from_pkcs1_der(d.secret_pkcs1_der())
                    .map_err(|e| format!("not a PKCS#1 RSA key: {e}"))?;
                let der = k.to_pkcs8_der().map_err(|e| e.to_string())?;
                KeyMaterial::from_rsa(der.as_bytes())
            }
            PrivateKeyDer::Pkcs8(d) => KeyMaterial::from_pkcs8(d.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(_) => {
                Err("an EC (SEC1) key: DKIM signs with RSA or Ed25519 only".into())
            }
            _ => Err("unsupported key format".into()),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<KeyMaterial, String> {
        let info = PrivateKeyInfo::try_from(der).map_err(|e| format!("not PKCS#8: {e}"))?;
        if info.algorithm.oid == RSA_OID {
            KeyMaterial::from_rsa(der)
        } else if info.algorithm.oid == ED25519_OID {
            // RFC 8410 §7: privateKey is an OCTET STRING holding the 32-octet seed.
            let seed = match info.private_key {
                [0x04, 0x20, seed @ ..] if seed.len() == 32 => seed,
                _ => return Err("malformed Ed25519 private key (RFC 8410 §7)".into()),
            };
            // A v2 document also carries the public key: it must match the seed.
            KeyMaterial::from_ed25519_seed(seed, info.public_key.map(|_| der))
        } else {
            Err(format!(
                "a {} key: DKIM signs with RSA (1.2.840.113549.1.1.1) or Ed25519 (1.3.101.112) only",
                info.algorithm.oid
            ))
        }
    }

    fn from_rsa(pkcs8: &[u8]) -> Result<KeyMaterial, String> {
        let k = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8)
            .map_err(|e| format!("not an RSA key: {e}"))?;
        // RFC 8301 §3.2: signers MUST use at least 1024 bits (ring refuses < 2048).
        let signing =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(pkcs8.to_vec().into()))
                .map_err(|e| format!("unusable RSA key (DKIM needs 2048 to 4096 bits): {e}"))?;
        let public = k
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?
            .into_vec();
        Ok(KeyMaterial {
            algorithm: KeyAlgorithm::Rsa2048,
            key: DkimKey::Rsa(signing),
            pkcs8: pkcs8.to_vec(),
            public,
        })
    }

    /// `v2` is the original v2 document, checked for a consistent public key.
    fn from_ed25519_seed(seed: &[u8], v2: Option<&[u8]>) -> Result<KeyMaterial, String> {
        let mut inner = vec![0x04, 0x20];
        inner.extend_from_slice(seed);
        let alg = AlgorithmIdentifierRef {
            oid: ED25519_OID,
            parameters: None,
        };
        let pkcs8 = PrivateKeyInfo::new(alg, &inner)
            .to_der()
            .map_err(|e| e.to_string())?;
        if let Some(doc) = v2 {
            Ed25519Key::from_pkcs8_der(doc).map_err(|e| {
                format!("the Ed25519 public key does not match the private key: {e}")
            })?;
        }
        let signing =
            Ed25519Key::from_pkcs8_maybe_unchecked_der(&pkcs8).map_err(|e| e.to_string())?;
        let public = signing.public_key();
        Ok(KeyMaterial {
            algorithm: KeyAlgorithm::Ed25519,
            key: DkimKey::Ed25519(signing),
            pkcs8,
            public,
        })
    }

    /// The file's content: PEM `PRIVATE KEY` (PKCS#8 v1).
    pub fn to_pem(&self) -> String {
        let b = B64.encode(&self.pkcs8);
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The TXT value to publish at `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1).
    pub fn dns_txt(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.suffix(),
            B64.encode(&self.public)
        )
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads and parses a key file.
pub fn read_key_file(path: &Path) -> Result<KeyMaterial, SignError> {
    let text = fs::read(path).map_err(|source| SignError::Io {
        path: path.display().to_string(),
        source,
    })?;
    KeyMaterial::from_pem(&text).map_err(|reason| SignError::BadKey {
        path: path.display().to_string(),
        reason,
    })
}

/// Writes `<key_dir>/<domain>/<selector>.pem`: mode 0600 in a 0700 directory, fsynced.
/// Refuses to replace an existing file unless `force`.
pub fn write_key_file(
    key_dir: &Path,
    domain: &str,
    selector: &str,
    key: &KeyMaterial,
    force: bool,
) -> Result<PathBuf, SignError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SignError::Io { path, source }
    };
    let dir = key_dir.join(domain);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    let path = dir.join(format!("{selector}.pem"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SignError::Exists {
                path: path.display().to_string(),
            }
        } else {
            io(&path)(e)
        }
    })?;
    // An existing file replaced with --force keeps its inode and could have had a
    // looser mode: the 0600 rule holds for every key we write.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io(&path))?;
    f.write_all(key.to_pem().as_bytes()).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pkcs8_v1() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
            let k = KeyMaterial::generate(alg).unwrap();
            let pem = k.to_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
            let back = KeyMaterial::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(back.algorithm, alg);
            assert_eq!(back.dns_txt(), k.dns_txt());
            // v1: version INTEGER 0 right after the outer SEQUENCE header.
            let info = PrivateKeyInfo::try_from(k.pkcs8.as_slice()).unwrap();
            assert!(info.public_key.is_none());
        }
    }

    #[test]
    fn ring_v2_ed25519_and_pkcs1_rsa_are_read() {
        // ring writes Ed25519 as PKCS#8 v2 (what Bulwark wrote before).
        let v2 = Ed25519Key::generate_pkcs8().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(&v2)
        );
        let k = KeyMaterial::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(k.algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(
            k.public,
            Ed25519Key::from_pkcs8_der(&v2).unwrap().public_key()
        );
        // PKCS#1 (`RSA PRIVATE KEY`), as mail-auth's generator and old OpenSSL write.
        let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048).unwrap();
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            B64.encode(pair.private_key())
        );
        let k = KeyMaterial::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(k.algorithm, KeyAlgorithm::Rsa2048);
        assert!(k.dns_txt().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
    }

    #[test]
    fn other_keys_are_refused_with_a_reason() {
        let e = KeyMaterial::from_pem(b"hello").unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = KeyMaterial::from_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
        // An X25519 key (1.3.101.110) is PKCS#8 too, but not a signing key.
        let x25519 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIGDnGKRBCVWL3C2XTxl5pJTGcPVYBrRlhxIaGAR9W19/\n-----END PRIVATE KEY-----\n";
        let e = KeyMaterial::from_pem(x25519.as_bytes()).unwrap_err();
        assert!(e.contains("1.3.101.110"), "{e}");
    }
}
