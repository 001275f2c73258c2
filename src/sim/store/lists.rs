//! Lists: `LPUSH`, `RPUSH`, `LPOP`, `RPOP` (with a count), `LLEN`, `LRANGE`, `LINDEX`.
//!
//! Indexes count from the end when negative, as in Redis; a list that becomes empty is removed.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{collection_mut, int_arg, not_int, wrong_args, Data, Db, Family, Run};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &["lpush", "rpush", "lpop", "rpop", "llen", "lrange", "lindex"],
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
                    Value::Int(l.len() as i64)
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
        _ => wrong_args(name),
    }
}

/// `LPOP` (`front`) or `RPOP`: one element, or an array of up to `count` elements.
fn pop(db: &mut Db, front: bool, k: &Bytes, count: &[Bytes]) -> Value {
    let count = match count.first().map(|c| int_arg(c)) {
        None => None,
        Some(Some(c)) if c >= 0 => Some(c as usize),
        Some(_) => return Value::err("ERR value is out of range, must be positive"),
    };
    match list_mut(db, k, false) {
        Ok(Some(l)) => {
            let mut popped = Vec::new();
            for _ in 0..count.unwrap_or(1) {
                let v = if front { l.pop_front() } else { l.pop_back() };
                match v {
                    Some(v) => popped.push(Value::Bulk(v)),
                    None => break,
                }
            }
            if l.is_empty() {
                db.remove(k);
            }
            match count {
                None => popped.pop().unwrap_or(Value::Null),
                Some(_) => Value::Array(popped),
            }
        }
        Ok(None) => Value::Null,
        Err(e) => e,
    }
}

/// The list at `key`, created empty when `create` is set and it does not exist.
fn list_mut<'a>(
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
