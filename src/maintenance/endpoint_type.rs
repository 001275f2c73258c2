//! The `moving-endpoint-type` a client asks for, and how `auto` is decided.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::endpoint::Endpoint;

/// The bound on name resolution when deciding [`EndpointType::Auto`].
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The form of address a client asks `MOVING` notifications to carry.
///
/// With `MOVING`, the server says where to reconnect; the client chooses the form of that
/// address in the handshake: an internal or external IP address or host name, or `none` (the
/// server sends a null endpoint and the client reconnects to its configured address).
/// [`EndpointType::Auto`] is never sent: it is resolved once per configured address. TLS gives
/// a host name (`*-fqdn`, so the certificate can be checked), plain TCP an IP (`*-ip`);
/// internal when every address the configured host resolves to is private (RFC 1918, RFC 4193
/// unique local, loopback, link-local, 100.64.0.0/10 carrier-grade NAT), otherwise external.
/// Resolution is bounded in time and falls back to external.
///
/// ```
/// use redis_handoff::maintenance::EndpointType;
/// use redis_handoff::Endpoint;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let local = Endpoint::new("127.0.0.1", 6379);
/// assert_eq!(EndpointType::Auto.resolve(&local, false).await, EndpointType::InternalIp);
/// assert_eq!(EndpointType::Auto.resolve(&local, true).await, EndpointType::InternalFqdn);
/// let public = Endpoint::new("8.8.8.8", 6379);
/// assert_eq!(EndpointType::Auto.resolve(&public, false).await, EndpointType::ExternalIp);
/// // Explicit types are kept as they are.
/// assert_eq!(EndpointType::None.resolve(&public, false).await, EndpointType::None);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EndpointType {
    /// Decide from TLS and the configured address, as described above.
    #[default]
    Auto,
    /// `internal-ip`: a private IP address.
    InternalIp,
    /// `internal-fqdn`: a private host name.
    InternalFqdn,
    /// `external-ip`: a public IP address.
    ExternalIp,
    /// `external-fqdn`: a public host name.
    ExternalFqdn,
    /// `none`: no address; the client reconnects to its configured address.
    None,
}

impl EndpointType {
    /// The name in `CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type <name>`; `"auto"` for
    /// [`EndpointType::Auto`], which is never sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndpointType::Auto => "auto",
            EndpointType::InternalIp => "internal-ip",
            EndpointType::InternalFqdn => "internal-fqdn",
            EndpointType::ExternalIp => "external-ip",
            EndpointType::ExternalFqdn => "external-fqdn",
            EndpointType::None => "none",
        }
    }

    /// The type for a connection to `configured`: itself, unless it is `Auto`, which is
    /// decided from the host name, TLS and the addresses it resolves to within
    /// [`RESOLVE_TIMEOUT`].
    pub async fn resolve(self, configured: &Endpoint, tls: bool) -> EndpointType {
        match self {
            EndpointType::Auto => detect_endpoint_type(configured, tls, RESOLVE_TIMEOUT).await,
            explicit => explicit,
        }
    }
}

impl fmt::Display for EndpointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides the endpoint type for `configured`: `*-fqdn` with TLS, `*-ip` without; internal when
/// every address the host resolves to is internal ([`is_internal`]). A resolution that fails,
/// finds nothing or takes longer than `timeout` means external.
pub(crate) async fn detect_endpoint_type(
    configured: &Endpoint,
    tls: bool,
    timeout: Duration,
) -> EndpointType {
    let internal = match configured.ip() {
        Some(ip) => is_internal(ip),
        None => {
            let lookup = tokio::net::lookup_host((configured.host(), configured.port()));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => {
                    let mut seen = false;
                    let mut all_internal = true;
                    for a in addrs {
                        seen = true;
                        all_internal &= is_internal(a.ip());
                    }
                    seen && all_internal
                }
                Ok(Err(e)) => {
                    tracing::debug!(endpoint = %configured, error = %e, "cannot resolve the host to choose the endpoint type; using external");
                    false
                }
                Err(_) => {
                    tracing::debug!(endpoint = %configured, ?timeout, "resolving the host to choose the endpoint type took too long; using external");
                    false
                }
            }
        }
    };
    match (internal, tls) {
        (true, false) => EndpointType::InternalIp,
        (true, true) => EndpointType::InternalFqdn,
        (false, false) => EndpointType::ExternalIp,
        (false, true) => EndpointType::ExternalFqdn,
    }
}

/// Whether an address is internal: private (RFC 1918, RFC 4193 unique local), loopback,
/// link-local, or carrier-grade NAT (100.64.0.0/10). IPv4-mapped IPv6 addresses are judged as
/// the IPv4 address they carry.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || (a == 100 && (b & 0xc0) == 64)
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        assert_eq!(EndpointType::InternalIp.to_string(), "internal-ip");
        assert_eq!(EndpointType::ExternalFqdn.as_str(), "external-fqdn");
        assert_eq!(EndpointType::None.as_str(), "none");
    }

    #[tokio::test]
    async fn localhost_resolves_to_internal() {
        let e = Endpoint::new("localhost", 6379);
        assert_eq!(
            detect_endpoint_type(&e, false, RESOLVE_TIMEOUT).await,
            EndpointType::InternalIp
        );
    }

    #[tokio::test]
    async fn failed_resolution_means_external() {
        let e = Endpoint::new("no-such-host.invalid", 6379);
        assert_eq!(
            detect_endpoint_type(&e, true, RESOLVE_TIMEOUT).await,
            EndpointType::ExternalFqdn
        );
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.0.7",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for external in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert!(!is_internal(external.parse().unwrap()), "{external}");
        }
    }
}
