//! TLS clients for probing: rustls restricted to one version (to see which versions a
//! listener accepts) with a verifier that records rather than judges the certificate,
//! and a raw TLS 1.1 ClientHello for the versions rustls cannot speak.

use std::sync::Arc;

use bulwark_tls::rustls;

/// Which versions a probe client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.3 and 1.2, as an ordinary client (the negotiated version is the server's best).
    Both,
    /// Only TLS 1.2: does the listener still accept it?
    Only12,
    /// Only TLS 1.3: does the listener accept it?
    Only13,
}

/// A probe client configuration. `alpn` is set for HTTPS listeners.
pub fn client_config(
    versions: Versions,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = bulwark_tls::provider();
    let v: &[&'static rustls::SupportedProtocolVersion] = match versions {
        Versions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Only12 => &[&rustls::version::TLS12],
        Versions::Only13 => &[&rustls::version::TLS13],
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(v)?
        .dangerous()
        // Record, don't judge: the audit judges the recorded chain.
        .with_custom_certificate_verifier(Arc::new(bulwark_tls::AnyServerCert::new(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// "TLSv1.3 TLS13_AES_256_GCM_SHA384".
pub fn describe(conn: &rustls::ClientConnection) -> String {
    bulwark_tls::describe_session(conn)
}

/// A TLS ClientHello offering at most TLS 1.1 (record version 1.0) with the suites
/// servers of that era chose (ECDHE/RSA with AES-CBC, 3DES). RFC 5246 §7.4.1.2 / RFC
/// 4346: a server supporting 1.0 or 1.1 answers with a ServerHello of that version; a
/// 1.2+-only server answers with a protocol_version alert or closes. Built by hand
/// because no maintained Rust TLS client speaks these versions any more.
// Every length cast below is bounded by construction: 8 fixed suites, a name under
// 256 octets (checked), two fixed extensions, so the whole record is under 512 octets.
#[allow(clippy::cast_possible_truncation)]
pub fn legacy_client_hello(server_name: &str) -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
    body.push(0); // session_id
    let suites: [u16; 8] = [
        0xc014, 0xc013, 0xc00a, 0xc009, 0x0035, 0x002f, 0x000a, 0x00ff,
    ];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([0x01, 0x00]); // compression: null
    let mut ext = Vec::new();
    let name = server_name.as_bytes();
    if !name.is_empty() && name.len() < 256 && server_name.parse::<std::net::IpAddr>().is_err() {
        // server_name (RFC 6066 §3)
        ext.extend([0x00, 0x00]);
        ext.extend(((name.len() + 5) as u16).to_be_bytes());
        ext.extend(((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend((name.len() as u16).to_be_bytes());
        ext.extend(name);
    }
    // supported_groups: secp256r1, secp384r1, x25519 (RFC 8422 §5.1.1)
    ext.extend([
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x1d,
    ]);
    // ec_point_formats: uncompressed
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// What the server answered to the legacy ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyAnswer {
    /// A ServerHello for TLS 1.0 (0x0301) or 1.1 (0x0302): the version is accepted.
    Accepted(&'static str),
    /// An alert, a close, or a ServerHello for a newer version (which the client did
    /// not offer): not accepted.
    Refused(String),
    /// Not enough bytes yet.
    Incomplete,
}

/// Interprets the first bytes the server sent back (RFC 5246 §6.2.1 record header,
/// §7.4.1.3 ServerHello).
pub fn parse_legacy_answer(buf: &[u8]) -> LegacyAnswer {
    if buf.len() < 5 {
        return LegacyAnswer::Incomplete;
    }
    match buf[0] {
        0x15 => {
            let desc = buf.get(6).copied().unwrap_or(0);
            LegacyAnswer::Refused(format!("alert {desc}"))
        }
        0x16 => {
            // handshake header (type, 3-byte length), then server_version
            if buf.len() < 11 {
                return LegacyAnswer::Incomplete;
            }
            if buf[5] != 0x02 {
                return LegacyAnswer::Refused(format!("handshake message {}", buf[5]));
            }
            match (buf[9], buf[10]) {
                (0x03, 0x01) => LegacyAnswer::Accepted("TLSv1.0"),
                (0x03, 0x02) => LegacyAnswer::Accepted("TLSv1.1"),
                (0x03, 0x00) => LegacyAnswer::Accepted("SSLv3"),
                (a, b) => LegacyAnswer::Refused(format!("ServerHello version {a}.{b}")),
            }
        }
        other => LegacyAnswer::Refused(format!("not TLS (first byte {other:#04x})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_hello_is_well_formed() {
        let h = legacy_client_hello("mail.example.test");
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        let rec_len = u16::from_be_bytes([h[3], h[4]]) as usize;
        assert_eq!(rec_len, h.len() - 5);
        assert_eq!(h[5], 0x01);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, h.len() - 9);
        assert_eq!(&h[9..11], &[0x03, 0x02]);
        assert!(h
            .windows(b"mail.example.test".len())
            .any(|w| w == b"mail.example.test"));
        // No SNI for an address.
        assert!(legacy_client_hello("127.0.0.1").len() < h.len());
    }

    #[test]
    fn legacy_answers() {
        assert_eq!(
            parse_legacy_answer(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]),
            LegacyAnswer::Refused("alert 70".into())
        );
        let hello11 = [
            0x16, 0x03, 0x02, 0x00, 0x30, 0x02, 0x00, 0x00, 0x2c, 0x03, 0x02,
        ];
        assert_eq!(
            parse_legacy_answer(&hello11),
            LegacyAnswer::Accepted("TLSv1.1")
        );
        let hello12 = [
            0x16, 0x03, 0x03, 0x00, 0x30, 0x02, 0x00, 0x00, 0x2c, 0x03, 0x03,
        ];
        assert!(matches!(
            parse_legacy_answer(&hello12),
            LegacyAnswer::Refused(_)
        ));
        assert_eq!(parse_legacy_answer(&[0x16, 0x03]), LegacyAnswer::Incomplete);
        assert!(matches!(
            parse_legacy_answer(b"220 smtp ready\r\n"),
            LegacyAnswer::Refused(_)
        ));
    }
}
