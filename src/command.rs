//! Commands: the request type of every service in the crate.
//!
//! A [`Command`] is a list of arguments, the first being the command's name. It knows, from the
//! name and arguments, what kind of command it is: read-only, idempotent (safe to run twice),
//! blocking (and for how long), or a Pub/Sub subscription change. The retry and timeout layers make
//! their decisions from this one classification.
//!
//! ```
//! use redis_handoff::{cmd, Command};
//!
//! let set = Command::new("SET").arg("greeting").arg("hello").arg("EX").arg(60);
//! assert_eq!(set.name(), "SET");
//! assert!(set.is_idempotent());
//!
//! let incr = cmd!("INCR", "visits");
//! assert!(!incr.is_idempotent());
//! ```

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// A Redis command: its name and arguments, as binary-safe strings.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    args: Vec<Bytes>,
}

/// Builds a [`Command`] from a name and any number of arguments.
///
/// ```
/// use redis_handoff::cmd;
/// let c = cmd!("HSET", "user:1", "name", "ada", "age", 36);
/// assert_eq!(c.args().len(), 6);
/// ```
#[macro_export]
macro_rules! cmd {
    ($name:expr $(, $arg:expr)* $(,)?) => {
        $crate::Command::new($name)$(.arg($arg))*
    };
}

/// A value that can be a command argument.
///
/// Implemented for strings, byte slices, [`Bytes`], integers and floats.
pub trait ToArg {
    /// The argument's bytes.
    fn to_arg(self) -> Bytes;
}

impl ToArg for Bytes {
    fn to_arg(self) -> Bytes {
        self
    }
}
impl ToArg for &Bytes {
    fn to_arg(self) -> Bytes {
        self.clone()
    }
}
impl ToArg for &str {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl ToArg for String {
    fn to_arg(self) -> Bytes {
        Bytes::from(self)
    }
}
impl ToArg for &String {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl ToArg for &[u8] {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl<const N: usize> ToArg for &[u8; N] {
    fn to_arg(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl ToArg for Vec<u8> {
    fn to_arg(self) -> Bytes {
        Bytes::from(self)
    }
}
macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(self) -> Bytes {
                Bytes::from(self.to_string())
            }
        }
    )*};
}
int_arg!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

impl Command {
    /// A command with the given name and no arguments yet.
    pub fn new(name: impl ToArg) -> Self {
        let mut args = Vec::with_capacity(4);
        args.push(name.to_arg());
        Command { args }
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl ToArg) -> Self {
        self.args.push(arg.to_arg());
        self
    }

    /// Adds several arguments.
    #[must_use]
    pub fn args_from<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: ToArg,
    {
        self.args.extend(args.into_iter().map(ToArg::to_arg));
        self
    }

    /// Adds an argument in place.
    pub fn push_arg(&mut self, arg: impl ToArg) {
        self.args.push(arg.to_arg());
    }

    /// All the arguments, the name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// The command's name as given (`"get"` stays `"get"`); `""` if it is not UTF-8.
    pub fn name(&self) -> &str {
        self.args
            .first()
            .and_then(|n| std::str::from_utf8(n).ok())
            .unwrap_or("")
    }

    /// Whether the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    fn arg_is(&self, index: usize, word: &str) -> bool {
        self.args
            .get(index)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    fn has_option(&self, word: &str) -> bool {
        self.args[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Whether the command only reads. Read-only commands are safe to retry.
    pub fn is_read_only(&self) -> bool {
        let Some(name) = self.upper_name() else {
            return false;
        };
        if READ_ONLY.binary_search(&name.as_str()).is_ok() {
            return true;
        }
        match name.as_str() {
            "CONFIG" => self.arg_is(1, "GET"),
            "CLIENT" => ["ID", "GETNAME", "INFO", "LIST"]
                .iter()
                .any(|s| self.arg_is(1, s)),
            _ => false,
        }
    }

    /// Whether running the command twice leaves the same state as running it once, so that a
    /// command whose reply was lost can be sent again. Read-only commands are idempotent.
    ///
    /// Conservative: unknown commands, scripts, transactions and anything whose second run would
    /// change state (`INCR`, `LPUSH`, `PUBLISH`) or whose reply would mislead (`SET ... NX`,
    /// `SETNX`, `SET ... GET`) are not.
    pub fn is_idempotent(&self) -> bool {
        if self.is_read_only() {
            return true;
        }
        let Some(name) = self.upper_name() else {
            return false;
        };
        match name.as_str() {
            "SET" => !(self.has_option("NX") || self.has_option("XX") || self.has_option("GET")),
            "ZADD" => !(self.has_option("INCR")),
            n => IDEMPOTENT_WRITES.binary_search(&n).is_ok(),
        }
    }

    /// How long the command may block on the server, when it is a blocking command.
    ///
    /// `Some(Block::Forever)` for a zero timeout (`BLPOP key 0`, `XREAD BLOCK 0`, `WAIT n 0`).
    /// `None` for a command that does not block.
    pub fn blocking(&self) -> Option<Block> {
        let name = self.upper_name()?;
        // A malformed timeout gets no budget of its own: the server refuses it at once.
        let secs_at = |i: usize| self.args.get(i).and_then(|a| parse_seconds(a));
        let millis_at = |i: usize| self.args.get(i).and_then(|a| parse_millis(a));
        let last = self.args.len().checked_sub(1).filter(|&l| l >= 2)?;
        let block = match name.as_str() {
            "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" => secs_at(last)?,
            "BLMPOP" | "BZMPOP" => secs_at(1)?,
            "WAIT" => millis_at(2)?,
            "WAITAOF" => millis_at(3)?,
            "XREAD" | "XREADGROUP" => {
                let at = self
                    .args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"BLOCK"))?;
                millis_at(at + 1)?
            }
            _ => return None,
        };
        Some(block)
    }

    /// The Pub/Sub subscription change this command makes, if any. In RESP3 the server answers
    /// these with push frames, one per channel, instead of a reply.
    pub fn subscription(&self) -> Option<Subscription> {
        let first = self.args.first()?;
        // Cheap first-byte filter: this runs for every command.
        if !matches!(first.first(), Some(b'S' | b's' | b'P' | b'p' | b'U' | b'u')) {
            return None;
        }
        let kind = SubscriptionKind::from_command(first)?;
        Some(Subscription {
            kind,
            channels: self.args.len() - 1,
        })
    }

    /// Writes the command in RESP (an array of bulk strings) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let size: usize = self.args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
        out.reserve(size);
        out.put_u8(b'*');
        put_decimal(out, self.args.len());
        out.put_slice(b"\r\n");
        for arg in &self.args {
            out.put_u8(b'$');
            put_decimal(out, arg.len());
            out.put_slice(b"\r\n");
            out.put_slice(arg);
            out.put_slice(b"\r\n");
        }
    }

    /// The name in upper case, on the stack: classification runs on the command path.
    fn upper_name(&self) -> Option<UpperName> {
        let n = self.args.first()?;
        let mut buf = [0u8; 24];
        let dst = buf.get_mut(..n.len())?;
        dst.copy_from_slice(n);
        dst.make_ascii_uppercase();
        std::str::from_utf8(dst).ok()?;
        Some(UpperName {
            buf,
            len: n.len() as u8,
        })
    }

    /// Whether the arguments carry secrets that must not be logged.
    fn is_sensitive(&self) -> bool {
        const SECRET: [&str; 5] = ["AUTH", "HELLO", "MIGRATE", "ACL", "CONFIG"];
        SECRET.iter().any(|n| self.is(n))
    }
}

struct UpperName {
    buf: [u8; 24],
    len: u8,
}

impl UpperName {
    fn as_str(&self) -> &str {
        // Checked to be UTF-8 when built.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

fn put_decimal(out: &mut BytesMut, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

fn parse_seconds(arg: &[u8]) -> Option<Block> {
    let secs = std::str::from_utf8(arg)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(if secs == 0.0 {
        Block::Forever
    } else {
        Block::For(Duration::from_secs_f64(secs.min(1e9)))
    })
}

fn parse_millis(arg: &[u8]) -> Option<Block> {
    let ms = std::str::from_utf8(arg).ok()?.parse::<u64>().ok()?;
    Some(if ms == 0 {
        Block::Forever
    } else {
        Block::For(Duration::from_millis(ms))
    })
}

/// How long a blocking command may wait on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Until data arrives, however long that takes (a zero timeout).
    Forever,
    /// At most this long.
    For(Duration),
}

/// A subscription change: which family, and how many channels the command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Subscribe or unsubscribe, to channels, patterns or shard channels.
    pub kind: SubscriptionKind,
    /// How many channels or patterns the command names (zero: "all of them", for unsubscribes).
    pub channels: usize,
}

/// The six Pub/Sub subscription commands; their RESP3 confirmations are push frames of the same
/// name in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// `SUBSCRIBE`
    Subscribe,
    /// `PSUBSCRIBE`
    PSubscribe,
    /// `SSUBSCRIBE`
    SSubscribe,
    /// `UNSUBSCRIBE`
    Unsubscribe,
    /// `PUNSUBSCRIBE`
    PUnsubscribe,
    /// `SUNSUBSCRIBE`
    SUnsubscribe,
}

impl SubscriptionKind {
    const ALL: [(SubscriptionKind, &'static str); 6] = [
        (SubscriptionKind::Subscribe, "subscribe"),
        (SubscriptionKind::PSubscribe, "psubscribe"),
        (SubscriptionKind::SSubscribe, "ssubscribe"),
        (SubscriptionKind::Unsubscribe, "unsubscribe"),
        (SubscriptionKind::PUnsubscribe, "punsubscribe"),
        (SubscriptionKind::SUnsubscribe, "sunsubscribe"),
    ];

    /// The kind whose command or push name this is, ignoring case.
    pub fn from_command(name: &[u8]) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| name.eq_ignore_ascii_case(n.as_bytes()))
            .map(|(k, _)| *k)
    }

    /// The name of the push frames that confirm it, such as `"subscribe"`.
    pub fn push_name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// Whether this removes subscriptions.
    pub fn is_unsubscribe(self) -> bool {
        matches!(
            self,
            SubscriptionKind::Unsubscribe
                | SubscriptionKind::PUnsubscribe
                | SubscriptionKind::SUnsubscribe
        )
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_tuple("Command");
        list.field(&String::from_utf8_lossy(
            self.args.first().map_or(&[][..], |a| a),
        ));
        if self.is_sensitive() {
            if self.args.len() > 1 {
                list.field(&format_args!(
                    "<{} arguments redacted>",
                    self.args.len() - 1
                ));
            }
        } else {
            for arg in self.args.iter().skip(1).take(16) {
                if arg.len() > 64 {
                    list.field(&format_args!("<{} bytes>", arg.len()));
                } else {
                    list.field(&String::from_utf8_lossy(arg));
                }
            }
            if self.args.len() > 17 {
                list.field(&format_args!("... {} more", self.args.len() - 17));
            }
        }
        list.finish()
    }
}

// Sorted: looked up with binary_search.
const READ_ONLY: &[&str] = &[
    "BITCOUNT",
    "BITFIELD_RO",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LCS",
    "LINDEX",
    "LLEN",
    "LOLWUT",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SORT_RO",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

// Sorted: writes that leave the same state when run twice.
const IDEMPOTENT_WRITES: &[&str] = &[
    "DEL",
    "EXPIRE",
    "EXPIREAT",
    "FLUSHALL",
    "FLUSHDB",
    "HDEL",
    "HMSET",
    "HSET",
    "LSET",
    "MSET",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PFADD",
    "PSETEX",
    "SADD",
    "SELECT",
    "SETBIT",
    "SETEX",
    "SETRANGE",
    "SREM",
    "TOUCH",
    "UNLINK",
    "ZREM",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
        assert!(IDEMPOTENT_WRITES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn encodes_as_resp_array_of_bulk_strings() {
        let mut out = BytesMut::new();
        cmd!("SET", "k", "").encode(&mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut out = BytesMut::new();
        Command::new("PING").arg(1234567890u64).encode(&mut out);
        assert_eq!(&out[..], b"*2\r\n$4\r\nPING\r\n$10\r\n1234567890\r\n");
    }

    #[test]
    fn classifies_reads_and_writes() {
        assert!(cmd!("get", "k").is_read_only());
        assert!(cmd!("CONFIG", "GET", "maxmemory").is_read_only());
        assert!(!cmd!("CONFIG", "SET", "maxmemory", "1").is_read_only());
        assert!(cmd!("SET", "k", "v", "EX", 10).is_idempotent());
        assert!(!cmd!("SET", "lock", "me", "NX", "PX", 3000).is_idempotent());
        assert!(!cmd!("SET", "k", "v", "GET").is_idempotent());
        assert!(!cmd!("INCR", "k").is_idempotent());
        assert!(!cmd!("LPUSH", "k", "v").is_idempotent());
        assert!(!cmd!("PUBLISH", "c", "m").is_idempotent());
        assert!(!cmd!("EVAL", "return 1", 0).is_idempotent());
        assert!(!cmd!("ZADD", "z", "INCR", 1, "m").is_idempotent());
        assert!(cmd!("ZADD", "z", 1, "m").is_idempotent());
        assert!(cmd!("DEL", "k").is_idempotent());
        assert!(!Command::new(&b"\xff\xfe"[..]).is_idempotent());
    }

    #[test]
    fn finds_block_times() {
        assert_eq!(cmd!("BLPOP", "a", "b", 0).blocking(), Some(Block::Forever));
        assert_eq!(
            cmd!("BLPOP", "a", "2.5").blocking(),
            Some(Block::For(Duration::from_millis(2500)))
        );
        assert_eq!(
            cmd!("BLMPOP", 3, 2, "a", "b", "LEFT").blocking(),
            Some(Block::For(Duration::from_secs(3)))
        );
        assert_eq!(
            cmd!("XREAD", "COUNT", 1, "BLOCK", 1500, "STREAMS", "s", "$").blocking(),
            Some(Block::For(Duration::from_millis(1500)))
        );
        assert_eq!(cmd!("XREAD", "STREAMS", "s", "0").blocking(), None);
        assert_eq!(cmd!("WAIT", 1, 0).blocking(), Some(Block::Forever));
        assert_eq!(
            cmd!("WAITAOF", 1, 0, 100).blocking(),
            Some(Block::For(Duration::from_millis(100)))
        );
        assert_eq!(cmd!("GET", "k").blocking(), None);
        assert_eq!(cmd!("BLPOP").blocking(), None);
    }

    #[test]
    fn recognises_subscriptions() {
        let s = cmd!("subscribe", "a", "b").subscription().unwrap();
        assert_eq!((s.kind, s.channels), (SubscriptionKind::Subscribe, 2));
        assert_eq!(s.kind.push_name(), "subscribe");
        let u = cmd!("PUNSUBSCRIBE").subscription().unwrap();
        assert_eq!((u.kind, u.channels), (SubscriptionKind::PUnsubscribe, 0));
        assert!(cmd!("SET", "k", "v").subscription().is_none());
        assert!(cmd!("PUBLISH", "c", "m").subscription().is_none());
    }

    #[test]
    fn debug_redacts_secrets() {
        let hello = cmd!("HELLO", 3, "AUTH", "default", "hunter2");
        let shown = format!("{hello:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let auth = format!("{:?}", cmd!("auth", "hunter2"));
        assert!(!auth.contains("hunter2"), "{auth}");
        assert_eq!(format!("{:?}", cmd!("GET", "k")), r#"Command("GET", "k")"#);
    }
}
