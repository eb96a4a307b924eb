//! Shards: the fixed slices a cluster's identities fall into.
//!
//! An identity's shard is a stable hash of its partition and a routing key, modulo the
//! cluster's shard count, which is fixed when the cluster is created. The hash is
//! written out here (FNV-1a over the bytes, then a 64-bit finaliser) rather than taken
//! from a library whose output may change with a version or a seed, and golden vectors
//! pin it: a different hash would move every identity to another node.

use crate::Partition;
use std::fmt;

/// How many shards a cluster has (fixed for its lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardCount(u32);

impl ShardCount {
    /// The default for a new cluster.
    pub const DEFAULT: Self = Self(1024);
    /// The most shards a cluster may have.
    pub const MAX: u32 = 1 << 16;

    /// `count` shards, if it is between 1 and [`ShardCount::MAX`].
    pub fn new(count: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&count).then_some(Self(count))
    }

    /// The number of shards.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// One shard, `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What, besides the partition, decides an identity's shard. A manager chooses one for
/// all its identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingKey<'a> {
    /// The identity's own key: a manager's instances spread over the shards.
    Key(&'a str),
    /// The key of the pod the identity belongs to: a pod's nodes stay on one shard.
    Pod(&'a str),
    /// Nothing: the whole partition is one shard (so its limits hold in one place).
    Tenant,
}

/// The shard of an identity in `partition` routed by `routing`, among `count` shards.
pub fn shard_of(partition: &Partition, routing: RoutingKey<'_>, count: ShardCount) -> ShardId {
    let mut h = Fnv::new();
    // Tags and a separator no UTF-8 text contains keep the fields apart, so
    // ("ab", "c") and ("a", "bc") hash differently.
    match partition.name() {
        Some(name) => {
            h.byte(b'p');
            h.bytes(name.as_bytes());
        }
        None => h.byte(b'u'),
    }
    h.byte(0xFF);
    match routing {
        RoutingKey::Key(key) => {
            h.byte(b'k');
            h.bytes(key.as_bytes());
        }
        RoutingKey::Pod(pod) => {
            h.byte(b'o');
            h.bytes(pod.as_bytes());
        }
        RoutingKey::Tenant => h.byte(b't'),
    }
    ShardId((mix(h.0) % u64::from(count.get())) as u32)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.byte(b));
    }
}

/// A 64-bit finaliser (SplitMix64's): FNV's low bits alone spread short keys poorly.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of `text` (for placement scores).
pub(crate) fn hash_text(text: &str) -> u64 {
    let mut h = Fnv::new();
    h.bytes(text.as_bytes());
    mix(h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Partition {
        Partition::new(name).unwrap()
    }

    /// The function must never change: these values are what every node of every
    /// cluster computed so far.
    #[test]
    fn golden_vectors_pin_the_shard_function() {
        let c = ShardCount::DEFAULT;
        let got = [
            shard_of(&p("acme"), RoutingKey::Key("cart-1"), c),
            shard_of(&p("acme"), RoutingKey::Key("cart-2"), c),
            shard_of(&p("globex"), RoutingKey::Key("cart-1"), c),
            shard_of(&p("acme"), RoutingKey::Pod("cart-1"), c),
            shard_of(&p("acme"), RoutingKey::Tenant, c),
            shard_of(&Partition::unpartitioned(), RoutingKey::Key("cart-1"), c),
            shard_of(&p("acme"), RoutingKey::Key(""), c),
        ];
        assert_eq!(got.map(|s| s.0), GOLDEN);
    }

    const GOLDEN: [u32; 7] = [196, 951, 271, 406, 730, 620, 674];

    /// The published FNV-1a test vectors: the hash underneath is the standard one.
    #[test]
    fn fnv_1a_matches_its_published_vectors() {
        for (text, expected) in [
            ("", 0xcbf2_9ce4_8422_2325u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv::new();
            h.bytes(text.as_bytes());
            assert_eq!(h.0, expected, "{text:?}");
        }
    }

    #[test]
    fn fields_are_kept_apart_and_every_shard_is_in_range() {
        let c = ShardCount::new(7).unwrap();
        assert_ne!(
            shard_of(&p("ab"), RoutingKey::Key("c"), ShardCount::DEFAULT),
            shard_of(&p("a"), RoutingKey::Key("bc"), ShardCount::DEFAULT)
        );
        for i in 0..1000 {
            let s = shard_of(&p("acme"), RoutingKey::Key(&i.to_string()), c);
            assert!(s.0 < 7);
        }
        assert_eq!(ShardCount::new(0), None);
        assert_eq!(ShardCount::new(ShardCount::MAX + 1), None);
    }

    #[test]
    fn keys_spread_evenly_over_the_shards() {
        let c = ShardCount::new(64).unwrap();
        let mut counts = [0u32; 64];
        for i in 0..64_000 {
            counts[shard_of(&p("acme"), RoutingKey::Key(&format!("k{i}")), c).0 as usize] += 1;
        }
        // 1,000 expected per shard; a fair hash stays well within ±15%.
        assert!(
            counts.iter().all(|&n| (850..=1150).contains(&n)),
            "{counts:?}"
        );
    }
}
