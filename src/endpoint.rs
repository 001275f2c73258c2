//! Where a connection goes: a host and a port.
//!
//! [`Endpoint`] is the address type shared by the whole crate: the configured address of a
//! client, the target of a `MOVING` notification, the key of per-endpoint maintenance state.
//! It parses the forms servers send (`host:port`, `[v6addr]:port`, a bare IPv6 address split at
//! its last `:`, a host with no port meaning 6379) and prints back a form that parses again.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A name for one connection, unique within the process: how events, pushes and layers say
/// which connection they mean without holding it.
///
/// Every [`Connection`](crate::Connection) gets one when it is made
/// ([`Connection::id`](crate::Connection::id)); a client of another kind that feeds its own
/// pushes to a [`Maintenance`](crate::Maintenance) handle takes one with [`ConnectionId::next`].
///
/// ```
/// use redis_handoff::ConnectionId;
///
/// let (a, b) = (ConnectionId::next(), ConnectionId::next());
/// assert_ne!(a, b);
/// assert!(a.to_string().starts_with("conn#"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// A fresh id, never handed out before in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnectionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// An id chosen by a unit test, to name the same connection twice.
    #[cfg(test)]
    pub(crate) const fn test(n: u64) -> Self {
        ConnectionId(u64::MAX - n)
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// The port Redis listens on when an address names none.
pub const DEFAULT_PORT: u16 = 6379;

/// A host (name or IP address) and a TCP port.
///
/// Cheap to clone: the host is reference counted.
///
/// ```
/// use redis_handoff::Endpoint;
///
/// let e: Endpoint = "10.0.0.2:12000".parse().unwrap();
/// assert_eq!((e.host(), e.port()), ("10.0.0.2", 12000));
/// let v6: Endpoint = "[::1]:7000".parse().unwrap();
/// assert_eq!(v6.host(), "::1");
/// assert_eq!(v6.to_string(), "[::1]:7000");
/// let bare: Endpoint = "cache.internal".parse().unwrap();
/// assert_eq!(bare.port(), 6379);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    host: Arc<str>,
    port: u16,
}

impl Endpoint {
    /// An endpoint from a host and a port. IPv6 hosts are given without brackets.
    pub fn new(host: impl Into<Arc<str>>, port: u16) -> Self {
        let host: Arc<str> = host.into();
        // Accept a bracketed IPv6 host too, and store it bare.
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(bare) => Arc::from(bare),
            None => host,
        };
        Endpoint { host, port }
    }

    /// The host: a DNS name or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEndpointError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid endpoint {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseEndpointError {}

impl FromStr for Endpoint {
    type Err = ParseEndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseEndpointError {
            input: s.chars().take(128).collect(),
            reason,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        // `[v6]` or `[v6]:port`
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| err("missing `]`"))?;
            if host.is_empty() {
                return Err(err("empty host"));
            }
            let port = match after {
                "" => DEFAULT_PORT,
                p => p
                    .strip_prefix(':')
                    .ok_or_else(|| err("expected `:` after `]`"))?
                    .parse()
                    .map_err(|_| err("port is not a number from 0 to 65535"))?,
            };
            return Ok(Endpoint::new(host, port));
        }
        // Unbracketed IPv6: servers send `addr:port`, so split at the last `:` when the left side
        // is still an IPv6 address; otherwise the whole string is the address, with no port.
        if s.matches(':').count() > 1 {
            if let Some((host, port)) = s.rsplit_once(':') {
                if let (Ok(_), Ok(port)) = (host.parse::<std::net::Ipv6Addr>(), port.parse()) {
                    return Ok(Endpoint::new(host, port));
                }
            }
            if s.parse::<std::net::Ipv6Addr>().is_ok() {
                return Ok(Endpoint::new(s, DEFAULT_PORT));
            }
            return Err(err("not a host:port pair nor an IPv6 address"));
        }
        match s.rsplit_once(':') {
            None => Ok(Endpoint::new(s, DEFAULT_PORT)),
            Some((host, port)) => {
                if host.is_empty() {
                    return Err(err("empty host"));
                }
                let port = port
                    .parse()
                    .map_err(|_| err("port is not a number from 0 to 65535"))?;
                Ok(Endpoint::new(host, port))
            }
        }
    }
}

impl From<std::net::SocketAddr> for Endpoint {
    fn from(addr: std::net::SocketAddr) -> Self {
        Endpoint::new(addr.ip().to_string(), addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_servers_send() {
        let cases = [
            ("10.0.0.2:12000", "10.0.0.2", 12000),
            ("localhost:7000", "localhost", 7000),
            ("redis.example.com", "redis.example.com", 6379),
            ("[::1]:7000", "::1", 7000),
            ("[fe80::1]", "fe80::1", 6379),
            ("fe80::1:6380", "fe80::1", 6380),
            ("::1", "::1", 6379),
            ("2001:db8::7", "2001:db8::7", 6379),
        ];
        for (input, host, port) in cases {
            let e: Endpoint = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((e.host(), e.port()), (host, port), "{input}");
            let again: Endpoint = e.to_string().parse().unwrap();
            assert_eq!(again, e, "{input} round trip");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            ":6379",
            "host:port",
            "host:99999",
            "[::1",
            "[]:1",
            "[::1]x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} should fail");
        }
    }
}
