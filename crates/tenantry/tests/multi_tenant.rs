//! The reference scenario of the component model: tenant-db per tenant, routed by target.

use serde_json::json;
use tenantry::{Error, Invoke, Partition, Runtime};
use tenantry_demo::{QueryResult, Status};

fn p(name: &str) -> Partition {
    Partition::new(name).unwrap()
}

async fn query(rt: &Runtime, handler: &str, target: Option<&str>) -> Result<QueryResult, Error> {
    let opts = match target {
        Some(t) => Invoke::target(&p(t)),
        None => Invoke::default(),
    };
    let v = rt
        .bus()
        .invoke(handler, json!({"sql": "select 1"}), opts)
        .await?;
    Ok(serde_json::from_value(v).unwrap())
}

#[tokio::test]
async fn tenant_db_routes_by_target_and_by_name_and_survives_hot_remove() {
    let rt = Runtime::in_memory();
    let report = tenantry_demo::install(&rt).await.unwrap();
    assert!(
        report.failed.is_empty() && report.blocked.is_empty(),
        "{report:?}"
    );
    // Providers first: tenant-db requires IConfig.
    let pos = |n: &str| report.activated.iter().position(|a| a == n).unwrap();
    assert!(pos("config") < pos("tenant-db-acme"));

    for (tenant, url) in [
        ("acme", "postgres://db1.prod/acme"),
        ("globex", "postgres://db2.prod/globex"),
        ("initech", "postgres://db3.prod/initech"),
    ] {
        let routed = query(&rt, "tenant-db.query", Some(tenant)).await.unwrap();
        assert_eq!(&*routed.db_url, url);
        assert_eq!(&*routed.tenant, tenant);
        assert_eq!(*routed.instance, format!("tenant-db-{tenant}"));
        assert!(
            routed
                .rows
                .iter()
                .all(|r| r.contains(&format!("{tenant}-row")))
        );
        let direct = query(&rt, &format!("tenant-db-{tenant}.query"), None)
            .await
            .unwrap();
        assert_eq!(&*direct.db_url, url);
    }
    // acme: two more queries; status counts each tenant's own.
    query(&rt, "tenant-db.query", Some("acme")).await.unwrap();
    query(&rt, "tenant-db-acme.query", None).await.unwrap();
    for (tenant, expected) in [("acme", 4), ("globex", 2), ("initech", 2)] {
        let s = rt
            .bus()
            .invoke(
                &format!("tenant-db-{tenant}.status"),
                json!({}),
                Invoke::default(),
            )
            .await
            .unwrap();
        let s: Status = serde_json::from_value(s).unwrap();
        assert_eq!(s.queries, expected, "{tenant}");
    }

    rt.kernel().hot_remove("tenant-db-acme").await.unwrap();
    assert!(matches!(
        query(&rt, "tenant-db.query", Some("acme")).await,
        Err(Error::RouteNotFound(_))
    ));
    assert!(matches!(
        query(&rt, "tenant-db-acme.query", None).await,
        Err(Error::RouteNotFound(_))
    ));
    assert_eq!(
        query(&rt, "tenant-db.query", Some("globex"))
            .await
            .unwrap()
            .tenant
            .as_ref(),
        "globex"
    );
    assert_eq!(
        query(&rt, "tenant-db.query", Some("initech"))
            .await
            .unwrap()
            .tenant
            .as_ref(),
        "initech"
    );
    // The factory stays registered: acme can come back.
    rt.kernel()
        .hot_add("tenant-db", "tenant-db-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    assert_eq!(
        query(&rt, "tenant-db.query", Some("acme"))
            .await
            .unwrap()
            .tenant
            .as_ref(),
        "acme"
    );

    // A second factory serves globex under the same scheme.
    let mysql = query(&rt, "mysql-db.query", Some("globex")).await.unwrap();
    assert_eq!(&*mysql.instance, "mysql-db-globex");
    assert!(mysql.rows[0].starts_with("mysql:globex"));
    assert!(matches!(
        query(&rt, "mysql-db.query", Some("acme")).await,
        Err(Error::RouteNotFound(_))
    ));
    // Unknown targets are NotFound, never a guess.
    assert!(matches!(
        query(&rt, "tenant-db.query", Some("umbrella")).await,
        Err(Error::RouteNotFound(_))
    ));
    assert!(matches!(
        query(&rt, "tenant-db.query", None).await,
        Err(Error::RouteNotFound(_))
    ));
}
