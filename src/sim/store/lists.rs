//! Lists: `LPUSH`, `RPUSH`, `LPOP`, `RPOP` (with a count), `LLEN`, `LRANGE`, `LINDEX`, `LMOVE`,
//! `RPOPLPUSH`, `LMPOP`. Their blocking forms are in the `blocking` module.
//!
//! Indexes count from the end when negative, as in Redis; a list that becomes empty is removed.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{
    collection_mut, eq, int_arg, keys, not_int, positive_arg, syntax_error, wrong_args, wrong_type,
    Data, Db, Family, Run,
};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("lpush", -3),
        ("rpush", -3),
        ("lpop", -2),
        ("rpop", -2),
        ("llen", 2),
        ("lrange", 4),
        ("lindex", 3),
        ("lmove", 5),
        ("rpoplpush", 3),
        ("lmpop", -4),
    ],
    run: Run::Data(run),
};

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    match (name, a) {
        ("lpush" | "rpush", [k, values @ ..]) if !values.is_empty() => {
            match list_mut(db, k, true) {
                Ok(Some(l)) => {
                    for v in values {
                        if name == "lpush" {
                            l.push_front(v.clone());
                        } else {
                            l.push_back(v.clone());
                        }
                    }
                    let n = l.len() as i64;
                    db.touch(k);
                    Value::Int(n)
                }
                Ok(None) => Value::Int(0),
                Err(e) => e,
            }
        }
        ("lpop" | "rpop", [k, count @ ..]) if count.len() <= 1 => pop(db, name == "lpop", k, count),
        ("llen", [k]) => match list_mut(db, k, false) {
            Ok(l) => Value::Int(l.map_or(0, |l| l.len() as i64)),
            Err(e) => e,
        },
        ("lrange", [k, start, stop]) => match (int_arg(start), int_arg(stop)) {
            (Some(start), Some(stop)) => match list_mut(db, k, false) {
                Ok(Some(l)) => match list_range(l.len(), start, stop) {
                    Some((s, e)) => Value::Array(
                        l.iter()
                            .skip(s)
                            .take(e - s + 1)
                            .cloned()
                            .map(Value::Bulk)
                            .collect(),
                    ),
                    None => Value::Array(vec![]),
                },
                Ok(None) => Value::Array(vec![]),
                Err(e) => e,
            },
            _ => not_int(),
        },
        ("lindex", [k, i]) => match int_arg(i) {
            Some(i) => match list_mut(db, k, false) {
                Ok(Some(l)) => {
                    let idx = if i < 0 { l.len() as i64 + i } else { i };
                    usize::try_from(idx)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .map_or(Value::Null, Value::Bulk)
                }
                Ok(None) => Value::Null,
                Err(e) => e,
            },
            None => not_int(),
        },
        ("lmove", [from, to, wherefrom, whereto]) => match (side(wherefrom), side(whereto)) {
            (Some(from_front), Some(to_front)) => {
                lmove(db, from, to, from_front, to_front).unwrap_or_else(|e| e)
            }
            _ => syntax_error(),
        },
        ("rpoplpush", [from, to]) => lmove(db, from, to, false, true).unwrap_or_else(|e| e),
        ("lmpop", [numkeys, rest @ ..]) => match mpop_args(numkeys, rest) {
            Ok((keys, front, count)) => {
                for k in keys {
                    match pop_n(db, k, front, count) {
                        Ok(Some(popped)) => return keyed(k, popped),
                        Ok(None) => {}
                        Err(e) => return e,
                    }
                }
                Value::NullArray
            }
            Err(e) => e,
        },
        _ => wrong_args(name),
    }
}

/// `LEFT` (true) or `RIGHT` (false).
pub(super) fn side(b: &[u8]) -> Option<bool> {
    if eq(b, "left") {
        Some(true)
    } else if eq(b, "right") {
        Some(false)
    } else {
        None
    }
}

/// The keys, side and count of `LMPOP numkeys key... LEFT|RIGHT [COUNT n]` (and `BLMPOP`).
pub(super) fn mpop_args<'a>(
    numkeys: &Bytes,
    rest: &'a [Bytes],
) -> Result<(&'a [Bytes], bool, usize), Value> {
    let n = match int_arg(numkeys) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(Value::err("ERR numkeys should be greater than 0")),
    };
    if n >= rest.len() {
        return Err(syntax_error());
    }
    let (keys, opts) = rest.split_at(n);
    let front = side(&opts[0]).ok_or_else(syntax_error)?;
    let count = count_option(&opts[1..])?;
    Ok((keys, front, count))
}

/// The `[COUNT n]` ending of `LMPOP`-style commands (1 without it).
pub(super) fn count_option(opts: &[Bytes]) -> Result<usize, Value> {
    match opts {
        [] => Ok(1),
        [c, n] if eq(c, "count") => match int_arg(n) {
            Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => Err(Value::err("ERR count should be greater than 0")),
        },
        _ => Err(syntax_error()),
    }
}

/// `[key, [elements]]`, as `LMPOP` answers.
pub(super) fn keyed(key: &Bytes, popped: Vec<Bytes>) -> Value {
    Value::Array(vec![
        Value::Bulk(key.clone()),
        Value::Array(popped.into_iter().map(Value::Bulk).collect()),
    ])
}

/// Takes up to `count` elements from one end of the list at `key`; `None` when there is no list
/// there (or an empty one).
pub(super) fn pop_n(
    db: &mut Db,
    key: &Bytes,
    front: bool,
    count: usize,
) -> Result<Option<Vec<Bytes>>, Value> {
    let Some(l) = list_mut(db, key, false)? else {
        return Ok(None);
    };
    let mut popped = Vec::new();
    while popped.len() < count {
        match if front { l.pop_front() } else { l.pop_back() } {
            Some(v) => popped.push(v),
            None => break,
        }
    }
    if l.is_empty() {
        db.keys.remove(key);
    }
    if popped.is_empty() {
        return Ok(None);
    }
    db.touch(key);
    Ok(Some(popped))
}

/// `LMOVE`: moves one element from a side of `from` to a side of `to`; the element, or null when
/// `from` holds nothing. `WRONGTYPE` (and nothing moved) when either key holds another type.
pub(super) fn lmove(
    db: &mut Db,
    from: &Bytes,
    to: &Bytes,
    from_front: bool,
    to_front: bool,
) -> Result<Value, Value> {
    if list_mut(db, from, false)?.is_none() {
        return Ok(Value::Null);
    }
    if keys::live(db, to).is_some_and(|e| !matches!(e.data, Data::List(_))) {
        return Err(wrong_type());
    }
    let Some(mut popped) = pop_n(db, from, from_front, 1)? else {
        return Ok(Value::Null);
    };
    let Some(v) = popped.pop() else {
        return Ok(Value::Null);
    };
    if let Some(l) = list_mut(db, to, true)? {
        if to_front {
            l.push_front(v.clone());
        } else {
            l.push_back(v.clone());
        }
        db.touch(to);
    }
    Ok(Value::Bulk(v))
}

/// `LPOP` (`front`) or `RPOP`: one element, or an array of up to `count` elements.
fn pop(db: &mut Db, front: bool, k: &Bytes, count: &[Bytes]) -> Value {
    let count = match count.first().map(|c| positive_arg(c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return e,
    };
    if count == Some(0) {
        // Nothing to take, but the key is still looked up (null when missing, WRONGTYPE).
        return match list_mut(db, k, false) {
            Ok(Some(_)) => Value::Array(vec![]),
            Ok(None) => Value::NullArray,
            Err(e) => e,
        };
    }
    match pop_n(db, k, front, count.unwrap_or(1)) {
        Ok(Some(mut popped)) => match count {
            None => popped.pop().map_or(Value::Null, Value::Bulk),
            Some(_) => Value::Array(popped.into_iter().map(Value::Bulk).collect()),
        },
        Ok(None) if count.is_some() => Value::NullArray,
        Ok(None) => Value::Null,
        Err(e) => e,
    }
}

/// The list at `key`, created empty when `create` is set and it does not exist.
pub(super) fn list_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut VecDeque<Bytes>>, Value> {
    collection_mut(
        db,
        key,
        create,
        || Data::List(VecDeque::new()),
        |data| match data {
            Data::List(v) => Some(v),
            _ => None,
        },
    )
}

/// The inclusive index range `start..=stop` of a list of `len` elements, negative indexes
/// counting from the end; `None` when it is empty.
fn list_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if stop >= len {
        stop = len - 1;
    }
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop as usize))
}
