//! The SSRF guard. Webhook URLs come from clients, so without it the worker
//! would POST wherever a client points it: its own loopback, the private
//! network, a cloud metadata service. Hosts are resolved by a
//! resolver that drops refused addresses (the webhook worker's
//! `reqwest::dns::Resolve` over [`resolve_public`]), so the address that was
//! checked is the one connected to (no DNS rebinding between check and
//! connect); IP-literal hosts never reach a resolver and are checked by
//! [`check_url`] before the request. The API checks the same rules when a
//! client saves a webhook endpoint.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a URL is not delivered to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("not an http(s) URL")]
    InvalidUrl,
    #[error("{0} is not a public address")]
    Address(IpAddr),
    #[error("{0} resolves only to non-public addresses")]
    Host(String),
}

/// Whether `ip` is an address on the public internet that may be called.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const REFUSED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT (also Alibaba's metadata 100.100.100.200)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (AWS/GCP/Azure metadata 169.254.169.254)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments (Oracle metadata 192.0.0.192)
        ([192, 0, 2, 0], 24),    // documentation TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation TEST-NET-2
        ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
    ];
    !REFUSED.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

/// The IPv4 address an IPv6 address carries, for the forms that reach it:
/// mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d` (SIIT), compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::`. Each is
/// judged by the IPv4 rules: `::ffff:127.0.0.1` is loopback.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96)
        || in_v6(ip, Ipv6Addr::UNSPECIFIED, 96)
        || in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return Some(low);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // Local-use NAT64 (RFC 8215): a translator inside the operator's own
    // network, whatever IPv4 address it embeds (and where, by prefix length).
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48) {
        return false;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let refused: [(Ipv6Addr, u32); 8] = [
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local (AWS metadata fd00:ec2::254)
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
        (Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0), 32), // documentation
        (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo, benchmarking
        (Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    ];
    !refused.iter().any(|(net, prefix)| in_v6(ip, *net, *prefix))
}

/// Checks what can be checked without DNS: an http(s) URL with a host, and,
/// if the host is an IP literal, that it is public.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::InvalidUrl);
    }
    let ip = match url.host() {
        None => return Err(Refused::InvalidUrl),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(Refused::Address(ip))
    }
}

/// The public addresses `host` resolves to.
pub async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let public: Vec<SocketAddr> = all.into_iter().filter(|addr| is_public(addr.ip())).collect();
    if public.is_empty() {
        return Err(Box::new(Refused::Host(host.to_owned())));
    }
    Ok(public)
}

/// Whether a request error was the guard refusing the host.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        check_url(&url::Url::parse(url).unwrap(), false).is_err()
    }

    #[test]
    fn ip_literal_urls_to_internal_addresses_are_refused() {
        for url in [
            "http://127.0.0.1",
            "http://127.1.2.3:8080/hook",
            "http://10.0.0.1",
            "http://172.16.5.4",
            "http://192.168.1.1",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1",
            "http://100.100.100.200",
            "http://0.0.0.0",
            "http://255.255.255.255",
            "http://224.0.0.1",
            "http://192.0.2.10",
            "http://198.18.0.1",
            "http://[::1]",
            "http://[::]",
            "http://[::ffff:127.0.0.1]",
            "http://[::ffff:10.0.0.1]",
            "http://[::127.0.0.1]",
            "http://[64:ff9b::a9fe:a9fe]",
            "http://[2002:7f00:1::]",
            "http://[fc00::1]",
            "http://[fd00:ec2::254]",
            "http://[fe80::1]",
            "http://[ff02::1]",
            "http://[2001:db8::1]",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn nat64_and_ipv4_mapped_forms_of_internal_addresses_are_refused() {
        for url in [
            // local-use NAT64 64:ff9b:1::/48: refused whatever it embeds
            "http://[64:ff9b:1::a9fe:a9fe]",
            "http://[64:ff9b:1::808:808]",
            "http://[64:ff9b:1:ffff::1]",
            // well-known NAT64 64:ff9b::/96 with internal IPv4 addresses
            "http://[64:ff9b::7f00:1]",
            "http://[64:ff9b::10.0.0.1]",
            // IPv4-mapped ::ffff:0:0/96, checked by the IPv4 rules
            "http://[::ffff:169.254.169.254]",
            "http://[::ffff:192.168.0.1]",
            "http://[::ffff:0.0.0.0]",
            "http://[::ffff:100.100.100.200]",
            // IPv4-translated ::ffff:0:0:0/96 (SIIT)
            "http://[::ffff:0:7f00:1]",
            "http://[::ffff:0:a9fe:a9fe]",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
        for url in ["http://[64:ff9b::808:808]", "http://[::ffff:0:808:808]"] {
            assert!(!refused(url), "{url} embeds a public address");
        }
    }

    #[test]
    fn public_addresses_and_hostnames_pass_the_literal_check() {
        for url in [
            "https://8.8.8.8/hook",
            "http://93.184.216.34",
            "http://[2606:4700:4700::1111]",
            "http://[::ffff:8.8.8.8]",
            "https://example.com/webhooks",
        ] {
            assert!(!refused(url), "{url} should pass");
        }
    }

    #[test]
    fn non_http_urls_are_refused() {
        assert_eq!(
            check_url(&url::Url::parse("file:///etc/passwd").unwrap(), true),
            Err(Refused::InvalidUrl)
        );
        assert_eq!(
            check_url(&url::Url::parse("gopher://example.com").unwrap(), true),
            Err(Refused::InvalidUrl)
        );
    }

    #[test]
    fn allowing_private_addresses_lifts_the_guard() {
        assert!(check_url(&url::Url::parse("http://127.0.0.1:9/").unwrap(), true).is_ok());
    }

    #[tokio::test]
    async fn a_hostname_resolving_to_loopback_is_refused_by_the_resolver() {
        let error = resolve_public("localhost").await.unwrap_err();
        assert_eq!(
            error.downcast_ref::<Refused>(),
            Some(&Refused::Host("localhost".into()))
        );
    }
}
