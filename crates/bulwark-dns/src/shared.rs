//! Single-flight lookups over the one hickory resolver: concurrent identical questions
//! (same name, type) share one lookup, and every caller gets a copy of its answer.
//!
//! Why, although hickory 0.26 already shares identical requests in flight (its
//! `NameServerPool`): it drops the shared request when the server has answered, and
//! its cache (`CachingClient`) stores the answer only after that, so a caller arriving
//! in between asks again — under a burst of messages from one sender domain, which
//! asks the same SPF, DKIM and DMARC names at once, that is a steady trickle of
//! duplicates, and a stub resolver drops much of such a burst. This gate spans the
//! whole lookup, cache insertion included: its entry goes only once the answer is in
//! hickory's cache (positive answers for their TTL, negative ones per RFC 2308, see
//! [`crate::resolver_config`]), where later callers find it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_config::DnsConfig;
use hickory_resolver::proto::op::Query;

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

type Answer = Result<Lookup, NetError>;
type Key = (Name, RecordType);

/// The resolver every sender check shares: hickory's (with its cache) behind a
/// single-flight gate. Cheap to clone; clones share the gate and the cache.
#[derive(Clone)]
pub struct SharedResolver {
    inner: TokioResolver,
    in_flight: Arc<Mutex<HashMap<Key, Arc<OnceCell<Answer>>>>>,
    /// The name servers `inner` asks, for the one question we re-ask ourselves
    /// (`lenient.rs`); empty when unknown (then that fallback is off).
    servers: Arc<[SocketAddr]>,
    timeout: Duration,
}

impl SharedResolver {
    /// Wraps `inner` with no known name servers (the lenient re-ask is off) and a
    /// 3-second timeout for that re-ask.
    pub fn new(inner: TokioResolver) -> SharedResolver {
        SharedResolver {
            inner,
            in_flight: Arc::default(),
            servers: Arc::from([]),
            timeout: Duration::from_secs(3),
        }
    }

    /// The resolver for `[dns]`, knowing its name servers.
    pub fn from_config(cfg: &DnsConfig) -> Result<SharedResolver, crate::DnsError> {
        let (config, opts) = crate::resolver_config(cfg)?;
        let servers: Vec<SocketAddr> = if cfg.resolvers.is_empty() {
            config
                .name_servers()
                .iter()
                .map(|ns| SocketAddr::new(ns.ip, 53))
                .collect()
        } else {
            cfg.resolvers.clone()
        };
        let mut r = SharedResolver::new(crate::resolver(cfg)?);
        r.servers = servers.into();
        r.timeout = opts.timeout;
        Ok(r)
    }

    /// The hickory resolver itself, for libraries that take one (mail-auth). Its
    /// cache is the one these lookups fill.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }

    /// Looks `name` up (absolute: no search list) as one query shared with every
    /// concurrent identical lookup.
    pub async fn lookup(&self, name: Name, rtype: RecordType) -> Answer {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let key = (name, rtype);
        let cell = self
            .in_flight
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        // A caller that gives up (its session timed out) and was the last one waiting
        // takes the entry with it: the names are the sender's choice, one per message
        // with SPF macros, and entries nobody will finish would pile up.
        let _abandon = Abandon {
            map: &self.in_flight,
            key: &key,
            cell: &cell,
        };
        // tokio's OnceCell runs one initialiser at a time; the others wait for its
        // value. If the running caller is cancelled, a waiting one takes over.
        let answer = cell
            .get_or_init(|| self.lookup_once(key.0.clone(), key.1))
            .await
            .clone();
        // No await between getting the answer and this: whoever sees the answer
        // first removes the entry (only this cell: a newer one may have replaced it).
        {
            let mut map = self.in_flight.lock();
            if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&key);
            }
        }
        answer
    }

    async fn lookup_once(&self, name: Name, rtype: RecordType) -> Answer {
        let answer = self.inner.lookup(name.clone(), rtype).await;
        match answer {
            Err(e)
                if rtype == RecordType::TXT
                    && !self.servers.is_empty()
                    && crate::lenient::is_empty_record_refusal(&e) =>
            {
                tracing::debug!(target: "bulwark::dns", %name, "TXT reply with an empty record: asking again, skipping it");
                match crate::lenient::txt_records(&self.servers, &name, self.timeout).await {
                    Ok(records) => Ok(Lookup::new_with_max_ttl(Query::query(name, rtype), records)),
                    Err(why) => {
                        tracing::debug!(target: "bulwark::dns", %why, "second TXT query failed");
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    /// Questions currently on the wire (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().len()
    }
}

/// Removes a lookup's entry when its last caller is dropped before the answer.
struct Abandon<'a> {
    map: &'a Mutex<HashMap<Key, Arc<OnceCell<Answer>>>>,
    key: &'a Key,
    cell: &'a Arc<OnceCell<Answer>>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        // Joiners clone the cell under this lock: two references (the map's and this
        // caller's) mean nobody else is waiting for it.
        if map.get(self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell))
            && Arc::strong_count(self.cell) <= 2
        {
            map.remove(self.key);
        }
    }
}

impl From<TokioResolver> for SharedResolver {
    fn from(r: TokioResolver) -> Self {
        SharedResolver::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDns;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_costs_one_query_per_name_and_negatives_are_cached() {
        let dns = TestDns::start().await;
        // Negative answers carry the zone's SOA, as an authoritative server sends
        // them (RFC 2308 §3), so they can be cached.
        dns.negative_soa(300);
        // Answers take a while, so the 200 lookups overlap (the stub resolver's case).
        dns.delay_answers(std::time::Duration::from_millis(300));
        dns.add_txt("_dmarc.yes.test", "v=DMARC1; p=reject");
        let r = SharedResolver::new(crate::resolver(&dns.config()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let name = if i % 2 == 0 {
                    "_dmarc.yes.test."
                } else {
                    "_dmarc.no.test."
                };
                r.lookup(n(name), RecordType::TXT).await
            }));
        }
        let mut found = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(l) => {
                    assert_eq!(i % 2, 0);
                    assert_eq!(l.answers().len(), 1);
                    found += 1;
                }
                Err(e) => {
                    assert_eq!(i % 2, 1);
                    assert!(e.is_nx_domain(), "{e:?}");
                }
            }
        }
        assert_eq!(found, 100);
        assert_eq!(dns.queries(), 2, "{:?}", dns.query_log());
        assert_eq!(r.in_flight(), 0);
        // Later lookups, positive and negative, come from the cache (RFC 2308 §5:
        // the NXDOMAIN is kept for the SOA's minimum), also through hickory directly
        // as mail-auth asks.
        assert!(r
            .lookup(n("_dmarc.no.test."), RecordType::TXT)
            .await
            .is_err());
        assert!(r.hickory().txt_lookup("_dmarc.no.test.").await.is_err());
        assert!(r.hickory().txt_lookup("_dmarc.yes.test.").await.is_ok());
        assert_eq!(dns.queries(), 2, "{:?}", dns.query_log());
    }

    /// Review: a lookup whose every caller gave up (a session timed out, a client went
    /// away) must not leave its entry behind: names are attacker-chosen (SPF macros
    /// such as `%{l}` make one per message), so such entries would grow without bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_lookups_leave_no_entry() {
        let dns = TestDns::start().await;
        dns.delay_answers(std::time::Duration::from_millis(500));
        let r = SharedResolver::new(crate::resolver(&dns.config()).unwrap());
        for i in 0..20 {
            let name = n(&format!("x{i}.abandoned.test."));
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                r.lookup(name, RecordType::TXT),
            )
            .await;
        }
        assert_eq!(r.in_flight(), 0);
    }
}
