//! A TXT lookup that survives an empty TXT record in the answer.
//!
//! RFC 1035 §3.3.14 gives a TXT record at least one character-string, but zones do
//! publish TXT records with RDLENGTH 0, and hickory 0.26 then refuses the whole reply
//! (`DecodeError::InvalidEmptyRecord`, allowed only in UPDATE messages). One such
//! record would hide the domain's real SPF record and turn every check into a
//! temperror; RFC 7208's test suite (`null-text`) expects the check to go on. So on
//! that one error we ask the same question once more ourselves (UDP, then TCP when
//! truncated, RFC 1035 §4.2) and decode the reply record by record with hickory-proto's
//! own decoders, skipping the empty records. No DNS parsing is written here.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::{Header, Message, Query};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};
use hickory_resolver::proto::ProtoError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Whether `e` is hickory refusing a reply because it holds an empty record.
pub(crate) fn is_empty_record_refusal(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Proto(ProtoError::Decode(DecodeError::InvalidEmptyRecord))
    )
}

/// The TXT records of `name` from the first of `servers` that answers, empty records
/// left out. Errors are text: the caller reports them as a failed lookup.
pub(crate) async fn txt_records(
    servers: &[SocketAddr],
    name: &Name,
    timeout: Duration,
) -> Result<Vec<Record>, String> {
    let mut last = String::from("no name server configured");
    for server in servers {
        match tokio::time::timeout(timeout, ask(*server, name)).await {
            Ok(Ok(records)) => return Ok(records),
            Ok(Err(e)) => last = format!("{server}: {e}"),
            Err(_) => last = format!("{server}: timed out"),
        }
    }
    Err(last)
}

async fn ask(server: SocketAddr, name: &Name) -> Result<Vec<Record>, String> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name.clone(), RecordType::TXT));
    let id = q.metadata.id;
    let wire = q.to_vec().map_err(|e| e.to_string())?;

    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| "bad bind address".to_string())?;
    let udp = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    udp.connect(server).await.map_err(|e| e.to_string())?;
    udp.send(&wire).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let reply = loop {
        let n = udp.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // A reply to another question (or forged) is ignored, as a resolver does.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            break buf[..n].to_vec();
        }
    };
    let (truncated, records) = decode(&reply, id)?;
    if !truncated {
        return Ok(records);
    }
    let mut tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    tcp.write_u16(len).await.map_err(|e| e.to_string())?;
    tcp.write_all(&wire).await.map_err(|e| e.to_string())?;
    let len = tcp.read_u16().await.map_err(|e| e.to_string())?;
    let mut reply = vec![0u8; usize::from(len)];
    tcp.read_exact(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(decode(&reply, id)?.1)
}

/// (truncated, the answer's non-empty TXT records).
fn decode(reply: &[u8], id: u16) -> Result<(bool, Vec<Record>), String> {
    let mut d = BinDecoder::new(reply);
    let err = |e: DecodeError| format!("undecodable reply: {e}");
    let header = Header::read(&mut d).map_err(err)?;
    if header.metadata.id != id {
        return Err("reply to another question".into());
    }
    if header.metadata.truncation {
        return Ok((true, Vec::new()));
    }
    for _ in 0..header.counts.queries {
        Query::read(&mut d).map_err(err)?;
    }
    let mut out = Vec::new();
    for _ in 0..header.counts.answers {
        let r = Record::read(&mut d).map_err(err)?;
        if matches!(r.data, RData::TXT(_)) {
            out.push(r);
        }
    }
    Ok((false, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDns;

    #[tokio::test]
    async fn an_empty_txt_record_does_not_hide_the_others() {
        let dns = TestDns::start().await;
        dns.add_txt("null.test", "v=spf1 -all");
        dns.add_txt_strings("null.test", &[]);
        let r = crate::SharedResolver::from_config(&dns.config()).unwrap();
        // hickory alone refuses the reply…
        let e = r.hickory().txt_lookup("null.test.").await.unwrap_err();
        assert!(is_empty_record_refusal(&e), "{e:?}");
        // …the shared resolver asks again and keeps the real record.
        let name = Name::from_ascii("null.test.").unwrap();
        let l = r.lookup(name, RecordType::TXT).await.unwrap();
        let txt: Vec<String> = l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(txt, ["v=spf1 -all"]);
    }
}
