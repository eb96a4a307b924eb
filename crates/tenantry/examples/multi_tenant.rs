//! The component model across tenants: one `tenant-db` factory, one instance per tenant,
//! routed by target; hot remove; a second factory for one tenant.
//!
//! Run: `cargo run --example multi_tenant`

use serde_json::json;
use tenantry::{Invoke, Partition, Runtime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = Runtime::in_memory();
    let report = tenantry_demo::install(&runtime).await?;
    println!("booted: {:?}", report.activated);
    let bus = runtime.bus();
    let q = json!({"sql": "select * from orders", "limit": 2});

    for tenant in tenantry_demo::TENANTS {
        let target = Partition::new(tenant)?;
        let routed = bus
            .invoke("tenant-db.query", &q, Invoke::target(&target))
            .await?;
        println!(
            "tenant-db.query  target={tenant:<8} -> {} {}",
            routed["db_url"], routed["rows"]
        );
    }
    let direct = bus
        .invoke("tenant-db-acme.query", &q, Invoke::default())
        .await?;
    println!("tenant-db-acme.query (direct)  -> {}", direct["db_url"]);

    // A tenant's own bus cannot reach another tenant, whatever target it names.
    let acme = runtime.bus_for(&Partition::new("acme")?);
    let sneaky = acme
        .invoke(
            "tenant-db.query",
            &q,
            Invoke::target(&Partition::new("globex")?),
        )
        .await;
    println!(
        "acme asking for globex -> {}",
        sneaky
            .map(|_| "reached".to_string())
            .unwrap_or_else(|e| e.to_string())
    );

    for tenant in tenantry_demo::TENANTS {
        let s = bus
            .invoke(
                &format!("tenant-db-{tenant}.status"),
                json!({}),
                Invoke::default(),
            )
            .await?;
        println!("status {tenant:<8} -> {s}");
    }

    // Live migration: one config write; only globex recomputes and reconnects.
    runtime.kernel().config().set(
        "tenants.globex.db_url",
        json!("postgres://db-new.prod/globex-migrated"),
    )?;
    let migrated = bus
        .invoke(
            "tenant-db.query",
            &q,
            Invoke::target(&Partition::new("globex")?),
        )
        .await?;
    println!("after config.set: globex -> {}", migrated["db_url"]);
    for tenant in tenantry_demo::TENANTS {
        let s = bus
            .invoke(
                &format!("tenant-db-{tenant}.status"),
                json!({}),
                Invoke::default(),
            )
            .await?;
        println!(
            "  {tenant:<8} db_url computed {} time(s), reconnects {}, connected to {}",
            s["db_url_computations"], s["reconnects"], s["connected_to"]
        );
    }

    runtime.kernel().hot_remove("tenant-db-acme").await?;
    let gone = bus
        .invoke(
            "tenant-db.query",
            &q,
            Invoke::target(&Partition::new("acme")?),
        )
        .await;
    println!(
        "after hot_remove(tenant-db-acme): acme -> {}",
        gone.map(|v| v.to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    let globex = bus
        .invoke(
            "tenant-db.query",
            &q,
            Invoke::target(&Partition::new("globex")?),
        )
        .await?;
    println!("globex still served -> {}", globex["db_url"]);
    let mysql = bus
        .invoke(
            "mysql-db.query",
            q,
            Invoke::target(&Partition::new("globex")?),
        )
        .await?;
    println!("mysql-db.query target=globex -> {}", mysql["rows"]);
    runtime.kernel().shutdown().await;
    Ok(())
}
