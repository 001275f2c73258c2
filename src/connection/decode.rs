//! Building a [`BytesFrame`] from the bytes of one frame that the scanner has walked.
//!
//! The values are the ones redis-protocol's `decode_bytes_mut` builds from the same bytes, and
//! built the way it builds them (see the tests, which compare the two on random frames), but in
//! one pass with an explicit stack instead of recursion, without redis-protocol's intermediate
//! frame of ranges, and into vectors and maps sized from their declared lengths once. Every byte
//! string is a slice of the frame's buffer, frozen once: nothing is copied.
//!
//! The scanner has checked the frame's structure and limits, but the decoder does not rely on
//! it: on bytes the scanner would refuse for their structure it returns an error too, never
//! panics, and never allocates for more elements than the bytes left could hold. Limits are the
//! scanner's alone.
//!
//! Where redis-protocol is strict or lax in ways RESP3 does not ask for, the decoder follows it:
//!
//! - Attributes attach to the frame that follows them, which may not be another attribute nor a
//!   null.
//! - The lengths of `$`, `*`, `%` and `~` are read as signed numbers, so `-0` is a length of 0;
//!   those of `!`, `=`, `>` and `|` as unsigned ones, refusing `-0`.
//! - A verbatim string's format is `txt` or `mkd`, and the byte after it is not looked at.
//! - A double is what `str::parse::<f64>` makes of its line (`inf`, `-inf`, `nan`, `1e400` as
//!   infinity, `.5`, ...).
//! - A simple error must be UTF-8; a simple string, a bulk string and a big number need not be.
//! - Map keys, set members and attribute keys must be of a kind redis-protocol can hash: not
//!   aggregates.
//!
//! It differs where redis-protocol leaves the result to chance. Of a map or attribute key sent
//! twice, the decoder keeps the first value; redis-protocol keeps the first too for number,
//! double, boolean and null keys, but for a string key whichever value its intermediate
//! `HashMap` yields last, at random. And the doubles `0` and `-0`, equal but hashed apart, make
//! one key or two in a map or set as their hashes fall, in either decoder; where one map key,
//! both keep the first value, but redis-protocol the last of the two keys and the decoder the
//! first.
//!
//! It also refuses what the scanner refuses though redis-protocol takes it: a null with
//! something on its line (`_x`), an empty big number, numbers and lengths written in more than
//! 20 bytes. Its error messages are its own.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::bytes_utils::Str;
use redis_protocol::resp3::types::{
    BytesAttributes, BytesFrame, FrameKind, FrameMap, FrameSet, Resp3Frame, VerbatimStringFormat,
};

use super::codec::{find_crlf, is_type_byte, parse_int, preview};
use crate::error::Error;

/// Takes the frame of `len` bytes off the front of `buf` and builds it.
///
/// The frame's bytes are taken off `buf` whether it builds or not.
pub(crate) fn decode(buf: &mut BytesMut, len: usize) -> Result<BytesFrame, Error> {
    if let Some(frame) = lone_scalar(buf, len) {
        return Ok(frame);
    }
    if len > buf.len() {
        let err = refused("a frame cut short", buf.len(), buf);
        buf.clear();
        return Err(err);
    }
    build(&buf.split_to(len).freeze())
}

/// Builds the commonest replies (integers, nulls, simple and bulk strings) straight from `buf`:
/// a number needs none of its bytes, a string takes them without the count of the buffer's
/// owners going up and down. `None` leaves the frame to `build`, and `buf` as it was.
fn lone_scalar(buf: &mut BytesMut, len: usize) -> Option<BytesFrame> {
    let frame = buf.get(..len)?;
    let line_end = len.checked_sub(2)?;
    if frame.get(line_end..)? != b"\r\n" {
        return None;
    }
    let frame = match frame.first()? {
        b':' => BytesFrame::Number {
            data: parse_int(frame.get(1..line_end)?)?,
            attributes: None,
        },
        b'_' if len == 3 => BytesFrame::Null,
        b'+' => {
            if find_crlf(frame, 1, len)? != line_end {
                return None;
            }
            let mut line = buf.split_to(len);
            line.truncate(line_end);
            line.advance(1);
            return Some(BytesFrame::SimpleString {
                data: line.freeze(),
                attributes: None,
            });
        }
        b'$' => {
            let header = find_crlf(frame, 1, len)?;
            let size = usize::try_from(parse_int(frame.get(1..header)?)?).ok()?;
            if header.checked_add(4)?.checked_add(size)? != len {
                return None;
            }
            let mut data = buf.split_to(len);
            data.truncate(line_end);
            data.advance(header + 2);
            return Some(BytesFrame::BlobString {
                data: data.freeze(),
                attributes: None,
            });
        }
        _ => return None,
    };
    buf.advance(len);
    Some(frame)
}

/// Builds the one frame that `frame` holds, from its first byte to its last.
fn build(frame: &Bytes) -> Result<BytesFrame, Error> {
    let mut stack: Vec<Open> = Vec::new();
    let mut pos = 0;
    loop {
        let at = pos;
        let (header, next) = header(frame, pos)?;
        pos = next;
        if let (
            Some(Open::Map {
                attribute: true,
                left: 0,
                ..
            }),
            Header::Open(Aggregate::Attribute, _),
        ) = (stack.last(), &header)
        {
            return Err(refused("an attribute describing an attribute", at, frame));
        }
        let mut value = match header {
            Header::Number(data) => BytesFrame::Number {
                data,
                attributes: None,
            },
            Header::Double(data) => BytesFrame::Double {
                data,
                attributes: None,
            },
            Header::Boolean(data) => BytesFrame::Boolean {
                data,
                attributes: None,
            },
            Header::Null => BytesFrame::Null,
            Header::Text(text, range) => text
                .build(frame.slice(range))
                .ok_or_else(|| refused("a simple error that is not UTF-8", at, frame))?,
            Header::Open(kind, n) => match Open::new(kind, n, frame.len().saturating_sub(pos)) {
                Some(open) => {
                    stack.push(open);
                    continue;
                }
                None => kind.empty(),
            },
        };
        // A value is whole: it goes into the aggregate open above it, which it may complete,
        // and so on outwards.
        loop {
            let Some(top) = stack.last_mut() else {
                if pos != frame.len() {
                    return Err(refused("bytes after the frame", pos, frame));
                }
                return Ok(value);
            };
            match top {
                Open::Map {
                    attribute: true,
                    left: 0,
                    ..
                } => {
                    // The frame an attribute describes: it takes the attribute's place.
                    let Some(Open::Map { entries, .. }) = stack.pop() else {
                        return Err(refused("a lost attribute", at, frame));
                    };
                    value = attach(value, entries)
                        .ok_or_else(|| refused("an attribute describing a null", at, frame))?;
                    continue;
                }
                Open::Array { items, left, .. } => {
                    items.push(value);
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                }
                Open::Set { items, left } => {
                    if !value.kind().can_hash() {
                        return Err(unhashable("set member", &value, at, frame));
                    }
                    // As redis-protocol collects them: of two equal members, the first stays.
                    items.insert(value);
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                }
                Open::Map {
                    entries,
                    key,
                    left,
                    attribute,
                } => match key.take() {
                    None => {
                        if !value.kind().can_hash() {
                            let what = if *attribute {
                                "attribute key"
                            } else {
                                "map key"
                            };
                            return Err(unhashable(what, &value, at, frame));
                        }
                        *key = Some(value);
                        break;
                    }
                    Some(k) => {
                        // redis-protocol inserts the entries last to first, so the value kept
                        // for a key sent twice is the first.
                        entries.entry(k).or_insert(value);
                        *left -= 1;
                        if *left > 0 || *attribute {
                            break;
                        }
                    }
                },
            }
            let Some(done) = stack.pop() else {
                return Err(refused("a lost aggregate", at, frame));
            };
            value = done.finish();
        }
    }
}

/// What one header (a type byte and its line, and a blob's body) says.
enum Header {
    // Values read from the line alone.
    Number(i64),
    Double(f64),
    Boolean(bool),
    Null,
    /// A string value: these bytes of the frame.
    Text(Text, Range<usize>),
    /// An aggregate of this many elements (entries, for a map or an attribute) follows.
    Open(Aggregate, usize),
}

/// The kinds of string value.
#[derive(Debug, Clone)]
enum Text {
    Simple,
    Error,
    Blob,
    BlobError,
    BigNumber,
    Verbatim(VerbatimStringFormat),
}

impl Text {
    /// `None` for a simple error that is not UTF-8 (which `header` refuses first).
    fn build(&self, data: Bytes) -> Option<BytesFrame> {
        let attributes = None;
        Some(match self {
            Text::Simple => BytesFrame::SimpleString { data, attributes },
            Text::Error => BytesFrame::SimpleError {
                data: Str::from_inner(data).ok()?,
                attributes,
            },
            Text::Blob => BytesFrame::BlobString { data, attributes },
            Text::BlobError => BytesFrame::BlobError { data, attributes },
            Text::BigNumber => BytesFrame::BigNumber { data, attributes },
            Text::Verbatim(format) => BytesFrame::VerbatimString {
                data,
                format: format.clone(),
                attributes,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Array,
    Push,
    Set,
    Map,
    Attribute,
}

impl Aggregate {
    fn empty(self) -> BytesFrame {
        let attributes = None;
        match self {
            Aggregate::Array => BytesFrame::Array {
                data: Vec::new(),
                attributes,
            },
            Aggregate::Push => BytesFrame::Push {
                data: Vec::new(),
                attributes,
            },
            Aggregate::Set => BytesFrame::Set {
                data: FrameSet::default(),
                attributes,
            },
            // Never an attribute, which stays open for the frame it describes.
            Aggregate::Map | Aggregate::Attribute => BytesFrame::Map {
                data: FrameMap::default(),
                attributes,
            },
        }
    }
}

/// An aggregate being filled.
enum Open {
    /// An array, or a push.
    Array {
        items: Vec<BytesFrame>,
        left: usize,
        push: bool,
    },
    Set {
        items: FrameSet<BytesFrame>,
        left: usize,
    },
    /// A map, or an attribute, which once its entries are in waits for the frame it describes.
    Map {
        entries: FrameMap<BytesFrame, BytesFrame>,
        // The key whose value comes next.
        key: Option<BytesFrame>,
        // Entries still owed.
        left: usize,
        attribute: bool,
    },
}

impl Open {
    /// Opens an aggregate of `n` elements, sized for at most what `room` bytes can hold; `None`
    /// for an empty one, which is whole already.
    fn new(kind: Aggregate, n: usize, room: usize) -> Option<Open> {
        // An element takes three bytes at least (`_\r\n`), an entry six.
        let elements = n.min(room / 3);
        let entries = n.min(room / 6);
        let map = |attribute| Open::Map {
            entries: FrameMap::with_capacity(entries),
            key: None,
            left: n,
            attribute,
        };
        Some(match kind {
            Aggregate::Attribute => map(true),
            _ if n == 0 => return None,
            Aggregate::Map => map(false),
            Aggregate::Array | Aggregate::Push => Open::Array {
                items: Vec::with_capacity(elements),
                left: n,
                push: kind == Aggregate::Push,
            },
            Aggregate::Set => Open::Set {
                items: FrameSet::with_capacity(elements),
                left: n,
            },
        })
    }

    fn finish(self) -> BytesFrame {
        let attributes = None;
        match self {
            Open::Array {
                items, push: false, ..
            } => BytesFrame::Array {
                data: items,
                attributes,
            },
            Open::Array {
                items, push: true, ..
            } => BytesFrame::Push {
                data: items,
                attributes,
            },
            Open::Set { items, .. } => BytesFrame::Set {
                data: items,
                attributes,
            },
            Open::Map { entries, .. } => BytesFrame::Map {
                data: entries,
                attributes,
            },
        }
    }
}

/// `frame` with `attributes`, as redis-protocol attaches them; `None` for a null, which cannot
/// have any.
fn attach(mut frame: BytesFrame, attributes: BytesAttributes) -> Option<BytesFrame> {
    frame.add_attributes(attributes).ok()?;
    Some(frame)
}

/// Reads the header at `pos` of `frame`: what it says, and where the next one starts.
fn header(frame: &[u8], pos: usize) -> Result<(Header, usize), Error> {
    let kind = *frame
        .get(pos)
        .ok_or_else(|| refused("a frame cut short", pos, frame))?;
    if !is_type_byte(kind) {
        // Refused before looking for a line end, which garbage may not have.
        return Err(unknown_type(kind, pos, frame));
    }
    let line_end = find_crlf(frame, pos + 1, usize::MAX)
        .ok_or_else(|| refused("a line without CRLF", pos, frame))?;
    let line = frame
        .get(pos + 1..line_end)
        .ok_or_else(|| refused("a frame cut short", pos, frame))?;
    let next = line_end + 2;
    let invalid = |what: &str| refused(format_args!("{what} {}", quote(line)), pos, frame);
    let header = match kind {
        b'+' => Header::Text(Text::Simple, pos + 1..line_end),
        b'-' if std::str::from_utf8(line).is_ok() => Header::Text(Text::Error, pos + 1..line_end),
        b'(' if !line.is_empty() => Header::Text(Text::BigNumber, pos + 1..line_end),
        b':' => Header::Number(parse_int(line).ok_or_else(|| invalid("an invalid integer"))?),
        b',' => Header::Double(
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("an invalid double"))?,
        ),
        b'#' => Header::Boolean(match line {
            b"t" => true,
            b"f" => false,
            _ => return Err(invalid("an invalid boolean")),
        }),
        b'_' if line.is_empty() => Header::Null,
        b'$' | b'!' | b'=' => {
            let len = length(kind, line).ok_or_else(|| invalid("an invalid length"))?;
            let end = next
                .checked_add(len)
                .filter(|&end| end <= frame.len().saturating_sub(2))
                .ok_or_else(|| refused("a frame cut short", pos, frame))?;
            if frame.get(end..end + 2) != Some(b"\r\n") {
                return Err(refused("a blob not followed by CRLF", pos, frame));
            }
            let text = match kind {
                b'$' => Text::Blob,
                b'!' => Text::BlobError,
                _ => {
                    let format = match frame.get(next..next + 3) {
                        _ if len < 4 => {
                            return Err(invalid(
                                "a verbatim string shorter than its format, length",
                            ))
                        }
                        Some(b"txt") => VerbatimStringFormat::Text,
                        Some(b"mkd") => VerbatimStringFormat::Markdown,
                        format => {
                            return Err(refused(
                                format_args!(
                                    "a verbatim string of unknown format {}",
                                    quote(format.unwrap_or_default())
                                ),
                                pos,
                                frame,
                            ))
                        }
                    };
                    return Ok((Header::Text(Text::Verbatim(format), next + 4..end), end + 2));
                }
            };
            return Ok((Header::Text(text, next..end), end + 2));
        }
        b'*' | b'>' | b'~' | b'%' | b'|' => {
            let n = length(kind, line).ok_or_else(|| invalid("an invalid aggregate length"))?;
            let aggregate = match kind {
                b'*' => Aggregate::Array,
                b'>' => Aggregate::Push,
                b'~' => Aggregate::Set,
                b'%' => Aggregate::Map,
                _ => Aggregate::Attribute,
            };
            Header::Open(aggregate, n)
        }
        b'-' => return Err(invalid("a simple error that is not UTF-8:")),
        b'(' => return Err(invalid("an empty big number")),
        b'_' => return Err(invalid("an invalid null")),
        _ => return Err(unknown_type(kind, pos, frame)),
    };
    Ok((header, next))
}

/// A length of a blob or an aggregate, as redis-protocol reads it: those of `$ * % ~` are
/// signed, those of `! = > |` unsigned (so only the first take `-0`).
fn length(kind: u8, line: &[u8]) -> Option<usize> {
    if line.first() == Some(&b'-') && matches!(kind, b'!' | b'=' | b'>' | b'|') {
        return None;
    }
    usize::try_from(parse_int(line)?).ok()
}

fn unknown_type(kind: u8, at: usize, frame: &[u8]) -> Error {
    refused(
        format_args!("an unknown RESP3 type byte 0x{kind:02x}"),
        at,
        frame,
    )
}

fn unhashable(what: &str, value: &BytesFrame, at: usize, frame: &[u8]) -> Error {
    let kind: FrameKind = value.kind();
    refused(
        format_args!("a {what} of kind {kind:?}, which cannot be hashed,"),
        at,
        frame,
    )
}

fn refused(what: impl std::fmt::Display, at: usize, frame: &[u8]) -> Error {
    Error::protocol(format!("{what} at byte {at} of {}", preview(frame)))
}

fn quote(line: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&line[..line.len().min(64)]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::codec::tests::{frames_of, scalar};
    use super::super::codec::{FrameScanner, Limits, Scan};
    use super::*;
    use redis_protocol::resp3::types::RangeFrame;

    /// What redis-protocol's `decode_bytes_mut` makes of exactly these bytes: `None` when it
    /// refuses them or reads a frame of another length.
    fn theirs(bytes: &[u8]) -> Option<BytesFrame> {
        let mut buf = BytesMut::from(bytes);
        match redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf) {
            Ok(Some((frame, used, _))) if used == bytes.len() => Some(frame),
            _ => None,
        }
    }

    /// Ours, both ways in: the general walk over frozen bytes, and `decode`, which builds a
    /// lone scalar straight from the read buffer.
    fn ours(bytes: &[u8]) -> Result<BytesFrame, Error> {
        let built = build(&Bytes::copy_from_slice(bytes));
        let mut buf = BytesMut::from(bytes);
        buf.extend_from_slice(b"+NEXT\r\n");
        let decoded = decode(&mut buf, bytes.len());
        assert_eq!(&buf[..], b"+NEXT\r\n", "{}", preview(bytes));
        match (&built, &decoded) {
            (Ok(a), Ok(b)) => assert_eq!(canon(a), canon(b), "{}", preview(bytes)),
            (Err(_), Err(_)) => {}
            _ => panic!("build: {built:?}, decode: {decoded:?}"),
        }
        built
    }

    /// Whether the scanner takes `bytes` as one whole frame, with limits no test frame reaches.
    fn scanned(bytes: &[u8]) -> bool {
        let mut s = FrameScanner::new(Limits {
            max_frame_size: 1 << 24,
            max_depth: 1024,
            max_elements: 1 << 24,
        });
        matches!(s.scan(bytes), Ok(Scan::Complete(n)) if n == bytes.len())
    }

    /// Checks ours against redis-protocol on `bytes`: where the scanner passes them, both build
    /// the same frame or both refuse it; where it does not, ours refuses them. Returns ours.
    ///
    /// Of a map key sent twice, redis-protocol keeps the value it meets last in a `HashMap` of
    /// its first parse, which holds both: a random one. So the frame ours is held to is that
    /// first parse (`decode_range`) with the first value of every key; and to what
    /// `decode_bytes_mut` builds where no key came twice.
    fn check(bytes: &[u8]) -> Result<BytesFrame, Error> {
        let got = ours(bytes);
        if !scanned(bytes) {
            assert!(
                got.is_err(),
                "the scanner refuses {}: {got:?}",
                preview(bytes)
            );
            return got;
        }
        match (&got, theirs(bytes)) {
            (Ok(a), Some(b)) => {
                let (range, _) = redis_protocol::resp3::decode::complete::decode_range(bytes)
                    .ok()
                    .flatten()
                    .expect("decode_bytes_mut took it");
                let mut twice = false;
                let want = canon_range(bytes, &range, &mut twice);
                assert_eq!(canon(a), want, "{}", preview(bytes));
                if !twice {
                    assert_eq!(canon(a), canon(&b), "{}", preview(bytes));
                }
            }
            (Err(_), None) => {}
            // redis-protocol refuses a simple error that is not UTF-8 when it builds one, as
            // ours does; it takes such a frame only where that error is the value of a map key
            // sent twice (a boolean or number key, which its first parse keeps once), which it
            // drops unbuilt and so never checks. Ours refuses it: both refuse what they read.
            (Err(e), Some(_)) if e.to_string().contains("a simple error that is not UTF-8") => {}
            (a, b) => panic!("{}: ours {a:?}, redis-protocol {b:?}", preview(bytes)),
        }
        got
    }

    /// `canon` of what redis-protocol's first parse says, keeping the first value of a map key
    /// sent twice (and setting `twice`).
    fn canon_range(buf: &[u8], frame: &RangeFrame, twice: &mut bool) -> String {
        let bytes = |r: &(usize, usize)| Bytes::copy_from_slice(&buf[r.0..r.1]);
        let entries = |map: &FrameMap<RangeFrame, RangeFrame>, twice: &mut bool| {
            // Grouped by what they hold; a NaN key is never equal to another.
            let mut groups: Vec<(String, usize, String)> = Vec::new();
            for (k, v) in map {
                let key = canon_range(buf, k, twice);
                let at = match k {
                    RangeFrame::BlobString { data, .. }
                    | RangeFrame::BlobError { data, .. }
                    | RangeFrame::SimpleString { data, .. }
                    | RangeFrame::SimpleError { data, .. }
                    | RangeFrame::BigNumber { data, .. }
                    | RangeFrame::VerbatimString { data, .. } => data.0,
                    _ => 0,
                };
                let nan = matches!(k, RangeFrame::Double { data, .. } if data.is_nan());
                let value = canon_range(buf, v, twice);
                match groups.iter_mut().find(|(g, _, _)| !nan && *g == key) {
                    Some(group) => {
                        *twice = true;
                        if at < group.1 {
                            *group = (key, at, value);
                        }
                    }
                    None => groups.push((key, at, value)),
                }
            }
            bag(groups.into_iter().map(|(k, _, v)| format!("{k} => {v}")))
        };
        let (value, attributes) = match frame {
            RangeFrame::BlobString { data, attributes } => {
                (format!("${:?}", bytes(data)), attributes)
            }
            RangeFrame::BlobError { data, attributes } => {
                (format!("!{:?}", bytes(data)), attributes)
            }
            RangeFrame::SimpleString { data, attributes } => {
                (format!("+{:?}", bytes(data)), attributes)
            }
            RangeFrame::SimpleError { data, attributes } => (
                format!("-{:?}", std::str::from_utf8(&buf[data.0..data.1]).unwrap()),
                attributes,
            ),
            RangeFrame::BigNumber { data, attributes } => {
                (format!("({:?}", bytes(data)), attributes)
            }
            RangeFrame::VerbatimString {
                data,
                format,
                attributes,
            } => (format!("={format:?}{:?}", bytes(data)), attributes),
            RangeFrame::Number { data, attributes } => (format!(":{data}"), attributes),
            RangeFrame::Double { data, attributes } => {
                (format!(",{:016x}", data.to_bits()), attributes)
            }
            RangeFrame::Boolean { data, attributes } => (format!("#{data}"), attributes),
            RangeFrame::Null => ("_".to_string(), &None),
            RangeFrame::Array { data, attributes } => (
                format!(
                    "*[{}]",
                    data.iter()
                        .map(|f| canon_range(buf, f, twice))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                attributes,
            ),
            RangeFrame::Push { data, attributes } => (
                format!(
                    ">[{}]",
                    data.iter()
                        .map(|f| canon_range(buf, f, twice))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                attributes,
            ),
            RangeFrame::Set { data, attributes } => {
                let mut members: Vec<(String, bool)> = Vec::new();
                for f in data {
                    let member = canon_range(buf, f, twice);
                    let nan = matches!(f, RangeFrame::Double { data, .. } if data.is_nan());
                    if nan || !members.iter().any(|(m, _)| *m == member) {
                        members.push((member, nan));
                    }
                }
                (
                    format!("~{}", bag(members.into_iter().map(|(m, _)| m))),
                    attributes,
                )
            }
            RangeFrame::Map { data, attributes } => {
                (format!("%{}", entries(data, twice)), attributes)
            }
            other => (format!("{other:?}"), &None),
        };
        match attributes {
            Some(a) => format!("{value} |{}", entries(a, twice)),
            None => value,
        }
    }

    fn bag(items: impl Iterator<Item = String>) -> String {
        let mut items: Vec<String> = items.collect();
        items.sort();
        format!("{{{}}}", items.join(", "))
    }

    /// A frame written out so that two frames compare equal exactly when they hold the same
    /// values: doubles by their bits (`NaN` equals itself, `-0` differs from `0`), maps, sets
    /// and attributes in sorted order.
    fn canon(frame: &BytesFrame) -> String {
        fn entries(map: &FrameMap<BytesFrame, BytesFrame>) -> String {
            bag(map
                .iter()
                .map(|(k, v)| format!("{} => {}", canon(k), canon(v))))
        }
        let attributes = match frame.attributes() {
            Some(a) => format!(" |{}", entries(a)),
            None => String::new(),
        };
        let value = match frame {
            BytesFrame::BlobString { data, .. } => format!("${data:?}"),
            BytesFrame::BlobError { data, .. } => format!("!{data:?}"),
            BytesFrame::SimpleString { data, .. } => format!("+{data:?}"),
            BytesFrame::SimpleError { data, .. } => format!("-{:?}", &data[..]),
            BytesFrame::BigNumber { data, .. } => format!("({data:?}"),
            BytesFrame::VerbatimString { data, format, .. } => format!("={format:?}{data:?}"),
            BytesFrame::Number { data, .. } => format!(":{data}"),
            BytesFrame::Double { data, .. } => format!(",{:016x}", data.to_bits()),
            BytesFrame::Boolean { data, .. } => format!("#{data}"),
            BytesFrame::Null => "_".to_string(),
            BytesFrame::Array { data, .. } => {
                format!(
                    "*[{}]",
                    data.iter().map(canon).collect::<Vec<_>>().join(", ")
                )
            }
            BytesFrame::Push { data, .. } => {
                format!(
                    ">[{}]",
                    data.iter().map(canon).collect::<Vec<_>>().join(", ")
                )
            }
            BytesFrame::Set { data, .. } => format!("~{}", bag(data.iter().map(canon))),
            BytesFrame::Map { data, .. } => format!("%{}", entries(data)),
            other => format!("{other:?}"),
        };
        value + &attributes
    }

    fn blob(kind: char, len: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("{kind}{len}\r\n").into_bytes();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Scalars redis-protocol reads in its own way, some of which it refuses, and frames it
    /// refuses inside others: an attribute on a null or on an attribute, aggregates where a
    /// key must hash.
    fn odd_scalar() -> impl Strategy<Value = Vec<u8>> {
        let doubles = prop::sample::select(vec![
            "inf",
            "-inf",
            "+inf",
            "infinity",
            "-Infinity",
            "INF",
            "nan",
            "NaN",
            "-nan",
            "+nan",
            "-0",
            "-0.0",
            "1e308",
            "1e309",
            "-1e309",
            "1e-400",
            "4.9e-324",
            "2.5E+10",
            "1e+2",
            ".5",
            "5.",
            "-.5e-3",
            "1_0",
            "0x10",
            "1e",
            "e5",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "nan(1)",
            "inff",
            "1.5.2",
            "\u{0661}",
            "",
        ]);
        prop_oneof![
            doubles.prop_map(|d| format!(",{d}\r\n").into_bytes()),
            any::<f64>().prop_map(|d| format!(",{d:e}\r\n").into_bytes()),
            any::<f64>().prop_map(|d| format!(",{d}\r\n").into_bytes()),
            // Verbatim strings of every format and separator, and too short for a format.
            (
                prop::sample::select(vec!["txt", "mkd", "TXT", "bin", "tx:", "\r\n:"]),
                prop::sample::select(vec![":", "x", "\r"]),
                "[ -~]{0,8}",
            )
                .prop_map(|(f, sep, s)| {
                    let body = format!("{f}{sep}{s}");
                    blob('=', &body.len().to_string(), body.as_bytes())
                }),
            "[a-z]{0,3}".prop_map(|s| blob('=', &s.len().to_string(), s.as_bytes())),
            // Lengths written oddly.
            (
                prop::sample::select(vec!['$', '!', '=']),
                prop::sample::select(vec!["-0", "+", "00"]),
                "[a-z]{0,3}"
            )
                .prop_map(|(kind, sign, s)| {
                    let body = format!("txt:{s}");
                    let len = if sign == "-0" && s.is_empty() {
                        "-0".to_string()
                    } else {
                        format!("{}{}", sign.trim_end_matches('0'), body.len())
                    };
                    let body = if len == "-0" { "" } else { &body };
                    blob(kind, &len, body.as_bytes())
                }),
            prop::sample::select(vec![
                &b"*-0\r\n"[..],
                b"%-0\r\n",
                b"~-0\r\n",
                b">-0\r\n",
                b"|-0\r\n:1\r\n",
                b"*+1\r\n:1\r\n",
                b">+1\r\n:1\r\n",
                b"|+0\r\n:1\r\n",
                b"*01\r\n:1\r\n",
                b":+5\r\n",
                b":-0\r\n",
                b":007\r\n",
                b"|1\r\n+a\r\n+b\r\n_\r\n",
                b"|0\r\n_\r\n",
                b"|0\r\n:1\r\n",
                b"|1\r\n+a\r\n+b\r\n|0\r\n:1\r\n",
                b"*1\r\n:1\r\n",
                b"*0\r\n",
                b"%0\r\n",
                b"~0\r\n",
                b">0\r\n",
                b"|1\r\n+a\r\n+b\r\n+k\r\n",
                b"+k\r\n",
                b"$1\r\nk\r\n",
                b",nan\r\n",
                b"_\r\n",
            ])
            .prop_map(|b| b.to_vec()),
            // Simple errors and strings, big numbers: any bytes but CR and LF, UTF-8 or not.
            (
                prop::sample::select(vec!['-', '+', '(']),
                proptest::collection::vec(
                    any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'),
                    0..8
                ),
            )
                .prop_map(|(kind, data)| {
                    let mut out = vec![kind as u8];
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                    out
                }),
        ]
    }

    fn any_leaf() -> BoxedStrategy<Vec<u8>> {
        prop_oneof![scalar(), odd_scalar()].boxed()
    }

    /// Keys of every kind, but for `-0`: equal to `0` yet hashed apart, it makes a map or a set
    /// of both hold one key or two as the hashes happen to fall, in redis-protocol and ours.
    fn any_key() -> BoxedStrategy<Vec<u8>> {
        any_leaf()
            .prop_filter("not -0", |k| {
                let double = k
                    .strip_prefix(b",")
                    .and_then(|d| std::str::from_utf8(d).ok());
                let double = double.and_then(|d| d.trim_end().parse::<f64>().ok());
                !double.is_some_and(|d| d == 0.0 && d.is_sign_negative())
            })
            .boxed()
    }

    /// A case the damaged-frames property found: an attribute whose boolean key comes twice,
    /// the second time with a simple error that is not UTF-8. Ours refuses the frame;
    /// redis-protocol keeps the key once and never builds (or checks) that error.
    #[test]
    fn a_non_utf8_error_under_a_repeated_key_is_refused() {
        let bytes = b"|2\r\n#t\r\n,0.07429384316613274\r\n#t\r\n-ERR &I.\"u%~/?X\"0pql=Lh`<6L?DU\x90\r\n,3.8739350378575216e-51\r\n";
        assert!(check(bytes).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_frames_build_as_redis_protocol_builds_them(
            frame in frames_of(scalar().boxed(), scalar().boxed()),
        ) {
            // Frames of every type that RESP3 allows, which redis-protocol takes but for an
            // attribute on a null.
            let _ = check(&frame);
        }

        #[test]
        fn odd_frames_are_taken_or_refused_as_redis_protocol_does(
            frame in frames_of(any_leaf(), any_key()),
        ) {
            let _ = check(&frame);
        }

        #[test]
        fn damaged_frames_are_refused_without_panicking(
            frame in frames_of(any_leaf(), any_key()),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0..3u8,
        ) {
            let mut bytes = frame.clone();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
            let _ = check(&bytes);
        }

        #[test]
        fn any_bytes_are_refused_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = check(&bytes);
        }
    }

    // ===== edge cases, each against redis-protocol =====

    #[test]
    fn empty_values_build_as_redis_protocol_builds_them() {
        for case in [
            &b"*0\r\n"[..],
            b"%0\r\n",
            b"~0\r\n",
            b">0\r\n",
            b"$0\r\n\r\n",
            b"!0\r\n\r\n",
            b"+\r\n",
            b"-\r\n",
            b"=4\r\ntxt:\r\n",
            b"*3\r\n*0\r\n%0\r\n~0\r\n",
        ] {
            assert!(check(case).is_ok(), "{}", preview(case));
        }
    }

    #[test]
    fn doubles_parse_as_the_standard_library_parses_them() {
        let bits = |case: &[u8]| match check(case) {
            Ok(BytesFrame::Double { data, .. }) => Some(data.to_bits()),
            Ok(other) => panic!("{other:?}"),
            Err(_) => None,
        };
        assert_eq!(bits(b",-0\r\n"), Some((-0.0f64).to_bits()));
        assert_eq!(bits(b",-0.0\r\n"), Some((-0.0f64).to_bits()));
        assert_eq!(bits(b",0\r\n"), Some(0));
        assert_eq!(bits(b",inf\r\n"), Some(f64::INFINITY.to_bits()));
        assert_eq!(bits(b",-inf\r\n"), Some(f64::NEG_INFINITY.to_bits()));
        assert_eq!(bits(b",1e400\r\n"), Some(f64::INFINITY.to_bits()));
        assert_eq!(bits(b",-1e400\r\n"), Some(f64::NEG_INFINITY.to_bits()));
        assert_eq!(bits(b",1e-400\r\n"), Some(0));
        assert_eq!(bits(b",2.5E+3\r\n"), Some(2500f64.to_bits()));
        assert_eq!(bits(b",.5\r\n"), Some(0.5f64.to_bits()));
        for nan in [&b",nan\r\n"[..], b",NaN\r\n", b",-nan\r\n"] {
            assert!(
                bits(nan).is_some_and(|b| f64::from_bits(b).is_nan()),
                "{}",
                preview(nan)
            );
        }
        for refused in [
            &b",1_0\r\n"[..],
            b",0x10\r\n",
            b",1e\r\n",
            b", 1\r\n",
            b",\r\n",
            b",\xff\r\n",
        ] {
            assert_eq!(bits(refused), None, "{}", preview(refused));
        }
    }

    #[test]
    fn verbatim_strings_take_the_formats_redis_protocol_takes() {
        let format = |case: &[u8]| match check(case) {
            Ok(BytesFrame::VerbatimString { data, format, .. }) => Some((format, data)),
            Ok(other) => panic!("{other:?}"),
            Err(_) => None,
        };
        assert_eq!(
            format(b"=7\r\ntxt:abc\r\n"),
            Some((VerbatimStringFormat::Text, Bytes::from("abc")))
        );
        assert_eq!(
            format(b"=7\r\nmkd:abc\r\n"),
            Some((VerbatimStringFormat::Markdown, Bytes::from("abc")))
        );
        // The byte after the format is not looked at.
        assert_eq!(
            format(b"=7\r\ntxt-abc\r\n"),
            Some((VerbatimStringFormat::Text, Bytes::from("abc")))
        );
        for refused in [
            &b"=7\r\nbin:abc\r\n"[..],
            b"=7\r\nTXT:abc\r\n",
            b"=3\r\ntxt\r\n",
            b"=0\r\n\r\n",
        ] {
            assert_eq!(format(refused), None, "{}", preview(refused));
        }
    }

    #[test]
    fn lengths_take_a_sign_where_redis_protocol_reads_them_signed() {
        for taken in [
            &b"$-0\r\n\r\n"[..],
            b"*-0\r\n",
            b"%-0\r\n",
            b"~-0\r\n",
            b"$+3\r\nabc\r\n",
            b"!+3\r\nabc\r\n",
            b">+1\r\n:1\r\n",
            b"|+0\r\n:1\r\n",
        ] {
            assert!(check(taken).is_ok(), "{}", preview(taken));
        }
        for refused in [
            &b"!-0\r\n\r\n"[..],
            b"=-0\r\n\r\n",
            b">-0\r\n",
            b"|-0\r\n:1\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
        ] {
            assert!(check(refused).is_err(), "{}", preview(refused));
        }
    }

    #[test]
    fn attributes_attach_to_the_frame_that_follows() {
        let frame = check(b"*2\r\n|1\r\n+ttl\r\n:5\r\n*1\r\n:1\r\n:2\r\n").unwrap();
        let BytesFrame::Array {
            data,
            attributes: None,
        } = &frame
        else {
            panic!("{frame:?}");
        };
        let Some(attributes) = data[0].attributes() else {
            panic!("{frame:?}");
        };
        assert_eq!(attributes.len(), 1);
        assert!(matches!(&data[0], BytesFrame::Array { data, .. } if data.len() == 1));
        assert!(matches!(
            data[1],
            BytesFrame::Number {
                data: 2,
                attributes: None
            }
        ));
        // An empty attribute still attaches.
        let frame = check(b"|0\r\n:1\r\n").unwrap();
        assert!(frame.attributes().is_some_and(|a| a.is_empty()));
        // As keys, on keys, holding aggregates.
        for taken in [
            &b"%1\r\n|1\r\n+a\r\n+b\r\n+k\r\n:1\r\n"[..],
            b"|1\r\n|1\r\n+a\r\n+b\r\n+k\r\n+v\r\n:1\r\n",
            b"|1\r\n+k\r\n*1\r\n:1\r\n:1\r\n",
            b"~1\r\n|1\r\n+a\r\n+b\r\n+m\r\n",
        ] {
            assert!(check(taken).is_ok(), "{}", preview(taken));
        }
        for refused in [
            &b"|1\r\n+a\r\n+b\r\n_\r\n"[..],
            b"|0\r\n_\r\n",
            b"*1\r\n|0\r\n_\r\n",
            b"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n:1\r\n",
            b"|1\r\n*0\r\n+v\r\n:1\r\n",
            b"|1\r\n+a\r\n+b\r\n",
        ] {
            assert!(check(refused).is_err(), "{}", preview(refused));
        }
    }

    #[test]
    fn keys_must_hash_and_the_first_value_of_a_key_stays() {
        for refused in [
            &b"%1\r\n*1\r\n:1\r\n:2\r\n"[..],
            b"%1\r\n%0\r\n:2\r\n",
            b"~1\r\n~0\r\n",
            b"~2\r\n:1\r\n>0\r\n",
        ] {
            assert!(check(refused).is_err(), "{}", preview(refused));
        }
        let frame = check(b"%3\r\n+k\r\n:1\r\n+j\r\n:2\r\n+k\r\n:3\r\n").unwrap();
        let BytesFrame::Map { data, .. } = &frame else {
            panic!("{frame:?}");
        };
        let key = BytesFrame::SimpleString {
            data: Bytes::from("k"),
            attributes: None,
        };
        assert_eq!(data.len(), 2);
        assert!(matches!(
            data.get(&key),
            Some(BytesFrame::Number { data: 1, .. })
        ));
        let frame = check(b"~3\r\n+a\r\n+a\r\n$1\r\na\r\n").unwrap();
        assert!(matches!(&frame, BytesFrame::Set { data, .. } if data.len() == 2));
        // Every NaN is a key of its own.
        let frame = check(b"%2\r\n,nan\r\n:1\r\n,nan\r\n:2\r\n").unwrap();
        assert!(matches!(&frame, BytesFrame::Map { data, .. } if data.len() == 2));
    }

    #[test]
    fn what_the_scanner_refuses_is_refused_though_redis_protocol_takes_it() {
        for case in [
            &b"_x\r\n"[..],
            b"(\r\n",
            b":000000000000000000001\r\n",
            b"$000000000000000000001\r\na\r\n",
        ] {
            assert!(theirs(case).is_some(), "{}", preview(case));
            assert!(check(case).is_err(), "{}", preview(case));
        }
    }

    #[test]
    fn strings_keep_their_bytes_and_errors_must_be_utf8() {
        assert!(check(b"+\xff\xfe\r\n").is_ok());
        assert!(check(b"(\xff\r\n").is_ok());
        assert!(check(b"$2\r\n\xff\xfe\r\n").is_ok());
        assert!(check(b"!2\r\n\xff\xfe\r\n").is_ok());
        assert!(check(b"-\xff\r\n").is_err());
        assert!(check(b"*1\r\n-\xff\r\n").is_err());
    }

    #[test]
    fn strings_are_slices_of_the_frame() {
        let frame = Bytes::from_static(b"*2\r\n$3\r\nabc\r\n+OK\r\n");
        let BytesFrame::Array { data, .. } = build(&frame).unwrap() else {
            panic!();
        };
        for (value, at) in data.iter().zip([8, 14]) {
            let text = crate::frame::text(value).unwrap();
            assert_eq!(text.as_ptr(), frame[at..].as_ptr());
        }
    }

    // ===== hostile bytes =====

    #[test]
    fn a_declared_length_allocates_no_more_than_the_bytes_hold() {
        // Each would ask for more memory than there is, if the declared lengths were trusted.
        for bomb in [
            &b"*1000000000000\r\n:1\r\n"[..],
            b"%1000000000000\r\n:1\r\n:1\r\n",
            b"~1000000000000\r\n:1\r\n",
            b"|1000000000000\r\n:1\r\n",
            b"$1000000000000\r\nab\r\n",
        ] {
            let err = build(&Bytes::from_static(bomb)).unwrap_err().to_string();
            assert!(err.contains("cut short"), "{err}");
        }
    }

    #[test]
    fn nesting_is_walked_without_recursion() {
        // Deeper than the scanner allows, in a thread with a small stack.
        let depth = 5000;
        let frame = Bytes::from([b"*1\r\n".repeat(depth), b":1\r\n".to_vec()].concat());
        let levels = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut frame = build(&frame).unwrap();
                let mut levels = 0;
                // Taken apart level by level: dropping it whole would recurse.
                while let BytesFrame::Array { mut data, .. } = frame {
                    frame = data.pop().unwrap();
                    levels += 1;
                }
                levels
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(levels, depth);
    }

    #[test]
    fn errors_quote_a_bounded_part_of_the_frame() {
        let mut frame = b"*2\r\n,nope\r\n".to_vec();
        frame.extend_from_slice(&blob('$', "100000", &[b'x'; 100_000]));
        let err = build(&Bytes::from(frame)).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes: {err}", err.len());
        assert!(err.contains("invalid double \"nope\" at byte 4"), "{err}");
    }
}
