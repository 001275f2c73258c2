//! Pipelines, transactions and dedicated connections against real redis-server processes (and
//! the maintenance simulator in front of one where a `MOVING` is needed).
//!
//! What is checked is what callers see: a connection-state command on a shared connection is
//! refused before it is written and leaves the connection as it was; a transaction is written
//! as one, so another caller's command never falls inside it; money moved between two
//! accounts under `WATCH` always sums to what it started at, through handoffs and killed
//! connections; a pipeline's replies come back in its own order; a cancelled blocking command
//! loses no element pushed after it; and what a connection was set to (its database, name,
//! tracking) holds on the connection that replaces it, while a `WATCH` or `MULTI` that cannot
//! be carried over fails the transaction instead of letting it run unguarded.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::connector;
use common::events::{next_event, wait_until};
use common::RedisServer;
use redis_handoff::handoff::HandoffConfig;
use redis_handoff::pool::Pool;
use redis_handoff::stack::StackService;
use redis_handoff::{
    cmd, Command, Connection, Dedicated, Error, ErrorClass, EventKind, Execution, Maintenance,
    Pipeline, Reply, Stack, Transaction,
};
use tower::ServiceExt;

#[cfg(feature = "sim")]
use common::events::handoff_switched;
#[cfg(feature = "sim")]
use common::sim::redis_and_sim;
#[cfg(feature = "sim")]
use redis_handoff::maintenance::EndpointType;
#[cfg(feature = "sim")]
use redis_handoff::sim::Simulator;
#[cfg(feature = "sim")]
use redis_handoff::{ConnectOptions, MaintenanceConfig};

/// A bound only a hang reaches.
const WIDE: Duration = Duration::from_secs(30);

// ===== helpers =====

/// `f`, failing the test naming `what` if it does not finish within [`WIDE`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WIDE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WIDE:?}"))
}

/// A plain connection straight to the server (database 0), for looking from outside.
async fn outside(server: &RedisServer) -> Connection {
    Connection::connect(&server.url()).await.unwrap()
}

/// A plain connection straight to database `db` of the server.
async fn outside_db(server: &RedisServer, db: u32) -> Connection {
    Connection::connect(&format!("{}/{db}", server.url()))
        .await
        .unwrap()
}

/// The string value of `key` as `conn` sees it (`None` when missing).
async fn get(conn: &Connection, key: &str) -> Option<String> {
    let r = conn.send(cmd!("GET", key)).await.unwrap();
    r.as_str().map(str::to_string)
}

/// The elements of an array reply, as strings.
fn strings(reply: &Reply) -> Vec<String> {
    reply
        .as_array()
        .unwrap_or_else(|| panic!("an array, not {reply:?}"))
        .iter()
        .map(|f| {
            Reply::from(f.clone())
                .as_str()
                .unwrap_or_else(|| panic!("a string element, not {f:?}"))
                .to_string()
        })
        .collect()
}

/// A numeric field of `INFO section`.
async fn info_number(conn: &Connection, section: &str, field: &str) -> i64 {
    let info = conn.send(cmd!("INFO", section)).await.unwrap();
    let text = info.as_str().expect("INFO answers text").to_string();
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}: {text}"))
}

/// The `CLIENT ID` of whatever connection `own` sends on now.
async fn client_id(own: &mut Dedicated<StackService>) -> i64 {
    own.send(cmd!("CLIENT", "ID"))
        .await
        .unwrap()
        .as_i64()
        .expect("CLIENT ID answers a number")
}

/// The handoff layer under a dedicated stack.
fn handoff_of(own: &Dedicated<StackService>) -> &redis_handoff::HandoffRetry {
    own.get_ref().get_ref().get_ref().get_ref()
}

fn is_reconnected(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Reconnected { .. })
}

#[cfg(feature = "sim")]
fn sim_config() -> MaintenanceConfig {
    MaintenanceConfig::builder()
        .endpoint_type(EndpointType::InternalIp)
        .build()
        .unwrap()
}

/// The recommended stack over node 0 of `sim`, with `path` (such as `/3`) after the address.
#[cfg(feature = "sim")]
async fn stack_over_sim(sim: &Simulator, path: &str) -> Stack {
    let url = format!("{}{path}", sim.node(0).url());
    Stack::builder(ConnectOptions::from_url(&url).unwrap())
        .maintenance(sim_config())
        .connect()
        .await
        .unwrap()
}

/// Waits for `n` `HandoffSwitched` events.
#[cfg(feature = "sim")]
async fn switched(events: &mut redis_handoff::maintenance::MaintenanceEvents, n: usize) {
    for _ in 0..n {
        next_event(events, handoff_switched).await;
    }
}

// ===== 1. the probe: connection-state commands on a shared stack =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_multi_is_refused_on_a_shared_stack_and_another_callers_set_still_lands() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();

    // Two callers of one shared stack, at the same time: one tries MULTI by hand, the other
    // writes a key. If the MULTI reached the server, the SET would be queued (QUEUED) in it.
    let multi = {
        let stack = stack.clone();
        tokio::spawn(async move { stack.oneshot(cmd!("MULTI")).await })
    };
    let set = {
        let stack = stack.clone();
        tokio::spawn(async move { stack.oneshot(cmd!("SET", "probe:b", "v")).await })
    };
    match multi.await.unwrap() {
        Err(Error::Refused { command, reason }) => {
            assert_eq!(&*command, "MULTI");
            assert!(reason.contains("Transaction"), "{reason}");
        }
        other => panic!("MULTI on a shared stack: {other:?}"),
    }
    let set = set.await.unwrap().unwrap();
    assert!(set.is_ok(), "SET answered {set:?}, not OK");

    // The key persists: nothing is queued and waiting for an EXEC.
    let look = outside(&server).await;
    assert_eq!(get(&look, "probe:b").await.as_deref(), Some("v"));
    let stats = look
        .send(cmd!("INFO", "commandstats"))
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !stats.contains("cmdstat_multi:"),
        "MULTI reached the server: {stats}"
    );
    // And the stack keeps working.
    let r = stack.clone().oneshot(cmd!("GET", "probe:b")).await.unwrap();
    assert_eq!(r.as_str(), Some("v"));
    let r = stack
        .clone()
        .oneshot(cmd!("INCR", "probe:n"))
        .await
        .unwrap();
    assert_eq!(r.as_i64(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_state_command_is_refused_on_a_shared_stack_and_changes_nothing() {
    let server = RedisServer::start();
    let url = format!("{}?client_name=probe-stack", server.url());
    let stack = Stack::connect(&url).await.unwrap();
    stack
        .clone()
        .oneshot(cmd!("SET", "probe:own", "mine"))
        .await
        .unwrap();

    let refused: Vec<(Command, &str)> = vec![
        (cmd!("MULTI"), "MULTI"),
        (cmd!("EXEC"), "EXEC"),
        (cmd!("DISCARD"), "DISCARD"),
        (cmd!("WATCH", "k"), "WATCH"),
        (cmd!("UNWATCH"), "UNWATCH"),
        (cmd!("SELECT", 1), "SELECT"),
        (cmd!("CLIENT", "REPLY", "OFF"), "CLIENT REPLY"),
        (cmd!("MONITOR"), "MONITOR"),
        (cmd!("HELLO", 2), "HELLO"),
        (cmd!("RESET"), "RESET"),
        (cmd!("AUTH", "x"), "AUTH"),
        (cmd!("QUIT"), "QUIT"),
        (cmd!("READONLY"), "READONLY"),
        (cmd!("READWRITE"), "READWRITE"),
        (cmd!("CLIENT", "SETNAME", "x"), "CLIENT SETNAME"),
        (cmd!("CLIENT", "TRACKING", "ON"), "CLIENT TRACKING"),
        (cmd!("client", "setinfo", "lib-name", "x"), "CLIENT SETINFO"),
        (cmd!("CLIENT", "NO-EVICT", "ON"), "CLIENT NO-EVICT"),
        (cmd!("ASKING"), "ASKING"),
        (
            cmd!("CLIENT", "MAINT_NOTIFICATIONS", "ON"),
            "CLIENT MAINT_NOTIFICATIONS",
        ),
        // Lower case is the same command.
        (cmd!("multi"), "MULTI"),
        (cmd!("select", 2), "SELECT"),
    ];
    for (command, name) in refused {
        assert!(
            command.state_change().is_some(),
            "{name} is a connection-state command"
        );
        match stack.clone().oneshot(command).await {
            Err(Error::Refused { command, reason }) => {
                assert_eq!(&*command, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name} on a shared stack: {other:?}"),
        }
        // The next caller still gets its own reply.
        let r = stack
            .clone()
            .oneshot(cmd!("GET", "probe:own"))
            .await
            .unwrap_or_else(|e| panic!("GET after {name}: {e}"));
        assert_eq!(r.as_str(), Some("mine"), "GET after {name}");
    }

    // The connection's name is as the URL set it, the database is still 0, and none of the
    // refused commands reached the server.
    let name = stack
        .clone()
        .oneshot(cmd!("CLIENT", "GETNAME"))
        .await
        .unwrap();
    assert_eq!(name.as_str(), Some("probe-stack"));
    stack
        .clone()
        .oneshot(cmd!("SET", "probe:db", "zero"))
        .await
        .unwrap();
    let look = outside(&server).await;
    assert_eq!(get(&look, "probe:db").await.as_deref(), Some("zero"));
    let stats = look
        .send(cmd!("INFO", "commandstats"))
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    for sent in [
        "multi",
        "exec",
        "discard",
        "watch",
        "unwatch",
        "select",
        "monitor",
        "reset",
        "auth",
        "quit",
        "readonly",
        "readwrite",
        "asking",
        "client|reply",
        "client|setname",
        "client|tracking",
        "client|no-evict",
    ] {
        assert!(
            !stats.contains(&format!("cmdstat_{sent}:")),
            "{sent} reached the server: {stats}"
        );
    }
    // Not in tracking mode, not a replica reader: a plain connection still.
    let info = stack.clone().oneshot(cmd!("CLIENT", "INFO")).await.unwrap();
    let info = info.as_str().unwrap();
    assert!(info.contains("db=0"), "{info}");
    assert!(info.contains("multi=-1"), "{info}");
    assert!(info.contains("name=probe-stack"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_connection_still_refuses_what_breaks_reply_matching() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let mut own = stack.dedicated().await.unwrap();
    for (command, name) in [
        (cmd!("HELLO", 2), "HELLO"),
        (cmd!("RESET"), "RESET"),
        (cmd!("MONITOR"), "MONITOR"),
        (cmd!("QUIT"), "QUIT"),
        (cmd!("CLIENT", "REPLY", "OFF"), "CLIENT REPLY"),
        (
            cmd!("CLIENT", "MAINT_NOTIFICATIONS", "OFF"),
            "CLIENT MAINT_NOTIFICATIONS",
        ),
    ] {
        match own.send(command).await {
            Err(Error::Refused { command, .. }) => assert_eq!(&*command, name),
            other => panic!("{name} on a dedicated connection: {other:?}"),
        }
        let r = own.send(cmd!("PING")).await.unwrap();
        assert_eq!(r.as_str(), Some("PONG"), "PING after {name}");
    }
    // What a dedicated connection is for goes through.
    assert!(own.send(cmd!("SELECT", 2)).await.unwrap().is_ok());
    assert!(own
        .send(cmd!("CLIENT", "SETNAME", "own"))
        .await
        .unwrap()
        .is_ok());
    assert!(own.send(cmd!("WATCH", "k")).await.unwrap().is_ok());
    assert!(own.send(cmd!("UNWATCH")).await.unwrap().is_ok());
    // A state command goes on its own, never inside a batch, even here.
    let inside = own
        .send(Pipeline::new().cmd(cmd!("GET", "a")).cmd(cmd!("SELECT", 3)))
        .await;
    assert!(
        matches!(&inside, Err(Error::Refused { command, .. }) if &**command == "SELECT"),
        "{inside:?}"
    );
    let inside = own
        .send(
            Transaction::new()
                .cmd(cmd!("WATCH", "a"))
                .cmd(cmd!("GET", "a")),
        )
        .await;
    assert!(
        matches!(&inside, Err(Error::Refused { command, .. }) if &**command == "WATCH"),
        "{inside:?}"
    );
    // The shared stack is untouched by what the dedicated one set.
    let info = stack.clone().oneshot(cmd!("CLIENT", "INFO")).await.unwrap();
    assert!(info.as_str().unwrap().contains("db=0"));
}

// ===== 2 and 3. money moved under WATCH, with plain callers alongside =====

const ACCOUNTS: [&str; 2] = ["acct:a", "acct:b"];
const START: i64 = 1_000;
/// Every applied transfer appends its entry here, inside its own transaction.
const LEDGER: &str = "acct:ledger";

/// Whether the maintenance or fault a test makes has happened, and how many transfers were
/// applied since.
#[derive(Debug, Default)]
struct Phase {
    after: AtomicBool,
    applied_after: AtomicU64,
}

impl Phase {
    /// Marks the maintenance or fault as done.
    fn passed(&self) {
        self.after.store(true, Ordering::Relaxed);
    }

    /// Waits until some transfer has been applied since (at most [`WIDE`]).
    async fn progress(&self) {
        wait_until(
            "a transfer applied afterwards",
            WIDE,
            Duration::from_millis(10),
            || self.applied_after.load(Ordering::Relaxed) > 0,
        )
        .await;
    }
}

/// What one transferring task saw.
#[derive(Debug, Default)]
struct Transfers {
    /// Entries of transfers that `EXEC` applied (their replies came back).
    applied: Vec<String>,
    /// Transfers given up for want of money (`Ok(None)`): nothing sent.
    skipped: u64,
    /// Transfers that failed with an error that says nothing ran: entry and error.
    not_run: Vec<(String, String)>,
    /// Transfers whose outcome is unknown (the reply was lost): entry and error.
    unknown: Vec<(String, String)>,
    /// Anything that should not happen.
    wrong: Vec<String>,
}

/// A task that keeps one dedicated connection and moves money between the two accounts with
/// `watch`, `max` times or until `stop`.
fn transfer_task(
    mut own: Dedicated<StackService>,
    t: usize,
    max: u64,
    stop: Arc<AtomicBool>,
    phase: Arc<Phase>,
) -> tokio::task::JoinHandle<(Transfers, Dedicated<StackService>)> {
    tokio::spawn(async move {
        let mut o = Transfers::default();
        let mut n = 0u64;
        while n < max && !stop.load(Ordering::Relaxed) {
            let from = ACCOUNTS[(t + n as usize) % 2];
            let to = ACCOUNTS[(t + n as usize + 1) % 2];
            let amount = 1 + ((t as i64 * 7 + n as i64) % 13);
            let entry = format!("{t}:{n}:{from}:{amount}");
            n += 1;
            let result = own
                .watch(ACCOUNTS, 64, |svc| {
                    let entry = entry.clone();
                    async move {
                        let balance = svc.oneshot(cmd!("GET", from)).await?;
                        let balance = balance.as_i64().unwrap_or(0);
                        if balance < amount {
                            return Ok(None);
                        }
                        Ok(Some(
                            Transaction::new()
                                .cmd(cmd!("DECRBY", from, amount))
                                .cmd(cmd!("INCRBY", to, amount))
                                .cmd(cmd!("RPUSH", LEDGER, entry)),
                        ))
                    }
                })
                .await;
            match result {
                Ok(Some(results)) => {
                    let left = results.first().and_then(|r| r.as_ref().ok()?.as_i64());
                    let ok = results.len() == 3 && results.iter().all(Result::is_ok);
                    if !ok || left.is_none_or(|l| l < 0) {
                        o.wrong.push(format!("{entry}: EXEC answered {results:?}"));
                    }
                    if phase.after.load(Ordering::Relaxed) {
                        phase.applied_after.fetch_add(1, Ordering::Relaxed);
                    }
                    o.applied.push(entry);
                }
                Ok(None) => o.skipped += 1,
                Err(e) => {
                    match e.execution() {
                        Execution::NotRun => o.not_run.push((entry, e.to_string())),
                        Execution::MayHaveRun => o.unknown.push((entry, e.to_string())),
                        _ => o.wrong.push(format!("{entry}: {e:?}")),
                    }
                    // As for the plain callers: no spinning on errors that are ready at once.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        (o, own)
    })
}

/// What one plain caller saw.
#[derive(Debug, Default)]
struct Plain {
    incr_sent: u64,
    incr_ok: u64,
    incr_lost: u64,
    last: i64,
    rounds: u64,
    /// Each failed command's name and error.
    errors: Vec<(&'static str, Error)>,
    /// Replies that are not this caller's own.
    wrong: Vec<String>,
}

/// A caller that INCRs, SETs and GETs keys only it writes, on the shared stack, until `stop`,
/// and checks that every reply is its own.
fn plain_task(stack: Stack, t: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Plain> {
    tokio::spawn(async move {
        let mut o = Plain::default();
        let counter = format!("plain:ctr:{t}");
        let key = format!("plain:val:{t}");
        let own = format!("{t}:");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let failed_before = o.errors.len();
            i += 1;
            o.incr_sent += 1;
            match stack.clone().oneshot(cmd!("INCR", &counter)).await {
                Ok(r) => match r.as_i64() {
                    Some(v) if v > o.last && v as u64 <= o.incr_sent => {
                        o.last = v;
                        o.incr_ok += 1;
                    }
                    _ => o.wrong.push(format!("INCR {counter} answered {r:?}")),
                },
                Err(e) => {
                    if e.may_have_executed() {
                        o.incr_lost += 1;
                    }
                    o.errors.push(("INCR", e));
                }
            }
            let value = format!("{t}:{i}");
            let set = match stack.clone().oneshot(cmd!("SET", &key, &value)).await {
                Ok(r) if r.is_ok() => true,
                Ok(r) => {
                    o.wrong.push(format!("SET {key} answered {r:?}"));
                    false
                }
                Err(e) => {
                    o.errors.push(("SET", e));
                    false
                }
            };
            match stack.clone().oneshot(cmd!("GET", &key)).await {
                Ok(r) => {
                    let seen = r.as_str();
                    let mine = if set {
                        seen == Some(value.as_str())
                    } else {
                        seen.is_none() || seen.is_some_and(|s| s.starts_with(&own))
                    };
                    if !mine {
                        o.wrong
                            .push(format!("GET {key} answered {r:?}, expected {value}"));
                    }
                }
                Err(e) => o.errors.push(("GET", e)),
            }
            o.rounds += 1;
            if o.errors.len() > failed_before {
                // Failed fast (an open circuit, no connection yet): give the stack a moment
                // instead of spinning on errors that are ready at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        o
    })
}

/// The two accounts, funded.
async fn fund(stack: &Stack) {
    for account in ACCOUNTS {
        stack
            .clone()
            .oneshot(cmd!("SET", account, START))
            .await
            .unwrap();
    }
}

/// Checks the books: the accounts sum to the start; the ledger, replayed in order from the
/// start, gives exactly the balances (every logged transfer applied both legs, and nothing
/// else moved money) without an account ever going negative; no transfer appears twice;
/// every transfer acknowledged is in it and none that certainly did not run is.
async fn check_books(look: &Connection, outcomes: &[Transfers]) {
    let a = get(look, ACCOUNTS[0])
        .await
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let b = get(look, ACCOUNTS[1])
        .await
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert_eq!(a + b, 2 * START, "the accounts sum to the start: {a} + {b}");

    let ledger = strings(&look.send(cmd!("LRANGE", LEDGER, 0, -1)).await.unwrap());
    let logged: HashSet<&str> = ledger.iter().map(String::as_str).collect();
    assert_eq!(logged.len(), ledger.len(), "a transfer was applied twice");
    let mut balance: BTreeMap<&str, i64> = ACCOUNTS.iter().map(|a| (*a, START)).collect();
    for entry in &ledger {
        let parts: Vec<&str> = entry.split(':').collect();
        let (from, amount) = (
            format!("{}:{}", parts[2], parts[3]),
            parts[4].parse::<i64>().unwrap(),
        );
        let to = if from == ACCOUNTS[0] {
            ACCOUNTS[1]
        } else {
            ACCOUNTS[0]
        };
        *balance.get_mut(from.as_str()).unwrap() -= amount;
        *balance.get_mut(to).unwrap() += amount;
        assert!(
            balance.values().all(|v| *v >= 0),
            "{entry} overdrew an account: {balance:?}"
        );
    }
    assert_eq!(
        (balance[ACCOUNTS[0]], balance[ACCOUNTS[1]]),
        (a, b),
        "the ledger explains the balances"
    );

    let mut possible: HashSet<&str> = HashSet::new();
    for (t, o) in outcomes.iter().enumerate() {
        assert!(o.wrong.is_empty(), "transfer task {t}: {:?}", o.wrong);
        for entry in &o.applied {
            assert!(
                logged.contains(entry.as_str()),
                "{entry} acknowledged, not applied"
            );
            possible.insert(entry);
        }
        for (entry, error) in &o.not_run {
            assert!(
                !logged.contains(entry.as_str()),
                "{entry} failed with `{error}` (nothing ran) yet applied"
            );
        }
        for (entry, _) in &o.unknown {
            possible.insert(entry);
        }
    }
    for entry in &ledger {
        assert!(
            possible.contains(entry.as_str()),
            "{entry} applied but its caller was told it did not run"
        );
    }
}

/// Every plain caller got only its own replies, and its counter holds what it was told
/// (give or take the INCRs whose replies were lost).
async fn check_plain(look: &Connection, outcomes: &[Plain], allow_errors: bool) {
    for (t, o) in outcomes.iter().enumerate() {
        assert!(o.wrong.is_empty(), "plain task {t}: {:?}", o.wrong);
        assert!(o.rounds > 0, "plain task {t} made no progress");
        if !allow_errors {
            assert!(o.errors.is_empty(), "plain task {t}: {:?}", o.errors);
        }
        for (op, e) in &o.errors {
            // Failures of the connection (or the circuit opened by them), never a reply that
            // belongs to nobody or a refusal.
            assert!(
                matches!(
                    e.class(),
                    ErrorClass::Connection | ErrorClass::Timeout | ErrorClass::CircuitOpen
                ),
                "plain task {t}: {op}: {e:?}"
            );
            // SET and GET are sent again on the next connection instead of failing with a
            // lost reply; an INCR is not, and says it may have run.
            if e.may_have_executed() {
                assert_eq!(*op, "INCR", "plain task {t}: {op}: {e}");
            }
        }
        let value = get(look, &format!("plain:ctr:{t}"))
            .await
            .map_or(0, |v| v.parse::<u64>().unwrap());
        assert!(
            value >= o.incr_ok && value >= o.last as u64 && value <= o.incr_ok + o.incr_lost,
            "plain task {t}: counter {value}, acknowledged {}, lost {}",
            o.incr_ok,
            o.incr_lost
        );
    }
}

/// Opens `n` dedicated connections of `stack`.
async fn dedicated(stack: &Stack, n: usize) -> Vec<Dedicated<StackService>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(stack.dedicated().await.unwrap());
    }
    out
}

async fn join_all<T>(what: &str, tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(bounded(what, task).await.expect("a task panicked"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_moved_under_watch_by_ten_tasks_sums_to_the_start_and_forty_plain_callers_get_their_own_replies(
) {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    fund(&stack).await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(Phase::default());

    let plain: Vec<_> = (0..40)
        .map(|t| plain_task(stack.clone(), t, stop.clone()))
        .collect();
    let never = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = dedicated(&stack, 10)
        .await
        .into_iter()
        .enumerate()
        .map(|(t, own)| transfer_task(own, t, 25, never.clone(), phase.clone()))
        .collect();
    let transfers: Vec<Transfers> = join_all("a transfer task", movers)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    stop.store(true, Ordering::Relaxed);
    let plain = join_all("a plain task", plain).await;

    let look = outside(&server).await;
    check_books(&look, &transfers).await;
    check_plain(&look, &plain, false).await;
    let applied: usize = transfers.iter().map(|o| o.applied.len()).sum();
    assert!(applied > 0, "no transfer applied: {transfers:?}");
    for (t, o) in transfers.iter().enumerate() {
        // Nothing here replaces a connection: a transfer fails only by losing the race for
        // the keys every one of its attempts.
        assert!(o.unknown.is_empty(), "transfer task {t}: {:?}", o.unknown);
        for (entry, error) in &o.not_run {
            assert!(error.contains("watched key"), "transfer {entry}: {error}");
        }
    }
}

#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_moved_under_watch_through_a_moving_sums_to_the_start_and_plain_callers_get_their_own_replies(
) {
    let (server, sim) = redis_and_sim(2).await;
    let stack = stack_over_sim(&sim, "").await;
    let mut events = stack.maintenance().subscribe();
    fund(&stack).await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(Phase::default());
    let own = dedicated(&stack, 10).await;

    let plain: Vec<_> = (0..40)
        .map(|t| plain_task(stack.clone(), t, stop.clone()))
        .collect();
    let movers: Vec<_> = own
        .into_iter()
        .enumerate()
        .map(|(t, own)| transfer_task(own, t, u64::MAX, stop.clone(), phase.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let moving = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        moving.recipients(),
        11,
        "the shared connection and the ten dedicated ones hear the MOVING"
    );
    bounded("every connection switching", switched(&mut events, 11)).await;
    phase.passed();
    moving.done().await;
    // The old node has closed its connections: transfers go on on the new ones.
    phase.progress().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let movers = join_all("a transfer task", movers).await;
    let plain = join_all("a plain task", plain).await;

    let target = sim.node(1).endpoint();
    assert_eq!(stack.handoff().current_endpoint(), Some(target.clone()));
    for (t, (_, own)) in movers.iter().enumerate() {
        assert_eq!(
            handoff_of(own).current_endpoint(),
            Some(target.clone()),
            "dedicated connection {t} moved"
        );
    }
    let transfers: Vec<Transfers> = movers.into_iter().map(|(o, _)| o).collect();
    let look = outside(&server).await;
    check_books(&look, &transfers).await;
    // A handoff is made before the old connection is given up: no plain command fails.
    check_plain(&look, &plain, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_moved_under_watch_through_killed_connections_sums_to_the_start_and_plain_callers_get_their_own_replies(
) {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    fund(&stack).await;
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(Phase::default());
    let own = dedicated(&stack, 10).await;

    let plain: Vec<_> = (0..40)
        .map(|t| plain_task(stack.clone(), t, stop.clone()))
        .collect();
    let movers: Vec<_> = own
        .into_iter()
        .enumerate()
        .map(|(t, own)| transfer_task(own, t, u64::MAX, stop.clone(), phase.clone()))
        .collect();

    let killer = outside(&server).await;
    let mut killed = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Every client but this one: the shared connection and the ten dedicated ones.
        let n = killer
            .send(cmd!("CLIENT", "KILL", "TYPE", "normal"))
            .await
            .unwrap();
        killed += n.as_i64().unwrap();
    }
    phase.passed();
    phase.progress().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let movers = join_all("a transfer task", movers).await;
    let plain = join_all("a plain task", plain).await;

    assert!(killed >= 3 * 11, "killed {killed} connections");
    let transfers: Vec<Transfers> = movers.into_iter().map(|(o, _)| o).collect();
    let look = outside(&server).await;
    check_books(&look, &transfers).await;
    check_plain(&look, &plain, true).await;
    assert!(
        stack.handoff().stats().reconnects >= 1,
        "{:?}",
        stack.handoff().stats()
    );
}

// ===== 4. pipelines =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_of_a_thousand_commands_from_twenty_tasks_each_get_their_replies_in_their_own_order(
) {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let stack = stack.clone();
            tokio::spawn(async move {
                let counter = format!("pipe:ctr:{t}");
                // INCR and GET of the task's own counter, in turn.
                let mut p = Pipeline::with_capacity(1000);
                for _ in 0..500 {
                    p.push(cmd!("INCR", &counter));
                    p.push(cmd!("GET", &counter));
                }
                let replies = stack.clone().oneshot(p).await.unwrap();
                assert_eq!(replies.len(), 1000, "task {t}");
                for (i, pair) in replies.chunks(2).enumerate() {
                    let n = i as i64 + 1;
                    let incr = pair[0].as_ref().unwrap();
                    assert_eq!(
                        incr.as_i64(),
                        Some(n),
                        "task {t}: INCR {i} answered {incr:?}"
                    );
                    let get = pair[1].as_ref().unwrap();
                    assert_eq!(
                        get.as_str(),
                        Some(n.to_string().as_str()),
                        "task {t}: GET {i} answered {get:?}"
                    );
                }
                // SET own:key:i i then GET it back, in turn.
                let p: Pipeline = (0..500)
                    .flat_map(|i| {
                        let key = format!("pipe:{t}:key:{i}");
                        [cmd!("SET", &key, format!("{t}:{i}")), cmd!("GET", &key)]
                    })
                    .collect();
                let replies = stack.clone().oneshot(p).await.unwrap();
                assert_eq!(replies.len(), 1000, "task {t}");
                for (i, pair) in replies.chunks(2).enumerate() {
                    assert!(pair[0].as_ref().unwrap().is_ok(), "task {t}: SET {i}");
                    let get = pair[1].as_ref().unwrap();
                    assert_eq!(
                        get.as_str(),
                        Some(format!("{t}:{i}").as_str()),
                        "task {t}: GET {i}"
                    );
                }
            })
        })
        .collect();
    join_all("a pipeline task", tasks).await;
    let look = outside(&server).await;
    for t in 0..20 {
        assert_eq!(
            get(&look, &format!("pipe:ctr:{t}")).await.as_deref(),
            Some("500")
        );
    }
    // An empty pipeline is answered at once, with nothing.
    let none = stack.clone().oneshot(Pipeline::new()).await.unwrap();
    assert!(none.is_empty());
    // A server error is that command's own.
    let mixed = stack
        .clone()
        .oneshot(
            Pipeline::new()
                .cmd(cmd!("SET", "pipe:s", "text"))
                .cmd(cmd!("INCR", "pipe:s"))
                .cmd(cmd!("GET", "pipe:s")),
        )
        .await
        .unwrap();
    assert!(mixed[0].as_ref().unwrap().is_ok());
    assert!(matches!(&mixed[1], Err(Error::Server(_))), "{:?}", mixed[1]);
    assert_eq!(mixed[2].as_ref().unwrap().as_str(), Some("text"));
}

/// What one pipelining task saw through the move: per round, its list's key and the outcome.
#[cfg(feature = "sim")]
#[derive(Debug, Default)]
struct Rounds {
    ok: Vec<String>,
    ok_after: u64,
    failed: Vec<(String, Error)>,
    wrong: Vec<String>,
}

#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_of_rpush_through_a_moving_leave_every_list_whole_and_in_order() {
    let (server, sim) = redis_and_sim(2).await;
    let stack = stack_over_sim(&sim, "").await;
    let mut events = stack.maintenance().subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let (stack, stop, after) = (stack.clone(), stop.clone(), after.clone());
            tokio::spawn(async move {
                let mut o = Rounds::default();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let list = format!("rpush:{t}:{round}");
                    round += 1;
                    let p: Pipeline = (0..1000).map(|i| cmd!("RPUSH", &list, i)).collect();
                    match stack.clone().oneshot(p).await {
                        Ok(replies) => {
                            let lengths: Vec<Option<i64>> = replies
                                .iter()
                                .map(|r| r.as_ref().ok().and_then(Reply::as_i64))
                                .collect();
                            let expected: Vec<Option<i64>> = (1..=1000).map(Some).collect();
                            if lengths != expected {
                                o.wrong.push(format!("{list}: RPUSH replies {replies:?}"));
                            }
                            if after.load(Ordering::Relaxed) {
                                o.ok_after += 1;
                            }
                            o.ok.push(list);
                        }
                        Err(e) => o.failed.push((list, e)),
                    }
                }
                o
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    bounded("the switch", switched(&mut events, 1)).await;
    after.store(true, Ordering::Relaxed);
    moving.done().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let rounds = join_all("a pipeline task", tasks).await;
    assert_eq!(
        stack.handoff().current_endpoint(),
        Some(sim.node(1).endpoint())
    );

    let look = outside(&server).await;
    let whole: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let mut after_move = 0;
    for (t, o) in rounds.iter().enumerate() {
        assert!(o.wrong.is_empty(), "task {t}: {:?}", o.wrong);
        assert!(!o.ok.is_empty(), "task {t} completed no pipeline");
        after_move += o.ok_after;
        for list in &o.ok {
            let got = strings(&look.send(cmd!("LRANGE", list, 0, -1)).await.unwrap());
            assert_eq!(got, whole, "{list}: exactly 0..1000, in order, once");
        }
        for (list, error) in &o.failed {
            let got = strings(&look.send(cmd!("LRANGE", list, 0, -1)).await.unwrap());
            match error.execution() {
                // Never written: nothing of it ran.
                Execution::NotRun => assert!(
                    got.is_empty(),
                    "{list} failed with `{error}` yet holds {} elements",
                    got.len()
                ),
                // RPUSH is not sent again after a lost reply: what ran ran once, in order,
                // and the error says it may have run.
                Execution::MayHaveRun => {
                    assert!(
                        error.to_string().contains("may have been executed"),
                        "{list}: {error}"
                    );
                    assert!(
                        whole.starts_with(&got),
                        "{list} failed with `{error}` and holds {got:?}: not a prefix of 0..1000"
                    );
                }
                _ => panic!("{list}: {error:?}"),
            }
        }
    }
    assert!(after_move > 0, "no pipeline completed after the switch");
}

// ===== 5. the pool: a cancelled blocking command =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_blpop_on_the_pool_delays_nobody_and_loses_no_element_pushed_later() {
    let server = RedisServer::start();
    let pool = Pool::connect(
        connector(&server.url()),
        Maintenance::default(),
        2,
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    let look = outside(&server).await;

    // Twice: once by aborting the caller's task, once by dropping the future itself.
    for round in 0..2 {
        let on_server = || async {
            loop {
                if info_number(&look, "clients", "blocked_clients").await == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if round == 0 {
            let blocked = {
                let pool = pool.clone();
                tokio::spawn(async move { pool.oneshot(cmd!("BLPOP", "jobs", 0)).await })
            };
            bounded("the BLPOP reaching the server", on_server()).await;
            assert_eq!(pool.held(), 1, "the BLPOP holds a connection");
            blocked.abort();
            assert!(blocked.await.unwrap_err().is_cancelled());
        } else {
            let blpop = pool.clone().oneshot(cmd!("BLPOP", "jobs", 0));
            tokio::pin!(blpop);
            bounded("the BLPOP reaching the server", async {
                tokio::select! {
                    r = &mut blpop => panic!("nothing was pushed, yet BLPOP answered {r:?}"),
                    () = on_server() => {}
                }
            })
            .await;
            assert_eq!(pool.held(), 1, "the BLPOP holds a connection");
            // The caller stops waiting: the future is dropped, the task goes on.
        }

        // Other callers are not held up by the cancelled command's connection.
        for i in 0..100 {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                pool.clone().oneshot(cmd!("INCR", format!("other:{round}"))),
            )
            .await
            .unwrap_or_else(|_| panic!("round {round}: INCR {i} stuck behind the cancelled BLPOP"))
            .unwrap();
            assert_eq!(r.as_i64(), Some(i + 1));
        }

        // The server stops blocking for nobody: the connection was closed.
        let released = async {
            loop {
                if info_number(&look, "clients", "blocked_clients").await == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        bounded("the server releasing the cancelled BLPOP", released).await;
        wait_until(
            "the pool releasing the held connection",
            WIDE,
            Duration::from_millis(5),
            || pool.held() == 0,
        )
        .await;

        // An element pushed now stays for a live caller.
        let pushed = pool
            .clone()
            .oneshot(cmd!("RPUSH", "jobs", format!("j{round}")))
            .await
            .unwrap();
        assert_eq!(
            pushed.as_i64(),
            Some(1),
            "round {round}: the list was empty"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let len = look.send(cmd!("LLEN", "jobs")).await.unwrap();
        assert_eq!(
            len.as_i64(),
            Some(1),
            "round {round}: the element is still there"
        );
        let popped = bounded(
            "a live BLPOP",
            pool.clone().oneshot(cmd!("BLPOP", "jobs", 0)),
        )
        .await
        .unwrap();
        assert_eq!(
            strings(&popped),
            vec!["jobs".to_string(), format!("j{round}")],
            "round {round}: the live caller gets the element"
        );
        assert_eq!(pool.held(), 0);
    }
    // Both stacks serve again.
    for stack in pool.stacks() {
        let r = bounded("PING", stack.clone().oneshot(cmd!("PING")))
            .await
            .unwrap();
        assert_eq!(r.as_str(), Some("PONG"));
    }
}

/// The same after a handoff: the BLPOP was written to the connection the stack has since
/// moved away from, which drains, still owing its reply. Cancelling it must close that
/// connection, not the stack's new one.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blpop_cancelled_after_a_handoff_closes_its_own_connection_and_loses_no_element() {
    use common::sim::{demux_to, sim_over};
    let server = RedisServer::start();
    let sim = sim_over(&server, 2).await;
    let maintenance = Maintenance::new(sim_config());
    let mut events = maintenance.subscribe();
    let pool = Pool::connect(
        demux_to(&sim, 0, &maintenance),
        maintenance.clone(),
        2,
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    let look = outside(&server).await;
    let blocked = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.oneshot(cmd!("BLPOP", "jobs", 0)).await })
    };
    bounded("the BLPOP reaching the server", async {
        while info_number(&look, "clients", "blocked_clients").await != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Both connections move. The old node keeps its connections for a long grace period, so
    // only the client can end the BLPOP's.
    let grace = Duration::from_secs(15);
    let moving = sim.moving(0, 1, grace).await.unwrap();
    bounded("both switching", switched(&mut events, 2)).await;
    assert_eq!(pool.held(), 1);

    blocked.abort();
    assert!(blocked.await.unwrap_err().is_cancelled());
    // Well within the grace period: the server stops blocking for nobody.
    let released = tokio::time::timeout(Duration::from_secs(5), async {
        while info_number(&look, "clients", "blocked_clients").await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "5 s after the caller went away the server still blocks for it (a later RPUSH would be \
         popped for nobody): {}",
        look.send(cmd!("CLIENT", "LIST"))
            .await
            .unwrap()
            .as_str()
            .unwrap()
    );
    let pushed = pool
        .clone()
        .oneshot(cmd!("RPUSH", "jobs", "j"))
        .await
        .unwrap();
    assert_eq!(pushed.as_i64(), Some(1));
    let len = look.send(cmd!("LLEN", "jobs")).await.unwrap();
    assert_eq!(len.as_i64(), Some(1), "the element is still there");
    // Both stacks are still on the new node: closing the BLPOP's connection did not touch
    // the one its stack had moved to.
    for (i, stack) in pool.stacks().iter().enumerate() {
        assert_eq!(
            stack.current_endpoint(),
            Some(sim.node(1).endpoint()),
            "stack {i} is no longer on the node it moved to (node 0 is {})",
            sim.node(0).endpoint()
        );
    }
    moving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_opens_a_dedicated_connection_for_select_and_watch() {
    let server = RedisServer::start();
    let pool = Pool::connect(
        connector(&server.url()),
        Maintenance::default(),
        2,
        HandoffConfig::default(),
    )
    .await
    .unwrap();
    // The pool's shared connections refuse what the dedicated one takes.
    let refused = pool.clone().oneshot(cmd!("WATCH", "pd:k")).await;
    assert!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");

    let mut own = pool.dedicated().await.unwrap();
    assert!(own.get_ref().is_dedicated());
    assert!(own.send(cmd!("SELECT", 4)).await.unwrap().is_ok());
    own.send(cmd!("SET", "pd:k", 10)).await.unwrap();
    let done = own
        .watch(["pd:k"], 4, |svc| async move {
            let v = svc
                .oneshot(cmd!("GET", "pd:k"))
                .await?
                .as_i64()
                .unwrap_or(0);
            Ok(Some(Transaction::new().cmd(cmd!("SET", "pd:k", v * 2))))
        })
        .await
        .unwrap()
        .expect("applied");
    assert!(done[0].as_ref().unwrap().is_ok());
    let db4 = outside_db(&server, 4).await;
    assert_eq!(get(&db4, "pd:k").await.as_deref(), Some("20"));
    let db0 = outside(&server).await;
    assert_eq!(
        get(&db0, "pd:k").await,
        None,
        "the pool's connections stay on db 0"
    );
    let r = pool.clone().oneshot(cmd!("GET", "pd:k")).await.unwrap();
    assert!(r.is_null());
}

/// Writes whose second run answers differently (or undoes other clients' writes) are not sent
/// again after their reply was lost; reads and plain `SET`s are.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_answer_differently_the_second_time_are_not_sent_again_after_a_lost_reply() {
    let (server, sim) = redis_and_sim(1).await;
    let stack = stack_over_sim(&sim, "").await;
    stack
        .clone()
        .oneshot(cmd!("SET", "rs:get", "v"))
        .await
        .unwrap();
    // Replies come late: the commands have run on the server when the connection is reset.
    sim.latency(0, Duration::from_millis(500)).unwrap();
    let unsafe_to_repeat = [
        cmd!("SADD", "rs:set", "m"),
        cmd!("HSET", "rs:hash", "f", "v"),
        cmd!("ZADD", "rs:zset", 1, "m"),
        cmd!("PFADD", "rs:hll", "m"),
        cmd!("DEL", "rs:del"),
    ];
    for c in &unsafe_to_repeat {
        assert!(!c.is_idempotent(), "{c:?}");
    }
    let look = outside(&server).await;
    look.send(cmd!("SET", "rs:del", "x")).await.unwrap();
    let spawn = |c: Command| {
        let stack = stack.clone();
        tokio::spawn(async move { stack.oneshot(c).await })
    };
    let risky: Vec<_> = unsafe_to_repeat.iter().cloned().map(spawn).collect();
    let get = spawn(cmd!("GET", "rs:get"));
    let set = spawn(cmd!("SET", "rs:plain", "p"));
    // Once all of them have run on the server (their replies are still held back), the
    // connection is reset.
    bounded("the commands reaching the server", async {
        let probes = [
            (cmd!("SISMEMBER", "rs:set", "m"), 1),
            (cmd!("HEXISTS", "rs:hash", "f"), 1),
            (cmd!("ZCARD", "rs:zset"), 1),
            (cmd!("PFCOUNT", "rs:hll"), 1),
            (cmd!("EXISTS", "rs:del"), 0),
            (cmd!("EXISTS", "rs:plain"), 1),
        ];
        'wait: loop {
            for (probe, want) in &probes {
                if look.send(probe.clone()).await.unwrap().as_i64() != Some(*want) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue 'wait;
                }
            }
            break;
        }
    })
    .await;
    assert!(sim.reset_all(0).unwrap() >= 1);
    sim.latency(0, Duration::ZERO).unwrap();

    for (c, task) in unsafe_to_repeat.iter().zip(risky) {
        match bounded("a risky command", task).await.unwrap() {
            Err(e) => assert!(e.may_have_executed(), "{c:?}: {e}"),
            Ok(r) => panic!("{c:?} was answered {r:?} after its reply was lost"),
        }
    }
    let got = bounded("GET", get).await.unwrap().unwrap();
    assert_eq!(got.as_str(), Some("v"), "GET sent again and answered");
    assert!(bounded("SET", set).await.unwrap().unwrap().is_ok());
    // Each ran exactly once.
    let scard = look.send(cmd!("SCARD", "rs:set")).await.unwrap();
    assert_eq!(scard.as_i64(), Some(1));
    assert_eq!(get_field(&look, "rs:hash", "f").await.as_deref(), Some("v"));
    let zcard = look.send(cmd!("ZCARD", "rs:zset")).await.unwrap();
    assert_eq!(zcard.as_i64(), Some(1));
    assert!(
        stack.handoff().stats().retried >= 2,
        "{:?}",
        stack.handoff().stats()
    );
}

/// A hash field as `conn` sees it.
#[cfg(feature = "sim")]
async fn get_field(conn: &Connection, key: &str, field: &str) -> Option<String> {
    let r = conn.send(cmd!("HGET", key, field)).await.unwrap();
    r.as_str().map(str::to_string)
}

// ===== 6. the database from the URL across a handoff and a reconnect =====

#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_in_the_url_holds_after_a_handoff() {
    let (server, sim) = redis_and_sim(2).await;
    let stack = stack_over_sim(&sim, "/3").await;
    let mut events = stack.maintenance().subscribe();
    stack
        .clone()
        .oneshot(cmd!("SET", "db:before", "1"))
        .await
        .unwrap();
    let moving = sim.moving(0, 1, Duration::from_secs(2)).await.unwrap();
    bounded("the switch", switched(&mut events, 1)).await;
    moving.done().await;
    assert_eq!(
        stack.handoff().current_endpoint(),
        Some(sim.node(1).endpoint())
    );
    for i in 0..10 {
        stack
            .clone()
            .oneshot(cmd!("SET", format!("db:after:{i}"), i))
            .await
            .unwrap();
    }
    let db3 = outside_db(&server, 3).await;
    let db0 = outside(&server).await;
    assert_eq!(get(&db3, "db:before").await.as_deref(), Some("1"));
    for i in 0..10 {
        let key = format!("db:after:{i}");
        assert_eq!(get(&db3, &key).await, Some(i.to_string()), "{key} in db 3");
        assert_eq!(get(&db0, &key).await, None, "{key} not in db 0");
    }
    assert_eq!(get(&db0, "db:before").await, None);
    let info = stack.clone().oneshot(cmd!("CLIENT", "INFO")).await.unwrap();
    assert!(info.as_str().unwrap().contains("db=3"), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_in_the_url_holds_after_a_reconnect() {
    let server = RedisServer::start();
    let stack = Stack::connect(&format!("{}/3", server.url()))
        .await
        .unwrap();
    let mut events = stack.maintenance().subscribe();
    stack
        .clone()
        .oneshot(cmd!("SET", "db:before", "1"))
        .await
        .unwrap();
    let killer = outside(&server).await;
    let killed = killer
        .send(cmd!("CLIENT", "KILL", "TYPE", "normal"))
        .await
        .unwrap();
    assert_eq!(killed.as_i64(), Some(1));
    next_event(&mut events, is_reconnected).await;
    for i in 0..10 {
        stack
            .clone()
            .oneshot(cmd!("SET", format!("db:after:{i}"), i))
            .await
            .unwrap();
    }
    let db3 = outside_db(&server, 3).await;
    for i in 0..10 {
        let key = format!("db:after:{i}");
        assert_eq!(get(&db3, &key).await, Some(i.to_string()), "{key} in db 3");
        assert_eq!(get(&killer, &key).await, None, "{key} not in db 0");
    }
    assert_eq!(stack.handoff().stats().reconnects, 1);
}

// ===== 7. dedicated connections across a reconnect =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_name_and_tracking_set_by_hand_on_a_dedicated_connection_hold_after_it_is_killed(
) {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let mut events = stack.maintenance().subscribe();
    let mut own = stack.dedicated().await.unwrap();
    assert!(own.send(cmd!("SELECT", 5)).await.unwrap().is_ok());
    assert!(own
        .send(cmd!("CLIENT", "SETNAME", "ledger-writer"))
        .await
        .unwrap()
        .is_ok());
    assert!(own
        .send(cmd!("CLIENT", "TRACKING", "ON"))
        .await
        .unwrap()
        .is_ok());
    own.send(cmd!("SET", "ded:before", "1")).await.unwrap();
    let first = client_id(&mut own).await;

    let killer = outside(&server).await;
    let killed = killer
        .send(cmd!("CLIENT", "KILL", "ID", first))
        .await
        .unwrap();
    assert_eq!(killed.as_i64(), Some(1));
    next_event(&mut events, is_reconnected).await;

    let second = client_id(&mut own).await;
    assert_ne!(first, second, "a new connection");
    assert!(own
        .send(cmd!("SET", "ded:after", "2"))
        .await
        .unwrap()
        .is_ok());
    let name = own.send(cmd!("CLIENT", "GETNAME")).await.unwrap();
    assert_eq!(name.as_str(), Some("ledger-writer"));
    let info = own.send(cmd!("CLIENT", "INFO")).await.unwrap();
    let info = info.as_str().unwrap();
    assert!(info.contains("db=5"), "{info}");
    assert!(info.contains("flags=t"), "tracking is on again: {info}");

    let db5 = outside_db(&server, 5).await;
    assert_eq!(get(&db5, "ded:before").await.as_deref(), Some("1"));
    assert_eq!(get(&db5, "ded:after").await.as_deref(), Some("2"));
    assert_eq!(get(&killer, "ded:after").await, None, "not in db 0");
    // The shared stack never left db 0.
    stack
        .clone()
        .oneshot(cmd!("SET", "shared", "0"))
        .await
        .unwrap();
    assert_eq!(get(&killer, "shared").await.as_deref(), Some("0"));
    assert_eq!(get(&db5, "shared").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_lost_with_its_killed_connection_fails_the_transaction_and_nothing_is_written() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let mut events = stack.maintenance().subscribe();
    stack
        .clone()
        .oneshot(cmd!("SET", "w:k", "original"))
        .await
        .unwrap();
    let mut own = stack.dedicated().await.unwrap();
    assert!(own.send(cmd!("WATCH", "w:k")).await.unwrap().is_ok());
    let id = client_id(&mut own).await;
    let killer = outside(&server).await;
    let killed = killer.send(cmd!("CLIENT", "KILL", "ID", id)).await.unwrap();
    assert_eq!(killed.as_i64(), Some(1));
    next_event(&mut events, is_reconnected).await;
    // The server forgot the WATCH with the connection: a change now would go unnoticed.
    killer
        .send(cmd!("SET", "w:k", "changed-meanwhile"))
        .await
        .unwrap();
    // Reads still go on the new connection.
    let read = own.send(cmd!("GET", "w:k")).await.unwrap();
    assert_eq!(read.as_str(), Some("changed-meanwhile"));

    let t = Transaction::new()
        .cmd(cmd!("SET", "w:k", "unguarded"))
        .cmd(cmd!("INCR", "w:count"));
    match own.send(t.clone()).await {
        Err(e @ Error::WatchLost { .. }) => {
            assert!(e.certainly_not_executed());
            assert!(e.to_string().contains("WATCH"), "{e}");
        }
        other => panic!("the transaction after the WATCH was lost: {other:?}"),
    }
    assert_eq!(
        get(&killer, "w:k").await.as_deref(),
        Some("changed-meanwhile")
    );
    assert_eq!(get(&killer, "w:count").await, None, "nothing of it ran");
    let stats = killer
        .send(cmd!("INFO", "commandstats"))
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(!stats.contains("cmdstat_exec:"), "EXEC was sent: {stats}");

    // The loss is reported once: the watch loop on the same connection works again.
    let done = own
        .watch(["w:k"], 4, |svc| async move {
            let seen = svc.oneshot(cmd!("GET", "w:k")).await?;
            assert_eq!(seen.as_str(), Some("changed-meanwhile"));
            Ok(Some(Transaction::new().cmd(cmd!("SET", "w:k", "guarded"))))
        })
        .await
        .unwrap();
    assert!(done.is_some());
    assert_eq!(get(&killer, "w:k").await.as_deref(), Some("guarded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_by_hand_lost_with_its_killed_connection_fails_exec_and_nothing_is_written() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let mut events = stack.maintenance().subscribe();
    let mut own = stack.dedicated().await.unwrap();
    let id = client_id(&mut own).await;
    assert!(own.send(cmd!("MULTI")).await.unwrap().is_ok());
    let queued = own.send(cmd!("SET", "m:k", "queued")).await.unwrap();
    assert_eq!(queued.as_str(), Some("QUEUED"));

    let killer = outside(&server).await;
    let killed = killer.send(cmd!("CLIENT", "KILL", "ID", id)).await.unwrap();
    assert_eq!(killed.as_i64(), Some(1));
    next_event(&mut events, is_reconnected).await;

    // What would have been queued fails, and so does EXEC: nothing runs outside the MULTI.
    let more = own.send(cmd!("INCR", "m:count")).await;
    assert!(matches!(more, Err(Error::WatchLost { .. })), "{more:?}");
    let exec = own.send(cmd!("EXEC")).await;
    assert!(matches!(exec, Err(Error::WatchLost { .. })), "{exec:?}");
    assert_eq!(get(&killer, "m:k").await, None);
    assert_eq!(get(&killer, "m:count").await, None);

    // After the EXEC the connection is an ordinary dedicated one again.
    let r = own.send(cmd!("INCR", "m:count")).await.unwrap();
    assert_eq!(r.as_i64(), Some(1));
    let r = own
        .send(
            Transaction::new()
                .cmd(cmd!("SET", "m:k", "v"))
                .cmd(cmd!("GET", "m:k")),
        )
        .await
        .unwrap();
    assert_eq!(r[1].as_ref().unwrap().as_str(), Some("v"));
}

// ===== 8. transaction errors =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_refused_while_queueing_is_discarded_and_names_the_command() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let t = Transaction::new()
        .cmd(cmd!("SET", "tx:a", "1"))
        .cmd(cmd!("GET"))
        .cmd(cmd!("INCR", "tx:b"));
    match stack.clone().oneshot(t).await {
        Err(Error::TransactionDiscarded { errors, .. }) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].0, 1, "the GET with no key");
            assert!(
                errors[0].1.text().contains("wrong number of arguments"),
                "{:?}",
                errors[0].1
            );
        }
        other => panic!("{other:?}"),
    }
    let look = outside(&server).await;
    assert_eq!(get(&look, "tx:a").await, None, "nothing ran");
    assert_eq!(get(&look, "tx:b").await, None, "nothing ran");
    // The shared connection is out of the MULTI: the next caller is answered, not queued.
    let r = stack.clone().oneshot(cmd!("INCR", "tx:b")).await.unwrap();
    assert_eq!(r.as_i64(), Some(1));

    // An unknown command is refused while queueing too.
    let t = Transaction::new()
        .cmd(cmd!("INCR", "tx:b"))
        .cmd(cmd!("INCR", "tx:b"))
        .cmd(cmd!("NOSUCHCOMMAND", "x"));
    match stack.clone().oneshot(t).await {
        Err(Error::TransactionDiscarded { errors, .. }) => {
            let at: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
            assert_eq!(at, vec![2]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&look, "tx:b").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_error_inside_a_transaction_is_that_commands_own_and_the_others_apply() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    stack
        .clone()
        .oneshot(cmd!("SET", "tx:text", "not a number"))
        .await
        .unwrap();
    let results = stack
        .clone()
        .oneshot(
            Transaction::new()
                .cmd(cmd!("INCR", "tx:n"))
                .cmd(cmd!("INCR", "tx:text"))
                .cmd(cmd!("SET", "tx:after", "yes"))
                .cmd(cmd!("GET", "tx:n")),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().as_i64(), Some(1));
    match &results[1] {
        Err(Error::Server(e)) => assert!(e.text().contains("not an integer"), "{e:?}"),
        other => panic!("INCR on a string inside the transaction: {other:?}"),
    }
    assert!(results[2].as_ref().unwrap().is_ok());
    assert_eq!(results[3].as_ref().unwrap().as_str(), Some("1"));
    let look = outside(&server).await;
    assert_eq!(get(&look, "tx:after").await.as_deref(), Some("yes"));
    assert_eq!(get(&look, "tx:text").await.as_deref(), Some("not a number"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_key_changed_before_exec_is_a_watch_conflict_and_the_watch_loop_retries_it() {
    let server = RedisServer::start();
    let stack = Stack::connect(&server.url()).await.unwrap();
    let look = outside(&server).await;
    look.send(cmd!("SET", "wc:k", "0")).await.unwrap();
    let mut own = stack.dedicated().await.unwrap();

    // By hand: WATCH, a change from outside, then the transaction.
    assert!(own.send(cmd!("WATCH", "wc:k")).await.unwrap().is_ok());
    look.send(cmd!("SET", "wc:k", "outside")).await.unwrap();
    let t = Transaction::new().cmd(cmd!("SET", "wc:k", "mine"));
    let r = own.send(t).await;
    assert!(
        matches!(r, Err(Error::WatchConflict { attempts: 1 })),
        "{r:?}"
    );
    assert_eq!(get(&look, "wc:k").await.as_deref(), Some("outside"));

    // The loop: the first attempt is spoiled from outside, the second applies.
    let tries = Arc::new(AtomicU64::new(0));
    let done = {
        let (tries, look) = (tries.clone(), &look);
        own.watch(["wc:k"], 5, move |svc| {
            let tries = tries.clone();
            async move {
                let seen = svc.oneshot(cmd!("GET", "wc:k")).await?;
                let seen = seen.as_str().unwrap_or("").to_string();
                if tries.fetch_add(1, Ordering::Relaxed) == 0 {
                    look.send(cmd!("SET", "wc:k", "spoiler")).await?;
                }
                Ok(Some(Transaction::new().cmd(cmd!(
                    "SET",
                    "wc:k",
                    format!("{seen}+1")
                ))))
            }
        })
        .await
        .unwrap()
    };
    assert!(done.is_some());
    assert_eq!(tries.load(Ordering::Relaxed), 2);
    assert_eq!(get(&look, "wc:k").await.as_deref(), Some("spoiler+1"));

    // Spoiled every time: the loop gives up with the number of attempts.
    let outside_writer = &look;
    let r = own
        .watch(["wc:k"], 3, |svc| async move {
            let _ = svc.oneshot(cmd!("GET", "wc:k")).await?;
            outside_writer.send(cmd!("INCR", "wc:spoils")).await?;
            outside_writer.send(cmd!("SET", "wc:k", "again")).await?;
            Ok(Some(Transaction::new().cmd(cmd!("SET", "wc:k", "never"))))
        })
        .await;
    assert!(
        matches!(r, Err(Error::WatchConflict { attempts: 3 })),
        "{r:?}"
    );
    assert_eq!(get(&look, "wc:spoils").await.as_deref(), Some("3"));
    assert_eq!(get(&look, "wc:k").await.as_deref(), Some("again"));

    // Giving up sends no transaction and leaves nothing watched.
    let r = own
        .watch(["wc:k"], 3, |_svc| async move { Ok(None) })
        .await
        .unwrap();
    assert!(r.is_none());
    look.send(cmd!("SET", "wc:k", "later")).await.unwrap();
    let r = own
        .send(Transaction::new().cmd(cmd!("SET", "wc:k", "unwatched")))
        .await
        .unwrap();
    assert!(r[0].as_ref().unwrap().is_ok(), "no WATCH left behind");

    // The stack's own helper opens a connection for one loop.
    let r = stack
        .watch(["wc:k"], 3, |svc| async move {
            let seen = svc.oneshot(cmd!("GET", "wc:k")).await?;
            assert_eq!(seen.as_str(), Some("unwatched"));
            Ok(Some(Transaction::new().cmd(cmd!("SET", "wc:k", "helper"))))
        })
        .await
        .unwrap();
    assert!(r.is_some());
    assert_eq!(get(&look, "wc:k").await.as_deref(), Some("helper"));
}
