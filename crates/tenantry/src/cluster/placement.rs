//! Which live node owns which shard.
//!
//! [`plan`] takes the current owners and the live members and gives the next owners.
//! Every member ends with its quota: the shard count divided by the number of members,
//! one more for as many members as the remainder (those holding the most already), so
//! the busiest node owns at most one shard more than the least busy. Within that, as few
//! shards move as possible: a shard stays with its owner unless the owner is gone or over
//! its quota, and the shards that must move go, one by one, to the member with room that
//! ranks highest for that shard (rendezvous hashing: a stable score of shard and member).
//! A joining member thus takes about 1/N of the shards, all from members over their new
//! quota, and a leaving member's shards spread over the rest.
//!
//! Moves between live members can be bounded per round (`max_moves`), so a join or leave
//! hands shards over a bounded share at a time; the shards of members that are gone
//! always move at once (nobody serves them).

use super::shard::{hash_text, mix};
use std::collections::{BTreeMap, BTreeSet};

/// The outcome of a plan: the next owner of every shard, and what moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The owner of each shard, by shard number (`None` only when no member is live).
    pub owners: Vec<Option<String>>,
    /// Shards that had no live owner and now have one.
    pub adopted: usize,
    /// Shards moved from one live member to another.
    pub moved: usize,
}

/// The next owners of `current.len()` shards over the live `members` (see the module
/// docs). Owners not among `members` are gone. At most `max_moves` shards move between
/// live members in this plan; call it again on its result to go on.
pub fn plan(current: &[Option<String>], members: &[String], max_moves: usize) -> Placement {
    let members: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    if members.is_empty() {
        return Placement {
            owners: vec![None; current.len()],
            adopted: 0,
            moved: 0,
        };
    }
    let scores: BTreeMap<&str, u64> = members.iter().map(|&m| (m, hash_text(m))).collect();
    let score = |shard: usize, member: &str| mix(scores[member] ^ mix(shard as u64));

    // Who holds what among the live; the rest has no owner.
    let mut held: BTreeMap<&str, Vec<usize>> = members.iter().map(|&m| (m, Vec::new())).collect();
    let mut homeless = Vec::new();
    for (shard, owner) in current.iter().enumerate() {
        match owner.as_deref().and_then(|o| held.get_mut(o)) {
            Some(shards) => shards.push(shard),
            None => homeless.push(shard),
        }
    }

    // Quotas: the remainder's extra shard goes to those holding the most (fewest moves).
    let (base, extra) = (current.len() / members.len(), current.len() % members.len());
    let mut by_load: Vec<&str> = members.iter().copied().collect();
    by_load.sort_by(|a, b| held[b].len().cmp(&held[a].len()).then(a.cmp(b)));
    let quota: BTreeMap<&str, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, &m)| (m, base + usize::from(i < extra)))
        .collect();

    // Members over quota release the shards that rank lowest for them, the most
    // overloaded first, within the round's bound.
    let mut released = Vec::new();
    let mut over: Vec<(&str, usize)> = by_load
        .iter()
        .map(|&m| (m, held[m].len().saturating_sub(quota[m])))
        .filter(|&(_, n)| n > 0)
        .collect();
    over.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (member, surplus) in over {
        let n = surplus.min(max_moves - released.len());
        if let Some(shards) = held.get_mut(member) {
            shards.sort_by_key(|&s| std::cmp::Reverse(score(s, member)));
            released.extend(shards.drain(shards.len() - n..));
        }
        if released.len() == max_moves {
            break;
        }
    }

    // Shards to place, in order: each to the member with room that ranks highest for it.
    let mut owners: Vec<Option<String>> = vec![None; current.len()];
    for (member, shards) in &held {
        for &s in shards {
            owners[s] = Some((*member).to_owned());
        }
    }
    let mut room: BTreeMap<&str, usize> = members
        .iter()
        .map(|&m| (m, quota[m].saturating_sub(held[m].len())))
        .collect();
    let adopted = homeless.len();
    let moved = released.len();
    let mut to_place = homeless;
    to_place.extend(released);
    to_place.sort_unstable();
    for shard in to_place {
        // A member with room exists: the quotas sum to the shard count, so the room left
        // is at least the shards not held by a member within its quota.
        let best = room
            .iter()
            .filter(|&(_, &r)| r > 0)
            .map(|(&m, _)| m)
            .max_by_key(|&m| (score(shard, m), std::cmp::Reverse(m)));
        if let Some(r) = best.and_then(|m| room.get_mut(m)) {
            *r -= 1;
            owners[shard] = best.map(str::to_owned);
        }
    }
    Placement {
        owners,
        adopted,
        moved,
    }
}
