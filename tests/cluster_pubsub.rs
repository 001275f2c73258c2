//! Sharded Pub/Sub through the cluster client against a real Redis Cluster started by the
//! tests: an `SSUBSCRIBE` follows its channel's slot when the slot is migrated for real (the old
//! owner's `sunsubscribe`, a refresh, the new owner), back and forth; the caller's own
//! `SUNSUBSCRIBE` is not followed; one without channels reaches every node; and through the
//! simulator, whose migrations announce `SMIGRATED`.

mod common;

use std::time::Duration;

use common::cluster::{key_slot, Admin, RedisCluster, Value};
use redis_handoff::frame::BytesFrame;
use redis_handoff::{cmd, Cluster, ClusterEvent, ConnectOptions, Endpoint};
use tokio::sync::{broadcast, mpsc};
use tower::ServiceExt;

/// Wide: what it bounds takes milliseconds; only a hang reaches it.
const WAIT: Duration = Duration::from_secs(10);

async fn client(url: &str) -> Cluster {
    Cluster::builder(ConnectOptions::from_url(url).unwrap())
        .refresh_period(None)
        .connect()
        .await
        .expect("the cluster client connects")
}

/// One push as the caller sees it: its kind, its channel and (for a message) its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Push {
    kind: String,
    channel: String,
    payload: String,
}

fn text(f: &BytesFrame) -> String {
    match f {
        BytesFrame::BlobString { data, .. } | BytesFrame::SimpleString { data, .. } => {
            String::from_utf8_lossy(data).into_owned()
        }
        BytesFrame::Number { data, .. } => data.to_string(),
        _ => String::new(),
    }
}

/// Everything `Cluster::pushes` gives, read by a task of its own.
struct Heard {
    rx: mpsc::UnboundedReceiver<Push>,
    all: Vec<Push>,
}

impl Heard {
    fn listen(cluster: &Cluster) -> Heard {
        let mut pushes = cluster.pushes();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(frame) = pushes.recv().await {
                let BytesFrame::Push { data, .. } = frame else {
                    continue;
                };
                let push = Push {
                    kind: data.first().map(text).unwrap_or_default(),
                    channel: data.get(1).map(text).unwrap_or_default(),
                    payload: data.get(2).map(text).unwrap_or_default(),
                };
                if tx.send(push).is_err() {
                    return;
                }
            }
        });
        Heard {
            rx,
            all: Vec::new(),
        }
    }

    /// The payloads of the messages on `channel` so far, in arrival order.
    fn messages(&self, channel: &str) -> Vec<String> {
        self.all
            .iter()
            .filter(|p| p.kind == "smessage" && p.channel == channel)
            .map(|p| p.payload.clone())
            .collect()
    }

    /// Reads until `done` holds of what was heard, within [`WAIT`].
    async fn until(&mut self, what: &str, done: impl Fn(&Heard) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(p)) => self.all.push(p),
                Ok(None) => panic!("the push stream ended before {what}"),
                Err(_) => panic!("{what} within {WAIT:?}; heard {:?}", self.all),
            }
        }
    }

    /// Waits until `payloads` have all arrived on `channel`.
    async fn until_all(&mut self, channel: &str, payloads: &[String]) {
        self.until(&format!("{} messages on {channel}", payloads.len()), |h| {
            let got = h.messages(channel);
            payloads.iter().all(|p| got.contains(p))
        })
        .await
    }

    /// The subscription confirmations (and ends), as `kind channel`.
    fn confirmations(&self) -> Vec<String> {
        self.all
            .iter()
            .filter(|p| p.kind.ends_with("subscribe"))
            .map(|p| format!("{} {}", p.kind, p.channel))
            .collect()
    }
}

/// Publishes `payloads` on `channel` one after the other; each reply is the number of
/// subscribers that got it.
async fn publish(publisher: &Cluster, channel: &str, payloads: &[String]) -> Vec<i64> {
    let mut receivers = Vec::new();
    for p in payloads {
        let reply = publisher
            .clone()
            .oneshot(cmd!("SPUBLISH", channel, p))
            .await
            .unwrap_or_else(|e| panic!("SPUBLISH {channel} {p}: {e}"));
        receivers.push(reply.as_i64().expect("SPUBLISH answers a number"));
    }
    receivers
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// How many subscribers `node_port`'s node has for shard channel `channel`, asked of the node
/// itself.
fn shard_subscribers(node_port: u16, channel: &str) -> i64 {
    match Admin::connect(node_port).cmd(&["PUBSUB", "SHARDNUMSUB", channel]) {
        Value::Array(items) => match items.as_slice() {
            [Value::Text(c), Value::Int(n)] if c == channel => *n,
            other => panic!("PUBSUB SHARDNUMSUB answered {other:?}"),
        },
        other => panic!("PUBSUB SHARDNUMSUB answered {other:?}"),
    }
}

/// A `ShardChannelsMoved`: the channels, from and to; and whether a `SlotsMigrated` (an
/// applied `SMIGRATED`) came before it.
struct Followed {
    channels: Vec<String>,
    from: Endpoint,
    to: Endpoint,
    after_smigrated: bool,
}

/// The next `ShardChannelsMoved` to the node on `to_port`, within [`WAIT`].
async fn moved_to(
    events: &mut broadcast::Receiver<ClusterEvent>,
    to_port: u16,
) -> (Vec<String>, Endpoint, Endpoint) {
    let f = followed_to(events, to_port).await;
    (f.channels, f.from, f.to)
}

/// [`moved_to`], saying whether an `SMIGRATED` was applied before.
async fn followed_to(events: &mut broadcast::Receiver<ClusterEvent>, to_port: u16) -> Followed {
    let mut after_smigrated = false;
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(ClusterEvent::SlotsMigrated { .. }) => after_smigrated = true,
                Ok(ClusterEvent::ShardChannelsMoved { channels, from, to })
                    if to.port() == to_port =>
                {
                    let channels = channels
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    return Followed {
                        channels,
                        from,
                        to,
                        after_smigrated,
                    };
                }
                Ok(ClusterEvent::ShardChannelsNotMoved {
                    channels, reason, ..
                }) => {
                    panic!("{channels:?} were not moved: {reason}")
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no ShardChannelsMoved to port {to_port} within {WAIT:?}"))
}

/// Moves `slot` for real, from the blocking test harness.
fn move_slot(cluster: &RedisCluster, slot: u16, from: u16, to: u16) {
    tokio::task::block_in_place(|| cluster.move_slot(slot, from, to));
}

/// A real cluster, a subscriber subscribed to `channel` and a publisher, both through the
/// cluster client, and the ports of the channel's owner and of another primary.
struct OnCluster {
    cluster: RedisCluster,
    url: String,
    subscriber: Cluster,
    publisher: Cluster,
    slot: u16,
    from: u16,
    to: u16,
    heard: Heard,
    events: broadcast::Receiver<ClusterEvent>,
}

async fn subscribed_on_cluster(channel: &str) -> OnCluster {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.nodes[0].url();
    let subscriber = client(&url).await;
    let publisher = client(&url).await;
    let slot = key_slot(channel);
    let from = cluster.owner_port(slot);
    let to = cluster.ports().into_iter().find(|&p| p != from).unwrap();
    let heard = Heard::listen(&subscriber);
    let events = subscriber.events();
    subscriber
        .clone()
        .oneshot(cmd!("SSUBSCRIBE", channel))
        .await
        .unwrap();
    OnCluster {
        cluster,
        url,
        subscriber,
        publisher,
        slot,
        from,
        to,
        heard,
        events,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_subscription_follows_its_slot_to_the_new_owner() {
    let channel = "{follow}news";
    let OnCluster {
        cluster,
        url: _,
        subscriber,
        publisher,
        slot,
        from,
        to,
        mut heard,
        mut events,
    } = subscribed_on_cluster(channel).await;
    let before = numbered("m", 0..20);
    assert!(publish(&publisher, channel, &before)
        .await
        .iter()
        .all(|&n| n == 1));
    heard.until_all(channel, &before).await;

    move_slot(&cluster, slot, from, to);
    let (channels, was, now) = moved_to(&mut events, to).await;
    assert_eq!(channels, [channel]);
    assert_eq!(was.port(), from);
    assert_eq!(now.port(), to);

    // Acknowledged on the new owner: whatever is published from now on reaches the subscriber.
    let after = numbered("m", 20..40);
    let receivers = publish(&publisher, channel, &after).await;
    assert!(receivers.iter().all(|&n| n == 1), "{receivers:?}");
    heard.until_all(channel, &after).await;
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(heard.messages(channel), all, "each once, in order");
    assert_eq!(shard_subscribers(to, channel), 1);
    assert_eq!(shard_subscribers(from, channel), 0);
    // The caller saw its own confirmation, nothing of the move.
    assert_eq!(heard.confirmations(), [format!("ssubscribe {channel}")]);
    let stats = subscriber.stats();
    assert_eq!(stats.shard_channels_moved, 1, "{stats:?}");
    assert_eq!(stats.shard_channel_failures, 0, "{stats:?}");
    // Redis Open Source announces nothing: the old owner's sunsubscribe moved it.
    assert_eq!(stats.shard_channels_ahead, 0, "{stats:?}");

    // The new owner's stack holds the subscription: when its connection is lost, the
    // reconnect makes it again there.
    let killed = Admin::connect(to).cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(matches!(killed, Value::Int(n) if n >= 1), "{killed:?}");
    common::events::wait_until(
        "the subscription made again on the new owner",
        WAIT,
        Duration::from_millis(20),
        || shard_subscribers(to, channel) == 1,
    )
    .await;
    let last = numbered("m", 40..50);
    assert!(publish(&publisher, channel, &last)
        .await
        .iter()
        .all(|&n| n == 1));
    heard.until_all(channel, &last).await;
    let all: Vec<String> = all.iter().chain(&last).cloned().collect();
    assert_eq!(heard.messages(channel), all);
    assert_eq!(shard_subscribers(from, channel), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_subscription_follows_its_slot_back_and_forth_twice_under_load() {
    let channel = "{swing}ticks";
    let OnCluster {
        cluster,
        url,
        subscriber,
        publisher,
        slot,
        from: a,
        to: b,
        mut heard,
        mut events,
    } = subscribed_on_cluster(channel).await;

    // A second publisher all along, through the moves: its messages may miss the window
    // between the old owner letting go and the new one acknowledging, but never come twice
    // or out of order.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let background = {
        let publisher = client(&url).await;
        tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                if stop_rx.try_recv().is_ok() {
                    return sent;
                }
                publisher
                    .clone()
                    .oneshot(cmd!("SPUBLISH", channel, format!("bg{sent}")))
                    .await
                    .unwrap_or_else(|e| panic!("SPUBLISH bg{sent}: {e}"));
                sent += 1;
                // Paced, so that the subscriber's reader keeps up with the stream.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let first = numbered("fg0-", 0..10);
    publish(&publisher, channel, &first).await;
    heard.until_all(channel, &first).await;
    let mut expected = first;
    for (round, (from, to)) in [(a, b), (b, a), (a, b), (b, a)].into_iter().enumerate() {
        move_slot(&cluster, slot, from, to);
        let (channels, was, _) = moved_to(&mut events, to).await;
        assert_eq!(channels, [channel], "round {round}");
        assert_eq!(was.port(), from, "round {round}");
        let batch = numbered(&format!("fg{}-", round + 1), 0..10);
        let receivers = publish(&publisher, channel, &batch).await;
        assert!(
            receivers.iter().all(|&n| n == 1),
            "round {round}: {receivers:?}"
        );
        heard.until_all(channel, &batch).await;
        expected.extend(batch);
    }
    let _ = stop_tx.send(());
    let sent = background.await.unwrap();

    let got = heard.messages(channel);
    let foreground: Vec<String> = got
        .iter()
        .filter(|m| m.starts_with("fg"))
        .cloned()
        .collect();
    assert_eq!(
        foreground, expected,
        "every foreground message once, in order"
    );
    let background: Vec<usize> = got
        .iter()
        .filter_map(|m| m.strip_prefix("bg"))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        background.windows(2).all(|w| w[0] < w[1]),
        "background messages once each and in order: {background:?}"
    );
    assert!(background.iter().all(|&n| n < sent));
    eprintln!(
        "{} of {sent} background messages arrived through 4 moves",
        background.len()
    );
    // The follower moves the subscription once the nodes agree on the slot's owner, which under
    // load can come after the last message above: the final placement is waited for (widely).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (shard_subscribers(a, channel), shard_subscribers(b, channel)) != (1, 0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shard_subscribers(a, channel), 1);
    assert_eq!(shard_subscribers(b, channel), 0);
    assert_eq!(heard.confirmations(), [format!("ssubscribe {channel}")]);
    let stats = subscriber.stats();
    assert_eq!(stats.shard_channels_moved, 4, "{stats:?}");
    assert_eq!(stats.shard_channel_failures, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_caller_unsubscribed_is_not_followed() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.nodes[0].url();
    let subscriber = client(&url).await;
    let publisher = client(&url).await;
    // One slot: a move of the slot moves every registered channel of it together.
    let (left, kept) = ("{pair}left", "{pair}kept");
    let slot = key_slot(kept);
    let from = cluster.owner_port(slot);
    let to = cluster.ports().into_iter().find(|&p| p != from).unwrap();
    let mut heard = Heard::listen(&subscriber);
    let mut events = subscriber.events();
    for c in [left, kept] {
        subscriber
            .clone()
            .oneshot(cmd!("SSUBSCRIBE", c))
            .await
            .unwrap();
    }
    subscriber
        .clone()
        .oneshot(cmd!("SUNSUBSCRIBE", left))
        .await
        .unwrap();
    assert_eq!(shard_subscribers(from, left), 0);
    assert_eq!(shard_subscribers(from, kept), 1);

    move_slot(&cluster, slot, from, to);
    let (channels, _, _) = moved_to(&mut events, to).await;
    assert_eq!(
        channels,
        [kept],
        "only the channel still subscribed follows"
    );
    assert_eq!(shard_subscribers(to, kept), 1);
    assert_eq!(shard_subscribers(to, left), 0);
    assert_eq!(shard_subscribers(from, left), 0);
    assert_eq!(
        publish(&publisher, left, &numbered("x", 0..3)).await,
        [0, 0, 0]
    );
    let kept_messages = numbered("k", 0..3);
    assert_eq!(publish(&publisher, kept, &kept_messages).await, [1, 1, 1]);
    heard.until_all(kept, &kept_messages).await;
    assert!(heard.messages(left).is_empty());
    // The caller's own confirmations, its unsubscribe included; nothing of the move.
    assert_eq!(
        heard.confirmations(),
        [
            format!("ssubscribe {left}"),
            format!("ssubscribe {kept}"),
            format!("sunsubscribe {left}")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sunsubscribe_without_channels_ends_them_on_every_node() {
    let cluster = RedisCluster::start(3, 0);
    let subscriber = client(&cluster.nodes[0].url()).await;
    // Two channels on two nodes.
    let one = "{ends}one";
    let port_one = cluster.owner_port(key_slot(one));
    let two = (0..)
        .map(|i| format!("{{ends{i}}}two"))
        .find(|c| cluster.owner_port(key_slot(c)) != port_one)
        .unwrap();
    let port_two = cluster.owner_port(key_slot(&two));
    for c in [one, two.as_str()] {
        subscriber
            .clone()
            .oneshot(cmd!("SSUBSCRIBE", c))
            .await
            .unwrap();
    }
    assert_eq!(shard_subscribers(port_one, one), 1);
    assert_eq!(shard_subscribers(port_two, &two), 1);
    let reply = subscriber
        .clone()
        .oneshot(cmd!("SUNSUBSCRIBE"))
        .await
        .unwrap();
    let BytesFrame::Array { data, .. } = reply.frame() else {
        panic!("SUNSUBSCRIBE answered {reply:?}");
    };
    let mut confirmed: Vec<String> = data
        .iter()
        .map(|f| match f {
            BytesFrame::Push { data, .. } => text(&data[1]),
            other => panic!("{other:?}"),
        })
        .collect();
    confirmed.sort();
    let mut want = vec![one.to_string(), two.clone()];
    want.sort();
    assert_eq!(confirmed, want, "one confirmation from each node");
    assert_eq!(shard_subscribers(port_one, one), 0);
    assert_eq!(shard_subscribers(port_two, &two), 0);
}

#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_subscription_follows_a_migration_the_simulator_announces_with_smigrated() {
    use redis_handoff::sim::{Simulator, Slots};

    let cluster = RedisCluster::start(3, 0);
    let sim = Simulator::builder()
        .cluster(cluster.addrs())
        .start()
        .await
        .expect("the simulator starts in front of the cluster");
    let subscriber = client(&sim.node(0).url()).await;
    let publisher = client(&sim.node(0).url()).await;
    let channel = "{sim}alerts";
    let slot = key_slot(channel);
    let from_port = cluster.owner_port(slot);
    let to = (0..cluster.nodes.len())
        .find(|&i| cluster.nodes[i].port != from_port)
        .unwrap();
    let to_port = cluster.nodes[to].port;
    let mut heard = Heard::listen(&subscriber);
    let mut events = subscriber.events();
    subscriber
        .clone()
        .oneshot(cmd!("SSUBSCRIBE", channel))
        .await
        .unwrap();
    let before = numbered("s", 0..10);
    assert!(publish(&publisher, channel, &before)
        .await
        .iter()
        .all(|&n| n == 1));
    heard.until_all(channel, &before).await;

    let slots = Slots::from_ranges([slot..=slot]).unwrap();
    let done = sim
        .migrate_slots(&slots, to)
        .await
        .expect("the slot moves for real");
    assert!(done.smigrated_seq.is_some());
    assert_eq!(cluster.owner_port(slot), to_port);
    // The new owner is named by the simulator's node in front of it.
    let (channels, _, _) = moved_to(&mut events, sim.node(to).port()).await;
    assert_eq!(channels, [channel]);
    common::events::wait_until("SMIGRATED applied", WAIT, Duration::from_millis(10), || {
        subscriber.stats().migrations >= 1
    })
    .await;

    let after = numbered("s", 10..20);
    let receivers = publish(&publisher, channel, &after).await;
    assert!(receivers.iter().all(|&n| n == 1), "{receivers:?}");
    heard.until_all(channel, &after).await;
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(heard.messages(channel), all, "each once, in order");
    // Asked of the cluster nodes themselves, past the simulator.
    assert_eq!(shard_subscribers(to_port, channel), 1);
    assert_eq!(shard_subscribers(from_port, channel), 0);
    assert_eq!(heard.confirmations(), [format!("ssubscribe {channel}")]);
    assert_eq!(subscriber.stats().shard_channel_failures, 0);
    sim.shutdown();
}

/// Numbers in `got` that arrived out of the order they were published in, allowing what two
/// nodes delivered to interleave: the messages are published one after the other, the old
/// owner's first, so each node's are an increasing run split at some number; `None` when such a
/// split exists.
fn out_of_order_per_node(got: &[u64]) -> Option<Vec<u64>> {
    let increasing = |run: Vec<u64>| run.windows(2).all(|w| w[0] < w[1]);
    let fits = |k: u64| {
        increasing(got.iter().copied().filter(|&n| n < k).collect())
            && increasing(got.iter().copied().filter(|&n| n >= k).collect())
    };
    let splits = got.iter().copied().chain([u64::MAX]);
    let mut splits = splits;
    if splits.any(fits) {
        return None;
    }
    Some(
        got.windows(2)
            .filter(|w| w[0] >= w[1])
            .map(|w| w[1])
            .collect(),
    )
}

/// A real cluster behind the simulator, a subscriber through the simulator subscribed to
/// `channel`, a publisher straight to the cluster (it follows the old owner's `MOVED` and is
/// not held with the old owner's connections), and the nodes the channel's slot moves between.
#[cfg(feature = "sim")]
struct ThroughSim {
    cluster: RedisCluster,
    sim: redis_handoff::sim::Simulator,
    subscriber: Cluster,
    publisher: Cluster,
    slot: u16,
    from: usize,
    from_port: u16,
    to: usize,
    to_port: u16,
    heard: Heard,
    events: broadcast::Receiver<ClusterEvent>,
}

#[cfg(feature = "sim")]
async fn subscribed_through_sim(channel: &str) -> ThroughSim {
    let cluster = RedisCluster::start(3, 0);
    let sim = redis_handoff::sim::Simulator::builder()
        .cluster(cluster.addrs())
        .start()
        .await
        .expect("the simulator starts in front of the cluster");
    let subscriber = client(&sim.node(0).url()).await;
    let publisher = client(&cluster.nodes[0].url()).await;
    let slot = key_slot(channel);
    let from_port = cluster.owner_port(slot);
    let from = cluster.index_of(from_port);
    let to = (0..cluster.nodes.len()).find(|&i| i != from).unwrap();
    let to_port = cluster.nodes[to].port;
    let heard = Heard::listen(&subscriber);
    let events = subscriber.events();
    subscriber
        .clone()
        .oneshot(cmd!("SSUBSCRIBE", channel))
        .await
        .unwrap();
    ThroughSim {
        cluster,
        sim,
        subscriber,
        publisher,
        slot,
        from,
        from_port,
        to,
        to_port,
        heard,
        events,
    }
}

/// The move announced with `SMIGRATING`: the subscriber reads the importing node from the
/// old owner's `CLUSTER NODES` while the slot is `MIGRATING`, subscribes there after `ASKING`
/// before the move completes, and so misses nothing: every message a publisher publishes
/// every millisecond or so (following `MOVED`), before, during and after the move, arrives
/// exactly once, in order per node.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_move_subscribes_on_the_importing_node_first_and_loses_no_message() {
    use redis_handoff::sim::{MigrateSlots, Slots};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    const CHANNEL: &str = "{ahead}ticks";
    let ThroughSim {
        cluster,
        sim,
        subscriber,
        publisher,
        slot,
        from,
        from_port,
        to,
        to_port,
        mut heard,
        mut events,
    } = subscribed_through_sim(CHANNEL).await;
    let channel = CHANNEL;
    heard
        .until("the subscription confirmed", |h| {
            !h.confirmations().is_empty()
        })
        .await;
    // Keys in the slot, so that the move takes a while (the simulator moves them 100 at a
    // time), as a slot that holds data does: the slot is `MIGRATING` meanwhile.
    for batch in 0..40 {
        let mut keys = redis_handoff::Pipeline::new();
        for i in 0..500 {
            keys = keys.cmd(cmd!("SET", format!("{{ahead}}k{batch}-{i}"), "v"));
        }
        publisher.clone().oneshot(keys).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(Mutex::new(Vec::<u64>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let publishing = tokio::spawn({
        let (stop, published, refused) = (stop.clone(), published.clone(), refused.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match publisher
                    .clone()
                    .oneshot(cmd!("SPUBLISH", channel, n.to_string()))
                    .await
                {
                    Ok(_) => published.lock().unwrap().push(n),
                    Err(e) => refused.lock().unwrap().push(format!("{n}: {e}")),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let slots = Slots::from_ranges([slot..=slot]).unwrap();
    let done = sim
        .migrate_slots_with(
            &slots,
            to,
            MigrateSlots::new().delay(Duration::from_millis(300)),
        )
        .await
        .expect("the slot moves for real");
    assert!(done.recipients >= 1, "the subscriber was told: {done:?}");
    assert_eq!(cluster.owner_port(slot), to_port);
    let followed = followed_to(&mut events, sim.node(to).port()).await;
    assert_eq!(followed.channels, [channel]);
    assert_eq!(followed.from.port(), sim.node(from).port());
    // Published on the new owner for a while after the move.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    publishing.await.unwrap();

    let published = published.lock().unwrap().clone();
    let names: Vec<String> = published.iter().map(u64::to_string).collect();
    assert!(published.len() > 200, "published {}", published.len());
    // Read until everything is in, within WAIT; anything late (a copy) would come right behind.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = heard.messages(channel);
        let all_in = names.iter().all(|n| got.contains(n));
        let wait = if all_in {
            Duration::from_millis(200)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, heard.rx.recv()).await {
            Ok(Some(p)) => heard.all.push(p),
            Ok(None) | Err(_) => break,
        }
    }
    let stats = subscriber.stats();
    let got = heard.messages(channel);
    let missing: Vec<&String> = names.iter().filter(|n| !got.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "missed {missing:?} of {}; {stats:?}",
        names.len()
    );
    let got: Vec<u64> = heard
        .messages(channel)
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, published, "each published message exactly once");
    assert_eq!(
        out_of_order_per_node(&got),
        None,
        "in order per node: {got:?}"
    );

    let stats = subscriber.stats();
    assert_eq!(stats.shard_channels_ahead, 1, "{stats:?}");
    assert_eq!(stats.shard_channels_ahead_failed, 0, "{stats:?}");
    assert_eq!(stats.shard_channels_moved, 1, "{stats:?}");
    assert_eq!(stats.shard_channel_failures, 0, "{stats:?}");
    assert_eq!(shard_subscribers(to_port, channel), 1);
    common::events::wait_until(
        "the old owner released",
        WAIT,
        Duration::from_millis(20),
        || shard_subscribers(from_port, channel) == 0,
    )
    .await;
    // The caller saw its own confirmation, nothing of the move.
    assert_eq!(heard.confirmations(), [format!("ssubscribe {channel}")]);
    let refused = refused.lock().unwrap().clone();
    assert!(refused.len() < 5, "SPUBLISH refused: {refused:?}");
    sim.shutdown();
}

/// The `SMIGRATED` path alone: the subscriber's connections to the old owner go silent before
/// the slot moves (the simulator holds what they carry), so its `sunsubscribe` is not heard;
/// the `SMIGRATED` copies of the other nodes are. The subscription is made on the new owner
/// first, then let go on the old one (make before break); the held `sunsubscribe`, delivered
/// once the old node is heard again, changes nothing.
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smigrated_moves_a_shard_subscription_before_the_old_owner_is_heard() {
    use redis_handoff::sim::{Scope, Slots};

    const CHANNEL: &str = "{smig}orders";
    let ThroughSim {
        // Kept to the end: dropping it stops the servers.
        cluster: _cluster,
        sim,
        subscriber,
        publisher,
        slot,
        from,
        from_port,
        to,
        to_port,
        mut heard,
        mut events,
    } = subscribed_through_sim(CHANNEL).await;
    let channel = CHANNEL;
    let before = numbered("o", 0..10);
    assert!(publish(&publisher, channel, &before)
        .await
        .iter()
        .all(|&n| n == 1));
    heard.until_all(channel, &before).await;

    let dark = sim
        .blackhole_connections(Scope::Node(from))
        .expect("the old owner's connections go silent");
    assert!(dark >= 1);
    let slots = Slots::from_ranges([slot..=slot]).unwrap();
    sim.migrate_slots(&slots, to)
        .await
        .expect("the slot moves for real");
    let followed = followed_to(&mut events, sim.node(to).port()).await;
    assert!(followed.after_smigrated, "moved on SMIGRATED");
    assert_eq!(followed.channels, [channel]);
    assert_eq!(followed.from.port(), sim.node(from).port());

    let after = numbered("o", 10..20);
    let receivers = publish(&publisher, channel, &after).await;
    assert!(receivers.iter().all(|&n| n == 1), "{receivers:?}");
    heard.until_all(channel, &after).await;
    assert_eq!(shard_subscribers(to_port, channel), 1);

    // The old owner is heard again: what it held (its sunsubscribe among it) arrives, and the
    // subscription stays where it is.
    sim.restore(from).unwrap();
    let last = numbered("o", 20..30);
    assert!(publish(&publisher, channel, &last)
        .await
        .iter()
        .all(|&n| n == 1));
    heard.until_all(channel, &last).await;
    let all: Vec<String> = before.iter().chain(&after).chain(&last).cloned().collect();
    assert_eq!(heard.messages(channel), all, "each once, in order");
    assert_eq!(shard_subscribers(to_port, channel), 1);
    assert_eq!(shard_subscribers(from_port, channel), 0);
    assert_eq!(heard.confirmations(), [format!("ssubscribe {channel}")]);
    let stats = subscriber.stats();
    assert_eq!(stats.shard_channels_moved, 1, "{stats:?}");
    assert_eq!(stats.shard_channel_failures, 0, "{stats:?}");
    sim.shutdown();
}

/// What one node's stack does with shard channels on its own, below the cluster: it makes them
/// again after a lost connection one slot per `SSUBSCRIBE` (the node refuses one that spans
/// slots), and not at all for a channel the node ended when its slot left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stack_restores_its_shard_channels_by_slot_and_drops_those_the_node_ended() {
    use redis_handoff::Stack;

    let cluster = RedisCluster::start(3, 0);
    // Three channels on one node: two stay there, in two slots; one's slot will leave.
    let leaving = "{gone}x";
    let node = cluster.owner_port(key_slot(leaving));
    let staying: Vec<String> = (0..)
        .map(|i| format!("{{stay{i}}}y"))
        .filter(|c| cluster.owner_port(key_slot(c)) == node)
        .take(2)
        .collect();
    assert_ne!(key_slot(&staying[0]), key_slot(&staying[1]));
    let other = cluster.ports().into_iter().find(|&p| p != node).unwrap();
    let url = format!("redis://127.0.0.1:{node}");
    let stack = Stack::builder(ConnectOptions::from_url(&url).unwrap())
        .connect()
        .await
        .unwrap();
    for c in [leaving, &staying[0], &staying[1]] {
        stack.clone().oneshot(cmd!("SSUBSCRIBE", c)).await.unwrap();
    }
    let mut pushes = stack.handoff().pushes();
    move_slot(&cluster, key_slot(leaving), node, other);
    // The node ends the subscription of the channel whose slot left it.
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = pushes.recv().await.expect("the stream stays open");
            if let BytesFrame::Push { data, .. } = frame {
                if text(&data[0]) == "sunsubscribe" && text(&data[1]) == leaving {
                    return;
                }
            }
        }
    })
    .await
    .expect("the node's sunsubscribe within 10 s");

    let mut admin = Admin::connect(node);
    admin.ok(&["CONFIG", "RESETSTAT"]);
    let killed = admin.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, Value::Int(1));
    common::events::wait_until(
        "both staying channels subscribed again",
        WAIT,
        Duration::from_millis(20),
        || staying.iter().all(|c| shard_subscribers(node, c) == 1),
    )
    .await;
    // Every SSUBSCRIBE of the reconnect was accepted: none spanned slots, none named the
    // channel whose slot left.
    let stats = admin.cmd(&["INFO", "commandstats"]);
    let line = stats
        .text()
        .lines()
        .find(|l| l.starts_with("cmdstat_ssubscribe:"))
        .unwrap_or_else(|| panic!("no SSUBSCRIBE since the reset: {stats:?}"))
        .to_string();
    assert!(line.contains("calls=2,"), "{line}");
    assert!(line.contains("rejected_calls=0,"), "{line}");
    assert!(line.contains("failed_calls=0"), "{line}");
    assert_eq!(shard_subscribers(node, leaving), 0);
    assert_eq!(shard_subscribers(other, leaving), 0);
}

/// How many subscribers `port`'s node has for classic channel `channel`.
fn subscribers(port: u16, channel: &str) -> i64 {
    match Admin::connect(port).cmd(&["PUBSUB", "NUMSUB", channel]) {
        Value::Array(items) => match items.as_slice() {
            [Value::Text(c), Value::Int(n)] if c == channel => *n,
            other => panic!("PUBSUB NUMSUB answered {other:?}"),
        },
        other => panic!("PUBSUB NUMSUB answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_subscriptions_move_to_another_primary_when_theirs_dies() {
    let mut cluster = RedisCluster::start(3, 1);
    let redis = Cluster::builder(ConnectOptions::from_url(&cluster.nodes[0].url()).unwrap())
        .refresh_period(Some(Duration::from_millis(500)))
        .connect()
        .await
        .unwrap();
    let mut events = redis.events();
    let mut heard = Heard::listen(&redis);
    redis
        .clone()
        .oneshot(cmd!("SUBSCRIBE", "news"))
        .await
        .unwrap();
    redis
        .clone()
        .oneshot(cmd!("PSUBSCRIBE", "alerts:*"))
        .await
        .unwrap();
    let home = (0..cluster.primaries)
        .find(|&i| subscribers(cluster.nodes[i].port, "news") == 1)
        .expect("one primary holds the subscription");
    let live = (0..cluster.primaries).find(|&i| i != home).unwrap();
    let live_port = cluster.nodes[live].port;
    Admin::connect(live_port).cmd(&["PUBLISH", "news", "before"]);
    Admin::connect(live_port).cmd(&["PUBLISH", "alerts:1", "before"]);
    heard
        .until("the messages before the failover", |h| {
            h.all
                .iter()
                .any(|p| p.kind == "message" && p.payload == "before")
                && h.all
                    .iter()
                    .any(|p| p.kind == "pmessage" && p.payload == "alerts:1")
        })
        .await;

    let replica = cluster.replica_of(home).expect("the home has a replica");
    let home_port = cluster.nodes[home].port;
    tokio::task::block_in_place(|| {
        cluster.wait_for_replica_sync(replica);
        cluster.kill(home);
        cluster.failover(replica, true);
    });
    // The next refreshes find the dead primary gone; the subscriptions are made elsewhere.
    let moved = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(ClusterEvent::SubscriptionsMoved {
                    channels,
                    patterns,
                    from,
                    to,
                }) => return (channels, patterns, from, to),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("the subscriptions moved within 30 s");
    assert_eq!(moved.0, vec![bytes::Bytes::from_static(b"news")]);
    assert_eq!(moved.1, vec![bytes::Bytes::from_static(b"alerts:*")]);
    assert_eq!(moved.2.port(), home_port);
    assert_ne!(moved.3.port(), home_port);
    assert_eq!(
        subscribers(moved.3.port(), "news"),
        1,
        "the new home holds it"
    );

    // Every message from now on arrives, through whichever node it is published on.
    let promoted_port = cluster.nodes[replica].port;
    for (i, port) in [live_port, promoted_port].into_iter().enumerate() {
        Admin::connect(port).cmd(&["PUBLISH", "news", &format!("after{i}")]);
        Admin::connect(port).cmd(&["PUBLISH", &format!("alerts:after{i}"), "x"]);
    }
    heard
        .until("the messages after the move", |h| {
            (0..2).all(|i| {
                h.all
                    .iter()
                    .any(|p| p.kind == "message" && p.payload == format!("after{i}"))
                    && h.all
                        .iter()
                        .any(|p| p.kind == "pmessage" && p.payload == format!("alerts:after{i}"))
            })
        })
        .await;
    let stats = redis.stats();
    assert_eq!(stats.subscription_moves, 1);
    assert_eq!(stats.subscription_move_failures, 0);
    // The caller saw its own confirmations only, none of the move's.
    assert_eq!(
        heard.confirmations(),
        vec![
            "subscribe news".to_string(),
            "psubscribe alerts:*".to_string()
        ]
    );

    // The caller's UNSUBSCRIBE reaches the node that holds the subscription now.
    redis
        .clone()
        .oneshot(cmd!("UNSUBSCRIBE", "news"))
        .await
        .unwrap();
    assert_eq!(subscribers(moved.3.port(), "news"), 0);
}
