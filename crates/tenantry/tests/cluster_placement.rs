//! Cluster placement, simulated without processes: balance, minimal movement on joins and
//! leaves, bounded rounds, determinism.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tenantry::cluster::{Placement, plan};

const SHARDS: usize = 1024;

fn nodes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn loads(owners: &[Option<String>]) -> BTreeMap<&str, usize> {
    let mut loads = BTreeMap::new();
    for o in owners.iter().flatten() {
        *loads.entry(o.as_str()).or_default() += 1;
    }
    loads
}

/// Every shard owned by a member, and the busiest member at most 1.1x the mean.
fn assert_balanced(p: &Placement, members: &[String]) {
    assert!(
        p.owners
            .iter()
            .all(|o| o.as_ref().is_some_and(|o| members.contains(o)))
    );
    let loads = loads(&p.owners);
    let mean = SHARDS as f64 / members.len() as f64;
    let busiest = *loads.values().max().unwrap() as f64;
    assert!(
        busiest <= 1.1 * mean,
        "{} members: busiest {busiest}, mean {mean:.2}",
        members.len()
    );
    let idlest = members
        .iter()
        .map(|m| loads.get(m.as_str()).copied().unwrap_or(0))
        .min()
        .unwrap();
    assert!(
        busiest as usize - idlest <= 1,
        "within one shard of each other"
    );
}

#[test]
fn from_3_to_100_nodes_the_busiest_owns_at_most_1_1x_the_mean_and_a_join_moves_about_1_over_n() {
    let empty = vec![None; SHARDS];
    for n in 3..=100 {
        let members = nodes(n);
        let first = plan(&empty, &members, usize::MAX);
        assert_eq!((first.adopted, first.moved), (SHARDS, 0));
        assert_balanced(&first, &members);

        // One more node: it takes its quota, all from members over their new one.
        let grown = nodes(n + 1);
        let join = plan(&first.owners, &grown, usize::MAX);
        assert_balanced(&join, &grown);
        assert_eq!(join.adopted, 0);
        let changed = first
            .owners
            .iter()
            .zip(&join.owners)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, join.moved);
        assert!(
            join.moved <= SHARDS.div_ceil(n + 1),
            "{n} -> {}: {} moved",
            n + 1,
            join.moved
        );
        assert!(
            join.owners
                .iter()
                .zip(&first.owners)
                .all(|(new, old)| new == old || new.as_deref() == Some(grown[n].as_str())),
            "every moved shard went to the new node"
        );

        // One node gone: only its shards move, to the others.
        let shrunk: Vec<String> = members[1..].to_vec();
        let leave = plan(&first.owners, &shrunk, usize::MAX);
        assert_balanced(&leave, &shrunk);
        let orphaned = first
            .owners
            .iter()
            .filter(|o| o.as_deref() == Some("node-0"))
            .count();
        assert_eq!((leave.adopted, leave.moved), (orphaned, 0));
    }
}

#[test]
fn a_plan_of_a_balanced_placement_changes_nothing_whatever_the_member_order() {
    let members = nodes(7);
    let first = plan(&vec![None; SHARDS], &members, usize::MAX);
    let mut shuffled = members.clone();
    shuffled.reverse();
    shuffled.swap(1, 4);
    assert_eq!(plan(&vec![None; SHARDS], &shuffled, usize::MAX), first);
    let again = plan(&first.owners, &shuffled, usize::MAX);
    assert_eq!((again.adopted, again.moved), (0, 0));
    assert_eq!(again.owners, first.owners);
}

#[test]
fn bounded_rounds_move_at_most_their_bound_and_reach_the_same_balance() {
    let first = plan(&vec![None; SHARDS], &nodes(4), usize::MAX);
    let grown = nodes(8);
    let mut owners = first.owners;
    let mut rounds = 0;
    let mut total = 0;
    loop {
        let round = plan(&owners, &grown, 50);
        assert!(round.moved <= 50);
        total += round.moved;
        owners = round.owners;
        rounds += 1;
        if round.moved == 0 {
            break;
        }
        assert!(rounds < 20, "converges");
    }
    assert_balanced(
        &Placement {
            owners,
            adopted: 0,
            moved: 0,
        },
        &grown,
    );
    // Four new nodes take half the shards, 50 per round.
    assert_eq!(total, SHARDS / 2);
    assert_eq!(rounds, (SHARDS / 2).div_ceil(50) + 1);
}

#[test]
fn no_members_own_nothing_and_gone_owners_lose_their_shards_even_in_a_bounded_round() {
    let first = plan(&vec![None; 16], &nodes(2), usize::MAX);
    let none = plan(&first.owners, &[], usize::MAX);
    assert!(none.owners.iter().all(Option::is_none));
    // node-1 gone, a bound of zero moves between live members: its shards still move.
    let after = plan(&first.owners, &nodes(1), 0);
    assert!(after.owners.iter().all(|o| o.as_deref() == Some("node-0")));
    assert_eq!((after.adopted, after.moved), (8, 0));
}

proptest! {
    /// Whatever the current owners (some gone, some unknown) and members: every shard gets
    /// a member, loads end within one shard of each other when unbounded, a bounded plan
    /// moves at most its bound, and no member gives up shards below the floor quota.
    #[test]
    fn any_placement_plans_to_members_within_its_bound(
        current in prop::collection::vec(prop::option::of(0..12usize), 1..300),
        live in prop::collection::btree_set(0..12usize, 1..8),
        bound in 0..40usize,
    ) {
        let current: Vec<Option<String>> = current.into_iter().map(|o| o.map(|i| format!("node-{i}"))).collect();
        let members: Vec<String> = live.iter().map(|i| format!("node-{i}")).collect();
        let p = plan(&current, &members, bound);
        prop_assert!(p.owners.iter().all(|o| o.as_ref().is_some_and(|o| members.contains(o))));
        prop_assert!(p.moved <= bound);
        let before = loads(&current);
        let changed_live = current.iter().zip(&p.owners)
            .filter(|(a, b)| a.as_ref().is_some_and(|a| members.contains(a)) && a != b)
            .count();
        prop_assert_eq!(changed_live, p.moved);
        let floor = current.len() / members.len();
        let after = loads(&p.owners);
        for m in &members {
            let (b, a) = (before.get(m.as_str()).copied().unwrap_or(0), after.get(m.as_str()).copied().unwrap_or(0));
            prop_assert!(a >= b.min(floor), "{m} went from {b} to {a} below the floor {floor}");
        }
        let full = plan(&current, &members, usize::MAX);
        let full_loads = loads(&full.owners);
        let (hi, lo) = (
            members.iter().map(|m| full_loads.get(m.as_str()).copied().unwrap_or(0)).max().unwrap(),
            members.iter().map(|m| full_loads.get(m.as_str()).copied().unwrap_or(0)).min().unwrap(),
        );
        prop_assert!(hi - lo <= 1);
    }
}
