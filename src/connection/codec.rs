//! Reading RESP3 frames from bytes the network sent, within limits.
//!
//! [`FrameScanner`] walks each frame iteratively and checks its structure against [`Limits`]:
//! the frame's size, its nesting depth and the number of values it holds, each from the first
//! byte that shows it (a `$4000000000` or `*99999999` header is refused before any of its body
//! arrives). Only a complete, bounded frame is built, by the decoder next door (`decode.rs`):
//! iterative too, with vectors and maps sized once and every string a slice of the frame's
//! buffer, it builds the [`BytesFrame`](crate::frame::BytesFrame) redis-protocol's decoder
//! would, without its recursion, its intermediate frame of ranges or its reparsing of an
//! incomplete frame from the start on every read.
//!
//! The size limit bounds the bytes buffered; the element limit bounds what decoding them costs,
//! which the size does not: a null takes three bytes on the wire and 104 once decoded (a
//! [`BytesFrame`](crate::frame::BytesFrame) on a 64-bit target).
//!
//! A frame that arrives over many reads is walked once: the scanner keeps where it stopped
//! (the offset reached, the elements each open aggregate still owes, how far a line was searched
//! for its CRLF) and resumes there when more bytes come, so the work is linear in the frame's
//! size however it is cut. That needs the caller to hand it the same buffer each time, grown at
//! the end and never consumed at the front until a frame comes out (the I/O task's read buffer
//! and the simulator's proxy both work so). A buffer shorter than the walk has come, or starting
//! with another byte, is taken for a new one and walked from its start.

use bytes::BytesMut;
use redis_protocol::resp3::types::BytesFrame;

use super::decode::decode;
use crate::error::Error;

/// Limits on what the server may send, enforced on every frame.
///
/// A field added in a later version gets a default: build with `..Limits::default()`.
///
/// ```
/// use redis_handoff::Limits;
///
/// let limits = Limits {
///     max_frame_size: 64 * 1024 * 1024,
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_elements, 16 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted, in bytes, headers included. Default 512 MiB, Redis's own
    /// largest bulk string.
    pub max_frame_size: usize,
    /// The deepest nesting of arrays, maps, sets and pushes accepted. Default 64; at most 1024.
    pub max_depth: usize,
    /// The most values one frame may hold, counted at every level of nesting: the frame
    /// itself, every element of every array, set and push, the key and the value of every map
    /// entry, and an attribute with its entries. Default 16 Mi (16,777,216); at least 1.
    ///
    /// Decoded, every value takes 104 bytes of its own (a [`BytesFrame`] on a 64-bit target)
    /// however few it took on the wire, so this limit, not `max_frame_size`, bounds a reply's
    /// memory: at the default about 1.6 GiB as an array, three times the default
    /// `max_frame_size` (a map's or a set's hash table takes up to twice as much, for its spare
    /// room), where that limit alone lets 512 MiB of three-byte nulls become 18 GB. Decoding
    /// holds the frame's bytes besides, and nothing else of its size. A 10-million-element
    /// `LRANGE` or an `HGETALL` of 8 million fields passes; raise it for larger replies.
    ///
    /// [`BytesFrame`]: crate::frame::BytesFrame
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 512 * 1024 * 1024,
            max_depth: 64,
            max_elements: 16 * 1024 * 1024,
        }
    }
}

/// What a scan found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A whole frame of this many bytes.
    Complete(usize),
    /// Not yet a whole frame; at least this many bytes in all are needed.
    Incomplete(usize),
}

/// Finds frame boundaries and enforces [`Limits`].
#[derive(Debug)]
pub(crate) struct FrameScanner {
    limits: Limits,
    walk: Walk,
    // Bytes the buffer must hold before another scan can make progress.
    need: usize,
    // Whether RESP2's `$-1` and `*-1` are accepted as nulls (the simulator's proxy, which carries
    // RESP2 clients too; a RESP3 connection never receives them).
    resp2_nulls: bool,
    // Bytes looked at, for the tests that show each is looked at once.
    #[cfg(test)]
    examined: usize,
}

/// How far the walk through a partial frame has come; all offsets are from the frame's start.
#[derive(Debug, Default)]
struct Walk {
    // Where the next value starts; while `body_end` is set, where the bulk string's body does.
    pos: usize,
    // Where the search for the CRLF ending the line at `pos` resumes: no CRLF ends before it.
    line_from: usize,
    // The offset past a bulk string whose body is still arriving.
    body_end: Option<usize>,
    // Elements still owed by each open aggregate, outermost first.
    stack: Vec<u64>,
    // Values the frame has declared so far (see `Limits::max_elements`); 0 before it starts.
    elements: u64,
    // The frame's type byte, to notice a buffer that is not the one the walk started in.
    kind: u8,
}

impl Walk {
    fn reset(&mut self) {
        // The stack keeps its allocation for the next frame.
        self.stack.clear();
        *self = Walk {
            stack: std::mem::take(&mut self.stack),
            ..Walk::default()
        };
    }
}

impl FrameScanner {
    pub(crate) fn new(limits: Limits) -> Self {
        FrameScanner {
            limits: Limits {
                max_depth: limits.max_depth.clamp(1, 1024),
                max_frame_size: limits.max_frame_size.max(64),
                max_elements: limits.max_elements.max(1),
            },
            walk: Walk::default(),
            need: 0,
            resp2_nulls: false,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Also accepts RESP2's null bulk string `$-1` and null array `*-1` (the simulator's proxy
    /// reads what RESP2 clients send; a connection of ours speaks RESP3 only).
    #[cfg(feature = "sim")]
    pub(crate) fn with_resp2_nulls(mut self) -> Self {
        self.resp2_nulls = true;
        self
    }

    /// Takes the next whole frame off the front of `buf`, if there is one.
    ///
    /// Between two calls that return `Ok(None)`, `buf` may only grow at the end (see the
    /// module docs).
    pub(crate) fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<BytesFrame>, Error> {
        if buf.is_empty() || buf.len() < self.need {
            return Ok(None);
        }
        let scan = self.scan(buf).inspect_err(|_| self.need = 0)?;
        match scan {
            Scan::Incomplete(need) => {
                self.need = need;
                Ok(None)
            }
            Scan::Complete(len) => {
                self.need = 0;
                decode(buf, len).map(Some)
            }
        }
    }

    /// Walks one frame at the start of `buf` without building it, resuming a walk that an
    /// earlier call left partial when `buf` is that call's buffer, grown.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Scan, Error> {
        let walked = self.walk.pos.max(self.walk.line_from);
        if self.walk.elements > 0 && (buf.len() < walked || buf.first() != Some(&self.walk.kind)) {
            // Not the buffer the walk started in: start over rather than misread it.
            self.walk.reset();
        }
        let scan = self.walk_frame(buf);
        if !matches!(scan, Ok(Scan::Incomplete(_))) {
            self.walk.reset();
        }
        scan
    }

    fn walk_frame(&mut self, buf: &[u8]) -> Result<Scan, Error> {
        let max = self.limits.max_frame_size;
        let w = &mut self.walk;
        if w.elements == 0 {
            let Some(&kind) = buf.first() else {
                return Ok(Scan::Incomplete(1));
            };
            w.kind = kind;
            w.elements = 1;
        }
        loop {
            if let Some(end) = w.body_end {
                if buf.len() < end {
                    return Ok(Scan::Incomplete(end));
                }
                #[cfg(test)]
                {
                    self.examined += 2;
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(Error::protocol(
                        "a bulk string is not followed by CRLF".to_string(),
                    ));
                }
                w.body_end = None;
                w.pos = end;
            } else {
                let pos = w.pos;
                if pos > max {
                    return Err(too_large(max));
                }
                let Some(&kind) = buf.get(pos) else {
                    return Ok(Scan::Incomplete(pos + 1));
                };
                if !is_type_byte(kind) {
                    // Refused now, not once a line end arrives: garbage may have none.
                    return Err(unknown_type(kind, &buf[..buf.len().min(pos + 96)]));
                }
                let from = w.line_from.max(pos + 1);
                let found = find_crlf(buf, from, max);
                #[cfg(test)]
                {
                    let upto = found.map_or(buf.len().min(max.saturating_add(2)), |e| e + 2);
                    self.examined += upto.saturating_sub(from) + usize::from(from == pos + 1);
                }
                let Some(line_end) = found else {
                    if buf.len() > max {
                        return Err(too_large(max));
                    }
                    // Searched to the end: resume at the last byte, a CR whose LF may be next.
                    w.line_from = buf.len().saturating_sub(1).max(pos + 1);
                    return Ok(Scan::Incomplete(buf.len() + 1));
                };
                w.line_from = 0;
                let line = &buf[pos + 1..line_end];
                let next = line_end + 2;
                if next > max {
                    return Err(too_large(max));
                }
                w.pos = next;
                match kind {
                    b'+' | b'-' => {}
                    b':' => {
                        parse_int(line).ok_or_else(|| bad("integer", line))?;
                    }
                    b'_' => {
                        if !line.is_empty() {
                            return Err(bad("null", line));
                        }
                    }
                    b'#' => {
                        if line != b"t" && line != b"f" {
                            return Err(bad("boolean", line));
                        }
                    }
                    b',' | b'(' => {
                        if line.is_empty() {
                            return Err(bad("number", line));
                        }
                    }
                    b'$' | b'!' | b'=' => {
                        let len = parse_int(line).ok_or_else(|| bad("length", line))?;
                        if len == -1 && kind == b'$' && self.resp2_nulls {
                            // A RESP2 null: no body.
                        } else if len < 0 {
                            return Err(bad("length", line));
                        } else {
                            let end = usize::try_from(len)
                                .ok()
                                .and_then(|len| next.checked_add(len)?.checked_add(2))
                                .filter(|&end| end <= max)
                                .ok_or_else(|| too_large(max))?;
                            w.body_end = Some(end);
                            continue;
                        }
                    }
                    b'*' | b'~' | b'>' | b'%' | b'|' => {
                        let n = parse_int(line).ok_or_else(|| bad("aggregate length", line))?;
                        if n == -1 && kind == b'*' && self.resp2_nulls {
                            // A RESP2 null array: no elements.
                        } else if n < 0 {
                            return Err(bad("aggregate length", line));
                        } else {
                            let per = if kind == b'%' || kind == b'|' { 2 } else { 1 };
                            let n = (n as u64).saturating_mul(per);
                            // Each element takes at least three bytes: a frame that claims more
                            // elements than fit in the limit is refused now.
                            if n.saturating_mul(3) > max as u64 {
                                return Err(too_large(max));
                            }
                            // An attribute map is followed by the frame it describes, which
                            // stands in the attribute's place in its parent.
                            let owed = if kind == b'|' { n + 1 } else { n };
                            w.elements = w.elements.saturating_add(owed);
                            if w.elements > self.limits.max_elements as u64 {
                                return Err(Error::protocol(format!(
                                    "frame of more values than the limit of {} (raise \
                                     Limits::max_elements if this is expected)",
                                    self.limits.max_elements
                                )));
                            }
                            if owed > 0 {
                                if w.stack.len() >= self.limits.max_depth {
                                    return Err(Error::protocol(format!(
                                        "frame nested deeper than the limit of {}",
                                        self.limits.max_depth
                                    )));
                                }
                                w.stack.push(owed);
                                continue;
                            }
                        }
                    }
                    other => return Err(unknown_type(other, &buf[..next])),
                }
            }
            // A value finished: pop every aggregate it completes.
            loop {
                match w.stack.last_mut() {
                    None => return Ok(Scan::Complete(w.pos)),
                    Some(owed) => {
                        *owed -= 1;
                        if *owed == 0 {
                            w.stack.pop();
                        } else {
                            break;
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn find_crlf(buf: &[u8], from: usize, max: usize) -> Option<usize> {
    let end = buf.len().min(max.saturating_add(2));
    let hay = buf.get(from..end)?;
    let mut i = 0;
    while let Some(off) = hay[i..].iter().position(|&b| b == b'\r') {
        let at = i + off;
        if hay.get(at + 1) == Some(&b'\n') {
            return Some(from + at);
        }
        i = at + 1;
    }
    None
}

/// Parses a decimal integer as `str::parse::<i64>` does (an optional sign, then digits), at
/// most 20 bytes long, without the UTF-8 check: it runs on every header of every frame.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    if s.len() > 20 {
        return None;
    }
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Summed below zero, where i64 reaches one further (i64::MIN).
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

pub(crate) fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

fn unknown_type(kind: u8, frame: &[u8]) -> Error {
    Error::protocol(format!(
        "unknown RESP3 type byte 0x{kind:02x} in {}",
        preview(frame)
    ))
}

fn too_large(max: usize) -> Error {
    Error::protocol(format!(
        "frame larger than the limit of {max} bytes (raise Limits::max_frame_size if this is expected)"
    ))
}

fn bad(what: &str, line: &[u8]) -> Error {
    Error::protocol(format!(
        "invalid {what} {:?}",
        String::from_utf8_lossy(&line[..line.len().min(64)])
    ))
}

/// The first bytes of a buffer, escaped, for error messages and logs.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(96)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > 96 {
        format!("\"{shown}...\" ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn scanner() -> FrameScanner {
        FrameScanner::new(Limits {
            max_frame_size: 1024,
            max_depth: 4,
            max_elements: 64,
        })
    }

    #[test]
    fn finds_whole_frames() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-12\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"$3\r\nabc\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"%1\r\n+k\r\n*1\r\n:1\r\n",
            b">4\r\n$6\r\nMOVING\r\n:17\r\n:15\r\n$14\r\n10.0.0.2:12000\r\n",
            b"|1\r\n+a\r\n+b\r\n:5\r\n",
            b"=7\r\ntxt:abc\r\n",
        ];
        for case in cases {
            let mut s = scanner();
            assert_eq!(
                s.scan(case).unwrap(),
                Scan::Complete(case.len()),
                "{}",
                preview(case)
            );
            for cut in 0..case.len() {
                assert!(
                    matches!(s.scan(&case[..cut]).unwrap(), Scan::Incomplete(n) if n > cut),
                    "prefix {cut} of {}",
                    preview(case)
                );
            }
            let mut buf = BytesMut::from(&case[..]);
            buf.extend_from_slice(b"+NEXT\r\n");
            assert!(s.next_frame(&mut buf).unwrap().is_some());
            assert_eq!(&buf[..], b"+NEXT\r\n");
        }
    }

    #[test]
    fn builds_scalars_as_redis_protocol_does() {
        let cases: &[&[u8]] = &[
            b":0\r\n",
            b":-9223372036854775808\r\n",
            b"_\r\n",
            b"+OK\r\n",
            b"+\r\n",
            b"$0\r\n\r\n",
            b"$5\r\na\r\nbc\r\n",
        ];
        for case in cases {
            let mut fast = BytesMut::from(&case[..]);
            fast.extend_from_slice(b"+NEXT\r\n");
            let mut s = scanner();
            let got = s.next_frame(&mut fast).unwrap().unwrap();
            let mut slow = BytesMut::from(&case[..]);
            let (want, _, _) = redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut slow)
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{}", preview(case));
            assert_eq!(&fast[..], b"+NEXT\r\n", "{}", preview(case));
        }
    }

    #[test]
    fn refuses_oversized_headers_before_the_body() {
        let mut s = scanner();
        let err = s.scan(b"$4000000000\r\n").unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
        let err = s.scan(b"*100000\r\n").unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
        let long_line = vec![b'+'; 2048];
        assert!(s.scan(&long_line).is_err());
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut s = scanner();
        let deep = b"*1\r\n".repeat(5);
        let err = s.scan(&deep).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let ok = [b"*1\r\n".repeat(4), b":1\r\n".to_vec()].concat();
        assert_eq!(s.scan(&ok).unwrap(), Scan::Complete(ok.len()));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b"hello\r\n"[..],
            b":abc\r\n",
            b"$3\r\nabcde\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b"$-5\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
        ] {
            assert!(scanner().scan(bad).is_err(), "{}", preview(bad));
        }
    }

    #[test]
    #[cfg(feature = "sim")]
    fn accepts_resp2_nulls_only_when_asked() {
        for null in [&b"$-1\r\n"[..], b"*-1\r\n", b"*2\r\n$-1\r\n:1\r\n"] {
            assert!(scanner().scan(null).is_err());
            assert_eq!(
                scanner().with_resp2_nulls().scan(null).unwrap(),
                Scan::Complete(null.len())
            );
        }
    }

    #[test]
    fn remembers_what_a_partial_frame_needs() {
        let mut s = scanner();
        let mut buf = BytesMut::from(&b"$500\r\nabc"[..]);
        assert!(s.next_frame(&mut buf).unwrap().is_none());
        assert_eq!(s.need, 500 + 6 + 2);
        buf.extend_from_slice(&[b'x'; 497]);
        buf.extend_from_slice(b"\r\n");
        assert!(s.next_frame(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
    }

    // ===== frames that arrive in pieces =====

    /// Feeds `bytes` to `s` in pieces cut at `cuts` (offsets), as reads would bring them;
    /// returns every frame that came out and the number of `next_frame` calls.
    fn feed(
        s: &mut FrameScanner,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Result<Vec<BytesFrame>, Error>, usize) {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut calls = 0;
        let mut from = 0;
        for &to in cuts.iter().chain([&bytes.len()]) {
            let to = to.clamp(from, bytes.len());
            buf.extend_from_slice(&bytes[from..to]);
            from = to;
            loop {
                calls += 1;
                match s.next_frame(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => return (Err(e), calls),
                }
            }
        }
        (Ok(frames), calls)
    }

    fn every(step: usize, len: usize) -> Vec<usize> {
        (step..len).step_by(step).collect()
    }

    fn roomy() -> FrameScanner {
        FrameScanner::new(Limits {
            max_frame_size: 1 << 20,
            max_depth: 8,
            max_elements: 1 << 16,
        })
    }

    const AGGREGATES: &[&[u8]] = &[
        b"*3\r\n*2\r\n:1\r\n$5\r\na\r\nbc\r\n*0\r\n%1\r\n+k\r\n~2\r\n#t\r\n,1.5\r\n",
        b"%2\r\n$4\r\nname\r\n$5\r\nredis\r\n+proto\r\n:3\r\n",
        b"~3\r\n(123456789012345678901234567890\r\n_\r\n,-inf\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n=9\r\ntxt:a\r\nbc\r\n",
        b"|1\r\n+ttl\r\n:5\r\n*2\r\n+a\r\n|1\r\n+k\r\n+v\r\n!3\r\nERR\r\n",
        b"*2\r\n$0\r\n\r\n-ERR no\r\n",
        b"$12\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
        b"+a simple string of some length, with \r in it\r\n",
    ];

    #[test]
    fn a_frame_fed_one_byte_at_a_time_decodes_as_when_fed_whole() {
        for case in AGGREGATES {
            let twice = [*case, *case].concat();
            let (whole, _) = feed(&mut roomy(), &twice, &[]);
            let whole = whole.unwrap_or_else(|e| panic!("{}: {e}", preview(case)));
            assert_eq!(whole.len(), 2, "{}", preview(case));
            for step in [1, 2, 3, 7] {
                let (pieces, _) = feed(&mut roomy(), &twice, &every(step, twice.len()));
                assert_eq!(
                    pieces.unwrap(),
                    whole,
                    "{} in {step}-byte reads",
                    preview(case)
                );
            }
        }
    }

    #[test]
    fn a_trickled_frame_is_walked_once() {
        // Nested arrays of integers and bulk strings, a map, and a long simple string whose
        // line end is far away: about 60 KB.
        let mut frame = b"*3\r\n*1000\r\n".to_vec();
        for i in 0..1000 {
            frame.extend_from_slice(format!("*2\r\n:{i}\r\n$3\r\nabc\r\n").as_bytes());
        }
        frame.extend_from_slice(b"%500\r\n");
        for i in 0..500 {
            frame.extend_from_slice(format!("+k{i}\r\n_\r\n").as_bytes());
        }
        frame.push(b'+');
        frame.extend_from_slice(&[b'x'; 20_000]);
        frame.extend_from_slice(b"\r\n");

        let mut s = roomy();
        let (whole, calls) = feed(&mut s, &frame, &[]);
        assert_eq!(whole.unwrap().len(), 1);
        assert_eq!(calls, 2);
        let once = s.examined;
        assert!(once <= frame.len(), "{once} of {}", frame.len());

        for step in [1, 5, 4096] {
            let mut s = roomy();
            let (pieces, calls) = feed(&mut s, &frame, &every(step, frame.len()));
            assert_eq!(pieces.unwrap().len(), 1);
            // Each call looks again at the type byte it stopped at and at one byte of a line
            // still open: nothing else twice, however small the reads.
            assert!(
                s.examined <= once + 2 * calls,
                "{step}-byte reads: {} bytes examined for a frame of {} in {calls} calls",
                s.examined,
                frame.len()
            );
        }
    }

    #[test]
    fn a_partial_walk_is_not_resumed_in_another_buffer() {
        let mut s = scanner();
        assert_eq!(s.scan(b"*2\r\n:1\r\n").unwrap(), Scan::Incomplete(9));
        // Another frame, shorter than the walk had come, then one starting differently.
        assert_eq!(s.scan(b":7\r\n").unwrap(), Scan::Complete(4));
        assert_eq!(s.scan(b"*2\r\n:1\r\n").unwrap(), Scan::Incomplete(9));
        assert_eq!(s.scan(b"+OK\r\n+MORE\r\n").unwrap(), Scan::Complete(5));
    }

    // ===== the element limit =====

    #[test]
    fn an_element_bomb_is_refused_from_its_header() {
        let mut s = FrameScanner::new(Limits::default());
        let max = Limits::default().max_elements;
        // 100 million nulls fit in 512 MiB; decoded they would take 10 GB.
        for bomb in [&b"*99999999\r\n"[..], b"~20000000\r\n", b"%9000000\r\n"] {
            let err = s.scan(bomb).unwrap_err().to_string();
            assert!(
                err.contains("Limits::max_elements") && err.contains(&max.to_string()),
                "{}: {err}",
                preview(bomb)
            );
        }
        // Arriving a byte at a time, it is refused at its header's last byte.
        let bomb = b"*99999999\r\n:1\r\n:1\r\n";
        let mut s = FrameScanner::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut refused = false;
        for (i, b) in bomb.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            match s.next_frame(&mut buf) {
                Ok(None) if i < 10 => {}
                Err(e) if i == 10 => {
                    assert!(e.to_string().contains("max_elements"), "{e}");
                    refused = true;
                    break;
                }
                other => panic!("byte {i}: {other:?}"),
            }
        }
        assert!(refused);
        // The scanner forgot the refused frame: a next one is read from its start.
        let mut next = BytesMut::from(&b"+OK\r\n"[..]);
        assert!(s.next_frame(&mut next).unwrap().is_some());
        // Exactly the limit passes.
        let mut s = FrameScanner::new(Limits {
            max_elements: 4,
            ..Limits::default()
        });
        assert_eq!(
            s.scan(b"*3\r\n:1\r\n:2\r\n:3\r\n").unwrap(),
            Scan::Complete(16)
        );
        assert!(s.scan(b"*4\r\n").is_err());
    }

    #[test]
    fn values_are_counted_at_every_depth() {
        let limits = Limits {
            max_elements: 1000,
            ..Limits::default()
        };
        // 1 + 3 + 400 + 400 = 804 so far; the third `*400` makes 1204.
        let mut bomb = b"*3\r\n".to_vec();
        let mut refused_at = 0;
        for part in 0..3 {
            bomb.extend_from_slice(b"*400\r\n");
            if part == 2 {
                refused_at = bomb.len();
            }
            bomb.extend_from_slice(&b":1\r\n".repeat(400));
        }
        let (got, _) = feed(&mut FrameScanner::new(limits), &bomb, &every(3, bomb.len()));
        let err = got.unwrap_err().to_string();
        assert!(err.contains("limit of 1000"), "{err}");
        // Refused as soon as the header was complete, not once its elements came.
        let mut s = FrameScanner::new(limits);
        assert!(matches!(
            s.scan(&bomb[..refused_at - 1]),
            Ok(Scan::Incomplete(_))
        ));
        assert!(s.scan(&bomb[..refused_at]).is_err());
        // Map entries count twice, and an attribute with its entries.
        let mut s = FrameScanner::new(Limits {
            max_elements: 5,
            ..Limits::default()
        });
        assert!(s.scan(b"%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n").is_ok());
        assert!(s.scan(b"%3\r\n").is_err());
        assert!(s.scan(b"|2\r\n").is_err());
        assert!(s.scan(b"|1\r\n+a\r\n+b\r\n*1\r\n:1\r\n").is_ok());
    }

    #[test]
    fn a_decoded_value_takes_what_the_limit_docs_say() {
        // `Limits::max_elements` and the module docs quote this size.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<BytesFrame>(), 104);
        }
    }

    #[test]
    fn decode_errors_quote_a_bounded_part_of_the_frame() {
        // A map key that cannot be hashed passes the scan and fails in the decoder.
        let mut frame = b"%1\r\n*1\r\n:1\r\n$100000\r\n".to_vec();
        frame.extend_from_slice(&[b'x'; 100_000]);
        frame.extend_from_slice(b"\r\n");
        let (got, _) = feed(&mut roomy(), &frame, &[]);
        let err = got.unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes: {err}", err.len());
    }

    // ===== random frames cut at random points =====

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_parse_as_the_standard_library_parses_them(
            s in prop_oneof!["[-+]?[0-9]{0,21}", "[-+0-9a ]{0,22}", any::<i64>().prop_map(|n| n.to_string())]
        ) {
            let want = if s.len() > 20 { None } else { s.parse::<i64>().ok() };
            prop_assert_eq!(parse_int(s.as_bytes()), want);
        }
    }

    /// A valid scalar frame of any RESP3 type, one a map can take as a key.
    pub(crate) fn scalar() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|data| {
                let mut out = format!("${}\r\n", data.len()).into_bytes();
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                out
            }),
            "[ -~]{0,30}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            "[ -~]{0,30}".prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            Just(b"_\r\n".to_vec()),
            any::<bool>().prop_map(|b| if b {
                b"#t\r\n".to_vec()
            } else {
                b"#f\r\n".to_vec()
            }),
            (-1e9f64..1e9).prop_map(|d| format!(",{d}\r\n").into_bytes()),
            "-?[1-9][0-9]{0,40}".prop_map(|s| format!("({s}\r\n").into_bytes()),
            ("txt|mkd", "[ -~]{0,20}").prop_map(|(f, s)| format!(
                "={}\r\n{f}:{s}\r\n",
                s.len() + 4
            )
            .into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|data| {
                let mut out = format!("!{}\r\n", data.len()).into_bytes();
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                out
            }),
            prop_oneof![
                Just("inf".to_string()),
                Just("-inf".to_string()),
                // Not NaN, unequal to itself, nor -0, equal to 0 but hashed apart: as keys
                // they make frames that compare unequal to themselves.
                any::<f64>()
                    .prop_filter("not NaN", |d| !d.is_nan())
                    .prop_map(|d| format!("{:e}", if d == 0.0 { 0.0 } else { d })),
            ]
            .prop_map(|d| format!(",{d}\r\n").into_bytes()),
        ]
    }

    fn aggregate(head: &str, items: Vec<Vec<u8>>, len: usize) -> Vec<u8> {
        let mut out = format!("{head}{len}\r\n").into_bytes();
        for item in items {
            out.extend_from_slice(&item);
        }
        out
    }

    fn resp3_frame() -> impl Strategy<Value = Vec<u8>> {
        frames_of(scalar().boxed(), scalar().boxed())
    }

    /// Frames nested up to four deep of every aggregate type, with `leaf` frames inside and
    /// `key` frames as map keys, set members and attribute entries.
    pub(crate) fn frames_of(
        leaf: BoxedStrategy<Vec<u8>>,
        key: BoxedStrategy<Vec<u8>>,
    ) -> impl Strategy<Value = Vec<u8>> {
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| {
                    let n = v.len();
                    aggregate("*", v, n)
                }),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| {
                    let n = v.len();
                    aggregate(">", v, n)
                }),
                proptest::collection::vec(key.clone(), 0..6).prop_map(|v| {
                    let n = v.len();
                    aggregate("~", v, n)
                }),
                proptest::collection::vec((key.clone(), inner.clone()), 0..4).prop_map(|kv| {
                    let n = kv.len();
                    aggregate(
                        "%",
                        kv.into_iter().map(|(k, v)| [k, v].concat()).collect(),
                        n,
                    )
                }),
                (
                    proptest::collection::vec((key.clone(), key.clone()), 1..3),
                    inner
                )
                    .prop_map(|(kv, described)| {
                        let n = kv.len();
                        let mut out = aggregate(
                            "|",
                            kv.into_iter().map(|(k, v)| [k, v].concat()).collect(),
                            n,
                        );
                        out.extend_from_slice(&described);
                        out
                    }),
            ]
        })
    }

    proptest! {
        #[test]
        fn frames_cut_anywhere_decode_as_when_whole(
            frames in proptest::collection::vec(resp3_frame(), 1..4),
            mut cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let bytes = frames.concat();
            let (whole, _) = feed(&mut roomy(), &bytes, &[]);
            let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut s = roomy();
            let (pieces, calls) = feed(&mut s, &bytes, &cuts);
            match (whole, pieces) {
                (Ok(whole), Ok(pieces)) => {
                    prop_assert_eq!(whole.len(), frames.len());
                    prop_assert_eq!(pieces, whole);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "whole: {:?}, in pieces: {:?}", a, b),
            }
            let mut once = roomy();
            let _ = feed(&mut once, &bytes, &[]);
            prop_assert!(s.examined <= once.examined + 2 * calls);
        }
    }
}
