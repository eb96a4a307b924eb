//! The dashboard's assets and `whoami` over HTTP: the page, script and stylesheet are
//! built into the binary and served with a content security policy that allows nothing
//! but this origin; `whoami` names what a key is and refuses an unknown one. (The page
//! itself is driven in a real browser by `.ci/browser.py`.)

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary_under_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    for (path, content_type, marker) in [
        ("/ui", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "sessionStorage"),
        ("/ui/style.css", "text/css", "overflow-x"),
    ] {
        let r = c.get(path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(content_type),
            "{path}"
        );
        let policy = r.header("content-security-policy").unwrap();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
            "{policy}"
        );
        assert!(r.text().contains(marker), "{path}");
    }
    // The key never travels in a URL: the page keeps it in session storage.
    let script = c.get("/ui/app.js", None).await.text();
    assert!(!script.contains("localStorage") && !script.contains("?key="));

    for (key, answer) in [
        (ADMIN, json!({"kind": "admin"})),
        (ACME, json!({"kind": "tenant", "partition": "acme"})),
    ] {
        let r = c.get("/v1/whoami", Some(key)).await;
        assert_eq!(r.json()["result"], answer);
    }
    let r = c.get("/v1/whoami", Some("nobody's key")).await;
    assert_eq!((r.status, r.json()["ok"].clone()), (401, json!(false)));
    server.shutdown().await;
}
