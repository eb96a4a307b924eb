//! Partition names and keys: validation rules and the stable, injective key encoding.

use proptest::prelude::*;
use tenantry::{Key, KeyError, KeyPart, Partition, PartitionError};

#[test]
fn valid_partition_names_are_accepted() {
    for name in ["acme", "tenant_alpha", "t-1", "A9", "x"] {
        let p = Partition::new(name).unwrap();
        assert_eq!(p.name(), Some(name));
        assert_eq!(p.to_string(), name);
    }
}

#[test]
fn invalid_partition_names_name_the_rule_broken() {
    assert_eq!(Partition::new(""), Err(PartitionError::Empty));
    assert!(matches!(
        Partition::new(&"a".repeat(65)),
        Err(PartitionError::TooLong { len: 65, max: 64 })
    ));
    for (name, ch) in [
        ("a/b", '/'),
        ("a.b", '.'),
        ("a b", ' '),
        ("a\\b", '\\'),
        ("a:b", ':'),
        ("é", 'é'),
        ("a\0", '\0'),
    ] {
        match Partition::new(name) {
            Err(PartitionError::BadChar { ch: got, .. }) => assert_eq!(got, ch),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(Partition::new("-x"), Err(PartitionError::BadStart));
    assert!(
        Partition::new("../etc")
            .unwrap_err()
            .to_string()
            .contains("not allowed")
    );
}

#[test]
fn unpartitioned_matches_only_itself() {
    let none = Partition::unpartitioned();
    assert_eq!(none, Partition::unpartitioned());
    assert!(none.is_unpartitioned());
    assert_ne!(none, Partition::new("unpartitioned").unwrap());
    assert_eq!(Partition::from_storage_str("").unwrap(), none);
    assert_eq!(serde_json::to_string(&none).unwrap(), "null");
    let back: Partition = serde_json::from_str("null").unwrap();
    assert_eq!(back, none);
}

#[test]
fn string_keys_may_not_pose_as_structured_ones() {
    assert_eq!(Key::new("[\"a\"]"), Err(KeyError::ReservedPrefix));
    assert_eq!(Key::new(""), Err(KeyError::Empty));
    assert!(matches!(
        Key::new("a\nb"),
        Err(KeyError::ControlChar { .. })
    ));
    assert_eq!(Key::tuple(Vec::<KeyPart>::new()), Err(KeyError::EmptyTuple));
    let t = Key::tuple(["workspace", "ws-1", "reviewer"]).unwrap();
    assert_eq!(t.encoded(), r#"["workspace","ws-1","reviewer"]"#);
    assert!(
        Key::from_encoded(r#"[ "a" ]"#).is_err(),
        "non-canonical forms are refused"
    );
}

fn part() -> impl Strategy<Value = KeyPart> {
    let leaf = "[ -~]{1,12}".prop_map(KeyPart::Str);
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop::collection::vec(inner, 1..4).prop_map(KeyPart::Tuple)
    })
}

proptest! {
    #[test]
    fn partition_names_round_trip_through_storage(name in "[A-Za-z0-9][A-Za-z0-9_-]{0,63}") {
        let p = Partition::new(&name).unwrap();
        prop_assert_eq!(Partition::from_storage_str(p.as_storage_str()).unwrap(), p);
    }

    #[test]
    fn names_with_any_separator_are_refused(prefix in "[a-z]{1,5}", sep in "[/\\\\.: \t]", suffix in "[a-z]{1,5}") {
        let name = format!("{prefix}{sep}{suffix}");
        prop_assert!(Partition::new(&name).is_err());
    }

    #[test]
    fn key_encoding_is_stable_and_injective(a in prop::collection::vec(part(), 1..4), b in prop::collection::vec(part(), 1..4)) {
        let ka = Key::tuple(a.clone()).unwrap();
        let kb = Key::tuple(b.clone()).unwrap();
        prop_assert_eq!(ka == kb, a == b);
        prop_assert_eq!(Key::from_encoded(ka.encoded()).unwrap(), ka.clone());
        prop_assert_eq!(ka.parts(), a);
    }

    #[test]
    fn string_keys_never_collide_with_tuples(s in "[ -~]{1,20}", t in prop::collection::vec("[ -~]{1,6}", 1..3)) {
        if let Ok(k) = Key::new(&s) {
            let tuple = Key::tuple(t.iter().map(|x| x.as_str())).unwrap();
            prop_assert_ne!(k, tuple);
        }
    }
}
