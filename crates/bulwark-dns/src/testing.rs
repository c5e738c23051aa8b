//! An authoritative DNS server on 127.0.0.1 (UDP and TCP, same port) answering from an
//! in-memory zone that tests change at will. It distinguishes NXDOMAIN (no such name)
//! from NODATA (name exists, no record of that type) — SPF's void-lookup rule and MX
//! fallback depend on it — and can simulate SERVFAIL and unanswered queries.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bulwark_config::DnsConfig;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<RData>>,
    servfail: HashSet<String>,
    silent: HashSet<String>,
    /// When set, NXDOMAIN and NODATA answers carry an SOA (TTL and MINIMUM = this)
    /// in the authority section, as real authoritative servers send (RFC 2308 §3).
    negative_soa: Option<u32>,
    /// Every question received, as "name TYPE".
    log: Vec<String>,
    /// How long each UDP answer takes (a distant or busy server).
    delay: Option<std::time::Duration>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A name from text, each label as its octets (RFC 2181 §11: labels are binary), so
/// test zones can hold the odd names of the RFC 7208 suite (':', '/', spaces).
fn name(s: &str) -> Name {
    let s = s.trim_end_matches('.');
    let mut n = if s.is_empty() {
        Name::root()
    } else {
        Name::from_labels(s.split('.').map(str::as_bytes)).unwrap_or_else(|_| Name::root())
    };
    n.set_fqdn(true);
    n
}

/// The zone key of a name: its labels' octets joined by dots (the inverse of [`name`]).
fn name_key(n: &Name) -> String {
    key(&n
        .iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join("."))
}

/// The running server; stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<RwLock<Zone>>,
    queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestDns {
    /// Starts the server on an OS-chosen loopback port (UDP and TCP).
    pub async fn start() -> TestDns {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        let zone = Arc::new(RwLock::new(Zone::default()));
        let queries = Arc::new(AtomicUsize::new(0));
        let udp = Arc::new(udp);
        let mut tasks = Vec::new();
        {
            let (zone, queries, udp) = (zone.clone(), queries.clone(), udp.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = answer(&zone, &buf[..n]) {
                        let reply = if reply.len() > 512 {
                            truncated(&buf[..n]).unwrap_or(reply)
                        } else {
                            reply
                        };
                        let delay = zone.read().delay;
                        if let Some(d) = delay {
                            let udp = udp.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(d).await;
                                let _ = udp.send_to(&reply, from).await;
                            });
                        } else {
                            let _ = udp.send_to(&reply, from).await;
                        }
                    }
                }
            }));
        }
        {
            let (zone, queries) = (zone.clone(), queries.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((mut s, _)) = tcp.accept().await {
                    let (zone, queries) = (zone.clone(), queries.clone());
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = s.read_u16().await else { return };
                            let mut q = vec![0u8; len as usize];
                            if s.read_exact(&mut q).await.is_err() {
                                return;
                            }
                            queries.fetch_add(1, Ordering::Relaxed);
                            let Some(reply) = answer(&zone, &q) else {
                                continue;
                            };
                            // A DNS message over TCP is at most 65535 octets (RFC 1035
                            // §4.2.2); a longer test zone answer is dropped, not cut.
                            let Ok(reply_len) = u16::try_from(reply.len()) else {
                                return;
                            };
                            if s.write_u16(reply_len).await.is_err()
                                || s.write_all(&reply).await.is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            }));
        }
        TestDns {
            addr,
            zone,
            queries,
            tasks,
        }
    }

    /// The loopback address (UDP and TCP) the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `[dns]` section pointing at this server.
    pub fn config(&self) -> DnsConfig {
        DnsConfig {
            resolvers: vec![self.addr],
        }
    }

    /// How many queries the server has received.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// Every question received so far, in order, as "name TYPE".
    pub fn query_log(&self) -> Vec<String> {
        self.zone.read().log.clone()
    }

    /// From now on, UDP answers are sent this long after the question arrives, so
    /// concurrent lookups overlap as they do against a real, distant server.
    pub fn delay_answers(&self, d: std::time::Duration) {
        self.zone.write().delay = Some(d);
    }

    /// From now on, negative answers carry an SOA with this TTL and MINIMUM, so
    /// resolvers may cache them (RFC 2308 §5).
    pub fn negative_soa(&self, ttl: u32) {
        self.zone.write().negative_soa = Some(ttl);
    }

    fn add(&self, owner: &str, rdata: RData) {
        self.zone
            .write()
            .records
            .entry(key(owner))
            .or_default()
            .push(rdata);
    }

    /// An A record (IPv4 address) for `owner`.
    pub fn add_a(&self, owner: &str, ip: Ipv4Addr) {
        self.add(owner, RData::A(A(ip)));
    }

    /// An AAAA record (IPv6 address) for `owner`.
    pub fn add_aaaa(&self, owner: &str, ip: Ipv6Addr) {
        self.add(owner, RData::AAAA(AAAA(ip)));
    }

    /// A or AAAA depending on the address.
    pub fn add_ip(&self, owner: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add_a(owner, v4),
            IpAddr::V6(v6) => self.add_aaaa(owner, v6),
        }
    }

    /// An MX record; an exchange of "." is a null MX (RFC 7505).
    pub fn add_mx(&self, owner: &str, preference: u16, exchange: &str) {
        let ex = if exchange == "." {
            Name::root()
        } else {
            name(exchange)
        };
        self.add(owner, RData::MX(MX::new(preference, ex)));
    }

    /// A TXT record; text longer than 255 octets is split into several strings, as
    /// DNS requires (SPF and DKIM records join them back).
    pub fn add_txt(&self, owner: &str, text: &str) {
        let parts: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let parts = if parts.is_empty() {
            vec![String::new()]
        } else {
            parts
        };
        self.add(owner, RData::TXT(TXT::new(parts)));
    }

    /// A TXT record made of exactly these character-strings — none at all is
    /// allowed here (RDLENGTH 0), which RFC 1035 §3.3.14 does not permit but servers
    /// do publish (the RFC 7208 suite's `null-text`).
    pub fn add_txt_strings(&self, owner: &str, strings: &[&str]) {
        self.add(
            owner,
            RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())),
        );
    }

    /// A CNAME record: `owner` is an alias of `target`; answers follow it (up to 8
    /// hops) unless the CNAME itself is asked for.
    pub fn add_cname(&self, owner: &str, target: &str) {
        self.add(owner, RData::CNAME(CNAME(name(target))));
    }

    /// A PTR record for an address (the reverse name is computed).
    pub fn add_ptr(&self, ip: IpAddr, target: &str) {
        let owner = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let mut s = String::new();
                for b in v6.octets().iter().rev() {
                    s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
                }
                s.push_str("ip6.arpa");
                s
            }
        };
        self.add(&owner, RData::PTR(PTR(name(target))));
    }

    /// Queries for this name (any type) get SERVFAIL.
    pub fn servfail(&self, owner: &str) {
        self.zone.write().servfail.insert(key(owner));
    }

    /// Queries for this name (any type) are never answered (a timeout).
    pub fn silent(&self, owner: &str) {
        self.zone.write().silent.insert(key(owner));
    }

    /// Removes every record of a name.
    pub fn remove(&self, owner: &str) {
        let k = key(owner);
        let mut z = self.zone.write();
        z.records.remove(&k);
        z.servfail.remove(&k);
        z.silent.remove(&k);
    }
}

fn rtype(r: &RData) -> RecordType {
    r.record_type()
}

fn answer(zone: &RwLock<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut reply = Message::response(q.metadata.id, q.metadata.op_code);
    reply.metadata.recursion_desired = q.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let Some(question) = q.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(question.clone());
    zone.write().log.push(format!(
        "{} {}",
        name_key(question.name()),
        question.query_type()
    ));
    let z = zone.read();
    let mut owner = name_key(question.name());
    if z.silent.contains(&owner) {
        return None;
    }
    if z.servfail.contains(&owner) {
        reply.metadata.response_code = ResponseCode::ServFail;
        return reply.to_vec().ok();
    }
    let want = question.query_type();
    // Follow CNAMEs (at most 8) unless the CNAME itself is asked for.
    for _ in 0..8 {
        let Some(rrs) = z.records.get(&owner) else {
            if reply.answers.is_empty() {
                reply.metadata.response_code = ResponseCode::NXDomain;
                add_negative_soa(&mut reply, &z, &owner);
            }
            return reply.to_vec().ok();
        };
        let cname = rrs.iter().find_map(|r| match r {
            RData::CNAME(c) if want != RecordType::CNAME => Some(c.0.clone()),
            _ => None,
        });
        if let Some(target) = cname {
            reply.add_answer(Record::from_rdata(
                name(&owner),
                60,
                RData::CNAME(CNAME(target.clone())),
            ));
            owner = name_key(&target);
            continue;
        }
        for r in rrs
            .iter()
            .filter(|r| rtype(r) == want || want == RecordType::ANY)
        {
            reply.add_answer(Record::from_rdata(name(&owner), 60, r.clone()));
        }
        break;
    }
    if reply.answers.is_empty() {
        add_negative_soa(&mut reply, &z, &owner);
    }
    reply.to_vec().ok()
}

/// RFC 2308 §3: the SOA of the zone (here: the name's last two labels) in the
/// authority section of a negative answer.
fn add_negative_soa(reply: &mut Message, z: &Zone, owner: &str) {
    let Some(ttl) = z.negative_soa else { return };
    let labels: Vec<&str> = owner.split('.').collect();
    let zone = labels[labels.len().saturating_sub(2)..].join(".");
    let soa = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("hostmaster.{zone}")),
        1,
        3600,
        600,
        86400,
        ttl,
    );
    reply.add_authority(Record::from_rdata(name(&zone), ttl, RData::SOA(soa)));
}

/// An empty reply with TC set, so the client retries over TCP.
fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut reply = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    reply.metadata.truncation = true;
    reply.add_queries(q.queries.iter().cloned());
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::RecordType as RT;

    #[tokio::test]
    async fn answers_nxdomain_nodata_cname_servfail_and_long_txt() {
        let dns = TestDns::start().await;
        dns.add_a("mx1.example.test", "192.0.2.1".parse().unwrap());
        dns.add_mx("example.test", 10, "mx1.example.test");
        dns.add_cname("alias.example.test", "mx1.example.test");
        let long = format!("v=spf1 {} -all", "ip4:192.0.2.0/24 ".repeat(20));
        dns.add_txt("example.test", &long);
        dns.servfail("broken.test");
        let r = crate::resolver(&dns.config()).unwrap();

        let mx = r.mx_lookup("example.test.").await.unwrap();
        let ex: Vec<String> = mx
            .answers()
            .iter()
            .filter_map(|rr| match &rr.data {
                RData::MX(m) => Some(m.exchange.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(ex, vec!["mx1.example.test.".to_string()]);
        let a = r.lookup_ip("alias.example.test.").await.unwrap();
        assert_eq!(a.iter().next(), Some("192.0.2.1".parse().unwrap()));
        let txt = r.txt_lookup("example.test.").await.unwrap();
        let joined: String = txt
            .answers()
            .iter()
            .filter_map(|rr| match &rr.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        assert_eq!(joined, long, "long TXT over TCP after truncation");

        let nx = r.lookup("nope.example.test.", RT::A).await.unwrap_err();
        assert!(nx.is_nx_domain(), "{nx:?}");
        let nodata = r.lookup("mx1.example.test.", RT::MX).await.unwrap_err();
        assert!(
            nodata.is_no_records_found() && !nodata.is_nx_domain(),
            "{nodata:?}"
        );
        assert!(r.lookup("broken.test.", RT::A).await.is_err());
        assert!(dns.queries() > 0);
    }
}
