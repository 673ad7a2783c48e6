//! Where a webhook may go. A registry that posts personal data to any URL an operator types
//! would be a way into the ministry's own network (server-side request forgery), so a target
//! must be `https` (or `http`, for a receiver on a private link), must not carry credentials, and must not resolve to a private, loopback or
//! link-local address unless an admin allowed private targets for that program explicitly.
//! The address is checked when the webhook is registered and again before every delivery (a
//! name can be re-pointed later). Redirects are never followed: a `3xx` is a failed delivery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TargetError {
    #[error("the webhook URL `{0}` does not parse: {1}")]
    Parse(String, String),
    #[error("the webhook URL must use https (or http on a private link), not `{0}`")]
    Scheme(String),
    #[error("the webhook URL must not carry a user name or password; receivers check the webhook-signature header instead")]
    Credentials,
    #[error("the webhook URL has no host")]
    NoHost,
    #[error("the webhook host `{host}` resolves to {address}, a private, loopback or link-local address; an admin must allow private targets for this program (`allow_private_network: true`)")]
    Private { host: String, address: IpAddr },
    #[error("the webhook host `{host}` does not resolve: {reason}")]
    Resolve { host: String, reason: String },
}

/// Parses and checks the form of a target URL (not its addresses).
pub fn parse_target(text: &str) -> Result<Url, TargetError> {
    let url = Url::parse(text).map_err(|e| TargetError::Parse(text.to_owned(), e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(TargetError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.host_str().is_none() {
        return Err(TargetError::NoHost);
    }
    Ok(url)
}

/// The check made when a webhook is registered: the URL parses and, if its host resolves
/// within three seconds, no address is private unless allowed. (Delivery checks the
/// addresses again before every request; checking now tells whoever registers it at once.)
pub async fn check_new_target(text: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = parse_target(text)?;
    let check = check_addresses(&url, allow_private);
    if let Ok(Err(e)) = tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        return Err(e);
    }
    Ok(url)
}

/// Resolves the target's host and refuses private addresses unless allowed.
pub async fn check_addresses(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    let host = url.host_str().ok_or(TargetError::NoHost)?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| TargetError::Resolve {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(TargetError::Resolve {
            host,
            reason: "no address".into(),
        });
    }
    if !allow_private {
        if let Some(address) = addresses.into_iter().find(|a| is_private(*a)) {
            return Err(TargetError::Private { host, address });
        }
    }
    Ok(())
}

/// Loopback, private (RFC 1918, unique local), carrier-grade NAT, link-local, unspecified,
/// broadcast, documentation and IPv4-mapped forms of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6 == Ipv6Addr::LOCALHOST
        }
    }
}

fn private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_documentation()
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || a == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_without_credentials() {
        assert!(parse_target("http://receiver.example/hook").is_ok());
        assert!(parse_target("https://receiver.example/hook").is_ok());
        assert_eq!(
            parse_target("ftp://x/").unwrap_err(),
            TargetError::Scheme("ftp".into())
        );
        assert_eq!(
            parse_target("http://u:p@x/").unwrap_err(),
            TargetError::Credentials
        );
        assert!(matches!(
            parse_target("not a url"),
            Err(TargetError::Parse(..))
        ));
    }

    #[test]
    fn private_ranges_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "203.0.114.1", "2001:4860::8888"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn a_loopback_target_needs_an_admins_permission() {
        let url = parse_target("http://127.0.0.1:9/hook").unwrap();
        assert!(matches!(
            check_addresses(&url, false).await,
            Err(TargetError::Private { .. })
        ));
        assert!(check_addresses(&url, true).await.is_ok());
        let named = parse_target("http://localhost:9/hook").unwrap();
        assert!(check_addresses(&named, false).await.is_err());
    }
}
