//! RESP framing for the proxy.
//!
//! The proxy never forwards half a frame: it cuts both byte streams (client to server and server
//! to client) into whole frames, so interceptors see whole commands and injected push frames
//! land between two replies, never inside one. [`FrameCutter`] does the cutting without building
//! the frame, iteratively, with limits on size and nesting; it accepts RESP2 and RESP3 (a proxied
//! client may speak either) and, from clients, inline commands (`PING\r\n` typed into telnet).
//!
//! [`Value`] is the other half: the replies and pushes the simulator writes itself, encoded for
//! the protocol the client speaks.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::connection::codec::{find_crlf, is_type_byte, parse_int, FrameScanner, Limits, Scan};

/// Limits on one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    /// Largest frame, headers included.
    pub(crate) max_frame: usize,
    /// Deepest nesting of aggregates.
    pub(crate) max_depth: usize,
    /// Most values in one frame, counted as [`Limits::max_elements`] counts them.
    pub(crate) max_elements: usize,
    /// Whether a line that does not start with a RESP type byte is an inline command.
    pub(crate) inline: bool,
}

impl FrameLimits {
    /// What a client may send: commands are flat arrays, split into their arguments here; 64 MiB
    /// and a million arguments are plenty for a test proxy.
    pub(crate) const CLIENT: FrameLimits = FrameLimits {
        max_frame: 64 * 1024 * 1024,
        max_depth: 8,
        max_elements: 1024 * 1024 + 1,
        inline: true,
    };
    /// What a server may send: Redis's own largest value, any reasonable nesting, any number of
    /// values (the proxy forwards replies as bytes and never decodes them).
    pub(crate) const SERVER: FrameLimits = FrameLimits {
        max_frame: 512 * 1024 * 1024 + 1024,
        max_depth: 128,
        max_elements: usize::MAX,
        inline: false,
    };
}

/// Why a byte stream is not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameError(pub(crate) String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One frame cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A RESP frame, bytes as they came.
    Frame(Bytes),
    /// An inline command, turned into its arguments.
    Inline(Vec<Bytes>),
}

/// Cuts a byte stream into whole frames.
#[derive(Debug)]
pub(crate) struct FrameCutter {
    limits: FrameLimits,
    // The connection's scanner, accepting RESP2 as well.
    scanner: FrameScanner,
    // The buffer must hold this many bytes before the scan can go on.
    need: usize,
}

const MAX_INLINE: usize = 64 * 1024;

impl FrameCutter {
    pub(crate) fn new(limits: FrameLimits) -> Self {
        FrameCutter {
            limits,
            scanner: FrameScanner::new(Limits {
                max_frame_size: limits.max_frame,
                max_depth: limits.max_depth,
                max_elements: limits.max_elements,
            })
            .with_resp2_nulls(),
            need: 0,
        }
    }

    /// Takes the next whole frame off the front of `buf`, if there is one.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Cut>, FrameError> {
        loop {
            if buf.is_empty() || buf.len() < self.need {
                return Ok(None);
            }
            let first = buf[0];
            if self.limits.inline && !is_type_byte(first) {
                let Some(nl) = buf.iter().take(MAX_INLINE + 1).position(|&b| b == b'\n') else {
                    if buf.len() > MAX_INLINE {
                        return Err(FrameError(format!(
                            "inline command longer than {MAX_INLINE} bytes"
                        )));
                    }
                    return Ok(None);
                };
                let line = buf.split_to(nl + 1).freeze();
                let args = split_inline(&line);
                if args.is_empty() {
                    continue; // an empty line, as Redis skips it
                }
                return Ok(Some(Cut::Inline(args)));
            }
            return match self.scan(buf)? {
                None => Ok(None),
                Some(len) => {
                    self.need = 0;
                    Ok(Some(Cut::Frame(buf.split_to(len).freeze())))
                }
            };
        }
    }

    /// Finds the length of the frame at the start of `buf` (`None`: not complete yet).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        match self.scanner.scan(buf) {
            Ok(Scan::Complete(len)) => Ok(Some(len)),
            Ok(Scan::Incomplete(need)) => {
                self.need = need;
                Ok(None)
            }
            Err(e) => Err(FrameError(match e {
                crate::Error::Protocol { message } => message.to_string(),
                other => other.to_string(),
            })),
        }
    }
}

fn split_inline(line: &Bytes) -> Vec<Bytes> {
    let mut args = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        let space = b.is_ascii_whitespace();
        match (start, space) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                args.push(line.slice(s..i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push(line.slice(s..));
    }
    args
}

// ===== reading flat frames =====

/// A scalar element of a flat aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Elem {
    /// A simple, bulk or verbatim string.
    Str(Bytes),
    /// An integer.
    Int(i64),
    /// Anything else (null, boolean, double, nested aggregate).
    Other,
}

impl Elem {
    pub(crate) fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Elem::Str(b) => Some(b),
            _ => None,
        }
    }
}

/// The type byte and the elements of an aggregate frame whose elements are scalars
/// (a command, a Pub/Sub message). `None` for anything else.
pub(crate) fn parse_flat(frame: &Bytes) -> Option<(u8, Vec<Elem>)> {
    let kind = *frame.first()?;
    if !matches!(kind, b'*' | b'>' | b'~') {
        return None;
    }
    let mut pos = 0;
    let (n, next) = read_line_int(frame, 1)?;
    pos += next;
    let n = usize::try_from(n).ok()?;
    let mut elems = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = *frame.get(pos)?;
        match k {
            b'$' | b'=' => {
                let (len, next) = read_line_int(frame, pos + 1)?;
                pos = next;
                if len < 0 {
                    elems.push(Elem::Other);
                    continue;
                }
                let end = pos.checked_add(usize::try_from(len).ok()?)?;
                if frame.get(end..end + 2)? != b"\r\n" {
                    return None;
                }
                elems.push(Elem::Str(frame.slice(pos..end)));
                pos = end + 2;
            }
            b'+' => {
                let end = find_crlf(frame, pos + 1, frame.len())?;
                elems.push(Elem::Str(frame.slice(pos + 1..end)));
                pos = end + 2;
            }
            b':' => {
                let (v, next) = read_line_int(frame, pos + 1)?;
                elems.push(Elem::Int(v));
                pos = next;
            }
            b'_' | b'#' | b',' | b'(' | b'-' => {
                let end = find_crlf(frame, pos + 1, frame.len())?;
                elems.push(Elem::Other);
                pos = end + 2;
            }
            _ => return None,
        }
    }
    Some((kind, elems))
}

/// Reads the integer on the line starting at `from`; returns it and the position after the line.
fn read_line_int(frame: &[u8], from: usize) -> Option<(i64, usize)> {
    let end = find_crlf(frame, from, frame.len())?;
    Some((parse_int(&frame[from..end])?, end + 2))
}

/// The arguments of a command frame (an array of strings or integers), or `None`.
pub(crate) fn command_args(cut: &Cut) -> Option<Vec<Bytes>> {
    match cut {
        Cut::Inline(args) => Some(args.clone()),
        Cut::Frame(frame) => {
            let (kind, elems) = parse_flat(frame)?;
            if kind != b'*' {
                return None;
            }
            elems
                .into_iter()
                .map(|e| match e {
                    Elem::Str(b) => Some(b),
                    Elem::Int(i) => Some(Bytes::from(i.to_string())),
                    Elem::Other => None,
                })
                .collect()
        }
    }
}

/// Encodes arguments as a RESP array of bulk strings.
pub(crate) fn encode_command(args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        put_bulk(&mut out, a);
    }
    out.freeze()
}

fn put_bulk(out: &mut BytesMut, b: &[u8]) {
    out.put_slice(format!("${}\r\n", b.len()).as_bytes());
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

// ===== writing =====

/// A reply or push the simulator writes itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// A double (a sorted set's score): RESP3 `,`, RESP2 a bulk string.
    Double(f64),
    Null,
    /// The null of commands that answer with an array: RESP3 `_`, RESP2 `*-1`.
    NullArray,
    Array(Vec<Value>),
    /// A set: RESP3 `~`, RESP2 an array.
    Set(Vec<Value>),
    /// Pairs such as members with their scores: RESP3 an array of two-element arrays, RESP2
    /// one flat array.
    Pairs(Vec<(Value, Value)>),
    Map(Vec<(Value, Value)>),
    Push(Vec<Value>),
}

impl Value {
    pub(crate) fn ok() -> Value {
        Value::Simple("OK".into())
    }

    pub(crate) fn err(text: impl Into<String>) -> Value {
        Value::Error(text.into())
    }

    pub(crate) fn bulk(b: impl AsRef<[u8]>) -> Value {
        Value::Bulk(Bytes::copy_from_slice(b.as_ref()))
    }

    /// The bytes of this value for a client speaking RESP3 (`resp3`) or RESP2.
    pub(crate) fn encode(&self, resp3: bool) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(resp3, &mut out);
        out.freeze()
    }

    pub(crate) fn encode_into(&self, resp3: bool, out: &mut BytesMut) {
        match self {
            Value::Simple(s) => {
                out.put_u8(b'+');
                put_line(out, s);
            }
            Value::Error(s) => {
                out.put_u8(b'-');
                put_line(out, s);
            }
            Value::Int(i) => out.put_slice(format!(":{i}\r\n").as_bytes()),
            Value::Bulk(b) => put_bulk(out, b),
            Value::Double(d) => {
                let text = format_score(*d);
                if resp3 {
                    out.put_u8(b',');
                    put_line(out, &text);
                } else {
                    put_bulk(out, text.as_bytes());
                }
            }
            Value::Null => out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Value::NullArray => out.put_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
            Value::Array(items) => put_aggregate(out, b'*', items, resp3),
            Value::Set(items) => put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, resp3),
            Value::Pairs(pairs) => {
                let n = if resp3 { pairs.len() } else { pairs.len() * 2 };
                out.put_slice(format!("*{n}\r\n").as_bytes());
                for (a, b) in pairs {
                    if resp3 {
                        out.put_slice(b"*2\r\n");
                    }
                    a.encode_into(resp3, out);
                    b.encode_into(resp3, out);
                }
            }
            Value::Push(items) => put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, resp3),
            Value::Map(pairs) => {
                if resp3 {
                    out.put_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                } else {
                    out.put_slice(format!("*{}\r\n", pairs.len() * 2).as_bytes());
                }
                for (k, v) in pairs {
                    k.encode_into(resp3, out);
                    v.encode_into(resp3, out);
                }
            }
        }
    }
}

fn put_aggregate(out: &mut BytesMut, kind: u8, items: &[Value], resp3: bool) {
    out.put_u8(kind);
    out.put_slice(format!("{}\r\n", items.len()).as_bytes());
    for item in items {
        item.encode_into(resp3, out);
    }
}

fn put_line(out: &mut BytesMut, s: &str) {
    // A simple string cannot hold CR or LF.
    for b in s.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// Formats a double as Redis does (`inf`, `-inf`, shortest round-trip form otherwise).
pub(crate) fn format_double(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if d.is_nan() {
        "nan".to_string()
    } else {
        format!("{d}")
    }
}

/// Formats a double as Redis 7.0 replies with it (`ZSCORE`, `ZRANGE ... WITHSCORES`): `inf`,
/// `-inf`, otherwise C's `%.17g` (`1`, `2.5`, `0.10000000000000001`, `1e+17`).
pub(crate) fn format_score(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if d.is_nan() {
        return "nan".to_string();
    }
    // `%.17g`: 17 significant digits, in the style `%e` would use when the exponent is below
    // -4 or at least 17, else in the style of `%f`; trailing zeros dropped either way.
    let sci = format!("{d:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exp.unsigned_abs()
        )
    } else {
        let decimals = usize::try_from(16 - exp).unwrap_or(0);
        trim_fraction(&format!("{d:.decimals$}")).to_string()
    }
}

/// `1.500` -> `1.5`, `2.000` -> `2`; a number without a fraction is left alone.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// The first bytes of a frame, escaped, for logs: the connection's own preview.
pub(crate) use crate::connection::codec::preview;

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_all(input: &[u8]) -> Vec<Cut> {
        let mut c = FrameCutter::new(FrameLimits::CLIENT);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cut) = c.next(&mut buf).unwrap() {
            out.push(cut);
        }
        assert!(buf.is_empty(), "left over: {}", preview(&buf));
        out
    }

    #[test]
    fn cuts_pipelined_commands_and_inline_ones() {
        let cuts = cut_all(b"*1\r\n$4\r\nPING\r\nSET a  b\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
        assert_eq!(cuts.len(), 3);
        assert_eq!(
            command_args(&cuts[1]).unwrap(),
            vec![Bytes::from("SET"), Bytes::from("a"), Bytes::from("b")]
        );
        assert_eq!(
            command_args(&cuts[2]).unwrap(),
            vec![Bytes::from("GET"), Bytes::from("a")]
        );
    }

    #[test]
    fn accepts_resp2_nulls_and_resp3_types() {
        for frame in [
            &b"$-1\r\n"[..],
            b"*-1\r\n",
            b"*2\r\n$-1\r\n:1\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
            b"%1\r\n+a\r\n*0\r\n",
            b"|1\r\n+k\r\n+v\r\n+OK\r\n",
        ] {
            // A cutter per frame: one resumes its partial frame in the buffer that grows.
            let mut c = FrameCutter::new(FrameLimits::SERVER);
            assert_eq!(
                c.scan(frame).unwrap(),
                Some(frame.len()),
                "{}",
                preview(frame)
            );
            for cut in 0..frame.len() {
                assert_eq!(c.scan(&frame[..cut]).unwrap(), None);
            }
        }
    }

    #[test]
    fn refuses_hostile_input() {
        let mut c = FrameCutter::new(FrameLimits::CLIENT);
        assert!(c.scan(b"$99999999999\r\n").is_err());
        assert!(c.scan(b"*99999999999\r\n").is_err());
        assert!(c.scan(&b"*1\r\n".repeat(9)).is_err());
        assert!(c.scan(b"$3\r\nabcd\r\n").is_err());
        let mut buf = BytesMut::from(&vec![b'a'; MAX_INLINE + 2][..]);
        assert!(c.next(&mut buf).is_err());
    }

    #[test]
    fn encodes_for_each_protocol() {
        let v = Value::Push(vec![Value::bulk("MOVING"), Value::Int(1), Value::Null]);
        assert_eq!(&v.encode(true)[..], b">3\r\n$6\r\nMOVING\r\n:1\r\n_\r\n");
        assert_eq!(&v.encode(false)[..], b"*3\r\n$6\r\nMOVING\r\n:1\r\n$-1\r\n");
        let m = Value::Map(vec![(Value::bulk("a"), Value::Int(1))]);
        assert_eq!(&m.encode(true)[..], b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(&m.encode(false)[..], b"*2\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn parses_flat_frames() {
        let f = Bytes::from_static(b">3\r\n$9\r\nsubscribe\r\n$16\r\nAzureRedisEvents\r\n:1\r\n");
        let (k, e) = parse_flat(&f).unwrap();
        assert_eq!(k, b'>');
        assert_eq!(e[2], Elem::Int(1));
        assert!(parse_flat(&Bytes::from_static(b"*1\r\n*0\r\n")).is_none());
        assert!(parse_flat(&Bytes::from_static(b"*2\r\n$5\r\nab")).is_none());
    }

    #[test]
    fn scores_are_formatted_as_redis_7_0_does() {
        let cases: [(f64, &str); 16] = [
            (1.0, "1"),
            (2.5, "2.5"),
            (-2.5, "-2.5"),
            (0.1, "0.10000000000000001"),
            (2.1, "2.1000000000000001"),
            (1.0 / 3.0, "0.33333333333333331"),
            (1e15, "1000000000000000"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e20, "1e+20"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (1.5e-7, "1.4999999999999999e-07"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (d, want) in cases {
            assert_eq!(format_score(d), want, "{d:e}");
        }
        assert_eq!(format_score(12345678.9), "12345678.9");
        assert_eq!(format_score(0.0), "0");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
        assert_eq!(&Value::Double(f64::INFINITY).encode(true)[..], b",inf\r\n");
        assert_eq!(&Value::Double(2.5).encode(false)[..], b"$3\r\n2.5\r\n");
        assert_eq!(&Value::NullArray.encode(false)[..], b"*-1\r\n");
        assert_eq!(
            &Value::Set(vec![Value::Int(1)]).encode(true)[..],
            b"~1\r\n:1\r\n"
        );
    }
}
