//! [`ClientAddresses`]: where a request comes from — the peer's address, or what a trusted
//! proxy in front of the service says it is (`security.trusted_proxy_header`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::{HeaderName, request::Parts};

/// How the client address of a request is read.
#[derive(Debug, Clone, Default)]
pub struct ClientAddresses {
    proxy_header: Option<HeaderName>,
}

impl ClientAddresses {
    /// Reads the address from `proxy_header` (a proxy in front of every request sets it),
    /// or from the connection without one.
    pub fn new(proxy_header: Option<&str>) -> Self {
        Self {
            proxy_header: proxy_header.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }

    /// The client's address, if known: the last address of the trusted header (the one the
    /// proxy itself saw; earlier ones are the client's own words), else the peer's.
    pub fn of(&self, headers: &http::HeaderMap, extensions: &http::Extensions) -> Option<IpAddr> {
        if let Some(name) = &self.proxy_header {
            return headers
                .get_all(name)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| parse(v.trim()));
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }

    /// [`of`](Self::of) for request parts.
    pub fn of_parts(&self, parts: &Parts) -> Option<IpAddr> {
        self.of(&parts.headers, &parts.extensions)
    }
}

/// An address, with or without a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse(value: &str) -> Option<IpAddr> {
    value
        .parse::<IpAddr>()
        .ok()
        .or_else(|| value.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn the_proxy_header_names_the_client_else_the_peer() {
        let mut extensions = http::Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 4000))));
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        let direct = ClientAddresses::new(None);
        assert_eq!(direct.of(&headers, &extensions), "10.0.0.9".parse().ok());
        let proxied = ClientAddresses::new(Some("X-Forwarded-For"));
        assert_eq!(
            proxied.of(&headers, &extensions),
            "203.0.113.7".parse().ok()
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(
            proxied.of(&headers, &extensions),
            "2001:db8::1".parse().ok()
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(proxied.of(&headers, &extensions), None);
    }
}
