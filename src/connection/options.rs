//! How to connect: address, credentials, database, TLS, timeouts and limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::connection::codec::Limits;
use crate::connection::liveness::Liveness;
use crate::endpoint::{Endpoint, DEFAULT_PORT};
use crate::error::Error;

/// [`ConnectOptions::push_buffer`] unless set.
pub(crate) const DEFAULT_PUSH_BUFFER: usize = 4096;

/// Everything needed to open a connection.
///
/// Built from a URL with [`ConnectOptions::from_url`] or field by field from
/// [`ConnectOptions::new`]. `Debug` never shows the password.
///
/// ```
/// use redis_handoff::ConnectOptions;
///
/// let opts = ConnectOptions::from_url("redis://app:s3cret@cache.internal:6380/2?client_name=web").unwrap();
/// assert_eq!(opts.endpoint.to_string(), "cache.internal:6380");
/// assert_eq!(opts.database, 2);
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The configured address. Handoffs connect elsewhere for a while but never change this.
    pub endpoint: Endpoint,
    /// The ACL user name; `default` is used when only a password is set.
    pub username: Option<String>,
    /// The password, sent in `HELLO 3 AUTH`.
    pub password: Option<Password>,
    /// The database to `SELECT` (0 sends nothing).
    pub database: u32,
    /// The name set with `HELLO ... SETNAME`, shown in `CLIENT LIST`.
    pub client_name: Option<String>,
    /// The bound on dial, TLS and handshake together. Default 5 s.
    pub connect_timeout: Duration,
    /// TLS, when the connection is encrypted.
    pub tls: Option<TlsOptions>,
    /// Limits on frames from the server.
    pub limits: Limits,
    /// How many commands may wait to be written before `poll_ready` pushes back. Default 1024.
    pub queue_size: usize,
    /// How many commands may be written and awaiting replies at once. Default 16384.
    pub max_in_flight: usize,
    /// How many push frames a slow push subscriber may fall behind before it misses some, on
    /// a connection's push stream and on the stable one of a stack over such connections
    /// (`HandoffRetry::pushes`, `Stack::handoff().pushes()`). Default 4096.
    pub push_buffer: usize,
    /// Client-side caching: `CLIENT TRACKING ON` with these settings, sent in the handshake of
    /// every connection (so it survives handoffs and reconnects). Invalidations arrive as push
    /// frames. Off by default.
    pub tracking: Option<ClientTracking>,
    /// How a peer that went away silently is noticed: TCP keepalive and a `PING` health check
    /// when nothing is read with replies owed; see [`Liveness`].
    pub liveness: Liveness,
    /// `READONLY` in the handshake of every connection (so it survives handoffs and
    /// reconnects): a Redis Cluster replica then serves reads of its primary's slots instead of
    /// redirecting them. A [`Cluster`](crate::Cluster) sets it on its replica connections
    /// (see [`ReadFrom`](crate::cluster::ReadFrom)); off by default.
    pub read_only: bool,
}

/// The settings of `CLIENT TRACKING ON`; see [`ConnectOptions::with_tracking`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTracking {
    /// Broadcasting mode: invalidations for every key under `prefixes`, read or not.
    pub bcast: bool,
    /// Key prefixes (broadcasting mode only).
    pub prefixes: Vec<String>,
    /// No invalidations for keys this connection itself modified.
    pub noloop: bool,
}

impl ClientTracking {
    /// Tracking of the keys this connection reads.
    pub fn new() -> Self {
        ClientTracking::default()
    }

    /// Broadcasting mode for keys under these prefixes (all keys if none).
    #[must_use]
    pub fn broadcast<I: IntoIterator<Item = S>, S: Into<String>>(mut self, prefixes: I) -> Self {
        self.bcast = true;
        self.prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// No invalidations for this connection's own writes.
    #[must_use]
    pub fn noloop(mut self) -> Self {
        self.noloop = true;
        self
    }

    /// The `CLIENT TRACKING ON ...` command.
    pub(crate) fn command(&self) -> crate::command::Command {
        let mut c = crate::command::Command::new("CLIENT")
            .arg("TRACKING")
            .arg("ON");
        if self.bcast {
            c = c.arg("BCAST");
            for p in &self.prefixes {
                c = c.arg("PREFIX").arg(p.as_str());
            }
        }
        if self.noloop {
            c = c.arg("NOLOOP");
        }
        c
    }
}

/// A password that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Arc<str>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<Arc<str>>) -> Self {
        Password(password.into())
    }

    /// The password itself, to send to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings. The server name checked against the certificate is always the host being
/// connected to, so after a handoff to a new host name it is the new name.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra trusted root certificates (a private CA, or a test's own).
    pub root_certificates: Vec<CertificateDer<'static>>,
    /// Whether to trust the Mozilla root set as well. Default true.
    pub webpki_roots: bool,
}

impl TlsOptions {
    /// TLS trusting the Mozilla root set.
    pub fn new() -> Self {
        TlsOptions {
            root_certificates: Vec::new(),
            webpki_roots: true,
        }
    }

    /// Adds every certificate in a PEM document as a trusted root.
    pub fn with_root_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| Error::Tls {
                message: format!("cannot read the PEM root certificate: {e}").into(),
            })?;
            self.root_certificates.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(Error::Tls {
                message: "the PEM document holds no certificate".into(),
            });
        }
        Ok(self)
    }

    /// Trusts only the certificates given, not the Mozilla root set.
    pub fn only_given_roots(mut self) -> Self {
        self.webpki_roots = false;
        self
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("database", &self.database)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("queue_size", &self.queue_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("push_buffer", &self.push_buffer)
            .field("liveness", &self.liveness)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for a plain connection to `endpoint` with every default.
    pub fn new(endpoint: Endpoint) -> Self {
        ConnectOptions {
            endpoint,
            username: None,
            password: None,
            database: 0,
            client_name: None,
            connect_timeout: Duration::from_secs(5),
            tls: None,
            limits: Limits::default(),
            queue_size: 1024,
            max_in_flight: 16 * 1024,
            push_buffer: DEFAULT_PUSH_BUFFER,
            tracking: None,
            liveness: Liveness::default(),
            read_only: false,
        }
    }

    /// Parses `redis://[user[:password]@]host[:port][/db][?client_name=NAME&connect_timeout=MS]`;
    /// `rediss://` turns TLS on. User and password may be percent-encoded.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let bad =
            |why: &str| Error::config(format!("cannot use the URL {}: {why}", redact_url(url)));
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else if url.starts_with("unix://") || url.starts_with("redis+unix://") {
            return Err(bad(
                "Unix sockets are not supported; use redis:// or rediss://",
            ));
        } else {
            return Err(bad("it must start with redis:// or rediss://"));
        };
        // The credentials first: a password may hold `/`, `?` or `#`, which must not cut it
        // (and then show part of it in an error about the host).
        let (userinfo, rest) = split_userinfo(rest);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hostport, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(bad("it names no host"));
        }
        let endpoint: Endpoint = hostport
            .parse()
            .map_err(|e: crate::endpoint::ParseEndpointError| bad(&e.to_string()))?;
        let mut opts = ConnectOptions::new(endpoint);
        if let Some(info) = userinfo {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user =
                percent_decode(user).ok_or_else(|| bad("the user name has a bad % escape"))?;
            if !user.is_empty() {
                opts.username = Some(user);
            }
            if let Some(p) = pass {
                let p = percent_decode(p).ok_or_else(|| bad("the password has a bad % escape"))?;
                opts.password = Some(Password::new(p));
            } else if opts.username.is_some() {
                // `redis://secret@host` is the common way to give only a password.
                opts.password = opts.username.take().map(Password::new);
            }
        }
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            opts.database = path
                .parse()
                .map_err(|_| bad("the path must be a database number, such as /0"))?;
        }
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| bad("a query value has a bad % escape"))?;
            match k {
                "client_name" | "name" => opts.client_name = Some(v),
                "db" => {
                    opts.database = v.parse().map_err(|_| bad("db must be a number"))?;
                }
                "connect_timeout" => {
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| bad("connect_timeout must be milliseconds"))?;
                    opts.connect_timeout = Duration::from_millis(ms);
                }
                other => {
                    return Err(bad(&format!(
                        "unknown parameter {other:?} (known: client_name, db, connect_timeout)"
                    )))
                }
            }
        }
        if tls {
            opts.tls = Some(TlsOptions::new());
        }
        Ok(opts)
    }

    /// Sets the user name and password.
    #[must_use]
    pub fn with_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.username = username.map(str::to_owned);
        self.password = Some(Password::new(password));
        self
    }

    /// Sets the database.
    #[must_use]
    pub fn with_database(mut self, database: u32) -> Self {
        self.database = database;
        self
    }

    /// Sets the client name.
    #[must_use]
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Turns TLS on with these settings.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Turns client-side caching invalidations on for every connection: `CLIENT TRACKING ON`
    /// in the handshake. A shared connection refuses `CLIENT TRACKING` sent by hand, since it
    /// would be lost at the next handoff or reconnect.
    #[must_use]
    pub fn with_tracking(mut self, tracking: ClientTracking) -> Self {
        self.tracking = Some(tracking);
        self
    }

    /// Sets how a silently dead peer is noticed (keepalive, `PING` health check).
    #[must_use]
    pub fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// Sends `READONLY` in the handshake of every connection: see
    /// [`read_only`](ConnectOptions::read_only).
    #[must_use]
    pub fn with_read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Sets the frame limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::new(Endpoint::new("127.0.0.1", DEFAULT_PORT))
    }
}

impl std::str::FromStr for ConnectOptions {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ConnectOptions::from_url(s)
    }
}

/// The URL with any password replaced, for error messages.
/// Splits `user:password@` off the front of what follows the scheme, at the last `@` that is
/// not inside the query (`?client_name=a@b`).
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let Some(mut at) = rest.rfind('@') else {
        return (None, rest);
    };
    if let Some(q) = rest[..at].find('?') {
        if rest[q..at].contains('=') {
            // That `@` is in a query value: the credentials, if any, end before the query.
            match rest[..q].rfind('@') {
                Some(earlier) => at = earlier,
                None => return (None, rest),
            }
        }
    }
    (Some(&rest[..at]), &rest[at + 1..])
}

/// The URL with its credentials replaced, for errors and reports.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!(
                "{}://<credentials redacted>{}",
                &url[..scheme_end],
                &url[at..]
            )
        }
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let o = ConnectOptions::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(o.endpoint.to_string(), "127.0.0.1:6379");
        assert!(o.tls.is_none() && o.password.is_none() && o.database == 0);

        let o = ConnectOptions::from_url(
            "rediss://u%40x:p%3Aw@[::1]:7000/3?client_name=a%20b&connect_timeout=250",
        )
        .unwrap();
        assert_eq!(o.endpoint.host(), "::1");
        assert_eq!(o.endpoint.port(), 7000);
        assert_eq!(o.username.as_deref(), Some("u@x"));
        assert_eq!(o.password.as_ref().map(Password::expose), Some("p:w"));
        assert_eq!(o.database, 3);
        assert_eq!(o.client_name.as_deref(), Some("a b"));
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert!(o.tls.is_some());

        let o = ConnectOptions::from_url("redis://:only-pass@h:1").unwrap();
        assert_eq!(
            (
                o.username.as_deref(),
                o.password.as_ref().map(Password::expose)
            ),
            (None, Some("only-pass"))
        );
        let o = ConnectOptions::from_url("redis://bare-secret@h").unwrap();
        assert_eq!(
            (
                o.username.as_deref(),
                o.password.as_ref().map(Password::expose)
            ),
            (None, Some("bare-secret"))
        );
    }

    #[test]
    fn url_errors_are_clear_and_hide_credentials() {
        for (url, says) in [
            ("http://h", "must start with redis://"),
            ("redis://", "names no host"),
            ("redis://h/abc", "database number"),
            ("redis://h:99999", "port"),
            ("redis://h?nope=1", "unknown parameter"),
            ("unix:///tmp/redis.sock", "Unix sockets"),
            ("redis://u:%zz@h", "bad % escape"),
        ] {
            let err = ConnectOptions::from_url(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        let err = ConnectOptions::from_url("redis://u:topsecret@h/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }

    #[test]
    fn a_password_with_slashes_or_question_marks_stays_whole_and_secret() {
        for (url, password) in [
            ("redis://u:pa/ss@h:6380/2", "pa/ss"),
            ("redis://u:pa?ss@h:6380/2", "pa?ss"),
            ("redis://u:a/b?c@h:6380/2?client_name=web", "a/b?c"),
        ] {
            let o = ConnectOptions::from_url(url).unwrap();
            assert_eq!(
                o.password.as_ref().map(Password::expose),
                Some(password),
                "{url}"
            );
            assert_eq!(o.endpoint.to_string(), "h:6380", "{url}");
            assert_eq!(o.database, 2, "{url}");
        }
        // An `@` inside a query value is not the end of the credentials.
        let o = ConnectOptions::from_url("redis://h:6380?client_name=a@b").unwrap();
        assert!(o.password.is_none());
        assert_eq!(o.client_name.as_deref(), Some("a@b"));
        let o = ConnectOptions::from_url("redis://:pw@h?client_name=a@b").unwrap();
        assert_eq!(o.password.as_ref().map(Password::expose), Some("pw"));
        // A bad host after such a password names no part of it.
        let err = ConnectOptions::from_url("redis://u:pa/ss@h:99999")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pa") && !err.contains("ss"), "{err}");
    }

    #[test]
    fn debug_hides_the_password() {
        let o = ConnectOptions::default().with_auth(Some("app"), "hunter2");
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
