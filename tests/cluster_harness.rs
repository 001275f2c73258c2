//! The test cluster itself: it starts, settles, and moves a slot with its keys.

mod common;

use common::cluster::{key_slot, RedisCluster, Value};

#[test]
fn a_three_primary_cluster_starts_and_moves_a_slot_with_its_keys() {
    let cluster = RedisCluster::start(3, 0);
    let slot = key_slot("harness:{a}");
    assert_eq!(key_slot("{a}"), slot);
    assert_eq!(key_slot("foo"), 12182);
    let owner = cluster.owner_port(slot);
    let mut a = common::cluster::Admin::connect(owner);
    a.ok(&["SET", "harness:{a}", "1"]);
    let to = cluster.ports().into_iter().find(|&p| p != owner).unwrap();
    cluster.move_slot(slot, owner, to);
    cluster.wait_until_settled();
    assert_eq!(cluster.owner_port(slot), to);
    let mut b = common::cluster::Admin::connect(to);
    assert_eq!(b.cmd(&["GET", "harness:{a}"]), Value::Text("1".into()));
}
