//! `tenantry demo`: the multi-tenant and pod scenarios, run in-process and narrated.
//!
//! It boots the same application the server hosts (the built-in demo tenants) over an
//! in-memory store and calls it through the bus as each tenant would, printing what
//! happens: routing by target, isolation refusals, config per tenant, same keys in two
//! tenants kept apart, and workspace pods reconciled, extended and thawed.

use crate::app::App;
use crate::settings::{Overrides, Settings};
use serde_json::{Value, json};
use std::sync::Arc;
use tenantry::store::MemoryStore;
use tenantry::{Invoke, Key, Partition, Pod};
use tenantry_demo::workspace::{PODS_MANAGER, WORKERS_MANAGER};

fn rows(v: &Value) -> String {
    v.get("rows").map(|r| r.to_string()).unwrap_or_default()
}

fn show_pod(label: &str, pod: &Pod) -> anyhow::Result<()> {
    println!("  {label} {}:", pod.identity());
    for node in pod.snapshot()? {
        println!(
            "    {:<12} {:<20} key={}",
            node.name,
            format!("{:?}", node.status),
            node.key
        );
    }
    Ok(())
}

/// Runs the scenarios and prints them.
pub async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_parts(Overrides::default(), |_| None, None)?;
    let app = App::open(settings, Some(Arc::new(MemoryStore::new()))).await?;
    let rt = &app.runtime;
    let acme = Partition::new("acme")?;
    let globex = Partition::new("globex")?;

    println!("== multi-tenant components (tenant-db per tenant, mysql-db for globex)");
    for t in tenantry_demo::TENANTS {
        let p = Partition::new(t)?;
        let r = rt
            .bus_for(&p)
            .invoke(
                "tenant-db.query",
                json!({"sql": "select * from orders", "limit": 2}),
                Invoke::target(&p),
            )
            .await?;
        println!(
            "  {t:<8} tenant-db.query -> {} using {} rows {}",
            r["instance"].as_str().unwrap_or("?"),
            r["db_url"].as_str().unwrap_or("?"),
            rows(&r)
        );
    }
    let r = rt
        .bus_for(&globex)
        .invoke(
            "mysql-db.query",
            json!({"sql": "select 1", "limit": 1}),
            Invoke::target(&globex),
        )
        .await?;
    println!(
        "  globex   mysql-db.query  -> {} rows {}",
        r["instance"].as_str().unwrap_or("?"),
        rows(&r)
    );

    println!("== isolation");
    match rt
        .bus_for(&acme)
        .invoke(
            "tenant-db.query",
            json!({"sql": "x"}),
            Invoke::target(&globex),
        )
        .await
    {
        Ok(_) => println!("  acme naming target globex -> reached globex (unexpected!)"),
        Err(e) => println!("  acme naming target globex -> refused: {e}"),
    }
    match rt
        .bus_for(&acme)
        .invoke(
            "tenant-db-globex.query",
            json!({"sql": "x"}),
            Invoke::target(&acme),
        )
        .await
    {
        Ok(_) => println!("  acme calling tenant-db-globex.query -> reached it (unexpected!)"),
        Err(e) => println!("  acme calling tenant-db-globex.query -> refused: {e}"),
    }
    match rt
        .bus_for(&acme)
        .invoke("mysql-db.query", json!({"sql": "x"}), Invoke::target(&acme))
        .await
    {
        Ok(_) => println!("  acme calling mysql-db.query -> served (unexpected!)"),
        Err(e) => println!("  acme calling mysql-db.query (globex has one, acme none) -> {e}"),
    }
    let visible: Vec<String> = rt
        .bus_for(&acme)
        .handlers()
        .into_iter()
        .map(|h| h.route)
        .collect();
    println!("  handlers visible to acme: {}", visible.join(", "));

    println!("== config per tenant");
    app.set_config("tenants.acme.db_url", json!("postgres://db9.prod/acme"))
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    for p in [&acme, &globex] {
        let r = rt
            .bus_for(p)
            .invoke(
                "tenant-db.query",
                json!({"sql": "select 1", "limit": 1}),
                Invoke::target(p),
            )
            .await?;
        println!(
            "  after writing tenants.acme.db_url: {p} uses {}",
            r["db_url"].as_str().unwrap_or("?")
        );
    }

    println!("== same keyed instance in two tenants");
    for (p, text) in [
        (&acme, "acme's first"),
        (&acme, "acme's second"),
        (&globex, "globex's first"),
    ] {
        let n = rt
            .bus_for(p)
            .invoke(
                &format!("{WORKERS_MANAGER}.note"),
                json!({"text": text}),
                Invoke::target(p).key(Key::new("notes-1")?),
            )
            .await?;
        println!(
            "  {:<7} {WORKERS_MANAGER}.note key=notes-1 {text:?} -> {n} note(s)",
            p.to_string()
        );
    }

    println!("== workspace pods");
    let (pod_a, report) = Pod::get(rt, PODS_MANAGER, "workspace-123", &acme).await?;
    println!(
        "  acme   reconcile: waves {:?}, completed {:?}",
        report.waves, report.completed
    );
    let (pod_g, report) = Pod::get(rt, PODS_MANAGER, "workspace-123", &globex).await?;
    println!(
        "  globex reconcile: waves {:?}, completed {:?}",
        report.waves, report.completed
    );
    let reviewer = pod_a.ensure_node("reviewer").await?;
    reviewer
        .call_json_dyn("note", json!({"text": "ship it"}), None)
        .await?;
    println!("  ensured reviewer in acme: {}", reviewer.identity());
    println!(
        "  reviewer in globex: {}",
        pod_g
            .lookup_node("reviewer")?
            .map(|r| r.identity().to_string())
            .unwrap_or_else(|| "not running (untouched)".into())
    );
    show_pod("acme", &pod_a)?;
    show_pod("globex", &pod_g)?;
    rt.manager_dyn(PODS_MANAGER)
        .ok_or_else(|| anyhow::anyhow!("pods manager missing"))?
        .stop_dyn(Key::new("workspace-123")?, &acme)
        .await?;
    println!("  stopped acme's pod (its topology hibernated)");
    let (pod_a, report) = Pod::get(rt, PODS_MANAGER, "workspace-123", &acme).await?;
    println!(
        "  thawed acme's pod: topology v{}, completed {:?}",
        pod_a.topology().version,
        report.completed
    );
    show_pod("acme", &pod_a)?;
    let report = rt.shutdown().await;
    println!("== shutdown: {} instances hibernated", report.stopped);
    Ok(())
}
