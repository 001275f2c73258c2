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
///
/// The arguments are kept already in their RESP form (`$<len>\r\n<bytes>\r\n` each) in one
/// buffer, which lives inside the `Command` itself while it is small (up to
/// [`Command::INLINE_BYTES`] bytes, enough for most commands on short keys) and on the heap
/// otherwise: building a typical command allocates nothing, and sending it is one copy.
#[derive(Clone)]
pub struct Command {
    body: Body,
    argc: u32,
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
/// Implemented for strings, byte slices, [`Bytes`], integers and floats. To pass a type of your
/// own, implement [`with_bytes`](ToArg::with_bytes) to lend its bytes:
///
/// ```
/// use redis_handoff::{cmd, ToArg};
///
/// struct UserId(u32);
///
/// impl ToArg for UserId {
///     fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
///         format!("user:{}", self.0).with_bytes(f)
///     }
/// }
///
/// let c = cmd!("GET", UserId(7));
/// assert_eq!(c.args().nth(1), Some(&b"user:7"[..]));
/// ```
pub trait ToArg {
    /// Calls `f` with the argument's bytes.
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R;
}

impl ToArg for Bytes {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self)
    }
}
impl ToArg for &Bytes {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl ToArg for &str {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for String {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for &String {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl ToArg for &[u8] {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl<const N: usize> ToArg for &[u8; N] {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl ToArg for Vec<u8> {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self)
    }
}
impl ToArg for &Vec<u8> {
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
macro_rules! unsigned_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 20];
                f(decimal(&mut buf, self as u64))
            }
        }
    )*};
}
unsigned_arg!(u8, u16, u32, u64, usize);

macro_rules! signed_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 21];
                let n = decimal(&mut buf[1..], (self as i64).unsigned_abs()).len();
                let start = 21 - n;
                if self < 0 {
                    buf[start - 1] = b'-';
                    f(&buf[start - 1..])
                } else {
                    f(&buf[start..])
                }
            }
        }
    )*};
}
signed_arg!(i8, i16, i32, i64, isize);

macro_rules! wide_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                let mut buf = [0u8; 40];
                let n = format_display(&mut buf, self);
                f(&buf[..n])
            }
        }
    )*};
}
wide_arg!(i128, u128);

/// Writes `n` in decimal at the end of `buf` (20 bytes hold any `u64`) and returns the digits.
fn decimal(buf: &mut [u8], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        if i == 0 {
            break;
        }
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

macro_rules! float_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
                // Redis parses `inf`, `-inf` and plain decimals; Display never uses exponents.
                f(self.to_string().as_bytes())
            }
        }
    )*};
}
float_arg!(f32, f64);

/// Writes a value's `Display` form into `buf`, which is large enough for any integer.
fn format_display(buf: &mut [u8], value: impl fmt::Display) -> usize {
    use std::io::Write as _;
    let total = buf.len();
    let mut rest = &mut buf[..];
    // Cannot fail: every integer's decimal form fits in 40 bytes.
    let _ = write!(rest, "{value}");
    total - rest.len()
}

impl Command {
    /// How many bytes of encoded arguments a command holds without allocating.
    pub const INLINE_BYTES: usize = INLINE;

    /// A command with the given name and no arguments yet.
    pub fn new(name: impl ToArg) -> Self {
        let mut c = Command {
            body: Body::new(),
            argc: 0,
        };
        c.push_arg(name);
        c
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl ToArg) -> Self {
        self.push_arg(arg);
        self
    }

    /// Adds several arguments.
    #[must_use]
    pub fn args_from<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: ToArg,
    {
        for a in args {
            self.push_arg(a);
        }
        self
    }

    /// Adds an argument in place.
    pub fn push_arg(&mut self, arg: impl ToArg) {
        let body = &mut self.body;
        arg.with_bytes(|bytes| {
            let mut digits = [0u8; 20];
            let len = decimal(&mut digits, bytes.len() as u64);
            body.reserve(1 + len.len() + 2 + bytes.len() + 2);
            body.extend(b"$");
            body.extend(len);
            body.extend(b"\r\n");
            body.extend(bytes);
            body.extend(b"\r\n");
        });
        self.argc += 1;
    }

    /// All the arguments, the name first.
    pub fn args(&self) -> Args<'_> {
        Args {
            rest: self.body.as_slice(),
            left: self.argc as usize,
        }
    }

    /// The argument at `index` (the name is 0).
    pub fn arg_at(&self, index: usize) -> Option<&[u8]> {
        self.args().nth(index)
    }

    /// The command's name as sent, as bytes.
    pub fn name_bytes(&self) -> &[u8] {
        self.args().next().unwrap_or(&[])
    }

    /// The command's name as given (`"get"` stays `"get"`); `""` if it is not UTF-8.
    pub fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or("")
    }

    /// Whether the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name_bytes().eq_ignore_ascii_case(name.as_bytes())
    }

    fn arg_is(&self, index: usize, word: &str) -> bool {
        self.arg_at(index)
            .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    fn has_option(&self, word: &str) -> bool {
        self.args()
            .skip(1)
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
        let secs_at = |i: usize| self.arg_at(i).and_then(parse_seconds);
        let millis_at = |i: usize| self.arg_at(i).and_then(parse_millis);
        let last = (self.argc as usize).checked_sub(1).filter(|&l| l >= 2)?;
        let block = match name.as_str() {
            "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" => secs_at(last)?,
            "BLMPOP" | "BZMPOP" => secs_at(1)?,
            "WAIT" => millis_at(2)?,
            "WAITAOF" => millis_at(3)?,
            "XREAD" | "XREADGROUP" => {
                let at = self.args().position(|a| a.eq_ignore_ascii_case(b"BLOCK"))?;
                millis_at(at + 1)?
            }
            _ => return None,
        };
        Some(block)
    }

    /// The Pub/Sub subscription change this command makes, if any. In RESP3 the server answers
    /// these with push frames, one per channel, instead of a reply.
    pub fn subscription(&self) -> Option<Subscription> {
        let first = self.name_bytes();
        // Cheap first-byte filter: this runs for every command.
        if !matches!(first.first(), Some(b'S' | b's' | b'P' | b'p' | b'U' | b'u')) {
            return None;
        }
        let kind = SubscriptionKind::from_command(first)?;
        Some(Subscription {
            kind,
            channels: (self.argc as usize).saturating_sub(1),
        })
    }

    /// Writes the command in RESP (an array of bulk strings) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let body = self.body.as_slice();
        out.reserve(body.len() + 16);
        out.put_u8(b'*');
        put_decimal(out, self.argc as usize);
        out.put_slice(b"\r\n");
        out.put_slice(body);
    }

    /// The name in upper case, on the stack: classification runs on the command path.
    fn upper_name(&self) -> Option<UpperName> {
        let n = self.name_bytes();
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

fn put_decimal(out: &mut BytesMut, n: usize) {
    let mut buf = [0u8; 20];
    out.put_slice(decimal(&mut buf, n as u64));
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
        list.field(&String::from_utf8_lossy(self.name_bytes()));
        let argc = self.argc as usize;
        if self.is_sensitive() {
            if argc > 1 {
                list.field(&format_args!("<{} arguments redacted>", argc - 1));
            }
        } else {
            for arg in self.args().skip(1).take(16) {
                if arg.len() > 64 {
                    list.field(&format_args!("<{} bytes>", arg.len()));
                } else {
                    list.field(&String::from_utf8_lossy(arg));
                }
            }
            if argc > 17 {
                list.field(&format_args!("... {} more", argc - 17));
            }
        }
        list.finish()
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        self.argc == other.argc && self.body.as_slice() == other.body.as_slice()
    }
}

impl Eq for Command {}

/// The arguments of a [`Command`], the name first; from [`Command::args`].
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Each argument is `$<len>\r\n<bytes>\r\n`, as `push_arg` wrote it.
        let rest = self.rest;
        let mut i = 1;
        let mut len = 0usize;
        while let Some(&b) = rest.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            len = len * 10 + usize::from(b - b'0');
            i += 1;
        }
        let start = i + 2;
        let Some(arg) = rest.get(start..start + len) else {
            self.left = 0;
            return None;
        };
        self.rest = rest.get(start + len + 2..).unwrap_or(&[]);
        self.left -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Args<'_> {}
impl std::iter::FusedIterator for Args<'_> {}

// Encoded argument bytes kept inside the command before it moves to the heap; with the tag and
// length the buffer is 56 bytes, and a command 64.
const INLINE: usize = 54;

/// A command's encoded arguments: inline while small, on the heap after.
#[derive(Clone)]
enum Body {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Body {
    fn new() -> Self {
        Body::Inline {
            len: 0,
            data: [0; INLINE],
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline { len, data } => &data[..usize::from(*len)],
            Body::Heap(v) => v,
        }
    }

    /// Makes room for `more` bytes, moving to the heap when they do not fit inline.
    fn reserve(&mut self, more: usize) {
        match self {
            Body::Inline { len, data } => {
                let len = usize::from(*len);
                if len + more > INLINE {
                    let mut v = Vec::with_capacity((len + more).max(2 * INLINE));
                    v.extend_from_slice(&data[..len]);
                    *self = Body::Heap(v);
                }
            }
            Body::Heap(v) => v.reserve(more),
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        match self {
            Body::Inline { len, data } => {
                let at = usize::from(*len);
                let end = at + bytes.len();
                // `reserve` moved the body to the heap if this did not fit; should it ever not
                // have, the bytes still go to the heap rather than being lost.
                match data.get_mut(at..end) {
                    Some(dst) => {
                        dst.copy_from_slice(bytes);
                        *len = end as u8;
                    }
                    None => {
                        let mut v = Vec::with_capacity(end);
                        v.extend_from_slice(&data[..at]);
                        v.extend_from_slice(bytes);
                        *self = Body::Heap(v);
                    }
                }
            }
            Body::Heap(v) => v.extend_from_slice(bytes),
        }
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
mod tests;
