//! Sorted sets: `ZADD` (`NX`, `XX`, `GT`, `LT`, `CH`, `INCR`), `ZINCRBY`, `ZREM`, `ZSCORE`,
//! `ZMSCORE`, `ZCARD`, `ZCOUNT`, `ZLEXCOUNT`, `ZRANK` and `ZREVRANK` (with `WITHSCORE`), `ZRANGE`
//! (`BYSCORE`, `BYLEX`, `REV`, `LIMIT`, `WITHSCORES`), `ZREVRANGE`, `ZRANGEBYSCORE`,
//! `ZREVRANGEBYSCORE`, `ZRANGEBYLEX`, `ZREVRANGEBYLEX`, `ZPOPMIN`, `ZPOPMAX`, `ZMPOP`,
//! `ZREMRANGEBYSCORE`, `ZREMRANGEBYRANK`, `ZREMRANGEBYLEX`, `ZUNIONSTORE` and `ZINTERSTORE`
//! (`WEIGHTS`, `AGGREGATE`; plain sets count with score 1).
//!
//! Members are ordered by score, then by their bytes, as in Redis. Scores are doubles, written
//! as Redis 7.0 writes them (`2.5`, `inf`, `0.10000000000000001`): bulk strings in RESP2,
//! doubles in RESP3. A score of `-0` is kept as `0`, as Redis keeps it in a small sorted set.
//! Scores are parsed as Redis parses them: `nan` and out-of-range values are refused with
//! `ERR value is not a valid float`. `ZRANK ... WITHSCORE` answers as Redis 7.2 does (7.0 has
//! no such option). Ranks and ranges are found by walking the set, which is fine at the sizes
//! a demo uses.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

use super::{
    collection_mut, eq, int_arg, keys, not_int, positive_arg, syntax_error, wrong_args, wrong_type,
    Data, Db, Entry, Family, Run,
};
use crate::sim::resp::Value;

pub(super) const FAMILY: Family = Family {
    commands: &[
        ("zadd", -4),
        ("zincrby", 4),
        ("zrem", -3),
        ("zscore", 3),
        ("zmscore", -3),
        ("zcard", 2),
        ("zcount", 4),
        ("zlexcount", 4),
        ("zrank", -3),
        ("zrevrank", -3),
        ("zrange", -4),
        ("zrevrange", -4),
        ("zrangebyscore", -4),
        ("zrevrangebyscore", -4),
        ("zrangebylex", -4),
        ("zrevrangebylex", -4),
        ("zpopmin", -2),
        ("zpopmax", -2),
        ("zmpop", -4),
        ("zremrangebyscore", 4),
        ("zremrangebyrank", 4),
        ("zremrangebylex", 4),
        ("zunionstore", -4),
        ("zinterstore", -4),
    ],
    run: Run::Data(run),
};

/// A sorted set: each member's score, and the members in order.
#[derive(Debug, Default)]
pub(super) struct SortedSet {
    scores: HashMap<Bytes, f64>,
    order: BTreeSet<(Score, Bytes)>,
}

/// A score, totally ordered (no NaN is ever stored).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

// ===== impl SortedSet =====

impl SortedSet {
    pub(super) fn len(&self) -> usize {
        self.scores.len()
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets the score of `member`; true when the member is new.
    fn set(&mut self, member: Bytes, score: f64) -> bool {
        // -0 == 0, so this turns -0 into 0.
        let score = if score == 0.0 { 0.0 } else { score };
        let new = match self.scores.insert(member.clone(), score) {
            Some(old) => {
                self.order.remove(&(Score(old), member.clone()));
                false
            }
            None => true,
        };
        self.order.insert((Score(score), member));
        new
    }

    fn remove(&mut self, member: &Bytes) -> bool {
        match self.scores.remove(member) {
            Some(old) => {
                self.order.remove(&(Score(old), member.clone()));
                true
            }
            None => false,
        }
    }

    /// Members and scores, lowest first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> + '_ {
        self.order.iter().map(|(s, m)| (m, s.0))
    }

    /// The rank of `member`, lowest score first.
    fn rank(&self, member: &Bytes) -> Option<usize> {
        let s = self.score(member)?;
        Some(self.order.range(..(Score(s), member.clone())).count())
    }

    /// Takes up to `n` members with the lowest scores (highest with `max`).
    fn pop(&mut self, max: bool, n: usize) -> Vec<(Bytes, f64)> {
        let mut popped = Vec::new();
        while popped.len() < n {
            let next = if max {
                self.order.pop_last()
            } else {
                self.order.pop_first()
            };
            let Some((score, member)) = next else {
                break;
            };
            self.scores.remove(&member);
            popped.push((member, score.0));
        }
        popped
    }
}

fn run(db: &mut Db, name: &str, a: &[Bytes]) -> Value {
    let result = match (name, a) {
        ("zadd", [k, rest @ ..]) => zadd(db, k, rest),
        ("zincrby", [k, by, m]) => add(db, k, &[(by.clone(), m.clone())], Flags::incr()),
        ("zrem", [k, members @ ..]) => zrem(db, k, members),
        ("zscore", [k, m]) => zset_ref(db, k).map(|z| {
            z.and_then(|z| z.score(m))
                .map_or(Value::Null, Value::Double)
        }),
        ("zmscore", [k, members @ ..]) => zset_ref(db, k).map(|z| {
            Value::Array(
                members
                    .iter()
                    .map(|m| {
                        z.and_then(|z| z.score(m))
                            .map_or(Value::Null, Value::Double)
                    })
                    .collect(),
            )
        }),
        ("zcard", [k]) => zset_ref(db, k).map(|z| Value::Int(z.map_or(0, |z| z.len() as i64))),
        ("zcount", [k, min, max]) => ScoreRange::parse(min, max).and_then(|r| {
            zset_ref(db, k).map(|z| {
                Value::Int(z.map_or(0, |z| z.iter().filter(|(_, s)| r.contains(*s)).count()) as i64)
            })
        }),
        ("zlexcount", [k, min, max]) => LexRange::parse(min, max).and_then(|r| {
            zset_ref(db, k).map(|z| {
                Value::Int(z.map_or(0, |z| z.iter().filter(|(m, _)| r.contains(m)).count()) as i64)
            })
        }),
        ("zrank" | "zrevrank", [k, m, opts @ ..]) => zrank(db, k, m, opts, name == "zrevrank"),
        (
            "zrange" | "zrevrange" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex"
            | "zrevrangebylex",
            [k, start, stop, opts @ ..],
        ) => zrange(db, name, k, start, stop, opts),
        ("zpopmin" | "zpopmax", [k, rest @ ..]) => zpop(db, k, rest, name == "zpopmax"),
        ("zmpop", [numkeys, rest @ ..]) => match mpop_args(numkeys, rest) {
            Ok((keys, max, count)) => {
                let mut reply = Ok(Value::NullArray);
                for k in keys {
                    match pop(db, k, max, count) {
                        Ok(Some(popped)) => {
                            reply = Ok(keyed(k, popped));
                            break;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            reply = Err(e);
                            break;
                        }
                    }
                }
                reply
            }
            Err(e) => Err(e),
        },
        ("zremrangebyscore" | "zremrangebyrank" | "zremrangebylex", [k, min, max]) => {
            zremrange(db, name, k, min, max)
        }
        ("zunionstore" | "zinterstore", [dst, numkeys, rest @ ..]) => {
            zstore(db, name, dst, numkeys, rest)
        }
        _ => Ok(wrong_args(name)),
    };
    result.unwrap_or_else(|e| e)
}

// ===== ZADD =====

/// The options of `ZADD`.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

impl Flags {
    fn incr() -> Flags {
        Flags {
            incr: true,
            ..Flags::default()
        }
    }
}

fn zadd(db: &mut Db, k: &Bytes, rest: &[Bytes]) -> Result<Value, Value> {
    let mut f = Flags::default();
    let mut i = 0;
    while let Some(opt) = rest.get(i) {
        let flag = match () {
            _ if eq(opt, "nx") => &mut f.nx,
            _ if eq(opt, "xx") => &mut f.xx,
            _ if eq(opt, "gt") => &mut f.gt,
            _ if eq(opt, "lt") => &mut f.lt,
            _ if eq(opt, "ch") => &mut f.ch,
            _ if eq(opt, "incr") => &mut f.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    let pairs = &rest[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    if f.nx && f.xx {
        return Err(Value::err(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(Value::err(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs.len() > 2 {
        return Err(Value::err(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs: Vec<(Bytes, Bytes)> = pairs
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    add(db, k, &pairs, f)
}

/// Adds `(score, member)` pairs under the options `f` (`ZADD`, `ZINCRBY`).
fn add(db: &mut Db, k: &Bytes, pairs: &[(Bytes, Bytes)], f: Flags) -> Result<Value, Value> {
    // Every score is checked before anything changes.
    let scores: Vec<f64> = pairs
        .iter()
        .map(|(s, _)| parse_double(s).ok_or_else(not_float))
        .collect::<Result<_, _>>()?;
    let exists = zset_ref(db, k)?.is_some();
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0usize);
    let mut last = 0.0;
    let mut nan = false;
    if exists || !f.xx {
        let Some(z) = zset_mut(db, k, true)? else {
            return Ok(Value::Int(0));
        };
        for ((_, member), &score) in pairs.iter().zip(&scores) {
            match z.score(member) {
                Some(cur) => {
                    if f.nx {
                        continue;
                    }
                    let new = if f.incr { score + cur } else { score };
                    if new.is_nan() {
                        nan = true;
                        break;
                    }
                    if (f.lt && new >= cur) || (f.gt && new <= cur) {
                        continue;
                    }
                    last = new;
                    processed += 1;
                    if new != cur {
                        z.set(member.clone(), new);
                        updated += 1;
                    }
                }
                None if f.xx => {}
                None => {
                    z.set(member.clone(), score);
                    last = score;
                    added += 1;
                    processed += 1;
                }
            }
        }
        if z.len() == 0 {
            db.keys.remove(k);
        }
    }
    if added + updated > 0 {
        db.touch(k);
    }
    if nan {
        return Err(Value::err("ERR resulting score is not a number (NaN)"));
    }
    Ok(if f.incr {
        if processed > 0 {
            Value::Double(last)
        } else {
            Value::Null
        }
    } else {
        Value::Int(if f.ch { added + updated } else { added })
    })
}

fn zrem(db: &mut Db, k: &Bytes, members: &[Bytes]) -> Result<Value, Value> {
    let Some(z) = zset_mut(db, k, false)? else {
        return Ok(Value::Int(0));
    };
    let removed = members.iter().filter(|m| z.remove(m)).count();
    if z.len() == 0 {
        db.keys.remove(k);
    }
    if removed > 0 {
        db.touch(k);
    }
    Ok(Value::Int(removed as i64))
}

fn zrank(db: &mut Db, k: &Bytes, m: &Bytes, opts: &[Bytes], rev: bool) -> Result<Value, Value> {
    let with_score = match opts {
        [] => false,
        [o] if eq(o, "withscore") => true,
        _ => return Err(syntax_error()),
    };
    let z = zset_ref(db, k)?;
    let found = z.and_then(|z| {
        let rank = z.rank(m)?;
        let rank = if rev { z.len() - 1 - rank } else { rank };
        Some((rank as i64, z.score(m)?))
    });
    Ok(match (found, with_score) {
        (Some((rank, _)), false) => Value::Int(rank),
        (Some((rank, score)), true) => Value::Array(vec![Value::Int(rank), Value::Double(score)]),
        (None, false) => Value::Null,
        (None, true) => Value::NullArray,
    })
}

// ===== ZRANGE and friends =====

/// What a range is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range of any kind.
enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

fn zrange(
    db: &mut Db,
    name: &str,
    k: &Bytes,
    start: &Bytes,
    stop: &Bytes,
    opts: &[Bytes],
) -> Result<Value, Value> {
    let (mut by, mut rev) = match name {
        "zrevrange" => (Some(By::Rank), Some(true)),
        "zrangebyscore" => (Some(By::Score), Some(false)),
        "zrevrangebyscore" => (Some(By::Score), Some(true)),
        "zrangebylex" => (Some(By::Lex), Some(false)),
        "zrevrangebylex" => (Some(By::Lex), Some(true)),
        _ => (None, None),
    };
    let (mut with_scores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = 0;
    while let Some(opt) = opts.get(j) {
        let left = opts.len() - j - 1;
        if eq(opt, "withscores") {
            with_scores = true;
        } else if eq(opt, "limit") && left >= 2 {
            offset = int_arg(&opts[j + 1]).ok_or_else(not_int)?;
            limit = int_arg(&opts[j + 2]).ok_or_else(not_int)?;
            j += 2;
        } else if rev.is_none() && eq(opt, "rev") {
            rev = Some(true);
        } else if by.is_none() && eq(opt, "bylex") {
            by = Some(By::Lex);
        } else if by.is_none() && eq(opt, "byscore") {
            by = Some(By::Score);
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    let (by, rev) = (by.unwrap_or(By::Rank), rev.unwrap_or(false));
    if limit != -1 && by == By::Rank {
        return Err(Value::err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && by == By::Lex {
        return Err(Value::err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Reversed score and lex ranges are written max first.
    let (min, max) = if rev && by != By::Rank {
        (stop, start)
    } else {
        (start, stop)
    };
    let range = parse_range(by, min, max)?;
    let Some(z) = zset_ref(db, k)? else {
        return Ok(Value::Array(vec![]));
    };
    let items = select(z, &range, rev, offset, limit);
    Ok(if with_scores {
        Value::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Value::Bulk(m), Value::Double(s)))
                .collect(),
        )
    } else {
        Value::Array(items.into_iter().map(|(m, _)| Value::Bulk(m)).collect())
    })
}

fn parse_range(by: By, min: &Bytes, max: &Bytes) -> Result<Range, Value> {
    Ok(match by {
        By::Rank => Range::Rank(
            int_arg(min).ok_or_else(not_int)?,
            int_arg(max).ok_or_else(not_int)?,
        ),
        By::Score => Range::Score(ScoreRange::parse(min, max)?),
        By::Lex => Range::Lex(LexRange::parse(min, max)?),
    })
}

/// The members in `range` (highest first with `rev`); for score and lex ranges, `offset` of
/// them skipped (all of them when negative) and at most `limit` kept (all when negative).
fn select(z: &SortedSet, range: &Range, rev: bool, offset: i64, limit: i64) -> Vec<(Bytes, f64)> {
    let ordered: Box<dyn Iterator<Item = (&Bytes, f64)>> = if rev {
        Box::new(z.iter().rev())
    } else {
        Box::new(z.iter())
    };
    let picked: Vec<(&Bytes, f64)> = match range {
        Range::Rank(start, stop) => match rank_range(z.len(), *start, *stop) {
            Some((s, e)) => ordered.skip(s).take(e - s + 1).collect(),
            None => vec![],
        },
        Range::Score(r) => limited(ordered.filter(|(_, s)| r.contains(*s)), offset, limit),
        Range::Lex(r) => limited(ordered.filter(|(m, _)| r.contains(m)), offset, limit),
    };
    picked.into_iter().map(|(m, s)| (m.clone(), s)).collect()
}

fn limited<'a>(
    items: impl Iterator<Item = (&'a Bytes, f64)>,
    offset: i64,
    limit: i64,
) -> Vec<(&'a Bytes, f64)> {
    let Ok(offset) = usize::try_from(offset) else {
        return vec![];
    };
    let items = items.skip(offset);
    match usize::try_from(limit) {
        Ok(limit) => items.take(limit).collect(),
        Err(_) => items.collect(),
    }
}

/// The inclusive rank range `start..=stop` of a set of `len` members, negative ranks counting
/// from the end; `None` when it is empty.
fn rank_range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    let start = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    }
    .max(0);
    let stop = if stop < 0 {
        len.saturating_add(stop)
    } else {
        stop
    };
    if start > stop || start >= len {
        return None;
    }
    let stop = stop.min(len - 1);
    Some((usize::try_from(start).ok()?, usize::try_from(stop).ok()?))
}

fn zremrange(db: &mut Db, name: &str, k: &Bytes, min: &Bytes, max: &Bytes) -> Result<Value, Value> {
    let by = match name {
        "zremrangebyrank" => By::Rank,
        "zremrangebyscore" => By::Score,
        _ => By::Lex,
    };
    let range = parse_range(by, min, max)?;
    let Some(z) = zset_mut(db, k, false)? else {
        return Ok(Value::Int(0));
    };
    let doomed = select(z, &range, false, 0, -1);
    for (m, _) in &doomed {
        z.remove(m);
    }
    if z.len() == 0 {
        db.keys.remove(k);
    }
    if !doomed.is_empty() {
        db.touch(k);
    }
    Ok(Value::Int(doomed.len() as i64))
}

// ===== pops =====

fn zpop(db: &mut Db, k: &Bytes, rest: &[Bytes], max: bool) -> Result<Value, Value> {
    let count = match rest {
        [] => None,
        [c] => Some(positive_arg(c)?),
        _ => return Err(syntax_error()),
    };
    if count == Some(0) {
        return Ok(Value::Array(vec![]));
    }
    let popped = pop(db, k, max, count.unwrap_or(1))?.unwrap_or_default();
    Ok(match count {
        // One member: a flat [member, score] in either protocol.
        None => Value::Array(
            popped
                .into_iter()
                .flat_map(|(m, s)| [Value::Bulk(m), Value::Double(s)])
                .collect(),
        ),
        Some(_) => Value::Pairs(
            popped
                .into_iter()
                .map(|(m, s)| (Value::Bulk(m), Value::Double(s)))
                .collect(),
        ),
    })
}

/// Takes up to `n` members with the lowest (or, with `max`, highest) scores from the sorted set
/// at `key`; `None` when there is none there.
pub(super) fn pop(
    db: &mut Db,
    key: &Bytes,
    max: bool,
    n: usize,
) -> Result<Option<Vec<(Bytes, f64)>>, Value> {
    let Some(z) = zset_mut(db, key, false)? else {
        return Ok(None);
    };
    let popped = z.pop(max, n);
    if z.len() == 0 {
        db.keys.remove(key);
    }
    if popped.is_empty() {
        return Ok(None);
    }
    db.touch(key);
    Ok(Some(popped))
}

/// The keys, end and count of `ZMPOP numkeys key... MIN|MAX [COUNT n]` (and `BZMPOP`).
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
    let max = if eq(&opts[0], "min") {
        false
    } else if eq(&opts[0], "max") {
        true
    } else {
        return Err(syntax_error());
    };
    let count = super::lists::count_option(&opts[1..])?;
    Ok((keys, max, count))
}

/// `[key, [[member, score], ...]]`, as `ZMPOP` answers in either protocol.
pub(super) fn keyed(key: &Bytes, popped: Vec<(Bytes, f64)>) -> Value {
    Value::Array(vec![
        Value::Bulk(key.clone()),
        Value::Array(
            popped
                .into_iter()
                .map(|(m, s)| Value::Array(vec![Value::Bulk(m), Value::Double(s)]))
                .collect(),
        ),
    ])
}

// ===== ZUNIONSTORE, ZINTERSTORE =====

#[derive(Debug, Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, acc: f64, v: f64) -> f64 {
        match self {
            // inf + -inf is NaN; Redis makes it 0.
            Aggregate::Sum => {
                let sum = acc + v;
                if sum.is_nan() {
                    0.0
                } else {
                    sum
                }
            }
            Aggregate::Min => acc.min(v),
            Aggregate::Max => acc.max(v),
        }
    }
}

fn zstore(
    db: &mut Db,
    name: &str,
    dst: &Bytes,
    numkeys: &Bytes,
    rest: &[Bytes],
) -> Result<Value, Value> {
    let n = int_arg(numkeys).ok_or_else(not_int)?;
    if n < 1 {
        return Err(Value::err(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > rest.len() {
        return Err(syntax_error());
    }
    let (keys, mut opts) = rest.split_at(n);
    // Each source as (member, score) pairs; a plain set's members score 1.
    let mut sources: Vec<Option<Vec<(Bytes, f64)>>> = Vec::with_capacity(n);
    for k in keys {
        sources.push(match keys::live(db, k).map(|e| &e.data) {
            None => None,
            Some(Data::ZSet(z)) => Some(z.iter().map(|(m, s)| (m.clone(), s)).collect()),
            Some(Data::Set(s)) => Some(s.iter().map(|m| (m.clone(), 1.0)).collect()),
            Some(_) => return Err(wrong_type()),
        });
    }
    let mut weights = vec![1.0; n];
    let mut aggregate = Aggregate::Sum;
    while let Some(opt) = opts.first() {
        if eq(opt, "weights") && opts.len() > n {
            for (w, arg) in weights.iter_mut().zip(&opts[1..=n]) {
                *w = parse_double(arg)
                    .ok_or_else(|| Value::err("ERR weight value is not a float"))?;
            }
            opts = &opts[n + 1..];
        } else if eq(opt, "aggregate") && opts.len() >= 2 {
            aggregate = match () {
                _ if eq(&opts[1], "sum") => Aggregate::Sum,
                _ if eq(&opts[1], "min") => Aggregate::Min,
                _ if eq(&opts[1], "max") => Aggregate::Max,
                _ => return Err(syntax_error()),
            };
            opts = &opts[2..];
        } else {
            return Err(syntax_error());
        }
    }
    let weighted = |score: f64, w: f64| {
        let v = score * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: HashMap<Bytes, f64> = HashMap::new();
    if name == "zunionstore" {
        for (src, w) in sources.iter().zip(&weights) {
            for (m, s) in src.iter().flatten() {
                let v = weighted(*s, *w);
                result
                    .entry(m.clone())
                    .and_modify(|acc| *acc = aggregate.apply(*acc, v))
                    .or_insert(v);
            }
        }
    } else if let Some(present) = sources
        .iter()
        .map(Option::as_ref)
        .collect::<Option<Vec<_>>>()
    {
        let lookups: Vec<HashMap<&Bytes, f64>> = present
            .iter()
            .map(|src| src.iter().map(|(m, s)| (m, *s)).collect())
            .collect();
        if let Some(first) = present.first() {
            'members: for (m, s) in first.iter() {
                let mut acc = weighted(*s, weights[0]);
                for (lookup, w) in lookups[1..].iter().zip(&weights[1..]) {
                    let Some(other) = lookup.get(m) else {
                        continue 'members;
                    };
                    acc = aggregate.apply(acc, weighted(*other, *w));
                }
                result.insert(m.clone(), acc);
            }
        }
    }
    let count = result.len() as i64;
    let existed = keys::live(db, dst).is_some();
    if result.is_empty() {
        db.keys.remove(dst);
    } else {
        let mut z = SortedSet::default();
        for (m, s) in result {
            z.set(m, s);
        }
        db.keys.insert(
            dst.clone(),
            Entry {
                data: Data::ZSet(z),
                expires: None,
            },
        );
    }
    if existed || count > 0 {
        db.touch(dst);
    }
    Ok(Value::Int(count))
}

// ===== ranges and numbers =====

fn not_float() -> Value {
    Value::err("ERR value is not a valid float")
}

/// A double as Redis reads a score or a weight: the whole argument, no leading space, no NaN,
/// nothing that overflows or underflows (`inf` itself is fine).
pub(super) fn parse_double(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace() || c == '\x0b') {
        return None;
    }
    let d = c_double(s)?;
    if d.is_nan() {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if d.is_infinite() && !lower.contains("inf") {
        return None; // overflow
    }
    if d == 0.0 && !lower.contains("0x") && mantissa_nonzero(&lower) {
        return None; // underflow
    }
    Some(d)
}

/// Whether the digits before the exponent of a decimal number are not all zeros.
pub(super) fn mantissa_nonzero(lower: &str) -> bool {
    let mantissa = lower.split('e').next().unwrap_or("");
    mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c))
}

/// A whole string read as C's `strtod` reads a number: decimal as Rust reads it, and also
/// hexadecimal (`0x10`, `0x1.8p3`).
pub(super) fn c_double(s: &str) -> Option<f64> {
    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    else {
        return s.parse().ok();
    };
    let (digits, exp) = match hex.find(['p', 'P']) {
        Some(i) => (&hex[..i], hex[i + 1..].parse::<i32>().ok()?),
        None => (hex, 0),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value = 0.0f64;
    for c in int.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let value = value * 2f64.powi(exp);
    Some(if negative { -value } else { value })
}

/// A range bound as `ZRANGEBYSCORE` reads one: C's `strtod` over the whole argument, which
/// skips leading spaces and reads an empty argument as 0.
fn range_double(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() {
        return Some(0.0);
    }
    let d = c_double(s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b'))?;
    (!d.is_nan()).then_some(d)
}

/// Bounds on scores: `1`, `(1` (exclusive), `-inf`, `+inf`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScoreRange {
    min: f64,
    min_ex: bool,
    max: f64,
    max_ex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, Value> {
        let bound = |b: &[u8]| match b.strip_prefix(b"(") {
            Some(rest) => range_double(rest).map(|d| (d, true)),
            None => range_double(b).map(|d| (d, false)),
        };
        match (bound(min), bound(max)) {
            (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
                min,
                min_ex,
                max,
                max_ex,
            }),
            _ => Err(Value::err("ERR min or max is not a float")),
        }
    }

    fn contains(&self, s: f64) -> bool {
        let above = if self.min_ex {
            s > self.min
        } else {
            s >= self.min
        };
        let below = if self.max_ex {
            s < self.max
        } else {
            s <= self.max
        };
        above && below
    }
}

/// One end of a lex range: `-`, `+`, `[a` (inclusive), `(a` (exclusive).
#[derive(Debug, Clone)]
enum Lex {
    Lowest,
    Highest,
    Incl(Bytes),
    Excl(Bytes),
}

/// Bounds on members, for members of equal score.
#[derive(Debug, Clone)]
struct LexRange {
    min: Lex,
    max: Lex,
}

impl LexRange {
    fn parse(min: &Bytes, max: &Bytes) -> Result<LexRange, Value> {
        let bound = |b: &Bytes| match b.first() {
            Some(b'-') if b.len() == 1 => Some(Lex::Lowest),
            Some(b'+') if b.len() == 1 => Some(Lex::Highest),
            Some(b'[') => Some(Lex::Incl(b.slice(1..))),
            Some(b'(') => Some(Lex::Excl(b.slice(1..))),
            _ => None,
        };
        match (bound(min), bound(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(Value::err("ERR min or max not valid string range item")),
        }
    }

    fn contains(&self, m: &Bytes) -> bool {
        let above = match &self.min {
            Lex::Lowest => true,
            Lex::Highest => false,
            Lex::Incl(b) => m >= b,
            Lex::Excl(b) => m > b,
        };
        let below = match &self.max {
            Lex::Lowest => false,
            Lex::Highest => true,
            Lex::Incl(b) => m <= b,
            Lex::Excl(b) => m < b,
        };
        above && below
    }
}

// ===== lookups =====

fn zset_ref<'a>(db: &'a mut Db, key: &Bytes) -> Result<Option<&'a SortedSet>, Value> {
    zset_mut(db, key, false).map(|z| z.map(|z| &*z))
}

/// The sorted set at `key`, created empty when `create` is set and it does not exist.
fn zset_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    create: bool,
) -> Result<Option<&'a mut SortedSet>, Value> {
    collection_mut(
        db,
        key,
        create,
        || Data::ZSet(SortedSet::default()),
        |data| match data {
            Data::ZSet(z) => Some(z),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_parsed_as_redis_parses_them() {
        assert_eq!(parse_double(b"1.5"), Some(1.5));
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_double(b"5e-324"), Some(5e-324));
        assert_eq!(parse_double(b"0x10"), Some(16.0));
        assert_eq!(parse_double(b"-0x1.8p1"), Some(-3.0));
        for bad in [&b"nan"[..], b"", b" 1", b"1e400", b"1e-400", b"1abc", b"x"] {
            assert_eq!(parse_double(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(range_double(b""), Some(0.0));
        assert_eq!(range_double(b" 3"), Some(3.0));
        assert_eq!(range_double(b"   "), None);
        assert_eq!(range_double(b"1e400"), Some(f64::INFINITY));
    }

    #[test]
    fn members_order_by_score_then_bytes_and_negative_zero_is_zero() {
        let mut z = SortedSet::default();
        assert!(z.set(Bytes::from_static(b"b"), 1.0));
        assert!(z.set(Bytes::from_static(b"a"), 1.0));
        assert!(z.set(Bytes::from_static(b"c"), -0.0));
        assert!(!z.set(Bytes::from_static(b"b"), 0.5));
        let order: Vec<(&[u8], f64)> = z.iter().map(|(m, s)| (&m[..], s)).collect();
        assert_eq!(order, [(&b"c"[..], 0.0), (b"b", 0.5), (b"a", 1.0)]);
        assert!(z.iter().next().is_some_and(|(_, s)| s.is_sign_positive()));
        assert_eq!(z.rank(&Bytes::from_static(b"a")), Some(2));
        assert_eq!(rank_range(3, -100, i64::MAX), Some((0, 2)));
        assert_eq!(rank_range(3, i64::MIN, i64::MIN), None);
    }

    #[test]
    fn zrank_with_score_answers_as_redis_7_2_does() {
        let mut db = Db::default();
        let args = |line: &str| -> Vec<Bytes> {
            line.split(' ')
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        run(&mut db, "zadd", &args("z 1 a 2.5 b"));
        let rank = run(&mut db, "zrank", &args("z b WITHSCORE"));
        assert_eq!(rank, Value::Array(vec![Value::Int(1), Value::Double(2.5)]));
        assert_eq!(&rank.encode(true)[..], b"*2\r\n:1\r\n,2.5\r\n");
        assert_eq!(&rank.encode(false)[..], b"*2\r\n:1\r\n$3\r\n2.5\r\n");
        let rev = run(&mut db, "zrevrank", &args("z b withscore"));
        assert_eq!(rev, Value::Array(vec![Value::Int(0), Value::Double(2.5)]));
        assert_eq!(
            run(&mut db, "zrank", &args("z nope WITHSCORE")),
            Value::NullArray
        );
        assert_eq!(
            run(&mut db, "zrank", &args("z a WITHSCORES")),
            syntax_error()
        );
        assert_eq!(
            run(&mut db, "zrank", &args("z a WITHSCORE x")),
            syntax_error()
        );
    }
}
