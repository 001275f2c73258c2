//! The crate's one error type.
//!
//! Every layer returns [`Error`]. Each variant says what happened and carries what a caller needs
//! to act. Two classifications, each written once here, are what every decision is made on:
//!
//! - [`Error::execution`]: did the command run? ([`Execution::NotRun`], [`Execution::MayHaveRun`],
//!   [`Execution::Ran`]). HandoffRetry's resend policy decides on it.
//! - [`Error::class`]: what kind of failure is it? ([`ErrorClass`]). CircuitBreaker counts what
//!   [`ErrorClass::counts_as_failure`] says; MetricsHook labels outcomes by it.
//!
//! No layer matches on variants to decide "send again?" or "does this open the circuit?".

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::Endpoint;

/// What went wrong. Cheap to clone: sources are shared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the command with an error reply (`-ERR ...`, `-WRONGTYPE ...`).
    /// The command reached the server; the connection is fine.
    Server(ServerError),

    /// The command was written to the connection, but the connection closed or failed before its
    /// reply came back. It **may have been executed**: send it again only if running it twice is
    /// harmless. A cluster also gives it for a command sent to every primary that ran on some
    /// of them and could not be sent to another.
    ConnectionLost {
        /// Why the connection ended.
        reason: Arc<str>,
    },

    /// The command was never written: the connection closed, failed or was shut down first,
    /// or (through a [`Stack`](crate::Stack)) its timeout passed while it waited for a
    /// reconnect. It certainly did not run, so sending it again is always safe.
    NotSent {
        /// Why the connection ended.
        reason: Arc<str>,
    },

    /// A TCP connection to the endpoint could not be made.
    Connect {
        /// Where we tried to connect.
        endpoint: Endpoint,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },

    /// Connecting (dial, TLS and handshake) took longer than the connect timeout.
    ConnectTimeout {
        /// Where we tried to connect.
        endpoint: Endpoint,
        /// The timeout that expired.
        after: Duration,
    },

    /// The TLS handshake failed or the TLS configuration is unusable.
    Tls {
        /// What failed, from rustls or from the certificate loading.
        message: Arc<str>,
    },

    /// The connection handshake (`HELLO 3`, `SELECT`, ...) was refused by the server.
    Handshake {
        /// The step that failed, such as `HELLO` or `SELECT`.
        step: &'static str,
        /// The server's answer.
        message: Arc<str>,
    },

    /// The server does not speak RESP3 (it refused `HELLO 3`); this crate needs Redis 6 or newer.
    Resp3Unsupported {
        /// The server's answer to `HELLO 3`.
        message: Arc<str>,
    },

    /// Authentication failed: wrong user name or password, or the user is disabled.
    Auth {
        /// The server's answer.
        message: Arc<str>,
    },

    /// The server sent bytes that are not valid RESP3, or a frame over the configured limits.
    /// The connection has been closed.
    Protocol {
        /// What was wrong with the bytes.
        message: Arc<str>,
    },

    /// The command did not get a reply in time. It may have been executed.
    Timeout {
        /// How long the command waited.
        after: Duration,
        /// Whether the timeout in force was the relaxed one (the endpoint was in maintenance).
        relaxed: bool,
    },

    /// The circuit breaker for the endpoint is open; the command was not sent.
    CircuitOpen {
        /// The endpoint whose circuit is open.
        endpoint: Endpoint,
        /// Why it opened.
        reason: Arc<str>,
    },

    /// The configuration or a user-supplied argument is invalid (a bad URL, an empty command).
    Config {
        /// What is wrong and how to fix it.
        message: Arc<str>,
    },

    /// The reply could not be converted to the requested type (see
    /// [`FromReply`](crate::FromReply)): it says what was expected and shows the start of what
    /// came. The command ran.
    Conversion(ConversionError),

    /// Maintenance notifications were required (`mode = Enabled`) but the server refused them.
    MaintenanceUnsupported {
        /// The endpoint that refused.
        endpoint: Endpoint,
        /// The server's answer to `CLIENT MAINT_NOTIFICATIONS`.
        message: Arc<str>,
    },

    /// A handoff to a new endpoint failed after every attempt.
    HandoffFailed {
        /// The endpoint the handoff was moving to.
        endpoint: Endpoint,
        /// The last attempt's failure.
        reason: Arc<str>,
    },

    /// The command was refused before anything was written, because it would change the
    /// connection (its database, protocol, transaction state, ...) for every caller sharing it,
    /// or break the order in which replies are matched. The reason says what to use instead.
    Refused {
        /// The command, such as `MULTI` or `CLIENT REPLY`.
        command: Arc<str>,
        /// Why, and what to use instead.
        reason: &'static str,
    },

    /// A transaction did not apply because a key it `WATCH`ed changed before `EXEC` (the server
    /// answered `EXEC` with null). Nothing in it ran; read again and retry.
    WatchConflict {
        /// How many times it was tried (1 for a single `EXEC`; the attempts of a watch loop).
        attempts: u32,
    },

    /// The connection that held a `WATCH` or an open `MULTI` was replaced (a handoff or a
    /// reconnect), and with it the server forgot them. `EXEC` was not sent, so nothing ran
    /// unguarded; read again and retry on the new connection.
    WatchLost {
        /// What replaced the connection.
        reason: Arc<str>,
    },

    /// The server discarded a transaction (`EXECABORT`): some of its commands were refused when
    /// queued (a wrong number of arguments, an unknown command), or the server refused the
    /// `EXEC` itself (out of memory, a read-only replica, no permission). Nothing in it ran.
    TransactionDiscarded {
        /// The server's `EXECABORT` answer, which says why.
        reason: ServerError,
        /// Each refused command's position in the transaction (from 0) and the server's error.
        errors: Arc<[(usize, ServerError)]>,
    },

    /// A cluster command's keys hash to more than one slot, so no node can run it; it was
    /// refused before anything was sent. Put the keys in one slot with a hash tag
    /// (`{user1}:a`, `{user1}:b`), or send them as separate commands.
    CrossSlot {
        /// The command, such as `MGET`, or `TRANSACTION`.
        command: Arc<str>,
        /// Two of the slots its keys hash to.
        slots: (u16, u16),
    },

    /// A cluster command was redirected (`MOVED`, `ASK`) or told to wait (`TRYAGAIN`,
    /// `CLUSTERDOWN`) more times than the cluster's limit, or for longer than its retry budget,
    /// without reaching a node that runs it. Every redirect means the command was refused, so
    /// it did not run.
    Redirects {
        /// How many redirects and waits were followed.
        followed: u32,
        /// The last refusal, as the server said it.
        last: Arc<str>,
    },
}

/// An error reply from the server, split into its code and message.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerError {
    text: Arc<str>,
}

impl ServerError {
    /// Builds one from the text of an error reply (`"WRONGTYPE Operation against ..."`).
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        ServerError { text: text.into() }
    }

    /// The error code: the first word, such as `ERR`, `WRONGTYPE`, `MOVED`, `NOAUTH`.
    pub fn code(&self) -> &str {
        self.text.split(' ').next().unwrap_or("")
    }

    /// The whole text of the error reply.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the server refused to run the command for now, so that it certainly did not run
    /// and may be sent again shortly: `LOADING` (a restarted server reading its data back),
    /// `MASTERDOWN` (a replica that lost its primary), `TRYAGAIN` (a cluster slot being
    /// moved).
    pub fn is_transient_refusal(&self) -> bool {
        matches!(self.code(), "LOADING" | "MASTERDOWN" | "TRYAGAIN")
    }
}

impl fmt::Debug for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerError({:?})", self.text)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A reply that does not convert to the type asked for; carried by [`Error::Conversion`].
///
/// It names the type (or the shape) that was expected, shows the start of what the server
/// answered (at most a few hundred bytes, escaped) and, for a value inside an array or a map,
/// where it was: `[2]` is the third element, `["name"]` the value under the key `name`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversionError {
    expected: &'static str,
    found: Option<Arc<str>>,
    reason: Option<Arc<str>>,
    at: Option<Arc<str>>,
}

impl ConversionError {
    /// A mismatch: `expected` (such as `"i64"` or `"a map"`) was asked for and `found` (a short
    /// description or preview of the reply) came.
    pub fn new(expected: &'static str, found: impl Into<Arc<str>>) -> Self {
        ConversionError {
            expected,
            found: Some(found.into()),
            reason: None,
            at: None,
        }
    }

    /// The same, with why the value did not fit (`"out of range"`, `"not UTF-8"`).
    #[must_use]
    pub fn because(mut self, reason: impl Into<Arc<str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A failure reported by another conversion library, which shows nothing of the reply.
    #[cfg(feature = "fred")]
    pub(crate) fn from_library(expected: &'static str, reason: impl Into<Arc<str>>) -> Self {
        ConversionError {
            expected,
            found: None,
            reason: Some(reason.into()),
            at: None,
        }
    }

    /// Places the failure inside an enclosing array or map: `segment` is `[3]` or `["key"]`.
    #[must_use]
    pub(crate) fn within(mut self, segment: &str) -> Self {
        self.at = Some(match self.at.take() {
            Some(inner) => format!("{segment}{inner}").into(),
            None => segment.into(),
        });
        self
    }

    /// What was asked for: a Rust type such as `i64`, or a shape such as `an array of 3`.
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// The start of what came, escaped (RESP for aggregates, the text for strings), when known.
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// Why the value did not fit, when it was the right kind but the wrong value.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Where in the reply the mismatch was (`[2]["name"]`), when it was inside an aggregate.
    pub fn path(&self) -> Option<&str> {
        self.at.as_deref()
    }
}

impl fmt::Debug for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversionError({self})")
    }
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", self.expected)?;
        if let Some(at) = &self.at {
            write!(f, " at {at}")?;
        }
        if let Some(found) = &self.found {
            write!(f, ", got {found}")?;
        }
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConversionError {}

impl From<ConversionError> for Error {
    fn from(e: ConversionError) -> Self {
        Error::Conversion(e)
    }
}

/// Whether a failed command ran on the server; see [`Error::execution`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Execution {
    /// It certainly did not run (never written, or refused before it was): sending it again is
    /// always safe.
    NotRun,
    /// It was written and no reply came back: it may have run. Send it again only if running it
    /// twice is harmless.
    MayHaveRun,
    /// The server answered (with an error reply, or one that could not be converted).
    Ran,
}

/// The families of failure that retry, circuit-breaker and metrics decisions are made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The server answered with an error reply. The connection is healthy: never counts
    /// against a circuit breaker, never retried.
    Server,
    /// The connection failed or could not be made. Counts against a circuit breaker.
    Connection,
    /// No reply in time. Counts against a circuit breaker.
    Timeout,
    /// The circuit was open; nothing was sent.
    CircuitOpen,
    /// The caller's input or configuration is wrong. Retrying will not help.
    Usage,
    /// A transaction did not apply (a watched key changed, or the watch was lost with its
    /// connection). Nothing ran; the caller may read again and retry.
    Aborted,
}

impl ErrorClass {
    /// Whether a failure of this class says the endpoint is unhealthy, so that it counts against
    /// a circuit breaker and in failure rates: true for [`Connection`](Self::Connection) and
    /// [`Timeout`](Self::Timeout). A server error reply (`WRONGTYPE`, `ERR ...`) proves the
    /// endpoint answers, and a usage error or an open circuit never reached it.
    pub fn counts_as_failure(self) -> bool {
        matches!(self, ErrorClass::Connection | ErrorClass::Timeout)
    }
}

impl Error {
    /// The family of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Server(_) | Error::Conversion(_) => ErrorClass::Server,
            Error::Timeout { .. } => ErrorClass::Timeout,
            Error::CircuitOpen { .. } => ErrorClass::CircuitOpen,
            Error::Config { .. } | Error::Refused { .. } | Error::CrossSlot { .. } => {
                ErrorClass::Usage
            }
            Error::TransactionDiscarded { .. } => ErrorClass::Server,
            Error::WatchConflict { .. } | Error::WatchLost { .. } => ErrorClass::Aborted,
            Error::ConnectionLost { .. }
            | Error::NotSent { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Handshake { .. }
            | Error::Resp3Unsupported { .. }
            | Error::Auth { .. }
            | Error::Protocol { .. }
            | Error::MaintenanceUnsupported { .. }
            | Error::HandoffFailed { .. }
            | Error::Redirects { .. } => ErrorClass::Connection,
        }
    }

    /// Whether the command ran: the one place that says so for every variant.
    pub fn execution(&self) -> Execution {
        match self {
            Error::Server(e) if e.is_transient_refusal() => Execution::NotRun,
            Error::Server(_) | Error::Conversion(_) => Execution::Ran,
            Error::ConnectionLost { .. } | Error::Timeout { .. } | Error::Protocol { .. } => {
                Execution::MayHaveRun
            }
            Error::NotSent { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Tls { .. }
            | Error::Handshake { .. }
            | Error::Resp3Unsupported { .. }
            | Error::Auth { .. }
            | Error::CircuitOpen { .. }
            | Error::Config { .. }
            | Error::MaintenanceUnsupported { .. }
            | Error::HandoffFailed { .. }
            | Error::Refused { .. }
            | Error::WatchConflict { .. }
            | Error::WatchLost { .. }
            | Error::TransactionDiscarded { .. }
            | Error::CrossSlot { .. }
            | Error::Redirects { .. } => Execution::NotRun,
        }
    }

    /// Whether the command may have run on the server even though no reply came back:
    /// [`Execution::MayHaveRun`].
    pub fn may_have_executed(&self) -> bool {
        self.execution() == Execution::MayHaveRun
    }

    /// Whether the command certainly did not run, so that sending it again is always safe:
    /// [`Execution::NotRun`].
    pub fn certainly_not_executed(&self) -> bool {
        self.execution() == Execution::NotRun
    }

    /// The server's error reply, when this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn config(message: impl Into<Arc<str>>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn protocol(message: impl Into<Arc<str>>) -> Self {
        Error::Protocol {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(e) => write!(f, "server error: {e}"),
            Error::ConnectionLost { reason } => write!(
                f,
                "connection lost after the command was sent ({reason}); it may have been executed, \
                 so only send it again if running it twice is harmless"
            ),
            Error::NotSent { reason } => write!(
                f,
                "command not sent: the connection is closed ({reason}); it did not run and is safe to send again"
            ),
            Error::Connect { endpoint, source } => {
                write!(f, "could not connect to {endpoint}: {source}")
            }
            Error::ConnectTimeout { endpoint, after } => write!(
                f,
                "connecting to {endpoint} took longer than {after:?} (dial, TLS and handshake); \
                 check the address or raise the connect timeout"
            ),
            Error::Tls { message } => write!(f, "TLS failed: {message}"),
            Error::Handshake { step, message } => {
                write!(f, "the server refused {step} during the connection handshake: {message}")
            }
            Error::Resp3Unsupported { message } => write!(
                f,
                "the server does not speak RESP3 (HELLO 3 answered {message:?}); redis-handoff needs Redis 6 or newer"
            ),
            Error::Auth { message } => write!(
                f,
                "authentication failed: {message}; check the user name and password"
            ),
            Error::Protocol { message } => write!(
                f,
                "protocol error, connection closed: {message}"
            ),
            Error::Timeout { after, relaxed } => {
                if *relaxed {
                    write!(f, "no reply within the relaxed timeout of {after:?} (the endpoint is in maintenance); the command may have been executed")
                } else {
                    write!(f, "no reply within {after:?}; the command may have been executed")
                }
            }
            Error::CircuitOpen { endpoint, reason } => write!(
                f,
                "circuit open for {endpoint} ({reason}); the command was not sent"
            ),
            Error::Config { message } => write!(f, "invalid configuration: {message}"),
            Error::Conversion(e) => write!(f, "cannot convert the reply: {e}"),
            Error::MaintenanceUnsupported { endpoint, message } => write!(
                f,
                "{endpoint} refused maintenance notifications ({message}); use mode Auto to carry on without them"
            ),
            Error::HandoffFailed { endpoint, reason } => {
                write!(f, "handoff to {endpoint} failed: {reason}")
            }
            Error::Refused { command, reason } => {
                write!(f, "{command} refused, nothing was sent: {reason}")
            }
            Error::WatchConflict { attempts: 1 } => write!(
                f,
                "the transaction did not apply: a watched key changed before EXEC; nothing ran"
            ),
            Error::WatchConflict { attempts } => write!(
                f,
                "the transaction did not apply in {attempts} attempts: a watched key changed \
                 before EXEC every time; nothing ran"
            ),
            Error::WatchLost { reason } => write!(
                f,
                "the WATCH (or MULTI) was lost with its connection ({reason}); EXEC was not sent \
                 and nothing ran unguarded: read again and retry"
            ),
            Error::TransactionDiscarded { reason, errors } => {
                write!(f, "the server discarded the transaction ({reason}); nothing ran")?;
                for (i, e) in errors.iter() {
                    write!(f, "; command {i}: {e}")?;
                }
                Ok(())
            }
            Error::CrossSlot { command, slots } => write!(
                f,
                "{command} refused, nothing was sent: its keys hash to different cluster slots \
                 ({} and {}); put them in one slot with a hash tag ({{user1}}:a, {{user1}}:b) or \
                 send them as separate commands",
                slots.0, slots.1
            ),
            Error::Redirects { followed, last } => write!(
                f,
                "the cluster refused the command {followed} times without running it (last: \
                 {last}); the topology is changing faster than it can be followed, or a slot \
                 has no node: nothing ran, it is safe to send again"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(&**source),
            Error::Server(_) => None,
            _ => None,
        }
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_split_code_and_message() {
        let e =
            ServerError::new("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(e.code(), "WRONGTYPE");
        let err = Error::Server(e);
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(!err.class().counts_as_failure());
        assert!(!err.may_have_executed());
        assert!(!err.certainly_not_executed());
    }

    #[test]
    fn a_server_that_refuses_for_now_did_not_run_the_command() {
        for text in [
            "LOADING Redis is loading",
            "MASTERDOWN Link down",
            "TRYAGAIN slot moving",
        ] {
            let err = Error::Server(ServerError::new(text));
            assert_eq!(err.execution(), Execution::NotRun, "{text}");
            assert_eq!(err.class(), ErrorClass::Server);
        }
        let err = Error::Server(ServerError::new("ERR unknown command"));
        assert_eq!(err.execution(), Execution::Ran);
    }

    #[test]
    fn lost_and_unsent_are_told_apart() {
        let lost = Error::ConnectionLost {
            reason: "reset".into(),
        };
        let unsent = Error::NotSent {
            reason: "closed".into(),
        };
        assert!(lost.may_have_executed() && !lost.certainly_not_executed());
        assert!(unsent.certainly_not_executed() && !unsent.may_have_executed());
        assert!(lost.class().counts_as_failure() && unsent.class().counts_as_failure());
        assert!(lost.to_string().contains("may have been executed"));
        assert!(unsent.to_string().contains("safe to send again"));
    }
}
