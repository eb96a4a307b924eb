//! The dashboard at `/ui`: a page, a script and a stylesheet, built into the binary (no
//! CDN, works with no network), and `GET /v1/whoami`, which tells the page what a key
//! may see.
//!
//! The page holds no secret of its own: it asks for an API key, keeps it in the tab's
//! session storage (never in a URL), and calls the same API as any client with it, so a
//! tenant key sees its own tenant only, as everywhere else. The assets are served with a
//! content security policy that allows only this origin's scripts and styles.

use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// Only this origin's scripts, styles and API; no framing, no inline code.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /ui`: the dashboard's page.
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /v1/whoami`: what the key is: `{"kind": "admin"}` or `{"kind": "tenant",
/// "partition": "<name>"}`.
pub async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(super::ok(match super::principal(&app, &headers)? {
        Principal::Admin => json!({"kind": "admin"}),
        Principal::Tenant(p) => json!({"kind": "tenant", "partition": p.as_storage_str()}),
    }))
}
