//! redis-rs's async [`ConnectionLike`] over the crate's services (feature `redis-rs`).
//!
//! [`Stack`] and [`Pool`] are redis-rs connections, and [`RedisRs`] makes one of any service
//! of the crate (a `ServiceBuilder` stack of your own). Code written against redis-rs keeps
//! working and gains the layers: `AsyncCommands`, `redis::cmd(..).query_async`, `redis::pipe()`
//! (plain and `.atomic()`), `Script` and typed `FromRedisValue` replies, through handoffs,
//! relaxed timeouts and the circuit breaker.
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use redis_handoff::Stack;
//!
//! # async fn run() -> redis::RedisResult<()> {
//! let mut redis = Stack::connect("redis://127.0.0.1:6379").await?;
//! redis.set::<_, _, ()>("greeting", "hello").await?;
//! let visits: i64 = redis.incr("visits", 1).await?;
//! let (a, b): (i64, i64) = redis::pipe()
//!     .atomic()
//!     .incr("a", 1)
//!     .incr("b", 1)
//!     .query_async(&mut redis)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # How requests map
//!
//! | redis-rs | sent as |
//! | --- | --- |
//! | `Cmd` (`query_async`, every `AsyncCommands` method, `Script`) | one [`Command`] |
//! | `Pipeline` | one [`Pipeline`]: written together, one connection, resent whole or not at all |
//! | `Pipeline` with `.atomic()` | one [`Transaction`]: `MULTI` ... `EXEC` written as one |
//!
//! `req_packed_commands(pipeline, offset, count)` answers what redis-rs documents: the replies
//! the server sends for the packed pipeline, the first `offset` skipped and the next `count`
//! returned. For an atomic pipeline of `n` commands those are `OK` (for `MULTI`), `n` times
//! `QUEUED` and `EXEC`'s array, as a connection of redis-rs's own would read them; an `EXEC`
//! that found a watched key changed is `Nil`. A window past the end is an error.
//!
//! Replies become [`Value`]s of the same RESP3 type (`OK` is `Value::Okay`; attributes become
//! `Value::Attribute`); error replies nested in a reply or in a pipeline's results are
//! `Value::ServerError`, as redis-rs reads them, so `ignore_errors()` and per-command errors work
//! as they do over redis-rs's own connections.
//!
//! # How errors map
//!
//! [`Error`] becomes a [`RedisError`] whose kind drives redis-rs's retry decisions
//! ([`RedisError::retry_method`]) the way its own errors would:
//!
//! | ours | redis-rs kind | retry method |
//! | --- | --- | --- |
//! | `Server` (`MOVED`, `ASK`, `TRYAGAIN`, `LOADING`, `NOSCRIPT`, `WRONGTYPE`, ...) | `Server(..)` with the same code and detail, or `Extension` for codes redis-rs does not know | redis-rs's for that code (`MovedRedirect`, `WaitAndRetry`, ...) |
//! | `TransactionDiscarded` | `Server(ExecAbort)`, the refused commands in the detail | `NoRetry` |
//! | `ConnectionLost`, `WatchLost`, `HandoffFailed` | `Io` (connection reset / aborted) | `Reconnect` |
//! | `NotSent` | `Io` (not connected) | `Reconnect` |
//! | `Timeout`, `ConnectTimeout` | `Io` (timed out) | `RetryImmediately` |
//! | `Connect` | `Io` (the operating system's kind) | by that kind |
//! | `CircuitOpen` | `Io` (connection refused) | `Reconnect` |
//! | `Tls`, `Handshake` | `Io` (other) | `RetryImmediately` |
//! | `Protocol` | `Parse` | `Reconnect` |
//! | `Auth` | `AuthenticationFailed` | `Reconnect` |
//! | `Resp3Unsupported` | `RESP3NotSupported` | `NoRetry` |
//! | `Refused`, `WatchConflict` | `Client` | `NoRetry` |
//! | `Config`, `MaintenanceUnsupported` | `InvalidClientConfig` | `NoRetry` |
//! | `Conversion` | `UnexpectedReturnType` | `NoRetry` |
//!
//! The message is ours, so it still says whether the command may have run (`ConnectionLost`,
//! `Timeout`: "it may have been executed") or certainly did not (`NotSent`: "it did not run and
//! is safe to send again"). For the `Io` kinds the [`Error`] itself travels inside the
//! `RedisError`: [`cause`] gets it back, with [`Error::execution`] and the rest.
//!
//! # What a shared connection refuses
//!
//! A [`Stack`] or [`Pool`] shares its connections between callers, so commands that change the
//! connection (`MULTI`, `EXEC`, `WATCH`, `SELECT`, `AUTH`, `CLIENT SETNAME`, `CLIENT REPLY`,
//! `HELLO`, `MONITOR`, ...) are refused before anything is written, through redis-rs as
//! anywhere: a `RedisError` of kind `Client` (never retried) whose message says what to use
//! instead. A transaction is `redis::pipe().atomic()`; the database and client name come from
//! the URL; `WATCH` goes on a [`Stack::dedicated`] connection, which is a service of the crate
//! too: `RedisRs::new(stack.dedicated().await?)` takes `WATCH`, `MULTI` and `SELECT` as redis-rs
//! sends them. Subscription commands go on their own, not in a pipeline.
//!
//! [`ConnectionLike::get_db`] answers 0: the database is the one the URL or the
//! [`ConnectOptions`](crate::ConnectOptions) name, selected again on every new connection.

use std::io;
use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, PushKind, RedisError, RedisFuture, RedisResult, Value, VerbatimFormat};
use redis_protocol::resp3::types::{BytesFrame, VerbatimStringFormat};
use tower::ServiceExt;
use tower_service::Service;

use crate::error::Error;
use crate::reply::Reply;
use crate::request::{Pipeline, Transaction};
use crate::{Cluster, Command, Pool, Stack};

/// What a pipeline or a transaction answers.
type Results = Vec<Result<Reply, Error>>;

/// The services redis-rs can drive: commands, pipelines and transactions, answering with the
/// crate's [`Error`], with futures that can move between threads. Every service of the crate
/// is one ([`Stack`], [`Pool`], [`Connection`](crate::Connection), a `ServiceBuilder` stack of
/// its layers); implemented for them all.
pub trait RedisRsService:
    Service<Command, Response = Reply, Error = Error, Future: Send>
    + Service<Pipeline, Response = Results, Error = Error, Future: Send>
    + Service<Transaction, Response = Results, Error = Error, Future: Send>
    + Send
{
}

impl<S> RedisRsService for S where
    S: Service<Command, Response = Reply, Error = Error, Future: Send>
        + Service<Pipeline, Response = Results, Error = Error, Future: Send>
        + Service<Transaction, Response = Results, Error = Error, Future: Send>
        + Send
{
}

/// Any service of the crate as a redis-rs connection; see the [module docs](self).
///
/// [`Stack`] and [`Pool`] are redis-rs connections themselves; wrap anything else, such as a
/// `ServiceBuilder` stack of the crate's layers with your own in between, or a
/// [`Dedicated`](crate::Dedicated) connection for `WATCH`:
///
/// ```no_run
/// use redis_handoff::compat::redis_rs::RedisRs;
/// use redis_handoff::Stack;
///
/// # async fn run() -> redis::RedisResult<()> {
/// let stack = Stack::connect("redis://127.0.0.1:6379").await?;
/// let mut own = RedisRs::new(stack.dedicated().await?);
/// redis::cmd("WATCH").arg("balance").exec_async(&mut own).await?;
/// let balance: i64 = redis::cmd("GET").arg("balance").query_async(&mut own).await?;
/// let applied: Option<(i64,)> = redis::pipe()
///     .atomic()
///     .set("balance", balance - 10)
///     .ignore()
///     .get("balance")
///     .query_async(&mut own)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRs<S> {
    service: S,
}

impl<S> RedisRs<S> {
    /// Wraps `service`.
    pub const fn new(service: S) -> Self {
        RedisRs { service }
    }

    /// The service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// The service, by value.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: RedisRsService> ConnectionLike for RedisRs<S> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        send_command(&mut self.service, cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        send_pipeline(&mut self.service, pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// `ConnectionLike` for the crate's own services, each through its layers; see the
/// [module docs](self).
macro_rules! connection_like {
    ($($(#[$doc:meta])* $service:ty),* $(,)?) => {$(
        $(#[$doc])*
        impl ConnectionLike for $service {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
                send_command(self, cmd)
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                send_pipeline(self, pipeline, offset, count)
            }

            fn get_db(&self) -> i64 {
                0
            }
        }
    )*};
}

connection_like!(
    /// Through every layer of the stack.
    Stack,
    /// On one of the pool's connections per request.
    Pool,
    /// Routed by key slot to the stack of the node that owns it, redirects followed.
    Cluster,
);

// ===== requests =====

/// `req_packed_command` for any service of the crate: the command, its reply as a [`Value`].
pub(crate) fn send_command<'a, S: RedisRsService>(
    service: &'a mut S,
    cmd: &'a redis::Cmd,
) -> RedisFuture<'a, Value> {
    Box::pin(async move {
        let command = Command::try_from(cmd).map_err(RedisError::from)?;
        let reply = ServiceExt::<Command>::ready(service)
            .await?
            .call(command)
            .await?;
        Ok(Value::from(reply))
    })
}

/// `req_packed_commands` for any service of the crate: the pipeline as a [`Pipeline`] or,
/// atomic, a [`Transaction`]; the window of replies redis-rs asked for.
pub(crate) fn send_pipeline<'a, S: RedisRsService>(
    service: &'a mut S,
    pipeline: &'a redis::Pipeline,
    offset: usize,
    count: usize,
) -> RedisFuture<'a, Vec<Value>> {
    Box::pin(async move {
        let commands = pipeline
            .cmd_iter()
            .map(Command::try_from)
            .collect::<Result<Vec<Command>, Error>>()?;
        let n = commands.len();
        if !pipeline.is_transaction() {
            let results = ServiceExt::<Pipeline>::ready(service)
                .await?
                .call(commands.into_iter().collect::<Pipeline>())
                .await?;
            return window(values(results)?, offset, count);
        }
        let exec = if n == 0 {
            // `MULTI` then `EXEC` at once: the server would answer an empty array.
            Value::Array(Vec::new())
        } else {
            let answer = match ServiceExt::<Transaction>::ready(service).await {
                Ok(ready) => {
                    ready
                        .call(commands.into_iter().collect::<Transaction>())
                        .await
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(results) => Value::Array(values(results)?),
                // A watched key changed: EXEC answered null (on a dedicated connection).
                Err(Error::WatchConflict { .. }) => Value::Nil,
                Err(e) => return Err(e.into()),
            }
        };
        transaction_window(n, exec, offset, count)
    })
}

/// The results of a pipeline or a transaction as values; a server error is that command's own
/// (`Value::ServerError`), anything else fails the whole request.
fn values(results: Results) -> RedisResult<Vec<Value>> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(reply) => Ok(Value::from(reply)),
            Err(Error::Server(e)) => Ok(server_value(e.text())),
            Err(e) => Err(RedisError::from(e)),
        })
        .collect()
}

/// The replies `offset .. offset + count`, as a connection reading them off the socket would
/// return them.
fn window(mut values: Vec<Value>, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
    let end = offset.checked_add(count).filter(|&end| end <= values.len());
    match end {
        Some(end) => {
            values.truncate(end);
            values.drain(..offset);
            Ok(values)
        }
        None => Err(window_error(values.len(), offset, count)),
    }
}

/// The window of a transaction's replies: `OK`, `QUEUED` for each of its `n` commands, then
/// `exec`. Built only as far as asked: redis-rs asks for `EXEC`'s alone.
fn transaction_window(
    n: usize,
    exec: Value,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    let total = n + 2;
    if offset == n + 1 && count == 1 {
        return Ok(vec![exec]);
    }
    if offset.checked_add(count).is_none_or(|end| end > total) {
        return Err(window_error(total, offset, count));
    }
    let mut all = Vec::with_capacity(total);
    all.push(Value::Okay);
    all.extend((0..n).map(|_| Value::SimpleString("QUEUED".to_owned())));
    all.push(exec);
    window(all, offset, count)
}

fn window_error(total: usize, offset: usize, count: usize) -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        "pipeline window out of range",
        format!("the pipeline answers {total} replies; {count} were asked for from {offset}"),
    ))
}

// ===== commands =====

/// A redis-rs command as the crate's: its arguments in order, a scan's cursor in its place.
impl TryFrom<&redis::Cmd> for Command {
    type Error = Error;

    fn try_from(cmd: &redis::Cmd) -> Result<Command, Error> {
        let mut args = cmd.args_iter();
        let Some(redis::Arg::Simple(name)) = args.next() else {
            return from_packed(cmd);
        };
        let mut command = Command::new(name);
        for arg in args {
            match arg {
                redis::Arg::Simple(bytes) => command.push_arg(bytes),
                // The cursor's value is only in the packed form.
                _ => return from_packed(cmd),
            }
        }
        Ok(command)
    }
}

/// A command from its packed RESP form (`*<n>` and `$<len>` bulk strings), as redis-rs writes
/// it: the way to read a cursor argument.
fn from_packed(cmd: &redis::Cmd) -> Result<Command, Error> {
    let packed = cmd.get_packed_command();
    let args = packed_args(&packed).ok_or_else(|| {
        Error::config("a redis-rs command that is empty or not an array of bulk strings")
    })?;
    let mut args = args.into_iter();
    let name = args
        .next()
        .ok_or_else(|| Error::config("an empty redis-rs command"))?;
    Ok(Command::new(name).args_from(args))
}

/// The arguments of one packed command, or `None` if it is not one.
fn packed_args(mut rest: &[u8]) -> Option<Vec<&[u8]>> {
    fn line(rest: &mut &[u8], tag: u8) -> Option<usize> {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let (head, tail) = rest.split_at(end);
        let (&first, digits) = head.split_first()?;
        if first != tag {
            return None;
        }
        *rest = &tail[2..];
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    let n = line(&mut rest, b'*')?;
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = line(&mut rest, b'$')?;
        let body = rest.get(..len)?;
        if rest.get(len..len + 2)? != b"\r\n" {
            return None;
        }
        args.push(body);
        rest = &rest[len + 2..];
    }
    (rest.is_empty() && !args.is_empty()).then_some(args)
}

// ===== replies =====

/// A reply as redis-rs's [`Value`] of the same RESP3 type.
impl From<Reply> for Value {
    fn from(reply: Reply) -> Value {
        value(reply.into_frame())
    }
}

fn value(frame: BytesFrame) -> Value {
    let (plain, attributes) = match frame {
        BytesFrame::BlobString { data, attributes } => {
            (Value::BulkString(Vec::from(data)), attributes)
        }
        BytesFrame::SimpleString { data, attributes } => {
            let v = if &data[..] == b"OK" {
                Value::Okay
            } else {
                match String::from_utf8(Vec::from(data)) {
                    Ok(s) => Value::SimpleString(s),
                    Err(e) => Value::BulkString(e.into_bytes()),
                }
            };
            (v, attributes)
        }
        BytesFrame::SimpleError { data, attributes } => (server_value(&data), attributes),
        BytesFrame::BlobError { data, attributes } => {
            (server_value(&String::from_utf8_lossy(&data)), attributes)
        }
        BytesFrame::Boolean { data, attributes } => (Value::Boolean(data), attributes),
        BytesFrame::Null => (Value::Nil, None),
        BytesFrame::Number { data, attributes } => (Value::Int(data), attributes),
        BytesFrame::Double { data, attributes } => (Value::Double(data), attributes),
        BytesFrame::BigNumber { data, attributes } => (big_number(data), attributes),
        BytesFrame::VerbatimString {
            data,
            format,
            attributes,
        } => {
            let v = match String::from_utf8(Vec::from(data)) {
                Ok(text) => Value::VerbatimString {
                    format: match format {
                        VerbatimStringFormat::Text => VerbatimFormat::Text,
                        VerbatimStringFormat::Markdown => VerbatimFormat::Markdown,
                    },
                    text,
                },
                Err(e) => Value::BulkString(e.into_bytes()),
            };
            (v, attributes)
        }
        BytesFrame::Array { data, attributes } => (
            Value::Array(data.into_iter().map(value).collect()),
            attributes,
        ),
        BytesFrame::Map { data, attributes } => (
            Value::Map(
                data.into_iter()
                    .map(|(k, v)| (value(k), value(v)))
                    .collect(),
            ),
            attributes,
        ),
        BytesFrame::Set { data, attributes } => (
            Value::Set(data.into_iter().map(value).collect()),
            attributes,
        ),
        BytesFrame::Push { data, attributes } => (push(data), attributes),
        BytesFrame::ChunkedString(data) => (Value::BulkString(Vec::from(data)), None),
        // Only ever written by a client, never read from a server.
        BytesFrame::Hello { .. } => (Value::Nil, None),
    };
    match attributes {
        Some(attributes) if !attributes.is_empty() => Value::Attribute {
            data: Box::new(plain),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (value(k), value(v)))
                .collect(),
        },
        _ => plain,
    }
}

/// A push frame: its kind from the first element, the rest as data, as redis-rs reads one.
fn push(data: Vec<BytesFrame>) -> Value {
    let mut items = data.into_iter();
    let kind = match items.next() {
        Some(first) => match crate::frame::text(&first).map(|b| String::from_utf8_lossy(b)) {
            Some(name) => push_kind(&name),
            None => PushKind::Other(String::new()),
        },
        None => PushKind::Other(String::new()),
    };
    Value::Push {
        kind,
        data: items.map(value).collect(),
    }
}

fn push_kind(name: &str) -> PushKind {
    match name {
        "invalidate" => PushKind::Invalidate,
        "message" => PushKind::Message,
        "pmessage" => PushKind::PMessage,
        "smessage" => PushKind::SMessage,
        "subscribe" => PushKind::Subscribe,
        "psubscribe" => PushKind::PSubscribe,
        "ssubscribe" => PushKind::SSubscribe,
        "unsubscribe" => PushKind::Unsubscribe,
        "punsubscribe" => PushKind::PUnsubscribe,
        "sunsubscribe" => PushKind::SUnsubscribe,
        other => PushKind::Other(other.to_owned()),
    }
}

/// A big number through redis-rs's own parser, which builds whichever representation its
/// `num-bigint` feature selects; its digits as a string if it refuses them.
fn big_number(digits: bytes::Bytes) -> Value {
    let mut packed = Vec::with_capacity(digits.len() + 3);
    packed.push(b'(');
    packed.extend_from_slice(&digits);
    packed.extend_from_slice(b"\r\n");
    match redis::parse_redis_value(&packed) {
        Ok(v @ Value::BigNumber(_)) => v,
        _ => Value::BulkString(Vec::from(digits)),
    }
}

/// An error reply as redis-rs reads one, through its own parser, so that it knows the code
/// (`MOVED`, `NOSCRIPT`, ...) and keeps the detail (`3999 127.0.0.1:6381`).
fn server_value(text: &str) -> Value {
    let packed = error_line(text);
    match redis::parse_redis_value(packed.as_bytes()) {
        Ok(v @ Value::ServerError(_)) => v,
        _ => Value::BulkString(text.as_bytes().to_vec()),
    }
}

fn server_redis_error(text: &str) -> RedisError {
    match redis::parse_redis_value(error_line(text).as_bytes()) {
        Ok(Value::ServerError(e)) => RedisError::from(e),
        _ => redis::make_extension_error("ERR".to_owned(), Some(text.to_owned())),
    }
}

/// `-<text>\r\n`, with any line break in the text (a blob error may hold one) made a space.
fn error_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len() + 3);
    line.push('-');
    line.extend(
        text.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    line.push_str("\r\n");
    line
}

// ===== errors =====

/// An error of the crate as redis-rs's, with the kind that makes its retry decisions right;
/// see the [module docs](self#how-errors-map).
impl From<Error> for RedisError {
    fn from(e: Error) -> RedisError {
        let io = |kind: io::ErrorKind, e: Error| RedisError::from(io::Error::new(kind, e));
        let general = |kind: ErrorKind, what: &'static str, e: &Error| {
            RedisError::from((kind, what, e.to_string()))
        };
        match e {
            Error::Server(ref s) => server_redis_error(s.text()),
            Error::TransactionDiscarded {
                ref reason,
                ref errors,
            } => {
                let mut text = reason.text().to_owned();
                for (i, error) in errors.iter() {
                    text.push_str(&format!("; command {i}: {error}"));
                }
                server_redis_error(&text)
            }
            Error::ConnectionLost { .. } | Error::WatchLost { .. } => {
                io(io::ErrorKind::ConnectionReset, e)
            }
            Error::HandoffFailed { .. } => io(io::ErrorKind::ConnectionAborted, e),
            Error::NotSent { .. } => io(io::ErrorKind::NotConnected, e),
            Error::Timeout { .. } | Error::ConnectTimeout { .. } => io(io::ErrorKind::TimedOut, e),
            Error::Connect { ref source, .. } => io(source.kind(), e),
            Error::CircuitOpen { .. } => io(io::ErrorKind::ConnectionRefused, e),
            Error::Tls { .. } | Error::Handshake { .. } => io(io::ErrorKind::Other, e),
            Error::Protocol { .. } => general(ErrorKind::Parse, "protocol error", &e),
            Error::Auth { .. } => {
                general(ErrorKind::AuthenticationFailed, "authentication failed", &e)
            }
            Error::Resp3Unsupported { .. } => {
                general(ErrorKind::RESP3NotSupported, "RESP3 not supported", &e)
            }
            Error::Refused { .. } => general(ErrorKind::Client, "refused before sending", &e),
            Error::WatchConflict { .. } => {
                general(ErrorKind::Client, "transaction not applied", &e)
            }
            Error::Config { .. } | Error::MaintenanceUnsupported { .. } => {
                general(ErrorKind::InvalidClientConfig, "invalid configuration", &e)
            }
            Error::Conversion(_) => general(ErrorKind::UnexpectedReturnType, "type mismatch", &e),
            // Refused before sending, as the server would refuse it: redis-rs's own kind.
            Error::CrossSlot { .. } => server_redis_error(&format!("CROSSSLOT {e}")),
            // Nothing ran; following the redirects further would not help.
            Error::Redirects { .. } => general(ErrorKind::Client, "too many redirects", &e),
        }
    }
}

/// The crate's [`Error`] inside a [`RedisError`] made from it, for the `Io` kinds
/// ([module docs](self#how-errors-map)): what it says about whether the command ran
/// ([`Error::execution`]) and the rest. `None` for other errors, and for redis-rs's own.
///
/// ```
/// use redis_handoff::compat::redis_rs::cause;
/// use redis_handoff::{Error, Execution};
///
/// let lost = redis::RedisError::from(Error::ConnectionLost { reason: "reset".into() });
/// assert!(lost.is_connection_dropped());
/// assert_eq!(cause(&lost).map(Error::execution), Some(Execution::MayHaveRun));
/// ```
pub fn cause(e: &RedisError) -> Option<&Error> {
    let source = std::error::Error::source(e)?;
    // redis-rs keeps the I/O error behind an `Arc`; accept it either way.
    let io = match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
        Some(shared) => shared.downcast_ref::<io::Error>()?,
        None => source.downcast_ref::<io::Error>()?,
    };
    io.get_ref()?.downcast_ref::<Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;
    use crate::error::ServerError;
    use bytes::Bytes;
    use redis::{FromRedisValue, RetryMethod, ServerErrorKind};

    fn blob(s: &str) -> BytesFrame {
        BytesFrame::BlobString {
            data: Bytes::copy_from_slice(s.as_bytes()),
            attributes: None,
        }
    }

    fn to_value(frame: BytesFrame) -> Value {
        Value::from(Reply::from(frame))
    }

    #[test]
    fn every_resp3_type_becomes_the_same_value() {
        assert_eq!(to_value(blob("v")), Value::BulkString(b"v".to_vec()));
        let simple = |s: &'static str| BytesFrame::SimpleString {
            data: Bytes::from_static(s.as_bytes()),
            attributes: None,
        };
        assert_eq!(to_value(simple("OK")), Value::Okay);
        assert_eq!(to_value(simple("PONG")), Value::SimpleString("PONG".into()));
        assert_eq!(to_value(BytesFrame::Null), Value::Nil);
        let n = BytesFrame::Number {
            data: -3,
            attributes: None,
        };
        assert_eq!(to_value(n.clone()), Value::Int(-3));
        assert_eq!(
            to_value(BytesFrame::Double {
                data: 1.5,
                attributes: None
            }),
            Value::Double(1.5)
        );
        assert_eq!(
            to_value(BytesFrame::Boolean {
                data: true,
                attributes: None
            }),
            Value::Boolean(true)
        );
        let big = to_value(BytesFrame::BigNumber {
            data: Bytes::from_static(b"1234567890123456789012345678901234567890"),
            attributes: None,
        });
        assert!(matches!(big, Value::BigNumber(_)), "{big:?}");
        assert_eq!(
            to_value(BytesFrame::VerbatimString {
                data: Bytes::from_static(b"# Server"),
                format: VerbatimStringFormat::Markdown,
                attributes: None,
            }),
            Value::VerbatimString {
                format: VerbatimFormat::Markdown,
                text: "# Server".into()
            }
        );
        assert_eq!(
            to_value(BytesFrame::Array {
                data: vec![blob("a"), n.clone()],
                attributes: None
            }),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Int(-3)])
        );
        let map = to_value(BytesFrame::Map {
            data: [(blob("k"), n.clone())].into_iter().collect(),
            attributes: None,
        });
        assert_eq!(
            map,
            Value::Map(vec![(Value::BulkString(b"k".to_vec()), Value::Int(-3))])
        );
        let set = to_value(BytesFrame::Set {
            data: [blob("m")].into_iter().collect(),
            attributes: None,
        });
        assert_eq!(set, Value::Set(vec![Value::BulkString(b"m".to_vec())]));
        let pushed = to_value(BytesFrame::Push {
            data: vec![blob("message"), blob("chan"), blob("hi")],
            attributes: None,
        });
        assert_eq!(
            pushed,
            Value::Push {
                kind: PushKind::Message,
                data: vec![
                    Value::BulkString(b"chan".to_vec()),
                    Value::BulkString(b"hi".to_vec())
                ]
            }
        );
        let with_attributes = to_value(BytesFrame::Number {
            data: 1,
            attributes: Some([(blob("ttl"), blob("3"))].into_iter().collect()),
        });
        assert_eq!(
            with_attributes,
            Value::Attribute {
                data: Box::new(Value::Int(1)),
                attributes: vec![(
                    Value::BulkString(b"ttl".to_vec()),
                    Value::BulkString(b"3".to_vec())
                )]
            }
        );
        // Typed through redis-rs, as its users read them.
        let pair: (String, i64) = FromRedisValue::from_redis_value(to_value(BytesFrame::Array {
            data: vec![blob("k"), n],
            attributes: None,
        }))
        .unwrap();
        assert_eq!(pair, ("k".to_owned(), -3));
    }

    #[test]
    fn nested_error_replies_are_server_errors_with_their_code() {
        let v = to_value(BytesFrame::Array {
            data: vec![BytesFrame::SimpleError {
                data: "WRONGTYPE Operation against a key".into(),
                attributes: None,
            }],
            attributes: None,
        });
        let Value::Array(items) = v else {
            panic!("{v:?}")
        };
        let Value::ServerError(e) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(e.code(), "WRONGTYPE");
        assert_eq!(e.details(), Some("Operation against a key"));
    }

    #[test]
    fn server_errors_keep_their_code_and_redis_rs_retry_method() {
        let moved = RedisError::from(Error::Server(ServerError::new("MOVED 3999 127.0.0.1:6381")));
        assert_eq!(moved.kind(), ErrorKind::Server(ServerErrorKind::Moved));
        assert_eq!(moved.redirect_node(), Some(("127.0.0.1:6381", 3999)));
        assert!(matches!(moved.retry_method(), RetryMethod::MovedRedirect));
        let ask = RedisError::from(Error::Server(ServerError::new("ASK 1 10.0.0.1:7000")));
        assert!(matches!(ask.retry_method(), RetryMethod::AskRedirect));
        let loading = RedisError::from(Error::Server(ServerError::new("LOADING Redis is loading")));
        assert!(matches!(loading.retry_method(), RetryMethod::WaitAndRetry));
        let noscript = RedisError::from(Error::Server(ServerError::new(
            "NOSCRIPT No matching script",
        )));
        assert_eq!(
            noscript.kind(),
            ErrorKind::Server(ServerErrorKind::NoScript)
        );
        let custom = RedisError::from(Error::Server(ServerError::new("WRONGTYPE Operation")));
        assert_eq!(custom.code(), Some("WRONGTYPE"));
        assert!(matches!(custom.retry_method(), RetryMethod::NoRetry));
        let discarded = RedisError::from(Error::TransactionDiscarded {
            reason: ServerError::new("EXECABORT Transaction discarded because of previous errors."),
            errors: vec![(1, ServerError::new("ERR wrong number of arguments"))].into(),
        });
        assert_eq!(
            discarded.kind(),
            ErrorKind::Server(ServerErrorKind::ExecAbort)
        );
        assert!(
            discarded
                .to_string()
                .contains("command 1: ERR wrong number"),
            "{discarded}"
        );
    }

    #[test]
    fn connection_failures_are_io_errors_that_say_whether_the_command_ran() {
        let lost = RedisError::from(Error::ConnectionLost {
            reason: "reset by peer".into(),
        });
        assert!(lost.is_io_error() && lost.is_connection_dropped());
        assert!(matches!(lost.retry_method(), RetryMethod::Reconnect));
        assert!(
            lost.to_string().contains("may have been executed"),
            "{lost}"
        );
        assert!(cause(&lost).is_some_and(Error::may_have_executed));

        let unsent = RedisError::from(Error::NotSent {
            reason: "closed".into(),
        });
        assert!(unsent.is_connection_dropped());
        assert!(unsent.to_string().contains("did not run"), "{unsent}");
        assert!(cause(&unsent).is_some_and(Error::certainly_not_executed));

        let timeout = RedisError::from(Error::Timeout {
            after: std::time::Duration::from_secs(1),
            relaxed: false,
        });
        assert!(timeout.is_timeout());
        assert!(cause(&timeout).is_some_and(Error::may_have_executed));

        let refused = RedisError::from(Error::Refused {
            command: "MULTI".into(),
            reason: "use a Transaction",
        });
        assert_eq!(refused.kind(), ErrorKind::Client);
        assert!(matches!(refused.retry_method(), RetryMethod::NoRetry));
        assert!(
            refused
                .to_string()
                .contains("MULTI refused, nothing was sent"),
            "{refused}"
        );
        assert!(cause(&refused).is_none());
    }

    #[test]
    fn commands_keep_their_arguments_and_a_cursor_its_value() {
        let mut set = redis::cmd("SET");
        set.arg("k").arg(b"\x00\xff".as_slice()).arg(42);
        let ours = Command::try_from(&set).unwrap();
        let args: Vec<&[u8]> = ours.args().collect();
        assert_eq!(args, [&b"SET"[..], b"k", b"\x00\xff", b"42"]);
        let mut scan = redis::cmd("SSCAN");
        scan.arg("s").cursor_arg(17).arg("COUNT").arg(5);
        let ours = Command::try_from(&scan).unwrap();
        let args: Vec<&[u8]> = ours.args().collect();
        assert_eq!(args, [&b"SSCAN"[..], b"s", b"17", b"COUNT", b"5"]);
        assert!(Command::try_from(&redis::Cmd::new()).is_err());
        assert_eq!(
            packed_args(b"*2\r\n$1\r\nA\r\n$0\r\n\r\n"),
            Some(vec![&b"A"[..], b""])
        );
        assert_eq!(packed_args(b"*2\r\n$1\r\nA\r\n"), None);
        assert_eq!(packed_args(b"*1\r\n$5\r\nA\r\n"), None);
        assert_eq!(packed_args(b"*0\r\n"), None);
        assert_eq!(cmd!("GET", "k").name(), "GET");
    }

    #[test]
    fn pipeline_windows_follow_redis_rs_offsets() {
        let values: Vec<Value> = (0..4).map(Value::Int).collect();
        assert_eq!(window(values.clone(), 0, 4).unwrap(), values);
        assert_eq!(
            window(values.clone(), 1, 2).unwrap(),
            [Value::Int(1), Value::Int(2)]
        );
        assert!(window(values.clone(), 3, 2).is_err());
        assert!(window(values, usize::MAX, 2).is_err());
        let exec = Value::Array(vec![Value::Int(1), Value::Int(2)]);
        // What `pipe().atomic()` asks for: EXEC's reply alone.
        assert_eq!(
            transaction_window(2, exec.clone(), 3, 1).unwrap(),
            vec![exec.clone()]
        );
        // Every reply the server sends, in order.
        assert_eq!(
            transaction_window(2, exec.clone(), 0, 4).unwrap(),
            [
                Value::Okay,
                Value::SimpleString("QUEUED".into()),
                Value::SimpleString("QUEUED".into()),
                exec.clone()
            ]
        );
        assert!(transaction_window(2, exec, 0, 5).is_err());
    }
}
