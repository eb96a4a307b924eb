//! The invoke route, matched before the router.
//!
//! `POST /v1/partitions/{partition}/invoke/{handler}` is the gateway's hot route. Through
//! the router, each call would also pay for matching the route table, for each path
//! parameter percent-decoded into its own allocation and kept in the request's
//! extensions, and for the route's service cloned and boxed. [`InvokeFirst`] recognises
//! a plain invoke request before the router sees it and answers it with the same
//! checks, in the same order, and the same call ([`tenant::invoke_checked`]). Any other
//! request goes to the router, and so does an invoke request whose path is not plain (an
//! escaped, empty or extra segment): the router answers those as it always did (its
//! decoded names, 404, 405).

use super::extract::{ApiQuery, JsonText, Tenant};
use super::{principal, tenant};
use crate::app::App;
use crate::error::ApiError;
use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The invoke route, as the router has it too.
pub(super) const ROUTE: &str = "/v1/partitions/{partition}/invoke/{handler}";
/// [`ROUTE`] up to its partition, and between its partition and handler (a test holds
/// them to it).
const PREFIX: &str = "/v1/partitions/";
const INVOKE: &str = "/invoke/";

/// The router, with plain invoke requests answered before it.
#[derive(Clone)]
pub struct InvokeFirst {
    app: Arc<App>,
    router: Router,
}

impl InvokeFirst {
    /// `router`, with invoke requests on `app` answered first.
    pub fn new(app: Arc<App>, router: Router) -> Self {
        Self { app, router }
    }
}

impl Service<Request> for InvokeFirst {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <Router as Service<Request>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match invoke_target(&request) {
            Some(names) => Either::Left(Box::pin(answer(self.app.clone(), names, request))),
            None => Either::Right(self.router.call(request)),
        }
    }
}

/// Where the partition and the handler name are in the path of a plain invoke request:
/// `POST`, and a path the router would match to the invoke route with no segment to
/// decode.
fn invoke_target(request: &Request) -> Option<(Range<usize>, Range<usize>)> {
    if request.method() != Method::POST {
        return None;
    }
    let (partition, handler) = request
        .uri()
        .path()
        .strip_prefix(PREFIX)?
        .split_once(INVOKE)?;
    let plain = |segment: &str| !segment.is_empty() && !segment.contains(['/', '%']);
    if !(plain(partition) && plain(handler)) {
        return None;
    }
    let partition_at = PREFIX.len()..PREFIX.len() + partition.len();
    let handler_start = partition_at.end + INVOKE.len();
    Some((partition_at, handler_start..handler_start + handler.len()))
}

/// Answers a plain invoke request as the router's route does: the key and partition
/// (401, 400, 403, or 404 for the admin key on a partition that is not a tenant), the
/// query (400), the body (413, 400), then the call.
async fn answer(
    app: Arc<App>,
    (partition, handler): (Range<usize>, Range<usize>),
    request: Request,
) -> Result<Response, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let answer: Result<Response, ApiError> = async {
        let tenant = Tenant::of(&app, principal(&app, &parts.headers)?, &path[partition])?;
        let ApiQuery(query) = ApiQuery::of(&parts.uri)?;
        let body = JsonText::read(body, &app).await?;
        tenant::invoke_checked(&app, tenant, &path[handler], query, body).await
    }
    .await;
    Ok(answer.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    /// The partition and handler `invoke_target` finds in `method path`.
    fn target(method: Method, path: &str) -> Option<(String, String)> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let path = request.uri().path().to_owned();
        invoke_target(&request).map(|(p, h)| (path[p].to_owned(), path[h].to_owned()))
    }

    #[test]
    fn the_prefixes_matched_are_the_routers_route() {
        assert_eq!(format!("{PREFIX}{{partition}}{INVOKE}{{handler}}"), ROUTE);
    }

    #[test]
    fn only_plain_invoke_requests_are_taken_before_the_router() {
        let taken = |p: &str, h: &str| Some((p.to_owned(), h.to_owned()));
        let path = "/v1/partitions/acme/invoke/tenant-db.query";
        assert_eq!(target(Method::POST, path), taken("acme", "tenant-db.query"));
        assert_eq!(
            target(Method::POST, &format!("{path}?key=k1&timeout_ms=5")),
            taken("acme", "tenant-db.query")
        );
        assert_eq!(
            target(Method::POST, "/v1/partitions/invoke/invoke/x.y"),
            taken("invoke", "x.y")
        );
        for declined in [
            "/v1/partitions/acme/invoke/tenant-db.query/",
            "/v1/partitions/acme/invoke/tenant%2Ddb.query",
            "/v1/partitions/%61cme/invoke/tenant-db.query",
            "/v1/partitions//invoke/tenant-db.query",
            "/v1/partitions/acme/invoke/",
            "/v1/partitions/acme/x/invoke/tenant-db.query",
            "/v1/partitions/acme/invoke/invoke/x.y",
            "/v1/partitions/acme/handlers",
            "/v2/partitions/acme/invoke/tenant-db.query",
        ] {
            assert_eq!(target(Method::POST, declined), None, "{declined}");
        }
        assert_eq!(target(Method::GET, path), None);
        assert_eq!(target(Method::PUT, path), None);
    }
}
