//! Which IP is checked when mail comes through our own edge gateways or relays
//! (`[senderauth] internal_servers`): walk the `Received:` headers from the top past
//! internal hops to the first external one (SPEC §6). A pure function.
//!
//! Trust: the topmost Received header was added by the connecting host, which is
//! internal, so it is trusted; each further header is trusted only if the host that
//! added it (the `from` IP of the header above) is internal too. The walk stops at
//! the first `from` IP that is not internal: that is the external hop, and nothing
//! below it (written by outsiders) is believed.

use std::net::IpAddr;

use bulwark_mime::header::is_named;
use ipnet::IpNet;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Host};

/// At most this many Received headers are examined (RFC 5321 §6.3 loop limits are
/// around 100; an internal chain is never that long).
const MAX_HOPS: usize = 30;

/// The first host outside our network that handed the message in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalHop {
    /// Its IP address, as recorded by our internal server.
    pub ip: IpAddr,
    /// The name it gave in HELO/EHLO, as recorded by our internal server.
    pub helo: String,
    /// How many internal hops were passed.
    pub internal_hops: usize,
}

/// What the walk over the Received headers found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// The first hop from outside our network.
    External(ExternalHop),
    /// Every recorded hop is internal: the message originated inside.
    AllInternal,
    /// A header written by an internal host does not say where it came from.
    Unreadable {
        /// The position of the header among the Received headers (0: top).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Whether `ip` (an IPv4-mapped IPv6 address as IPv4) is in one of the `internal` networks.
pub fn is_internal(ip: IpAddr, internal: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    internal.iter().any(|n| n.contains(&ip))
}

fn host_name(h: &Host<'_>) -> String {
    match h {
        Host::Name(n) => n.to_string(),
        Host::IpAddr(ip) => format!("[{ip}]"),
    }
}

/// Walks the Received headers (`(name, raw value)`, top first).
pub fn first_external_hop(headers: &[(&[u8], &[u8])], internal: &[IpNet]) -> Walk {
    let received = headers
        .iter()
        .filter(|(n, _)| is_named(n, "Received"))
        .take(MAX_HOPS);
    let mut hops = 0;
    for (index, (_, value)) in received.enumerate() {
        let HeaderValue::Received(r) = MessageStream::new(value).parse_received() else {
            return Walk::Unreadable {
                index,
                reason: "not a parseable Received header".into(),
            };
        };
        let Some(ip) = r.from_ip() else {
            return Walk::Unreadable {
                index,
                reason: "the Received header has no sending IP address".into(),
            };
        };
        if is_internal(ip, internal) {
            hops += 1;
            continue;
        }
        // RFC 5321 §4.4: "from" is the name the client gave in EHLO/HELO.
        let helo = r
            .helo()
            .map(host_name)
            .or_else(|| r.from.as_ref().map(host_name))
            .unwrap_or_default();
        return Walk::External(ExternalHop {
            ip,
            helo,
            internal_hops: hops,
        });
    }
    Walk::AllInternal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(received: &[&str], internal: &[&str]) -> Walk {
        let vals: Vec<Vec<u8>> = received
            .iter()
            .map(|v| format!(" {v}\r\n").into_bytes())
            .collect();
        let mut headers: Vec<(&[u8], &[u8])> = vals
            .iter()
            .map(|v| (b"Received".as_slice(), v.as_slice()))
            .collect();
        headers.insert(0, (b"X-Other", b" x\r\n"));
        let nets: Vec<IpNet> = internal.iter().map(|n| n.parse().unwrap()).collect();
        first_external_hop(&headers, &nets)
    }

    #[test]
    fn skips_internal_hops_to_the_first_external_one() {
        let w = walk(
            &[
                "from edge.corp.test (edge.corp.test [10.0.0.5]) by mail.corp.test with ESMTPS id 1; Mon, 20 Feb 2006 15:04:53 -1000",
                "from mx.sender.test (mx.sender.test [192.0.2.4]) by edge.corp.test with ESMTP id 2; Mon, 20 Feb 2006 15:04:47 -1000",
                "from forged.test ([198.51.100.9]) by mx.sender.test; Mon, 20 Feb 2006 15:04:40 -1000",
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            w,
            Walk::External(ExternalHop {
                ip: "192.0.2.4".parse().unwrap(),
                helo: "mx.sender.test".into(),
                internal_hops: 1,
            })
        );
    }

    #[test]
    fn first_header_external_means_zero_internal_hops() {
        let w = walk(
            &["from mx.sender.test ([192.0.2.4]) by edge.corp.test; Mon, 20 Feb 2006 15:04:47 -1000"],
            &["10.0.0.0/8"],
        );
        assert!(
            matches!(
                w,
                Walk::External(ExternalHop {
                    internal_hops: 0,
                    ..
                })
            ),
            "{w:?}"
        );
    }

    #[test]
    fn ipv6_hops_and_networks() {
        let w = walk(
            &[
                "from relay.corp.test (relay.corp.test [IPv6:2001:db8:1::5]) by mail.corp.test; Mon, 20 Feb 2006 15:04:53 -1000",
                "from mx.sender.test (mx.sender.test [IPv6:2001:db8:ffff::25]) by relay.corp.test; Mon, 20 Feb 2006 15:04:47 -1000",
            ],
            &["2001:db8:1::/48"],
        );
        let Walk::External(hop) = w else {
            panic!("{w:?}")
        };
        assert_eq!(hop.ip, "2001:db8:ffff::25".parse::<IpAddr>().unwrap());
        assert_eq!(hop.internal_hops, 1);
    }

    #[test]
    fn all_internal_and_unreadable() {
        assert_eq!(
            walk(
                &["from a.corp.test ([10.1.1.1]) by b.corp.test; Mon, 20 Feb 2006 15:04:53 -1000"],
                &["10.0.0.0/8"]
            ),
            Walk::AllInternal
        );
        assert_eq!(walk(&[], &["10.0.0.0/8"]), Walk::AllInternal);
        assert!(matches!(
            walk(
                &["by b.corp.test; Mon, 20 Feb 2006 15:04:53 -1000"],
                &["10.0.0.0/8"]
            ),
            Walk::Unreadable { index: 0, .. }
        ));
    }

    #[test]
    fn internal_check_handles_mapped_addresses() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_internal("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(!is_internal("192.0.2.1".parse().unwrap(), &nets));
    }
}
