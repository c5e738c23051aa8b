//! Reading a PROXY protocol (v1 text or v2 binary) header from a trusted load balancer.
//! Parsing is the `ppp` crate's; we only frame the read and bound it.

use std::net::SocketAddr;

use bytes::BytesMut;
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Larger headers (v2 with many TLVs) are refused.
const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY protocol header could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("invalid PROXY protocol header")]
    Invalid,
    #[error("PROXY protocol header too large")]
    TooLarge,
    #[error("connection closed before the PROXY header was complete")]
    Eof,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads exactly the header — never a byte past it, so that what follows (a TLS
/// ClientHello on an implicit-TLS port) reaches its reader intact — and returns the
/// client address it names (None for LOCAL/UNKNOWN: use the connection's own address).
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    // 12 octets: the v2 signature, or "PROXY " and the start of a v1 line (a v1 header
    // is at least 15 octets).
    let mut buf = BytesMut::with_capacity(128);
    read_n(stream, &mut buf, 12).await?;
    if buf[..] == V2_SIGNATURE[..] {
        read_n(stream, &mut buf, 4).await?;
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > MAX_HEADER {
            return Err(ProxyError::TooLarge);
        }
        read_n(stream, &mut buf, len).await?;
    } else if buf.starts_with(b"PROXY ") {
        // RFC-less but specified: a v1 line is at most 107 octets including CRLF.
        while !buf.ends_with(b"\n") {
            if buf.len() >= 107 {
                return Err(ProxyError::TooLarge);
            }
            read_n(stream, &mut buf, 1).await?;
        }
    } else {
        return Err(ProxyError::Invalid);
    }
    match parse(&buf) {
        Parsed::Done(addr, len) if len == buf.len() => Ok(addr),
        _ => Err(ProxyError::Invalid),
    }
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

async fn read_n(stream: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Result<(), ProxyError> {
    let start = buf.len();
    buf.resize(start + n, 0);
    match stream.read_exact(&mut buf[start..]).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProxyError::Eof),
        Err(e) => Err(e.into()),
    }
}

pub(crate) enum Parsed {
    Done(Option<SocketAddr>, usize),
    Incomplete,
    Invalid,
}

pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let addr = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Parsed::Done(addr, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            let addr = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Parsed::Done(addr, h.len())
        }
        _ => Parsed::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        match parse(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\nEHLO x\r\n") {
            Parsed::Done(Some(a), n) => {
                assert_eq!(a, "192.0.2.7:40000".parse().unwrap());
                assert_eq!(n, 41);
            }
            _ => panic!("v1"),
        }
        assert!(matches!(parse(b"PROXY TCP4 192.0.2.7"), Parsed::Incomplete));
        assert!(matches!(parse(b"EHLO x\r\n"), Parsed::Invalid));
        let mut v2h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2h.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 192, 0, 2, 1, 0x9c, 0x40, 0, 25,
        ]);
        v2h.extend(b"rest");
        match parse(&v2h) {
            Parsed::Done(Some(a), n) => {
                assert_eq!(a, "198.51.100.9:40000".parse().unwrap());
                assert_eq!(&v2h[n..], b"rest");
            }
            _ => panic!("v2"),
        }
    }
}
