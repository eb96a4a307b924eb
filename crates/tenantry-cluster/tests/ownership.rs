//! Shard ownership over the NATS server named by TENANTRY_TEST_NATS_URL (skipped,
//! saying so, when it is not set): rounds give every shard exactly one owner, balanced;
//! a dead node's shards go to the survivors; a joining node gets shards only after their
//! owners hand them off; concurrent rounds never give one shard two owners; a pin's move
//! ends only once every owner let go, and its shards stay on its nodes.

mod common;

use common::*;
use std::collections::BTreeMap;
use tenantry::cluster::{ShardCount, ShardId};
use tenantry_cluster::{ClusterError, Ownership, PinRequest, PinState};

const SHARDS: u32 = 64;

fn cluster(tag: &str) -> String {
    unique(&format!("o{tag}"))
}

fn nodes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn loads(owners: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut loads = BTreeMap::new();
    for o in owners.iter().flatten() {
        *loads.entry(o.clone()).or_default() += 1;
    }
    loads
}

async fn open(client: &async_nats::Client, c: &str) -> Ownership {
    Ownership::open(client.clone(), c, ShardCount::new(SHARDS).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_give_each_shard_one_owner_and_a_dead_nodes_shards_go_to_the_survivors() {
    let Some(client) = client().await else { return };
    let c = cluster("own");
    let o = open(&client, &c).await;
    let live = nodes(&["a", "b", "c"]);
    let mut claimed = 0;
    for me in &live {
        let round = o.round(me, &live, usize::MAX).await.unwrap();
        assert!(round.hand_off.is_empty());
        claimed += round.claimed.len();
    }
    assert_eq!(claimed, SHARDS as usize);
    let owners = o.owners().await.unwrap();
    assert!(owners.iter().all(Option::is_some));
    let l = loads(&owners);
    assert!(
        l.values().max().unwrap() - l.values().min().unwrap() <= 1,
        "{l:?}"
    );
    // Rounds with nothing to change change nothing.
    for me in &live {
        let round = o.round(me, &live, usize::MAX).await.unwrap();
        assert!(round.claimed.is_empty() && round.hand_off.is_empty());
        assert_eq!(round.owned.len(), l[me]);
    }

    // c dies: a and b, counting only themselves alive, take all of c's shards.
    let survivors = nodes(&["a", "b"]);
    let c_shards: Vec<usize> = (0..owners.len())
        .filter(|&s| owners[s].as_deref() == Some("c"))
        .collect();
    let mut taken = Vec::new();
    for me in &survivors {
        taken.extend(o.round(me, &survivors, usize::MAX).await.unwrap().claimed);
    }
    taken.sort();
    assert_eq!(
        taken.iter().map(|s| s.0 as usize).collect::<Vec<_>>(),
        c_shards
    );
    let after = o.owners().await.unwrap();
    for s in 0..after.len() {
        if !c_shards.contains(&s) {
            assert_eq!(after[s], owners[s], "shard {s} of a live owner stayed");
        }
    }
    let l = loads(&after);
    assert_eq!(l.len(), 2);
    assert!(
        l.values().max().unwrap() - l.values().min().unwrap() <= 1,
        "{l:?}"
    );
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_gets_shards_only_after_their_owners_hand_them_off() {
    let Some(client) = client().await else { return };
    let c = cluster("join");
    let o = open(&client, &c).await;
    let old = nodes(&["a", "b"]);
    for me in &old {
        o.round(me, &old, usize::MAX).await.unwrap();
    }
    let before = o.owners().await.unwrap();
    let all = nodes(&["a", "b", "d"]);
    // d's first round: everything has a live owner, d claims nothing.
    let first = o.round("d", &all, usize::MAX).await.unwrap();
    assert!(first.claimed.is_empty());
    assert_eq!(o.owners().await.unwrap(), before);
    // a and b learn of d, hand off what the plan moves (at most 8 per round), release.
    let mut handed = Vec::new();
    for me in &old {
        let round = o.round(me, &all, 8).await.unwrap();
        assert!(round.claimed.is_empty());
        o.release(me, &round.hand_off).await.unwrap();
        handed.extend(round.hand_off);
    }
    assert!(!handed.is_empty() && handed.len() <= 8, "{}", handed.len());
    let next = o.round("d", &all, 8).await.unwrap();
    handed.sort();
    let mut got = next.claimed.clone();
    got.sort();
    assert_eq!(got, handed, "d claims exactly what was handed off");
    // Further rounds converge to a balanced table.
    for _ in 0..10 {
        for me in &all {
            let round = o.round(me, &all, 8).await.unwrap();
            o.release(me, &round.hand_off).await.unwrap();
        }
    }
    let l = loads(&o.owners().await.unwrap());
    assert_eq!(l.values().sum::<usize>(), SHARDS as usize);
    assert!(
        l.values().max().unwrap() - l.values().min().unwrap() <= 1,
        "{l:?}"
    );
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rounds_never_give_a_shard_two_owners() {
    let Some(client) = client().await else { return };
    let c = cluster("race");
    let live = nodes(&["a", "b", "c", "d"]);
    let mut tasks = Vec::new();
    for me in live.clone() {
        let (client, c, live) = (client.clone(), c.clone(), live.clone());
        tasks.push(tokio::spawn(async move {
            let o = open(&client, &c).await;
            o.round(&me, &live, usize::MAX).await.unwrap().claimed
        }));
    }
    let mut claimed: Vec<ShardId> = Vec::new();
    let mut by_node = Vec::new();
    for (me, t) in live.iter().zip(tasks) {
        let mine = t.await.unwrap();
        by_node.push((me.clone(), mine.clone()));
        claimed.extend(mine);
    }
    // What each node was told it claimed is what the record says: no claim was lost.
    let owners = open(&client, &c).await.owners().await.unwrap();
    for (me, mine) in &by_node {
        for s in mine {
            assert_eq!(
                owners[s.0 as usize].as_deref(),
                Some(me.as_str()),
                "shard {s}"
            );
        }
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "no shard claimed twice");
    assert_eq!(total, SHARDS as usize);
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_count_is_the_clusters_for_life() {
    let Some(client) = client().await else { return };
    let c = cluster("count");
    open(&client, &c).await;
    let other = Ownership::open(client.clone(), &c, ShardCount::new(SHARDS * 2).unwrap()).await;
    assert!(
        matches!(
            other,
            Err(ClusterError::ShardCount {
                found: 64,
                asked: 128,
                ..
            })
        ),
        "{:?}",
        other.err()
    );
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_moves_only_once_every_owner_let_go_and_its_shards_stay_on_its_nodes() {
    let Some(client) = client().await else { return };
    let c = cluster("pin");
    let o = open(&client, &c).await;
    let live = nodes(&["a", "b", "c"]);
    for me in &live {
        o.round(me, &live, usize::MAX).await.unwrap();
    }
    let request = PinRequest {
        nodes: nodes(&["c"]),
        exclusive: true,
        shards: Some(4),
    };
    let pin = o.pin("acme", &request, &live).await.unwrap();
    assert_eq!(pin.state, PinState::Moving);
    assert_eq!(pin.waiting, live, "every owner must let go");
    assert_eq!(o.owners().await.unwrap().len(), SHARDS as usize + 4);
    // Rounds place the pin's shards on c alone; c, exclusive, hands its shared ones off.
    let mut rounds = BTreeMap::new();
    for me in &live {
        let round = o.round(me, &live, usize::MAX).await.unwrap();
        assert_eq!(round.let_go, vec!["acme".to_string()], "{me}");
        assert!(
            round
                .pins
                .is_moving(&tenantry::Partition::new("acme").unwrap())
        );
        rounds.insert(me.clone(), round);
    }
    let pinned: Vec<ShardId> = (SHARDS..SHARDS + 4).map(ShardId).collect();
    assert_eq!(rounds["c"].claimed, pinned);
    assert!(rounds["c"].hand_off.iter().all(|s| s.0 < SHARDS));
    assert!(!rounds["c"].hand_off.is_empty());
    o.release("c", &rounds["c"].hand_off).await.unwrap();
    // The move waits for each owner.
    for me in ["a", "b"] {
        o.let_go(me, &["acme".to_string()]).await.unwrap();
        o.round(me, &live, usize::MAX).await.unwrap();
        let pin = o.pin_of("acme").await.unwrap().unwrap();
        assert_eq!(pin.state, PinState::Moving, "c has not let go yet");
    }
    o.let_go("c", &["acme".to_string()]).await.unwrap();
    let round = o.round("a", &live, usize::MAX).await.unwrap();
    assert!(round.let_go.is_empty());
    let acme = tenantry::Partition::new("acme").unwrap();
    assert!(!round.pins.is_moving(&acme));
    assert_eq!(round.pins.range(&acme).map(|r| r.first), Some(SHARDS));
    assert_eq!(
        o.pin_of("acme").await.unwrap().unwrap().state,
        PinState::Active
    );
    for me in ["a", "b"] {
        o.round(me, &live, usize::MAX).await.unwrap();
    }
    let owners = o.owners().await.unwrap();
    assert!(
        owners[..SHARDS as usize]
            .iter()
            .all(|o| matches!(o.as_deref(), Some("a" | "b")))
    );
    assert!(
        owners[SHARDS as usize..]
            .iter()
            .all(|o| o.as_deref() == Some("c"))
    );

    // Refusals: another shard count for a pinned tenant, another exclusive overlap, a
    // shard count out of range, unpinning what is not pinned.
    let more = PinRequest {
        shards: Some(8),
        ..request.clone()
    };
    assert!(matches!(
        o.pin("acme", &more, &live).await,
        Err(ClusterError::PinConflict(_))
    ));
    let zero = PinRequest {
        nodes: nodes(&["a"]),
        exclusive: false,
        shards: Some(0),
    };
    assert!(matches!(
        o.pin("globex", &zero, &live).await,
        Err(ClusterError::InvalidPin(_))
    ));
    assert!(matches!(
        o.unpin("globex").await,
        Err(ClusterError::NotPinned(_))
    ));

    // Unpinning while c is dead: with no pinned node live, the survivors take its shards,
    // and once they raised their fences c holds the move up no longer.
    o.unpin("acme").await.unwrap();
    let survivors = nodes(&["a", "b"]);
    let mut from_c = Vec::new();
    for me in ["a", "b"] {
        let round = o.round(me, &survivors, usize::MAX).await.unwrap();
        assert!(
            round.claimed.iter().all(|s| pinned.contains(s)),
            "{me}: {round:?}"
        );
        from_c.extend(round.claimed);
        o.let_go(me, &["acme".to_string()]).await.unwrap();
    }
    assert_eq!(from_c.len(), 4);
    let round = o.round("a", &survivors, usize::MAX).await.unwrap();
    assert!(round.pins.is_moving(&acme), "the fences are not raised yet");
    o.fenced(&from_c).await.unwrap();
    let round = o.round("a", &survivors, usize::MAX).await.unwrap();
    assert!(!round.pins.is_moving(&acme));
    assert_eq!(round.pins.range(&acme), None);
    assert_eq!(o.pin_of("acme").await.unwrap(), None);
    assert_eq!(o.owners().await.unwrap().len(), SHARDS as usize);
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_held_up_by_a_dead_node_ends_only_once_its_shards_are_taken_and_fenced() {
    let Some(client) = client().await else { return };
    let c = cluster("pindead");
    let o = open(&client, &c).await;
    let live = nodes(&["a", "b", "c"]);
    for me in &live {
        o.round(me, &live, usize::MAX).await.unwrap();
    }
    let request = PinRequest {
        nodes: nodes(&["a", "b"]),
        exclusive: false,
        shards: Some(4),
    };
    assert_eq!(
        o.pin("globex", &request, &live).await.unwrap().waiting,
        live
    );
    // c dies before letting go: the survivors take its shards and let go themselves.
    let survivors = nodes(&["a", "b"]);
    let mut claimed = Vec::new();
    for me in ["a", "b"] {
        let round = o.round(me, &survivors, usize::MAX).await.unwrap();
        claimed.extend(round.claimed);
        o.let_go(me, &["globex".to_string()]).await.unwrap();
    }
    let from_c: Vec<ShardId> = claimed.into_iter().filter(|s| s.0 < SHARDS).collect();
    assert!(!from_c.is_empty(), "c's shared shards were taken");
    // c owns nothing any more, but its former shards' fences are not raised yet.
    o.round("a", &survivors, usize::MAX).await.unwrap();
    let pin = o.pin_of("globex").await.unwrap().unwrap();
    assert_eq!((pin.state, pin.waiting.len()), (PinState::Moving, 0));
    o.fenced(&from_c).await.unwrap();
    let round = o.round("a", &survivors, usize::MAX).await.unwrap();
    assert!(round.let_go.is_empty());
    assert_eq!(
        o.pin_of("globex").await.unwrap().unwrap().state,
        PinState::Active
    );

    // A pin still moving in can be turned back: every owner lets go again.
    let single = PinRequest {
        nodes: nodes(&["a"]),
        exclusive: false,
        shards: None,
    };
    o.pin("initech", &single, &survivors).await.unwrap();
    let back = o.unpin("initech").await.unwrap();
    assert_eq!(back.state, PinState::Removing);
    assert_eq!(back.waiting, survivors);
    assert_eq!(o.unpin("initech").await.unwrap().state, PinState::Removing);
    for me in ["a", "b"] {
        o.let_go(me, &["initech".to_string()]).await.unwrap();
    }
    o.round("b", &survivors, usize::MAX).await.unwrap();
    assert_eq!(o.pin_of("initech").await.unwrap(), None);

    // Exclusive pins may not take every live node from the other tenants.
    let everyone = PinRequest {
        nodes: survivors.clone(),
        exclusive: true,
        shards: None,
    };
    assert!(matches!(
        o.pin("hooli", &everyone, &survivors).await,
        Err(ClusterError::PinConflict(_))
    ));
    drop_buckets(&client, &c).await;
}
