//! Signals, computed values and effects: laziness, caching, re-tracking, equality,
//! diamonds, batching, errors, concurrency; and a property test against from-scratch
//! evaluation.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tenantry::config::ConfigStore;
use tenantry::reactive::{Computed, Effect, Signal, batch};

#[test]
fn computed_values_are_lazy_cached_and_rerun_only_when_a_read_value_changed() {
    let a = Signal::new(1);
    let b = Signal::new(10);
    let sum = {
        let (a, b) = (a.clone(), b.clone());
        Computed::new(move || a.get() + b.get())
    };
    assert_eq!(sum.runs(), 0, "lazy: nothing runs before the first read");
    assert_eq!(sum.get(), 11);
    assert_eq!(sum.get(), 11);
    assert_eq!(sum.runs(), 1, "cached");
    a.set(2);
    assert_eq!(sum.runs(), 1, "a write does not recompute eagerly");
    assert_eq!(sum.get(), 12);
    assert_eq!(sum.runs(), 2);
    assert!(!a.set(2), "an equal value is no change");
    assert_eq!(sum.get(), 12);
    assert_eq!(sum.runs(), 2, "an equal set notifies nobody");
}

#[test]
fn computed_values_retrack_what_they_read_on_every_run() {
    let use_a = Signal::new(true);
    let a = Signal::new("a");
    let b = Signal::new("b");
    let pick = {
        let (use_a, a, b) = (use_a.clone(), a.clone(), b.clone());
        Computed::new(move || if use_a.get() { a.get() } else { b.get() })
    };
    assert_eq!(pick.get(), "a");
    b.set("b2");
    assert_eq!(pick.get(), "a");
    assert_eq!(pick.runs(), 1, "b was not read: its change is ignored");
    use_a.set(false);
    assert_eq!(pick.get(), "b2");
    a.set("a2");
    assert_eq!(pick.get(), "b2");
    assert_eq!(pick.runs(), 2, "a is no longer read");
}

#[test]
fn equal_recomputations_stop_at_the_computed_value() {
    let n = Signal::new(3);
    let parity = {
        let n = n.clone();
        Computed::new(move || n.get() % 2)
    };
    let label = {
        let parity = parity.clone();
        Computed::new(move || if parity.get() == 0 { "even" } else { "odd" })
    };
    assert_eq!(label.get(), "odd");
    n.set(5);
    assert_eq!(label.get(), "odd");
    assert_eq!(parity.runs(), 2);
    assert_eq!(
        label.runs(),
        1,
        "parity did not change, so label did not rerun"
    );
}

#[test]
fn a_diamond_runs_its_effect_once_per_change_and_a_batch_once_for_many_writes() {
    let s = Signal::new(1);
    let double = {
        let s = s.clone();
        Computed::new(move || s.get() * 2)
    };
    let square = {
        let s = s.clone();
        Computed::new(move || s.get() * s.get())
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let effect = {
        let (double, square, seen) = (double.clone(), square.clone(), seen.clone());
        Effect::new(move || {
            seen.lock().unwrap().push((double.get(), square.get()));
            Ok(())
        })
    };
    assert_eq!(effect.runs(), 1, "effects run once at creation");
    s.set(2);
    assert_eq!(effect.runs(), 2, "one run for one change through two paths");
    batch(|| {
        s.set(3);
        s.set(4);
        s.set(5);
    });
    assert_eq!(effect.runs(), 3, "one run for the whole batch");
    assert_eq!(*seen.lock().unwrap(), vec![(2, 1), (4, 4), (10, 25)]);
    s.set(5);
    assert_eq!(effect.runs(), 3, "an equal write runs nothing");
    drop(effect);
    s.set(6);
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "a dropped effect is disposed"
    );
}

#[test]
fn effect_errors_are_reported_not_swallowed() {
    let s = Signal::new(0);
    let effect = {
        let s = s.clone();
        Effect::new(move || {
            if s.get() > 0 {
                Err(format!("bad value {}", s.get()))
            } else {
                Ok(())
            }
        })
    };
    assert_eq!(effect.last_error(), None);
    s.set(7);
    assert_eq!(effect.last_error().as_deref(), Some("bad value 7"));
}

#[test]
fn concurrent_writers_and_readers_never_see_a_stale_value_after_a_write_returned() {
    let signals: Vec<Signal<u64>> = (0..4).map(|_| Signal::new(0)).collect();
    let total = {
        let signals = signals.clone();
        Computed::new(move || signals.iter().map(|s| s.get()).sum::<u64>())
    };
    let writes_done = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for (i, s) in signals.iter().enumerate() {
            let (s, total, done) = (s.clone(), total.clone(), writes_done.clone());
            scope.spawn(move || {
                for v in 1..=2000u64 {
                    s.set(v);
                    // After our own write returned, the total includes at least it.
                    assert!(total.get() >= v, "stale read in writer {i}");
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let total = total.clone();
            scope.spawn(move || {
                for _ in 0..5000 {
                    let _ = total.get();
                }
            });
        }
    });
    assert_eq!(writes_done.load(Ordering::SeqCst), 4);
    assert_eq!(total.get(), 8000);
}

/// A random DAG: node i is either a signal or a computed sum of some earlier nodes
/// (mod 7, so equal results happen and must stop propagation).
#[derive(Debug, Clone)]
enum Spec {
    Signal(u8),
    Sum(Vec<usize>),
}

fn graph() -> impl Strategy<Value = Vec<Spec>> {
    (2..12usize).prop_flat_map(|n| {
        let nodes: Vec<BoxedStrategy<Spec>> = (0..n)
            .map(|i| {
                if i < 2 {
                    any::<u8>().prop_map(Spec::Signal).boxed()
                } else {
                    prop_oneof![
                        any::<u8>().prop_map(Spec::Signal),
                        prop::collection::vec(0..i, 1..4).prop_map(Spec::Sum),
                    ]
                    .boxed()
                }
            })
            .collect();
        nodes
    })
}

enum Node {
    Signal(Signal<u64>),
    Computed(Computed<u64>),
}

impl Node {
    fn get(&self) -> u64 {
        match self {
            Node::Signal(s) => s.get(),
            Node::Computed(c) => c.get(),
        }
    }
}

fn eval(specs: &[Spec], values: &[u64], i: usize) -> u64 {
    match &specs[i] {
        Spec::Signal(_) => values[i],
        Spec::Sum(deps) => deps.iter().map(|d| eval(specs, values, *d)).sum::<u64>() % 7,
    }
}

proptest! {
    #[test]
    fn computed_reads_equal_from_scratch_evaluation_and_rerun_only_on_change(
        specs in graph(),
        writes in prop::collection::vec((0..12usize, 0..5u64), 1..30),
    ) {
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut values: Vec<u64> = Vec::new();
        for spec in &specs {
            let node = match spec {
                Spec::Signal(v) => Node::Signal(Signal::new(u64::from(*v) % 5)),
                Spec::Sum(deps) => {
                    let deps: Vec<Arc<Node>> = deps.iter().map(|d| nodes[*d].clone()).collect();
                    Node::Computed(Computed::new(move || deps.iter().map(|d| d.get()).sum::<u64>() % 7))
                }
            };
            values.push(match spec { Spec::Signal(v) => u64::from(*v) % 5, _ => 0 });
            nodes.push(Arc::new(node));
        }
        for (target, value) in writes {
            let i = target % nodes.len();
            // Snapshot the inputs of every computed before the write.
            let before: Vec<Option<(u64, Vec<u64>)>> = (0..nodes.len()).map(|k| match (&*nodes[k], &specs[k]) {
                (Node::Computed(c), Spec::Sum(deps)) => Some((c.runs(), deps.iter().map(|d| eval(&specs, &values, *d)).collect())),
                _ => None,
            }).collect();
            if let Node::Signal(s) = &*nodes[i] {
                s.set(value);
                values[i] = value;
            }
            for (k, node) in nodes.iter().enumerate() {
                prop_assert_eq!(node.get(), eval(&specs, &values, k), "node {}", k);
            }
            for (k, node) in nodes.iter().enumerate() {
                if let (Node::Computed(c), Some((runs, inputs)), Spec::Sum(deps)) = (&**node, &before[k], &specs[k]) {
                    let now: Vec<u64> = deps.iter().map(|d| eval(&specs, &values, *d)).collect();
                    if &now == inputs && *runs > 0 {
                        prop_assert_eq!(c.runs(), *runs, "node {} reran though nothing it read changed", k);
                    }
                }
            }
        }
    }
}

#[test]
fn a_computed_that_panicked_recovers_once_its_input_is_fixed() {
    let input = Signal::new(0u64);
    let checked = {
        let input = input.clone();
        Computed::new(move || {
            let v = input.get();
            assert!(v > 0, "bad input");
            v * 10
        })
    };
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checked.get()));
    assert!(first.is_err());
    input.set(4);
    assert_eq!(
        checked.get(),
        40,
        "the next read recomputes instead of finding no value"
    );
}

#[test]
fn a_computed_keeps_one_subscription_to_what_it_rereads_and_drops_what_it_stops_reading() {
    let store = Arc::new(ConfigStore::new());
    store.set_defaults(json!({"a": 1, "b": 1}));
    let use_b = Signal::new(false);
    let reader = {
        let (store, use_b) = (store.clone(), use_b.clone());
        Computed::new(move || {
            let key = if use_b.get() { "b" } else { "a" };
            store.get(key).ok().flatten()
        })
    };
    assert_eq!(reader.get(), Some(json!(1)));
    for n in 2..6 {
        store.set("a", json!(n)).unwrap();
        assert_eq!(
            reader.get(),
            Some(json!(n)),
            "woken by each write of what it reads"
        );
        assert_eq!(
            store.readers("a"),
            1,
            "re-reading a key does not subscribe twice"
        );
    }
    use_b.set(true);
    assert_eq!(reader.get(), Some(json!(1)));
    assert_eq!((store.readers("a"), store.readers("b")), (0, 1));
    let runs = reader.runs();
    store.set("a", json!(9)).unwrap();
    assert_eq!(reader.get(), Some(json!(1)));
    assert_eq!(
        reader.runs(),
        runs,
        "a key it stopped reading wakes it no more"
    );
    use_b.set(false);
    assert_eq!(reader.get(), Some(json!(9)));
    assert_eq!((store.readers("a"), store.readers("b")), (1, 0));
    store.set("a", json!(10)).unwrap();
    assert_eq!(
        reader.get(),
        Some(json!(10)),
        "read again, it is woken again"
    );
}

#[test]
fn a_computed_whose_input_panics_while_it_is_checked_hears_every_input_afterwards() {
    let (use_upstream, a, bad) = (Signal::new(false), Signal::new(1), Signal::new(false));
    let upstream = {
        let bad = bad.clone();
        Computed::new(move || {
            assert!(!bad.get(), "bad upstream input");
            7
        })
    };
    // Armed, the computed's own run makes its new input panic, so that the check after
    // its run (did anything it read change meanwhile?) unwinds.
    let arm = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (use_upstream, a, bad, arm) =
            (use_upstream.clone(), a.clone(), bad.clone(), arm.clone());
        Computed::new(move || {
            if use_upstream.get() {
                let v = upstream.get();
                if arm.swap(false, Ordering::SeqCst) {
                    bad.set(true);
                }
                v
            } else {
                a.get()
            }
        })
    };
    assert_eq!(reader.get(), 1);
    arm.store(true, Ordering::SeqCst);
    use_upstream.set(true);
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.get()));
    assert!(
        checked.is_err(),
        "the upstream value panicked while checked"
    );
    bad.set(false);
    assert_eq!(reader.get(), 7, "read again, it recomputes");
    use_upstream.set(false);
    assert_eq!(reader.get(), 1);
    a.set(2);
    assert_eq!(
        reader.get(),
        2,
        "still woken by an input it read before the panic"
    );
}

#[test]
fn an_effect_keeps_one_subscription_and_runs_once_per_change_across_batches() {
    let store = Arc::new(ConfigStore::new());
    store.set_defaults(json!({"k": 0}));
    let (seen, relayed) = (
        Arc::new(std::sync::Mutex::new(Vec::new())),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let echo = Signal::new(json!(null));
    // The first effect writes what the second reads: its flush opens a batch of its own.
    let relay = {
        let (store, echo, seen) = (store.clone(), echo.clone(), seen.clone());
        Effect::new(move || {
            let v = store.get("k").ok().flatten();
            seen.lock().unwrap().push(v.clone());
            echo.set(v.unwrap_or_default());
            Ok(())
        })
    };
    let tail = {
        let (echo, relayed) = (echo.clone(), relayed.clone());
        Effect::new(move || {
            relayed.lock().unwrap().push(echo.get());
            Ok(())
        })
    };
    for n in 1..=3 {
        store.set("k", json!(n)).unwrap();
        assert_eq!(
            store.readers("k"),
            1,
            "one subscription however often it reruns"
        );
    }
    batch(|| {
        store.set("k", json!(4)).unwrap();
        store.set("k", json!(5)).unwrap();
    });
    batch(|| store.set("k", json!(6)).unwrap());
    let expected: Vec<Value> = [0, 1, 2, 3, 5, 6].map(|n| json!(n)).into();
    assert_eq!(
        *seen.lock().unwrap(),
        expected.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(
        *relayed.lock().unwrap(),
        expected,
        "the relayed writes, each once"
    );
    assert_eq!((relay.runs(), tail.runs()), (6, 6));
}
