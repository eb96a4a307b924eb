//! Reactive figures, printed as `name: value unit` lines.
//!
//! Run: `cargo bench -p tenantry --bench reactive`

use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use tenantry::config::ConfigStore;
use tenantry::reactive::{Computed, Signal};

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.1} {unit}");
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn per_op_median(batches: usize, per_batch: usize, mut op: impl FnMut(usize)) -> f64 {
    let mut samples = Vec::with_capacity(batches);
    let mut i = 0;
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..per_batch {
            op(i);
            i += 1;
        }
        samples.push(start.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    median(samples)
}

/// A config with `tenants` tenants, each with a computed reader of its own `db_url`.
fn config_with_readers(tenants: usize) -> (Arc<ConfigStore>, Vec<Computed<String>>) {
    let store = Arc::new(ConfigStore::new());
    let mut defaults = serde_json::Map::new();
    for t in 0..tenants {
        defaults.insert(
            format!("t{t}"),
            json!({"db_url": format!("postgres://db/{t}")}),
        );
    }
    store.set_defaults(json!({"tenants": defaults, "shared": {"bench": 0}}));
    let readers: Vec<Computed<String>> = (0..tenants)
        .map(|t| {
            let store = store.clone();
            let key = format!("tenants.t{t}.db_url");
            let c = Computed::new(move || {
                store
                    .get(&key)
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            });
            c.get();
            c
        })
        .collect();
    (store, readers)
}

fn main() {
    let (store, readers) = config_with_readers(10);
    let reader = readers[0].clone();
    let write_then_read = per_op_median(200, 1000, |i| {
        store
            .set(
                "tenants.t0.db_url",
                json!(if i % 2 == 0 { "a" } else { "b" }),
            )
            .unwrap();
        black_box(reader.get());
    });
    report(
        "config_write_then_dependent_computed_read_median",
        write_then_read,
        "ns",
    );

    let mut write_cost = Vec::new();
    for tenants in [10usize, 10_000] {
        let (store, _readers) = config_with_readers(tenants);
        let cost = per_op_median(200, 1000, |i| {
            store.set("shared.bench", json!(i)).unwrap();
        });
        report(
            &format!("config_write_with_{tenants}_non_dependent_readers_median"),
            cost,
            "ns",
        );
        write_cost.push(cost);
    }
    report(
        "config_write_cost_ratio_10000_over_10",
        write_cost[1] / write_cost[0],
        "x",
    );

    let signal = Signal::new(1u64);
    let computed = {
        let s = signal.clone();
        Computed::new(move || s.get() * 2)
    };
    computed.get();
    let cached = per_op_median(200, 10_000, |_| {
        black_box(computed.get());
    });
    report("cached_computed_read_median", cached, "ns");
}
