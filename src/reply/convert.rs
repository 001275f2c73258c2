//! Typed replies: [`FromReply`] and the conversions of the common Rust types.
//!
//! What each type accepts, RESP3 first (the connection always speaks RESP3), and what RESP2-era
//! shapes some commands still answer with:
//!
//! | type | accepts | refuses |
//! | --- | --- | --- |
//! | `String`, `Bytes`, `Vec<u8>` | bulk, simple and verbatim strings (the text without its format), big numbers (their digits); `String` and `Bytes` also integers and doubles, as text | null, booleans, aggregates; `String`: bytes that are not UTF-8 |
//! | `i8` ... `i128`, `u8` ... `u128`, `isize`, `usize` | integers; strings and big numbers holding an integer (`GET` of a counter); doubles with no fraction (`ZSCORE`) | a value out of the type's range, a fraction, anything else |
//! | `f32`, `f64` | doubles; integers; strings holding a number, `inf`, `-inf` and `nan` included | a finite value an `f32` cannot hold, anything else |
//! | `bool` | booleans; integers `0` and `1`; strings `"0"` and `"1"`; the status `OK` (as `true`) | null (use `Option<bool>`), any other number or text |
//! | `()` | anything: the reply is dropped | |
//! | `Option<T>` | null as `None`, anything `T` accepts as `Some` | |
//! | `Vec<T>` | arrays, sets (in the server's order) and pushes, element by element; a map as its keys and values in turn, or as pairs for `Vec<(K, V)>`; `Vec<(K, V)>` also from a flat array `[k1, v1, k2, v2, ...]` | null (use `Option<Vec<T>>`), scalars (`Vec<u8>` excepted) |
//! | `HashMap<K, V>`, `BTreeMap<K, V>` | maps; flat arrays of pairs (`HGETALL` in RESP2, `CONFIG GET`); arrays of two-element arrays | an odd number of elements, null, scalars |
//! | `HashSet<T>`, `BTreeSet<T>` | sets, arrays | |
//! | tuples of 1 to 12 | an array of exactly that many elements, each converted in place | any other length |
//! | [`Reply`], [`BytesFrame`] | anything | (`Reply`: an error frame nested in an aggregate it is taken from) |
//!
//! An array `[k1, v1, k2, v2]` read as pairs and an array of pairs `[[k1, v1], [k2, v2]]` are
//! told apart by their elements: when every element is an array of two, each is one pair.
//!
//! An error reply nested in an aggregate (a script returning `redis.error_reply`, a failed
//! command inside `EXEC`) becomes [`Error::Server`] when it is converted, as a top-level one does.
//! Anything else that does not fit is an [`Error::Conversion`] naming what was expected, the
//! start of what came and where: `expected i64 at [2], got a bulk string $3\r\nabc\r\n (not an
//! integer)`.
//!
//! ```
//! use std::collections::HashMap;
//! use redis_handoff::frame::BytesFrame;
//! use redis_handoff::Reply;
//!
//! let blob = |s: &'static str| BytesFrame::BlobString { data: s.into(), attributes: None };
//! let n: i64 = Reply::from(blob("42")).parse()?;
//! assert_eq!(n, 42);
//!
//! // HGETALL as a RESP2 server answers it: a flat array of fields and values.
//! let flat = Reply::from(BytesFrame::Array {
//!     data: vec![blob("name"), blob("ada"), blob("age"), blob("36")],
//!     attributes: None,
//! });
//! let user: HashMap<String, String> = flat.clone().parse()?;
//! assert_eq!(user["age"], "36");
//! let pairs: Vec<(String, u8)> = flat.clone().parse().unwrap_or_default();
//! assert!(pairs.is_empty(), "\"ada\" is not a u8");
//!
//! let err = flat.parse::<(String, String, String)>().unwrap_err();
//! assert!(err.to_string().starts_with("cannot convert the reply: expected an array of 3"));
//! # Ok::<(), redis_handoff::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use bytes::Bytes;
use redis_protocol::resp3::types::BytesFrame;

use super::Reply;
use crate::error::{ConversionError, Error, ServerError};

/// A type a [`Reply`] converts to; see the [module docs](self) for what each type accepts.
///
/// [`Reply::parse`] calls it, as do `Stack::query` and `Pool::query`. Implement it for a type
/// of your own by converting from one that already does:
///
/// ```
/// use redis_handoff::{Error, FromReply, Reply};
///
/// struct Celsius(f64);
///
/// impl FromReply for Celsius {
///     fn from_reply(reply: Reply) -> Result<Self, Error> {
///         f64::from_reply(reply).map(Celsius)
///     }
/// }
/// ```
pub trait FromReply: Sized {
    /// Converts one reply (or one element of an aggregate reply).
    fn from_reply(reply: Reply) -> Result<Self, Error>;

    /// Whether the type is a pair, read from a map entry or two array elements (2-tuples).
    #[doc(hidden)]
    const PAIR: bool = false;

    /// Builds a pair from a key and a value; only called when [`FromReply::PAIR`] is true.
    #[doc(hidden)]
    fn from_pair(key: Reply, value: Reply) -> Result<Self, Error> {
        let _ = value;
        Err(mismatch("a pair", key.frame()))
    }

    /// Reads a string reply as a sequence of this type: `Vec<u8>` from a bulk string.
    #[doc(hidden)]
    fn from_string_bytes(bytes: Bytes) -> Option<Vec<Self>> {
        let _ = bytes;
        None
    }
}

impl Reply {
    /// Converts the reply to `T`: `String`, integers, floats, `bool`, `Option<T>`, `Vec<T>`,
    /// maps, sets, tuples and more ([`FromReply`]).
    ///
    /// ```
    /// use redis_handoff::frame::BytesFrame;
    /// use redis_handoff::Reply;
    ///
    /// let reply = Reply::from(BytesFrame::Number { data: 7, attributes: None });
    /// assert_eq!(reply.clone().parse::<u16>()?, 7);
    /// assert!(reply.parse::<String>().is_ok());
    /// # Ok::<(), redis_handoff::Error>(())
    /// ```
    pub fn parse<T: FromReply>(self) -> Result<T, Error> {
        T::from_reply(self)
    }
}

// ===== shared helpers =====

/// What a frame is, for error messages.
fn kind(frame: &BytesFrame) -> &'static str {
    match frame {
        BytesFrame::BlobString { .. } => "a bulk string",
        BytesFrame::SimpleString { .. } => "a simple string",
        BytesFrame::VerbatimString { .. } => "a verbatim string",
        BytesFrame::BlobError { .. } | BytesFrame::SimpleError { .. } => "an error",
        BytesFrame::Number { .. } => "an integer",
        BytesFrame::Double { .. } => "a double",
        BytesFrame::BigNumber { .. } => "a big number",
        BytesFrame::Boolean { .. } => "a boolean",
        BytesFrame::Null => "null",
        BytesFrame::Array { .. } => "an array",
        BytesFrame::Map { .. } => "a map",
        BytesFrame::Set { .. } => "a set",
        BytesFrame::Push { .. } => "a push",
        BytesFrame::ChunkedString(_) => "a streamed string",
        BytesFrame::Hello { .. } => "a HELLO frame",
    }
}

/// `expected` was asked for and `frame` came: its server error if it is one, else a mismatch.
fn mismatch(expected: &'static str, frame: &BytesFrame) -> Error {
    match server_error(frame) {
        Some(e) => e,
        None => Error::Conversion(shown(expected, frame)),
    }
}

/// A conversion error showing the start of `frame`.
fn shown(expected: &'static str, frame: &BytesFrame) -> ConversionError {
    let found = match frame {
        BytesFrame::Null => "null".to_owned(),
        frame => format!("{} {}", kind(frame), crate::frame::preview(frame)),
    };
    ConversionError::new(expected, found)
}

/// A value of the right kind that does not fit.
fn unfit(expected: &'static str, frame: &BytesFrame, reason: &'static str) -> Error {
    Error::Conversion(shown(expected, frame).because(reason))
}

/// The server's error, when the frame is an error reply.
fn server_error(frame: &BytesFrame) -> Option<Error> {
    match frame {
        BytesFrame::SimpleError { data, .. } => Some(Error::Server(ServerError::new(&**data))),
        BytesFrame::BlobError { data, .. } => Some(Error::Server(ServerError::new(
            String::from_utf8_lossy(data).into_owned(),
        ))),
        _ => None,
    }
}

/// The bytes of a frame that holds text: strings of every kind and big numbers.
fn text(frame: &BytesFrame) -> Option<&Bytes> {
    match frame {
        BytesFrame::BigNumber { data, .. } => Some(data),
        frame => crate::frame::text(frame),
    }
}

/// Places a failure inside an aggregate; other errors pass unchanged.
fn within(error: Error, segment: impl FnOnce() -> String) -> Error {
    match error {
        Error::Conversion(e) => Error::Conversion(e.within(&segment())),
        other => other,
    }
}

fn index(i: usize) -> impl FnOnce() -> String {
    move || format!("[{i}]")
}

/// `["name"]` for a value under a text key (its start, if long); `[key #i]` otherwise.
fn key_segment(key: &BytesFrame, i: usize) -> String {
    const SHOWN: usize = 32;
    match text(key).map(|b| std::str::from_utf8(b)) {
        Some(Ok(s)) if s.len() <= SHOWN => format!("[{s:?}]"),
        Some(Ok(s)) => {
            let cut = (0..=SHOWN)
                .rev()
                .find(|&c| s.is_char_boundary(c))
                .unwrap_or(0);
            format!("[{:?}...]", &s[..cut])
        }
        _ => format!("[key #{i}]"),
    }
}

// ===== the reply itself =====

impl FromReply for Reply {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        match server_error(reply.frame()) {
            Some(e) => Err(e),
            None => Ok(reply),
        }
    }
}

impl FromReply for BytesFrame {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        Ok(reply.into_frame())
    }
}

impl FromReply for () {
    fn from_reply(_: Reply) -> Result<Self, Error> {
        Ok(())
    }
}

// ===== strings and bytes =====

impl FromReply for String {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.into_frame();
        match &frame {
            BytesFrame::Number { data, .. } => Ok(data.to_string()),
            BytesFrame::Double { data, .. } => Ok(data.to_string()),
            f => match text(f) {
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(s) => Ok(s.to_owned()),
                    Err(_) => Err(unfit("String", f, "not UTF-8: read it as Bytes or Vec<u8>")),
                },
                None => Err(mismatch("String", f)),
            },
        }
    }
}

impl FromReply for Bytes {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.into_frame();
        match frame {
            BytesFrame::BlobString { data, .. }
            | BytesFrame::SimpleString { data, .. }
            | BytesFrame::VerbatimString { data, .. }
            | BytesFrame::BigNumber { data, .. } => Ok(data),
            BytesFrame::Number { data, .. } => Ok(Bytes::from(data.to_string())),
            BytesFrame::Double { data, .. } => Ok(Bytes::from(data.to_string())),
            other => Err(mismatch("Bytes", &other)),
        }
    }
}

// ===== numbers =====

/// An integer from a frame, wide enough for every integer type but `u128` above `i128::MAX`.
fn integer(expected: &'static str, frame: &BytesFrame) -> Result<i128, Error> {
    match frame {
        BytesFrame::Number { data, .. } => Ok(i128::from(*data)),
        BytesFrame::Double { data, .. } => {
            // Exactly representable up to 2^127; beyond, out of every range but u128's.
            if data.is_finite() && data.fract() == 0.0 && data.abs() < 1.7e38 {
                Ok(*data as i128)
            } else {
                Err(unfit(expected, frame, "not a whole number in range"))
            }
        }
        f => match text(f) {
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i128>().ok())
                .ok_or_else(|| unfit(expected, f, "not an integer")),
            None => Err(mismatch(expected, f)),
        },
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl FromReply for $t {
            fn from_reply(reply: Reply) -> Result<Self, Error> {
                let name = stringify!($t);
                let frame = reply.frame();
                <$t>::try_from(integer(name, frame)?)
                    .map_err(|_| unfit(name, frame, "out of range"))
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, i128, isize, u16, u32, u64, usize);

impl FromReply for u8 {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.frame();
        u8::try_from(integer("u8", frame)?).map_err(|_| unfit("u8", frame, "out of range"))
    }

    fn from_string_bytes(bytes: Bytes) -> Option<Vec<Self>> {
        Some(Vec::from(bytes))
    }
}

impl FromReply for u128 {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.frame();
        // The digits of a big number above i128::MAX, read as they are.
        if let Some(n) = text(frame)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u128>().ok())
        {
            return Ok(n);
        }
        u128::try_from(integer("u128", frame)?).map_err(|_| unfit("u128", frame, "out of range"))
    }
}

fn float(expected: &'static str, frame: &BytesFrame) -> Result<f64, Error> {
    match frame {
        BytesFrame::Double { data, .. } => Ok(*data),
        BytesFrame::Number { data, .. } => Ok(*data as f64),
        f => match text(f) {
            // Redis writes infinities as `inf` and `-inf`, which Rust parses as they are.
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| unfit(expected, f, "not a number")),
            None => Err(mismatch(expected, f)),
        },
    }
}

impl FromReply for f64 {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        float("f64", reply.frame())
    }
}

impl FromReply for f32 {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.frame();
        let wide = float("f32", frame)?;
        let narrow = wide as f32;
        if wide.is_finite() && narrow.is_infinite() {
            return Err(unfit("f32", frame, "out of range"));
        }
        Ok(narrow)
    }
}

impl FromReply for bool {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        let frame = reply.frame();
        match frame {
            BytesFrame::Boolean { data, .. } => Ok(*data),
            BytesFrame::Number { data: 0, .. } => Ok(false),
            BytesFrame::Number { data: 1, .. } => Ok(true),
            BytesFrame::Number { .. } => Err(unfit("bool", frame, "not 0 or 1")),
            // The status of a command that did what it was asked (`SET`, `SET ... NX`).
            BytesFrame::SimpleString { data, .. } if &data[..] == b"OK" => Ok(true),
            f => match text(f).map(|b| &b[..]) {
                Some(b"1") => Ok(true),
                Some(b"0") => Ok(false),
                Some(_) => Err(unfit("bool", f, "not 0 or 1")),
                None => Err(mismatch("bool", f)),
            },
        }
    }
}

// ===== Option =====

impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        if reply.is_null() {
            Ok(None)
        } else {
            T::from_reply(reply).map(Some)
        }
    }
}

// ===== sequences =====

/// Whether every element of `data` is an array of two: then each one is a pair.
fn nested_pairs(data: &[BytesFrame]) -> bool {
    data.iter()
        .all(|f| matches!(f, BytesFrame::Array { data, .. } if data.len() == 2))
}

/// Pairs from a flat array `[k1, v1, k2, v2, ...]`, or from an array of two-element arrays.
fn pairs_from_array<T: FromReply>(
    expected: &'static str,
    frame: BytesFrame,
) -> Result<Vec<T>, Error> {
    let data = match frame {
        BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => data,
        other => return Err(mismatch(expected, &other)),
    };
    if nested_pairs(&data) {
        return data
            .into_iter()
            .enumerate()
            .map(|(i, f)| T::from_reply(f.into()).map_err(|e| within(e, index(i))))
            .collect();
    }
    if data.len() % 2 != 0 {
        let frame = BytesFrame::Array {
            data,
            attributes: None,
        };
        return Err(unfit(
            expected,
            &frame,
            "an odd number of elements cannot be read as pairs",
        ));
    }
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut items = data.into_iter();
    let mut i = 0;
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let segment = key_segment(&k, i);
        out.push(T::from_pair(k.into(), v.into()).map_err(|e| within(e, || segment))?);
        i += 1;
    }
    Ok(out)
}

/// The elements of an array, a set or a push, each converted.
fn elements<T: FromReply>(data: impl IntoIterator<Item = BytesFrame>) -> Result<Vec<T>, Error> {
    data.into_iter()
        .enumerate()
        .map(|(i, f)| T::from_reply(f.into()).map_err(|e| within(e, index(i))))
        .collect()
}

impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        const EXPECTED: &str = "an array";
        match reply.into_frame() {
            frame @ (BytesFrame::Array { .. } | BytesFrame::Push { .. }) if T::PAIR => {
                pairs_from_array(EXPECTED, frame)
            }
            BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => elements(data),
            BytesFrame::Set { data, .. } => elements(data),
            BytesFrame::Map { data, .. } if T::PAIR => data
                .into_iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let segment = key_segment(&k, i);
                    T::from_pair(k.into(), v.into()).map_err(|e| within(e, || segment))
                })
                .collect(),
            BytesFrame::Map { data, .. } => elements(data.into_iter().flat_map(|(k, v)| [k, v])),
            frame => {
                let bytes = match &frame {
                    BytesFrame::BlobString { data, .. }
                    | BytesFrame::SimpleString { data, .. }
                    | BytesFrame::VerbatimString { data, .. } => Some(data.clone()),
                    _ => None,
                };
                match bytes.and_then(T::from_string_bytes) {
                    Some(v) => Ok(v),
                    None => Err(mismatch(EXPECTED, &frame)),
                }
            }
        }
    }
}

/// The elements of a set reply (RESP3), or of an array (RESP2 sends sets as arrays).
fn set_elements<T: FromReply>(reply: Reply) -> Result<Vec<T>, Error> {
    match reply.into_frame() {
        BytesFrame::Set { data, .. } => elements::<T>(data),
        BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => elements::<T>(data),
        other => Err(mismatch("a set", &other)),
    }
}

impl<T: FromReply + Eq + Hash, S: BuildHasher + Default> FromReply for HashSet<T, S> {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        Ok(set_elements::<T>(reply)?.into_iter().collect())
    }
}

impl<T: FromReply + Ord> FromReply for BTreeSet<T> {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        Ok(set_elements::<T>(reply)?.into_iter().collect())
    }
}

// ===== maps =====

/// The entries of a map reply, or of an array read as pairs, each key and value converted.
fn entries<K: FromReply, V: FromReply>(frame: BytesFrame) -> Result<Vec<(K, V)>, Error> {
    const EXPECTED: &str = "a map";
    match frame {
        BytesFrame::Map { data, .. } => data
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let segment = key_segment(&k, i);
                <(K, V)>::from_pair(k.into(), v.into()).map_err(|e| within(e, || segment))
            })
            .collect(),
        frame @ (BytesFrame::Array { .. } | BytesFrame::Push { .. }) => {
            pairs_from_array(EXPECTED, frame)
        }
        other => Err(mismatch(EXPECTED, &other)),
    }
}

impl<K, V, S> FromReply for HashMap<K, V, S>
where
    K: FromReply + Eq + Hash,
    V: FromReply,
    S: BuildHasher + Default,
{
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        Ok(entries::<K, V>(reply.into_frame())?.into_iter().collect())
    }
}

impl<K: FromReply + Ord, V: FromReply> FromReply for BTreeMap<K, V> {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        Ok(entries::<K, V>(reply.into_frame())?.into_iter().collect())
    }
}

// ===== tuples =====

/// The elements of an array of exactly `n`, or the mismatch.
fn exactly(n: usize, expected: &'static str, frame: BytesFrame) -> Result<Vec<BytesFrame>, Error> {
    match frame {
        BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } if data.len() == n => {
            Ok(data)
        }
        other => Err(mismatch(expected, &other)),
    }
}

/// The next element of a tuple's array, converted (the length was checked before).
fn next_element<T: FromReply>(
    items: &mut impl Iterator<Item = (usize, BytesFrame)>,
    expected: &'static str,
) -> Result<T, Error> {
    match items.next() {
        Some((i, f)) => T::from_reply(f.into()).map_err(|e| within(e, index(i))),
        None => Err(Error::Conversion(ConversionError::new(
            expected,
            "fewer elements",
        ))),
    }
}

impl<A: FromReply, B: FromReply> FromReply for (A, B) {
    fn from_reply(reply: Reply) -> Result<Self, Error> {
        const EXPECTED: &str = "an array of 2";
        let mut items = exactly(2, EXPECTED, reply.into_frame())?
            .into_iter()
            .enumerate();
        Ok((
            next_element(&mut items, EXPECTED)?,
            next_element(&mut items, EXPECTED)?,
        ))
    }

    const PAIR: bool = true;

    fn from_pair(key: Reply, value: Reply) -> Result<Self, Error> {
        let key = A::from_reply(key).map_err(|e| within(e, || "{key}".to_owned()))?;
        Ok((key, B::from_reply(value)?))
    }
}

macro_rules! tuples {
    ($($n:literal => ($($t:ident),+);)*) => {$(
        impl<$($t: FromReply),+> FromReply for ($($t,)+) {
            fn from_reply(reply: Reply) -> Result<Self, Error> {
                const EXPECTED: &str = concat!("an array of ", $n);
                let mut items = exactly($n, EXPECTED, reply.into_frame())?
                    .into_iter()
                    .enumerate();
                Ok(($(next_element::<$t>(&mut items, EXPECTED)?,)+))
            }
        }
    )*};
}

tuples! {
    1 => (A);
    3 => (A, B, C);
    4 => (A, B, C, D);
    5 => (A, B, C, D, E);
    6 => (A, B, C, D, E, F);
    7 => (A, B, C, D, E, F, G);
    8 => (A, B, C, D, E, F, G, H);
    9 => (A, B, C, D, E, F, G, H, I);
    10 => (A, B, C, D, E, F, G, H, I, J);
    11 => (A, B, C, D, E, F, G, H, I, J, K);
    12 => (A, B, C, D, E, F, G, H, I, J, K, L);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(s: &str) -> BytesFrame {
        BytesFrame::BlobString {
            data: Bytes::copy_from_slice(s.as_bytes()),
            attributes: None,
        }
    }
    fn simple(s: &str) -> BytesFrame {
        BytesFrame::SimpleString {
            data: Bytes::copy_from_slice(s.as_bytes()),
            attributes: None,
        }
    }
    fn num(n: i64) -> BytesFrame {
        BytesFrame::Number {
            data: n,
            attributes: None,
        }
    }
    fn double(d: f64) -> BytesFrame {
        BytesFrame::Double {
            data: d,
            attributes: None,
        }
    }
    fn boolean(b: bool) -> BytesFrame {
        BytesFrame::Boolean {
            data: b,
            attributes: None,
        }
    }
    fn big(s: &str) -> BytesFrame {
        BytesFrame::BigNumber {
            data: Bytes::copy_from_slice(s.as_bytes()),
            attributes: None,
        }
    }
    fn array(data: Vec<BytesFrame>) -> BytesFrame {
        BytesFrame::Array {
            data,
            attributes: None,
        }
    }
    fn map(data: Vec<(BytesFrame, BytesFrame)>) -> BytesFrame {
        BytesFrame::Map {
            data: data.into_iter().collect(),
            attributes: None,
        }
    }
    fn set(data: Vec<BytesFrame>) -> BytesFrame {
        BytesFrame::Set {
            data: data.into_iter().collect(),
            attributes: None,
        }
    }
    fn error(s: &str) -> BytesFrame {
        BytesFrame::SimpleError {
            data: s.to_owned().into(),
            attributes: None,
        }
    }
    fn parse<T: FromReply>(frame: BytesFrame) -> Result<T, Error> {
        Reply::from(frame).parse()
    }
    fn conversion<T: FromReply + std::fmt::Debug>(frame: BytesFrame) -> ConversionError {
        match parse::<T>(frame) {
            Err(Error::Conversion(e)) => e,
            other => panic!("expected a conversion error, got {other:?}"),
        }
    }

    #[test]
    fn strings_come_from_every_kind_of_string_and_from_numbers() {
        assert_eq!(parse::<String>(blob("héllo")).unwrap(), "héllo");
        assert_eq!(parse::<String>(simple("OK")).unwrap(), "OK");
        let verbatim = BytesFrame::VerbatimString {
            data: Bytes::from_static(b"some text"),
            format: redis_protocol::resp3::types::VerbatimStringFormat::Text,
            attributes: None,
        };
        assert_eq!(parse::<String>(verbatim).unwrap(), "some text");
        assert_eq!(parse::<String>(num(-12)).unwrap(), "-12");
        assert_eq!(parse::<String>(double(1.5)).unwrap(), "1.5");
        assert_eq!(
            parse::<String>(big("123456789012345678901234567890")).unwrap(),
            "123456789012345678901234567890"
        );
        let bad = BytesFrame::BlobString {
            data: Bytes::from_static(&[0xff, 0xfe]),
            attributes: None,
        };
        let e = conversion::<String>(bad);
        assert_eq!(e.expected(), "String");
        assert!(e.reason().unwrap().contains("not UTF-8"), "{e}");
        let e = conversion::<String>(BytesFrame::Null);
        assert_eq!(e.found(), Some("null"));
        assert!(conversion::<String>(boolean(true))
            .to_string()
            .contains("a boolean"));
    }

    #[test]
    fn bytes_keep_binary_data() {
        let raw = BytesFrame::BlobString {
            data: Bytes::from_static(&[0, 159, 255]),
            attributes: None,
        };
        assert_eq!(parse::<Bytes>(raw.clone()).unwrap(), &[0, 159, 255][..]);
        assert_eq!(parse::<Vec<u8>>(raw).unwrap(), vec![0, 159, 255]);
        assert_eq!(parse::<Bytes>(num(5)).unwrap(), "5");
        // An array of small integers is a Vec<u8> too.
        assert_eq!(
            parse::<Vec<u8>>(array(vec![num(1), num(2)])).unwrap(),
            vec![1, 2]
        );
        assert!(conversion::<Vec<u8>>(num(5))
            .to_string()
            .contains("expected an array"));
        assert!(conversion::<Bytes>(array(vec![])).found().is_some());
    }

    #[test]
    fn integers_are_range_checked_at_every_width() {
        assert_eq!(parse::<i8>(num(-128)).unwrap(), -128);
        assert_eq!(parse::<u8>(num(255)).unwrap(), 255);
        assert_eq!(conversion::<u8>(num(256)).reason(), Some("out of range"));
        assert_eq!(conversion::<u8>(num(-1)).reason(), Some("out of range"));
        assert_eq!(conversion::<i16>(num(40_000)).expected(), "i16");
        assert_eq!(parse::<u16>(num(65_535)).unwrap(), 65_535);
        assert_eq!(parse::<i32>(blob("-2147483648")).unwrap(), i32::MIN);
        assert!(parse::<u32>(blob("4294967296")).is_err());
        assert_eq!(parse::<i64>(num(i64::MAX)).unwrap(), i64::MAX);
        assert_eq!(
            parse::<u64>(blob("18446744073709551615")).unwrap(),
            u64::MAX
        );
        assert_eq!(parse::<usize>(num(7)).unwrap(), 7);
        assert_eq!(parse::<isize>(num(-7)).unwrap(), -7);
        assert_eq!(
            parse::<i128>(big("-170141183460469231731687303715884105728")).unwrap(),
            i128::MIN
        );
        assert_eq!(
            parse::<u128>(big("340282366920938463463374607431768211455")).unwrap(),
            u128::MAX
        );
        assert!(parse::<u128>(num(-1)).is_err());
        // GET of a counter, ZSCORE of a whole score.
        assert_eq!(parse::<i64>(simple("42")).unwrap(), 42);
        assert_eq!(parse::<i64>(double(3.0)).unwrap(), 3);
        assert_eq!(
            conversion::<i64>(double(3.5)).reason(),
            Some("not a whole number in range")
        );
        let e = conversion::<i64>(blob("abc"));
        assert_eq!(e.reason(), Some("not an integer"));
        assert!(e.found().unwrap().contains("abc"), "{e}");
        assert!(conversion::<i64>(BytesFrame::Null)
            .to_string()
            .contains("null"));
        assert!(conversion::<i64>(boolean(true))
            .to_string()
            .contains("a boolean"));
    }

    #[test]
    fn floats_come_from_doubles_integers_and_numeric_strings() {
        assert_eq!(parse::<f64>(double(2.5)).unwrap(), 2.5);
        assert_eq!(parse::<f64>(num(3)).unwrap(), 3.0);
        assert_eq!(parse::<f64>(blob("3.25")).unwrap(), 3.25);
        assert_eq!(parse::<f64>(blob("inf")).unwrap(), f64::INFINITY);
        assert_eq!(parse::<f64>(blob("-inf")).unwrap(), f64::NEG_INFINITY);
        assert_eq!(parse::<f64>(double(f64::INFINITY)).unwrap(), f64::INFINITY);
        assert!(parse::<f64>(blob("nan")).unwrap().is_nan());
        assert_eq!(parse::<f32>(blob("0.5")).unwrap(), 0.5);
        assert_eq!(parse::<f32>(blob("-inf")).unwrap(), f32::NEG_INFINITY);
        assert_eq!(
            conversion::<f32>(double(1e300)).reason(),
            Some("out of range")
        );
        assert_eq!(conversion::<f64>(blob("x1")).reason(), Some("not a number"));
        assert!(conversion::<f64>(array(vec![])).to_string().contains("f64"));
    }

    #[test]
    fn booleans_come_from_booleans_zero_one_and_ok() {
        assert!(parse::<bool>(boolean(true)).unwrap());
        assert!(!parse::<bool>(boolean(false)).unwrap());
        assert!(parse::<bool>(num(1)).unwrap());
        assert!(!parse::<bool>(num(0)).unwrap());
        assert!(parse::<bool>(blob("1")).unwrap());
        assert!(!parse::<bool>(blob("0")).unwrap());
        assert!(parse::<bool>(simple("OK")).unwrap());
        assert_eq!(conversion::<bool>(num(2)).reason(), Some("not 0 or 1"));
        assert_eq!(conversion::<bool>(blob("yes")).reason(), Some("not 0 or 1"));
        assert!(conversion::<bool>(BytesFrame::Null).found() == Some("null"));
        // SET ... NX: OK when set, null when not.
        assert_eq!(parse::<Option<bool>>(simple("OK")).unwrap(), Some(true));
        assert_eq!(parse::<Option<bool>>(BytesFrame::Null).unwrap(), None);
    }

    #[test]
    fn unit_takes_anything_and_option_takes_null() {
        parse::<()>(array(vec![num(1)])).unwrap();
        parse::<()>(BytesFrame::Null).unwrap();
        assert_eq!(parse::<Option<i64>>(BytesFrame::Null).unwrap(), None);
        assert_eq!(parse::<Option<i64>>(num(4)).unwrap(), Some(4));
        assert!(parse::<Option<i64>>(blob("x")).is_err());
    }

    #[test]
    fn vectors_take_arrays_sets_and_maps() {
        assert_eq!(
            parse::<Vec<i64>>(array(vec![num(1), blob("2")])).unwrap(),
            vec![1, 2]
        );
        let mut members = parse::<Vec<String>>(set(vec![blob("a"), blob("b")])).unwrap();
        members.sort();
        assert_eq!(members, ["a", "b"]);
        // MGET with a missing key.
        assert_eq!(
            parse::<Vec<Option<String>>>(array(vec![blob("v"), BytesFrame::Null])).unwrap(),
            vec![Some("v".to_owned()), None]
        );
        let flat = parse::<Vec<String>>(map(vec![(blob("k"), blob("v"))])).unwrap();
        assert_eq!(flat, ["k", "v"]);
        let e = conversion::<Vec<i64>>(array(vec![num(1), num(2), blob("x")]));
        assert_eq!(e.path(), Some("[2]"));
        assert!(
            e.to_string()
                .starts_with("expected i64 at [2], got a bulk string"),
            "{e}"
        );
        assert!(conversion::<Vec<i64>>(BytesFrame::Null)
            .to_string()
            .contains("expected an array"));
        assert_eq!(parse::<Vec<i64>>(array(vec![])).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn pairs_come_from_maps_flat_arrays_and_arrays_of_pairs() {
        let from_map: Vec<(String, i64)> = parse(map(vec![(blob("a"), num(1))])).unwrap();
        assert_eq!(from_map, [("a".to_owned(), 1)]);
        // ZRANGE ... WITHSCORES in RESP2, and in RESP3.
        let flat: Vec<(String, f64)> =
            parse(array(vec![blob("m1"), blob("1.5"), blob("m2"), blob("2")])).unwrap();
        assert_eq!(flat, [("m1".to_owned(), 1.5), ("m2".to_owned(), 2.0)]);
        let nested: Vec<(String, f64)> = parse(array(vec![
            array(vec![blob("m1"), double(1.5)]),
            array(vec![blob("m2"), double(2.0)]),
        ]))
        .unwrap();
        assert_eq!(nested, flat);
        let e = conversion::<Vec<(String, i64)>>(array(vec![blob("a"), num(1), blob("b")]));
        assert!(e.reason().unwrap().contains("odd number"), "{e}");
        let e =
            conversion::<Vec<(String, i64)>>(array(vec![blob("a"), num(1), blob("b"), blob("x")]));
        assert_eq!(e.path(), Some("[\"b\"]"));
    }

    #[test]
    fn maps_come_from_resp3_maps_and_resp2_flat_arrays() {
        let resp3 = map(vec![(blob("name"), blob("ada")), (blob("age"), blob("36"))]);
        let m: HashMap<String, String> = parse(resp3.clone()).unwrap();
        assert_eq!(m["name"], "ada");
        let b: BTreeMap<String, Bytes> = parse(resp3.clone()).unwrap();
        assert_eq!(b.keys().collect::<Vec<_>>(), ["age", "name"]);
        let resp2 = array(vec![blob("name"), blob("ada"), blob("age"), blob("36")]);
        assert_eq!(parse::<HashMap<String, String>>(resp2).unwrap(), m);
        let e = conversion::<HashMap<String, u8>>(resp3);
        assert_eq!(e.path(), Some("[\"name\"]"));
        assert_eq!(e.expected(), "u8");
        assert!(
            conversion::<HashMap<String, String>>(array(vec![blob("k")]))
                .reason()
                .unwrap()
                .contains("odd")
        );
        assert!(conversion::<BTreeMap<String, String>>(num(1))
            .to_string()
            .contains("expected a map"));
        let e = conversion::<HashMap<i64, String>>(map(vec![(blob("x"), blob("v"))]));
        assert_eq!(e.path(), Some("[\"x\"]{key}"));
    }

    #[test]
    fn sets_come_from_sets_and_arrays() {
        let s: HashSet<String> = parse(set(vec![blob("a"), blob("b")])).unwrap();
        assert!(s.contains("a") && s.contains("b"));
        let b: BTreeSet<i64> = parse(array(vec![num(2), num(1), num(2)])).unwrap();
        assert_eq!(b.into_iter().collect::<Vec<_>>(), [1, 2]);
        assert!(conversion::<HashSet<String>>(blob("a"))
            .to_string()
            .contains("expected a set"));
    }

    #[test]
    fn tuples_take_arrays_of_their_length() {
        let (a, b): (String, i64) = parse(array(vec![blob("k"), num(3)])).unwrap();
        assert_eq!((a.as_str(), b), ("k", 3));
        let (one,): (u8,) = parse(array(vec![num(9)])).unwrap();
        assert_eq!(one, 9);
        let t: (i64, i64, i64, String) =
            parse(array(vec![num(1), num(2), num(3), blob("x")])).unwrap();
        assert_eq!(t, (1, 2, 3, "x".to_owned()));
        let twelve: (u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8) =
            parse(array((0..12).map(num).collect())).unwrap();
        assert_eq!(twelve.11, 11);
        let e = conversion::<(i64, i64, i64)>(array(vec![num(1), num(2)]));
        assert_eq!(e.expected(), "an array of 3");
        let e = conversion::<(i64, String)>(array(vec![blob("x"), blob("y")]));
        assert_eq!(e.path(), Some("[0]"));
    }

    #[test]
    fn nested_error_replies_become_the_server_error() {
        let reply = array(vec![num(1), error("WRONGTYPE Operation against a key")]);
        match parse::<Vec<i64>>(reply.clone()) {
            Err(Error::Server(e)) => assert_eq!(e.code(), "WRONGTYPE"),
            other => panic!("{other:?}"),
        }
        match parse::<Vec<Reply>>(reply.clone()) {
            Err(Error::Server(e)) => assert_eq!(e.code(), "WRONGTYPE"),
            other => panic!("{other:?}"),
        }
        // The raw frames keep it, to read the others.
        assert_eq!(parse::<Vec<BytesFrame>>(reply).unwrap().len(), 2);
        match parse::<Option<String>>(error("ERR boom")) {
            Err(Error::Server(e)) => assert_eq!(e.text(), "ERR boom"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn previews_of_large_replies_are_bounded() {
        let huge = blob(&"x".repeat(100_000));
        let e = conversion::<i64>(huge);
        assert!(e.to_string().len() < 400, "{e}");
        let many = array((0..100_000).map(num).collect());
        let e = conversion::<String>(many);
        assert!(e.to_string().len() < 400, "{e}");
    }
}
