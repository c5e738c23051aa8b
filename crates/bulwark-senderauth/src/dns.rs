//! The few DNS questions SPF and Sender ID ask (TXT, A, AAAA, MX, PTR), over the one
//! shared resolver (single-flight in front of hickory's cache, so a burst of checks
//! for one domain costs one query per name), and the prefetch that puts the names
//! mail-auth will ask into that cache first (see [`SpfDns::prefetch_txt`]). Answers
//! keep the distinction SPF needs: records, "void" (NXDOMAIN or no records of that
//! type, RFC 7208 §4.6.4) and a transient failure (SERVFAIL, timeout: temperror).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulwark_dns::hickory_resolver::proto::rr::{Name, RData, RecordType};
use bulwark_dns::SharedResolver;

/// Why a lookup produced no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN or NODATA: counts as a void lookup.
    Void,
    /// SERVFAIL, timeout, unreachable server: the check cannot conclude now.
    Temporary(String),
}

/// The records of one lookup, or why there are none.
pub type Lookup<T> = Result<Vec<T>, LookupError>;

/// A name we can ask about: absolute (no search list), each label taken as its
/// octets. DNS labels are binary (RFC 2181 §11), and SPF targets may hold any
/// macro-literal (RFC 7208 §7.1: ':', '/', and spaces from `%_`), which a host-name
/// parser would refuse or escape, so no query would be sent for a name that exists.
fn fqdn(name: &str) -> Option<Name> {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return None;
    }
    let mut n = Name::from_labels(name.split('.').map(str::as_bytes)).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// A name's text: its labels' octets joined by dots (no escaping: the inverse of
/// [`fqdn`]), lower-cased, without the root dot.
fn name_text(n: &Name) -> String {
    n.iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
        .to_ascii_lowercase()
}

/// SPF's DNS questions, through the server's shared resolver and its single-flight gate.
#[derive(Clone)]
pub struct SpfDns {
    resolver: SharedResolver,
}

impl SpfDns {
    /// A hickory resolver gets a gate of its own; pass a [`SharedResolver`] to share one.
    pub fn new(resolver: impl Into<SharedResolver>) -> Self {
        SpfDns {
            resolver: resolver.into(),
        }
    }

    /// Asks for the TXT records of `names` (concurrently, through the single-flight
    /// gate) and drops the answers: they land in hickory's cache, which mail-auth's
    /// own lookups (DKIM keys, the DMARC tree walk) read. mail-auth 0.12 calls hickory
    /// directly, so this is how its questions join a burst's shared ones.
    pub async fn prefetch_txt(&self, names: Vec<String>) {
        let mut set = tokio::task::JoinSet::new();
        for name in names {
            let Some(n) = fqdn(&name) else { continue };
            let r = self.resolver.clone();
            set.spawn(async move {
                let _ = r.lookup(n, RecordType::TXT).await;
            });
        }
        while set.join_next().await.is_some() {}
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Lookup<RData> {
        // A name that is not even a valid DNS name cannot exist: void, like NXDOMAIN.
        let Some(n) = fqdn(name) else {
            return Err(LookupError::Void);
        };
        match self.resolver.lookup(n, rtype).await {
            Ok(l) => {
                let v: Vec<RData> = l
                    .answers()
                    .iter()
                    .filter(|r| r.data.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if v.is_empty() {
                    Err(LookupError::Void)
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(LookupError::Void),
            Err(e) => Err(LookupError::Temporary(e.to_string())),
        }
    }

    /// TXT records, each with its strings concatenated (RFC 7208 §3.3).
    pub async fn txt(&self, name: &str) -> Lookup<Vec<u8>> {
        Ok(self
            .query(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
                _ => None,
            })
            .collect())
    }

    /// A records (RFC 7208 §5.3, §5.7).
    pub async fn a(&self, name: &str) -> Lookup<Ipv4Addr> {
        Ok(self
            .query(name, RecordType::A)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect())
    }

    /// AAAA records (RFC 7208 §5.3).
    pub async fn aaaa(&self, name: &str) -> Lookup<Ipv6Addr> {
        Ok(self
            .query(name, RecordType::AAAA)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect())
    }

    /// Addresses of the client's family: A for IPv4, AAAA for IPv6 (RFC 7208 §5.3).
    pub async fn addrs_like(&self, name: &str, ip: IpAddr) -> Lookup<IpAddr> {
        match ip {
            IpAddr::V4(_) => Ok(self.a(name).await?.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => Ok(self.aaaa(name).await?.into_iter().map(IpAddr::V6).collect()),
        }
    }

    /// MX exchanges, most preferred first (the order only matters for the trace).
    pub async fn mx(&self, name: &str) -> Lookup<String> {
        let mut v: Vec<(u16, String)> = self
            .query(name, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(m) => Some((m.preference, name_text(&m.exchange))),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(p, _)| *p);
        Ok(v.into_iter().map(|(_, n)| n).collect())
    }

    /// PTR names of an address.
    pub async fn ptr(&self, ip: IpAddr) -> Lookup<String> {
        let owner = reverse_name(ip);
        Ok(self
            .query(&owner, RecordType::PTR)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(name_text(&p.0)),
                _ => None,
            })
            .collect())
    }
}

/// `4.3.2.1.in-addr.arpa` / nibble `ip6.arpa` name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}
