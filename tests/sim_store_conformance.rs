//! The simulator's embedded store answers as redis-server does, byte for byte: every script here
//! runs against a real redis-server and against the simulator over the `memory` backend, in
//! RESP2 and in RESP3, and each reply must be the same bytes.
//!
//! Scripts are written one command a line, arguments split on spaces (`""` is an empty one).
//! A line starting with `~` compares the elements of an aggregate reply in any order, for replies
//! Redis gives in hash or insertion order (`SMEMBERS` of a set of strings, `KEYS`, `HGETALL`),
//! which the store gives in byte order. Random replies (`SPOP`, `SRANDMEMBER`) are only taken
//! where they are certain: a count at least the size of the set, a one-member set.
#![cfg(feature = "sim")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{frame_len, show, RawClient, RedisServer};
use redis_handoff::sim::{Backend, Simulator};

/// A redis-server and a simulator over the embedded store, side by side.
struct Targets {
    redis: RedisServer,
    sim: Simulator,
}

impl Targets {
    async fn start() -> Targets {
        let redis = RedisServer::start();
        let sim = Simulator::builder()
            .backend(Backend::Memory)
            .start()
            .await
            .expect("simulator starts");
        Targets { redis, sim }
    }

    fn addrs(&self) -> [SocketAddr; 2] {
        let redis = self.redis.addr().parse().expect("an address");
        [redis, self.sim.node_addr(0)]
    }

    /// A connection to each, in RESP3 when `resp3`, with both databases emptied.
    async fn connect(&self, resp3: bool) -> Both {
        let mut both = self.client(resp3).await;
        both.run("FLUSHALL").await;
        both
    }

    /// A connection to each, in RESP3 when `resp3`.
    async fn client(&self, resp3: bool) -> Both {
        let [redis, sim] = self.addrs();
        let (redis, sim) = if resp3 {
            (RawClient::resp3(redis).await, RawClient::resp3(sim).await)
        } else {
            (
                RawClient::connect(redis).await.expect("connect to redis"),
                RawClient::connect(sim)
                    .await
                    .expect("connect to the simulator"),
            )
        };
        Both { redis, sim, resp3 }
    }
}

/// One connection to redis-server and one to the simulator, fed the same commands.
struct Both {
    redis: RawClient,
    sim: RawClient,
    resp3: bool,
}

impl Both {
    /// Sends one script line to both, without reading the replies.
    async fn send(&mut self, line: &str) {
        let args = split(line);
        self.redis.send(&args).await;
        self.sim.send(&args).await;
    }

    /// The next reply of each; they must be the same bytes (the same members, for `unordered`).
    async fn same_reply(&mut self, line: &str, unordered: bool) -> Vec<u8> {
        let redis = self.redis.frame().await;
        let sim = self.sim.frame().await;
        let proto = if self.resp3 { "RESP3" } else { "RESP2" };
        if unordered {
            assert_eq!(
                members(&sim),
                members(&redis),
                "{proto} `{line}`: the simulator answered {}, redis {}",
                show(&sim),
                show(&redis)
            );
        } else {
            assert_eq!(
                show(&sim),
                show(&redis),
                "{proto} `{line}`: the simulator answered differently from redis"
            );
        }
        redis
    }

    /// Runs one script line on both and compares the replies; returns redis's.
    async fn run(&mut self, line: &str) -> Vec<u8> {
        let (unordered, line) = match line.strip_prefix('~') {
            Some(rest) => (true, rest.trim()),
            None => (false, line.trim()),
        };
        self.send(line).await;
        self.same_reply(line, unordered).await
    }

    /// Runs every line of `script` (blank lines and `#` comments skipped).
    async fn script(&mut self, script: &str) {
        for line in script.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.run(line).await;
        }
    }
}

/// A script line's arguments: split on spaces, `""` standing for an empty argument.
fn split(line: &str) -> Vec<&str> {
    line.split(' ')
        .filter(|a| !a.is_empty())
        .map(|a| if a == "\"\"" { "" } else { a })
        .collect()
}

/// The header of an aggregate and its elements sorted, for comparing replies in any order.
fn members(frame: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let Some(header_end) = frame.windows(2).position(|w| w == b"\r\n").map(|p| p + 2) else {
        return (frame.to_vec(), vec![]);
    };
    if !matches!(frame[0], b'*' | b'~' | b'%') {
        return (frame.to_vec(), vec![]);
    }
    let mut rest = &frame[header_end..];
    let mut elems = Vec::new();
    while !rest.is_empty() {
        let Ok(Some(len)) = frame_len(rest) else {
            return (frame.to_vec(), vec![]);
        };
        elems.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    elems.sort();
    (frame[..header_end].to_vec(), elems)
}

/// Runs `script` on fresh connections in RESP2, then in RESP3.
async fn conforms(script: &str) {
    let targets = Targets::start().await;
    for resp3 in [false, true] {
        targets.connect(resp3).await.script(script).await;
    }
}

#[tokio::test]
async fn strings_keys_hashes_and_lists_answer_as_redis_does() {
    conforms(
        "
        SET s v
        SET s w NX
        SET s w XX GET
        GET s
        SET s v EX 0
        SET s v PX x
        SET s v FOO
        APPEND s xyz
        STRLEN s
        GETSET s new
        GETDEL s
        GETDEL s
        SETNX s x
        SETEX e 100 v
        SETEX e 0 v
        TTL e
        PTTL nokey
        INCR n
        INCRBY n 10
        DECR n
        DECRBY n 3
        INCR s
        INCRBY n x
        INCRBYFLOAT f 1.5
        INCRBYFLOAT f x
        MSET a 1 b 2
        MSET a
        MGET a nope b
        EXISTS a b nope a
        TYPE a
        TYPE nope
        ~KEYS [ab]
        DEL a nope
        RENAME b c
        RENAME nope c
        EXPIRE c 100
        TTL c
        PERSIST c
        PERSIST c
        EXPIRE c x
        EXPIRE nope 10
        HSET h a 1 b 2
        HSET h a 3
        HSET h a
        HGET h a
        HMGET h a x
        ~HGETALL h
        HINCRBY h b 5
        HINCRBY h a x
        HLEN h
        HEXISTS h a
        ~HKEYS h
        ~HVALS h
        HSETNX h a 9
        HSETNX h c 9
        HDEL h a x
        HMSET h d 4
        GET h
        TYPE h
        RPUSH l a b c
        LPUSH l z
        LRANGE l 0 -1
        LRANGE l 1 2
        LRANGE l 5 10
        LINDEX l -1
        LINDEX l 10
        LLEN l
        LPOP l
        RPOP l 2
        LPOP l
        LPOP l
        EXISTS l
        DBSIZE
        ECHO hi
        PING
        PING hi
        SELECT 99
        SELECT x
        FLUSHDB
        DBSIZE
        ",
    )
    .await;
}

#[tokio::test]
async fn sets_answer_as_redis_does() {
    conforms(
        "
        SADD s 3 1 2 10
        SADD s 2 20
        SMEMBERS s
        SCARD s
        SISMEMBER s 10
        SISMEMBER s 11
        SMISMEMBER s 1 4 20
        SREM s 20 99
        SREM nokey a
        SMEMBERS nokey
        SCARD nokey
        TYPE s
        SADD t 2 3 4
        SINTER s t
        SUNION s t
        SDIFF s t
        SDIFF t s nokey
        SINTER s nokey
        SUNION nokey
        SINTERSTORE i s t
        SMEMBERS i
        SUNIONSTORE u s t nokey
        SMEMBERS u
        SDIFFSTORE d s t
        SMEMBERS d
        SDIFFSTORE d nokey s
        EXISTS d
        SINTERCARD 2 s t
        SINTERCARD 2 s t LIMIT 1
        SINTERCARD 2 s t LIMIT 0
        SINTERCARD 1 nokey
        SINTERCARD 0 s
        SINTERCARD x s
        SINTERCARD 3 s t
        SINTERCARD 1 s LIMIT -1
        SINTERCARD 1 s FOO 1
        SMOVE s t 1
        SMOVE s t 1
        SMOVE s s 2
        SMOVE nokey t 1
        SMOVE s moved 10
        SMEMBERS moved
        SMEMBERS t
        SSCAN s 0
        SSCAN s 0 MATCH 1*
        SSCAN s 0 COUNT 100
        SSCAN s 0 COUNT 0
        SSCAN s 0 FOO bar
        SSCAN s x
        SSCAN nokey 0 COUNT 0
        # Random commands, where the answer is certain.
        SADD one only
        SPOP one 0
        SRANDMEMBER one
        SRANDMEMBER one -3
        SRANDMEMBER one 5
        SRANDMEMBER t 100
        SRANDMEMBER t 0
        SRANDMEMBER nokey
        SRANDMEMBER nokey 3
        SRANDMEMBER t 1 2
        SPOP one
        SPOP one
        EXISTS one
        SPOP t 10
        EXISTS t
        SPOP nokey
        SPOP nokey 2
        SPOP s -1
        SPOP s x
        SPOP s 1 2
        # Strings are listed in hash order by Redis: compared as sets.
        SADD w banana apple cherry
        ~SMEMBERS w
        ~SUNION w s
        ~SINTER w w
        SET str v
        SADD str a
        SMEMBERS str
        SINTER s str
        SINTER nokey str
        SMOVE s str 2
        SMOVE str s 2
        SINTERSTORE str s
        TYPE str
        SADD
        SCARD a b
        ",
    )
    .await;
}

#[tokio::test]
async fn sorted_sets_answer_as_redis_does() {
    conforms(
        "
        ZADD z 1 a 2.5 b inf c
        ZADD z 0.1 d -inf e -0 f 1e20 g
        ZRANGE z 0 -1 WITHSCORES
        ZSCORE z b
        ZSCORE z d
        ZSCORE z f
        ZSCORE z g
        ZSCORE z nope
        ZSCORE nokey a
        ZMSCORE z a nope c
        ZMSCORE nokey a
        ZCARD z
        ZCARD nokey
        ZADD z nan x
        ZADD z 1e400 x
        ZADD z abc x
        ZADD z 1
        ZADD z 1 a 2
        ZADD z NX XX 1 a
        ZADD z GT LT 1 a
        ZADD z NX GT 1 a
        ZADD z INCR 1 a 2 b
        ZADD z XX 5 newmember
        ZADD z XX CH 5 a
        ZADD z NX 9 a 9 h
        ZADD z GT CH 1 a 10 b
        ZADD z LT CH 1 a 10 b
        ZADD z INCR 2 a
        ZADD z INCR -inf c
        ZADD z NX INCR 1 a
        ZADD z XX INCR 1 nope
        ZINCRBY z 0.1 a
        ZINCRBY z 1 new
        ZINCRBY z x a
        ZINCRBY z -inf e
        ZRANGE z 0 -1 WITHSCORES
        ZRANK z a
        ZREVRANK z a
        ZRANK z nope
        ZRANK nokey a
        ZCOUNT z -inf +inf
        ZCOUNT z (1 3
        ZCOUNT z 1 (3
        ZCOUNT z x 3
        ZCOUNT z [1 3
        ZCOUNT nokey 0 1
        ZREM z new nope
        ZREM nokey a
        ZADD r 1 a 2 b 3 c 4 d 5 e
        ZRANGE r 0 -1
        ZRANGE r 1 2 WITHSCORES
        ZRANGE r -2 -1
        ZRANGE r 3 1
        ZRANGE r 0 100
        ZRANGE r -100 0
        ZRANGE r 0 -1 REV
        ZRANGE r 0 0 REV WITHSCORES
        ZRANGE r (1 5 BYSCORE
        ZRANGE r 5 (1 BYSCORE REV
        ZRANGE r -inf +inf BYSCORE LIMIT 1 2 WITHSCORES
        ZRANGE r -inf +inf BYSCORE LIMIT -1 2
        ZRANGE r -inf +inf BYSCORE LIMIT 1 0
        ZRANGE r -inf +inf BYSCORE LIMIT 0 -1
        ZRANGE r 0 -1 LIMIT 1 2
        ZRANGE r 0 -1 LIMIT 0 -1
        ZRANGE r 0 -1 BYLEX
        ZRANGE r 0 -1 BYSCORE BYLEX
        ZRANGE r - + BYLEX WITHSCORES
        ZRANGE r 0 -1 FOO
        ZRANGE r 1 x
        ZRANGE r x 1 BYSCORE
        ZRANGE nokey 0 -1
        ZREVRANGE r 0 1 WITHSCORES
        ZREVRANGE r 0 -1 REV
        ZREVRANGE r 0 -1 LIMIT 0 1
        ZRANGEBYSCORE r 2 4
        ZRANGEBYSCORE r (2 4 WITHSCORES
        ZRANGEBYSCORE r -inf +inf LIMIT 0 1
        ZRANGEBYSCORE r 1 3 BYSCORE
        ZREVRANGEBYSCORE r +inf -inf
        ZREVRANGEBYSCORE r 4 (2 WITHSCORES LIMIT 0 1
        ZREVRANGEBYSCORE r 3 1 REV
        ZADD lex 0 a 0 b 0 c 0 d 0 e
        ZRANGEBYLEX lex - +
        ZRANGEBYLEX lex [b (d
        ZRANGEBYLEX lex (a [c LIMIT 1 5
        ZRANGEBYLEX lex a z
        ZREVRANGEBYLEX lex + -
        ZREVRANGEBYLEX lex [d (a
        ZRANGE lex [c + BYLEX
        ZRANGE lex + [c BYLEX REV
        ZLEXCOUNT lex - +
        ZLEXCOUNT lex [b [c
        ZLEXCOUNT lex b c
        ZPOPMIN r
        ZPOPMIN r 2
        ZPOPMIN r 1
        ZPOPMIN r 0
        ZPOPMIN r -1
        ZPOPMIN r 1 2
        ZPOPMAX r
        ZPOPMAX r 10
        EXISTS r
        ZPOPMIN nokey
        ZPOPMAX nokey 2
        ZADD m 1 a 2 b 3 c
        ZMPOP 1 m MIN
        ZMPOP 2 nokey m MAX COUNT 5
        ZMPOP 1 m MIN
        ZMPOP 0 m MIN
        ZMPOP 1 m FOO
        ZMPOP 1 m MIN COUNT 0
        ZMPOP 1 m MIN COUNT 1 COUNT 2
        ZADD q 1 a 2 b 3 c 4 d 5 e 6 f
        ZREMRANGEBYSCORE q -inf (2
        ZREMRANGEBYSCORE q 10 20
        ZREMRANGEBYRANK q 0 0
        ZREMRANGEBYRANK q -1 -1
        ZREMRANGEBYLEX q [c [d
        ZREMRANGEBYSCORE q x 1
        ZREMRANGEBYRANK q a 1
        ZREMRANGEBYLEX q a b
        ZRANGE q 0 -1 WITHSCORES
        ZREMRANGEBYRANK q 0 -1
        EXISTS q
        ZADD z1 1 a 2 b 3 c
        ZADD z2 10 a 20 x
        SADD plain a y
        ZUNIONSTORE u 2 z1 z2
        ZRANGE u 0 -1 WITHSCORES
        ZINTERSTORE i 2 z1 z2 WEIGHTS 2 3 AGGREGATE MAX
        ZRANGE i 0 -1 WITHSCORES
        ZUNIONSTORE u 2 z1 z2 AGGREGATE MIN WEIGHTS 1 -1
        ZRANGE u 0 -1 WITHSCORES
        ZUNIONSTORE u 3 z1 z2 plain
        ZRANGE u 0 -1 WITHSCORES
        ZINTERSTORE i 2 z1 plain
        ZRANGE i 0 -1 WITHSCORES
        ZINTERSTORE i 2 z1 nokey
        EXISTS i
        ZUNIONSTORE u 0 z1
        ZUNIONSTORE u 3 z1 z2
        ZUNIONSTORE u 2 z1 z2 WEIGHTS 1
        ZUNIONSTORE u 2 z1 z2 WEIGHTS 1 x
        ZUNIONSTORE u 2 z1 z2 AGGREGATE FOO
        ZUNIONSTORE u x z1
        SET str v
        ZUNIONSTORE u 2 z1 str
        ZADD str 1 a
        ZRANGE str 0 -1
        ZSCORE str a
        ZPOPMIN str
        TYPE z1
        ",
    )
    .await;
}

#[tokio::test]
async fn lists_move_and_pop_from_many_keys_as_redis_does() {
    conforms(
        "
        RPUSH l a b c
        LMOVE l m LEFT RIGHT
        LMOVE l m right left
        LMOVE l m UP LEFT
        LMOVE nokey m LEFT LEFT
        LRANGE m 0 -1
        RPOPLPUSH l l
        RPOPLPUSH m l
        LRANGE l 0 -1
        LMPOP 1 nokey LEFT
        LMPOP 2 nokey l RIGHT COUNT 5
        LMPOP 1 m LEFT
        LMPOP 1 m
        LMPOP 3 a b
        LMPOP x a LEFT
        LMPOP 1 a LEFT COUNT 0
        LMPOP 1 a LEFT COUNT 1 COUNT 2
        LPOP nokey 0
        LPOP nokey 2
        RPUSH l x
        LPOP l 0
        LPOP l x
        LPOP l -1
        LRANGE l +0 -1
        SET str v
        LMOVE l str LEFT LEFT
        LMOVE str l LEFT LEFT
        LRANGE l 0 -1
        ",
    )
    .await;
}

#[tokio::test]
async fn unknown_commands_and_wrong_arities_are_refused_as_redis_does() {
    conforms(
        "
        NOSUCH
        NOSUCH a b
        nosuch 1 2 3 4 5 6 7 8 9 10
        GET
        GET a b
        SET a
        ZADD z
        BLPOP k
        MULTI a
        WATCH
        EXEC a
        ",
    )
    .await;
    // Long arguments are cut as Redis cuts them (128 bytes in all).
    let long = "x".repeat(100);
    conforms(&format!(
        "NOSUCH {long} {long} {long}\nNOSUCH{long}{long} a\n"
    ))
    .await;
}

#[tokio::test]
async fn extreme_counts_ranges_and_scores_are_answered_as_redis_does() {
    conforms(
        "
        SADD s 1 2
        SRANDMEMBER s -9223372036854775808
        SRANDMEMBER s 9223372036854775807
        SRANDMEMBER s 9223372036854775808
        SPOP s 9223372036854775807
        SADD s 1 2
        SINTERCARD 9223372036854775807 s
        SINTERCARD 1 s LIMIT 9223372036854775807
        SADD e \"\"
        SMEMBERS e
        ZADD r 1 a 2 b
        ZRANGE r 0 9223372036854775807
        ZRANGE r -9223372036854775808 -1
        ZRANGE r -9223372036854775808 -9223372036854775808
        ZRANGE r 9223372036854775807 -9223372036854775808
        ZRANGEBYSCORE r -inf +inf LIMIT 9223372036854775807 9223372036854775807
        ZRANGEBYSCORE r -inf +inf LIMIT 0 -9223372036854775808
        ZPOPMIN r 9223372036854775807
        ZADD r 1 a 2 b
        ZREMRANGEBYRANK r -9223372036854775808 9223372036854775807
        ZUNIONSTORE u 9223372036854775807 r
        ZUNIONSTORE u -9223372036854775808 r
        ZADD r 1e308 big
        ZINCRBY r 1e308 big
        ZINCRBY r inf big
        ZINCRBY r -inf big
        ZCOUNT r (inf +inf
        ZRANGE r -inf -inf BYSCORE
        ZRANGE r + - BYLEX
        ZADD r 1 \"\"
        ZRANGE r [ + BYLEX
        ZRANGE r ( + BYLEX
        ZSCORE r \"\"
        ZRANGEBYSCORE r ( +inf
        ZRANGEBYSCORE r \"\" +inf
        ZRANGEBYSCORE r (nan +inf
        ZADD r 5e-324 tiny 1e-400 gone
        ZADD r 0x10 hex
        LPUSH l a
        LMPOP 1 l LEFT COUNT 9223372036854775807
        LPUSH l a
        LPOP l 9223372036854775807
        LRANGE l -9223372036854775808 9223372036854775807
        BLPOP k 9223372036854775807
        BLPOP k 1e20
        BLMPOP 0 9223372036854775807 k LEFT
        ",
    )
    .await;
}

#[tokio::test]
async fn transactions_answer_as_redis_does() {
    conforms(
        "
        EXEC
        DISCARD
        MULTI
        MULTI
        WATCH k
        SET k v
        NOSUCH a b
        GET
        EXEC
        GET k
        MULTI
        SET k v
        INCR k
        LPUSH k x
        GET k
        SADD s 1
        ZADD z 1 m
        ZSCORE z m
        EXEC
        MULTI
        MULTI
        EXEC
        MULTI
        DISCARD a
        EXEC
        MULTI
        EXEC a
        DISCARD
        MULTI
        SET k w
        DISCARD
        GET k
        MULTI
        WATCH x
        UNWATCH
        EXEC
        MULTI
        BLPOP nolist 0
        BRPOP nolist 0
        BLMOVE a b LEFT RIGHT 0
        BRPOPLPUSH a b 0
        BLMPOP 0 1 a LEFT
        BZPOPMIN zz 0
        BZPOPMAX zz 0
        BZMPOP 0 1 zz MIN
        RPUSH nolist a
        BLPOP nolist 0
        BLPOP nolist x
        EXEC
        WATCH k
        SET k mine
        MULTI
        GET k
        EXEC
        WATCH k
        UNWATCH
        SET k again
        MULTI
        GET k
        EXEC
        WATCH k nokey
        WATCH k
        MULTI
        PING
        EXEC
        WATCH nokey
        MULTI
        RESET
        EXEC
        ",
    )
    .await;
}

#[tokio::test]
async fn a_write_by_another_connection_fails_exec_on_a_watched_key() {
    let targets = Targets::start().await;
    for resp3 in [false, true] {
        let mut a = targets.connect(resp3).await;
        let mut b = targets.client(resp3).await;
        a.run("SET k 1").await;
        a.run("WATCH k other").await;
        a.run("GET k").await;
        b.run("INCR k").await;
        a.run("MULTI").await;
        a.run("SET k from-a").await;
        a.run("EXEC").await;
        a.run("GET k").await;

        // Untouched keys: EXEC goes through, and its writes fail the other's watch.
        a.run("WATCH k").await;
        b.run("WATCH k").await;
        b.run("GET other").await;
        a.run("MULTI").await;
        a.run("INCR k").await;
        a.run("EXEC").await;
        b.run("MULTI").await;
        b.run("INCR k").await;
        b.run("EXEC").await;

        // A deleted key, a key created after WATCH, a key written in another database.
        a.run("WATCH k fresh").await;
        b.run("SET fresh 1").await;
        a.run("MULTI").await;
        a.run("EXEC").await;
        a.run("WATCH k").await;
        b.run("SELECT 1").await;
        b.run("SET k elsewhere").await;
        a.run("MULTI").await;
        a.run("EXEC").await;
        a.run("WATCH k").await;
        b.run("SELECT 0").await;
        b.run("DEL k").await;
        a.run("MULTI").await;
        a.run("EXEC").await;

        // FLUSHALL changes every key that existed, and only those.
        a.run("SET k 1").await;
        a.run("WATCH k").await;
        b.run("FLUSHALL").await;
        a.run("MULTI").await;
        a.run("EXEC").await;
        a.run("WATCH nokey").await;
        b.run("FLUSHALL").await;
        a.run("MULTI").await;
        a.run("EXEC").await;

        // A watched key that expires.
        a.run("SET t v PX 50").await;
        a.run("WATCH t").await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        a.run("MULTI").await;
        a.run("EXEC").await;
    }
}

#[tokio::test]
async fn exec_runs_its_queue_with_no_other_command_in_between() {
    let targets = Targets::start().await;
    let sim = targets.addrs()[1];
    let mut writer = RawClient::connect(sim).await.expect("connect");
    let mut reader = RawClient::connect(sim).await.expect("connect");
    // Two keys written together in one transaction are never seen apart by another client.
    let mut batch = Vec::new();
    for i in 0..200 {
        let n = i.to_string();
        for args in [
            vec!["MULTI"],
            vec!["SET", "x", &n],
            vec!["SET", "y", &n],
            vec!["EXEC"],
        ] {
            batch.extend(common::encode(&args));
        }
    }
    writer.write(&batch).await;
    for _ in 0..200 {
        let got = reader.cmd(&["MGET", "x", "y"]).await;
        let text = String::from_utf8_lossy(&got).into_owned();
        let parts: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(parts.get(2), parts.get(4), "x and y apart: {text:?}");
    }
    for _ in 0..200 * 4 {
        writer.frame().await;
    }
}

#[tokio::test]
async fn blpop_is_served_by_another_connections_push() {
    let targets = Targets::start().await;
    for resp3 in [false, true] {
        let mut waiter = targets.connect(resp3).await;
        let mut second = targets.client(resp3).await;
        let mut pusher = targets.client(resp3).await;

        waiter.send("BLPOP q other 0").await;
        pause().await;
        pusher.run("LPUSH q a b c").await;
        waiter.same_reply("BLPOP q other 0", false).await;
        pusher.run("LRANGE q 0 -1").await;

        // Waiters are served first come first served, each from the key that was pushed to.
        pusher.run("DEL q").await;
        waiter.send("BRPOP q 0").await;
        pause().await;
        second.send("BLPOP other q 0").await;
        pause().await;
        pusher.run("RPUSH q 1 2 3").await;
        waiter.same_reply("BRPOP q 0", false).await;
        second.same_reply("BLPOP other q 0", false).await;
        pusher.run("LLEN q").await;

        // BLMOVE moves what is pushed; the list it lands in serves the next waiter.
        pusher.run("DEL q").await;
        waiter.send("BLMOVE q dst RIGHT LEFT 0").await;
        pause().await;
        second.send("BLPOP dst 0").await;
        pause().await;
        pusher.run("RPUSH q moved").await;
        waiter.same_reply("BLMOVE q dst RIGHT LEFT 0", false).await;
        second.same_reply("BLPOP dst 0", false).await;
        pusher.run("EXISTS q dst").await;

        waiter.send("BLMPOP 0 2 a b RIGHT COUNT 2").await;
        pause().await;
        pusher.run("RPUSH b 1 2 3").await;
        waiter.same_reply("BLMPOP", false).await;

        // Sorted sets.
        waiter.send("BZPOPMIN zs 0").await;
        pause().await;
        second.send("BZPOPMAX zs 0").await;
        pause().await;
        pusher.run("ZADD zs 1 a 2.5 b 3 c").await;
        waiter.same_reply("BZPOPMIN zs 0", false).await;
        second.same_reply("BZPOPMAX zs 0", false).await;
        pusher.run("ZRANGE zs 0 -1 WITHSCORES").await;
        waiter.send("BZMPOP 0 1 zs MAX COUNT 3").await;
        pause().await;
        pusher.run("ZADD zs 5 e").await;
        waiter.same_reply("BZMPOP", false).await;

        // A push inside a transaction serves the waiter once EXEC is done.
        waiter.send("BLPOP tx 0").await;
        pause().await;
        pusher.script("MULTI\nRPUSH tx 1 2\nLPOP tx\nEXEC").await;
        waiter.same_reply("BLPOP tx 0", false).await;
        pusher.run("LLEN tx").await;

        // A key of another type leaves the waiter waiting.
        waiter.send("BLPOP typed 0.3").await;
        pause().await;
        pusher.run("SET typed v").await;
        waiter.same_reply("BLPOP typed 0.3", false).await;

        // Data already there: answered at once, as the plain pop.
        pusher.run("RPUSH ready x").await;
        waiter.run("BLPOP nokey ready 0").await;
        waiter.run("BLPOP typed 0").await;
        waiter.run("BLMOVE typed q LEFT LEFT 0").await;
        pusher.run("RPUSH ready y").await;
        waiter.run("BLMOVE ready typed LEFT LEFT 0").await;
        waiter.run("BLPOP k -1").await;
        waiter.run("BLPOP k x").await;
        waiter.run("BLPOP k inf").await;
        waiter.run("BLMPOP 0 0 a LEFT").await;
        waiter.run("BLMOVE a b UP LEFT 0").await;
    }
}

#[tokio::test]
async fn a_blocked_client_that_leaves_takes_nothing() {
    let targets = Targets::start().await;
    for resp3 in [false, true] {
        let waiter = targets.connect(resp3).await;
        let mut pusher = targets.client(resp3).await;
        let Both {
            mut redis, mut sim, ..
        } = waiter;
        redis.send(&["BLPOP", "q", "0"]).await;
        sim.send(&["BLPOP", "q", "0"]).await;
        pause().await;
        drop((redis, sim));
        pause().await;
        pusher.run("RPUSH q kept").await;
        pusher.run("LRANGE q 0 -1").await;
    }
}

#[tokio::test]
async fn blpop_times_out_with_a_null() {
    let targets = Targets::start().await;
    for resp3 in [false, true] {
        let mut c = targets.connect(resp3).await;
        for line in [
            "BLPOP q 0.1",
            "BRPOP q other 0.1",
            "BLMOVE q d LEFT LEFT 0.1",
            "BRPOPLPUSH q d 0.1",
            "BLMPOP 0.1 1 q LEFT",
            "BZPOPMIN z 0.1",
            "BZMPOP 0.1 1 z MIN",
            "BLPOP q 0.0001",
        ] {
            let started = Instant::now();
            c.run(line).await;
            let waited = started.elapsed();
            assert!(waited < Duration::from_secs(2), "`{line}` took {waited:?}");
        }
        // The simulator itself waits as long as it was told.
        let started = Instant::now();
        let got = c.sim.cmd(&["BLPOP", "q", "0.2"]).await;
        let want: &[u8] = if resp3 { b"_\r\n" } else { b"*-1\r\n" };
        assert_eq!(show(&got), show(want));
        assert!(started.elapsed() >= Duration::from_millis(190));
        // Still usable afterwards.
        c.run("RPUSH q x").await;
        c.run("BLPOP q 0.1").await;
    }
}

/// Long enough for a command sent to be running on both servers before the next one is sent.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(60)).await;
}
