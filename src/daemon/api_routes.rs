//! Every HTTP route the daemon serves, in one table. Each is registered with its method and
//! path, so the OpenAPI document at `/openapi.json` is checked against exactly what is served.

use super::{DaemonShared, http_calls, http_intake, http_layers};
use crate::limits::PORTAL_BODY_BYTES_MAX;
use crate::portal::{account_routes, money_routes, openapi, usage_export};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{get, post};
use std::sync::Arc;

/// Routes being put together, and the (method, path) of each.
pub struct RouteTable {
    router: Router<Arc<DaemonShared>>,
    served: Vec<(&'static str, &'static str)>,
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn get<H: Handler<T, Arc<DaemonShared>>, T: 'static>(
        mut self,
        path: &'static str,
        handler: H,
    ) -> RouteTable {
        self.router = self.router.route(path, get(handler));
        self.served.push(("get", path));
        self
    }

    fn post<H: Handler<T, Arc<DaemonShared>>, T: 'static>(
        mut self,
        path: &'static str,
        handler: H,
    ) -> RouteTable {
        self.router = self.router.route(path, post(handler));
        self.served.push(("post", path));
        self
    }

    fn merge(mut self, other: RouteTable) -> RouteTable {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// (method, path) of every route, methods in lower case as OpenAPI writes them.
    pub fn served(&self) -> &[(&'static str, &'static str)] {
        &self.served
    }
}

/// The switch-facing routes (CDR intake, call authorization), operations, and the portal.
pub fn route_table() -> RouteTable {
    let mut portal = RouteTable::new()
        .get("/v1/accounts/{id}", account_routes::account)
        .get("/v1/accounts/{id}/children", account_routes::children)
        .get(
            "/v1/accounts/{id}/unbilled-calls",
            account_routes::unbilled_calls,
        )
        .get("/v1/accounts/{id}/usage", money_routes::usage)
        .get("/v1/accounts/{id}/transactions", money_routes::transactions)
        .get("/v1/accounts/{id}/alerts", money_routes::alerts)
        .get("/v1/accounts/{id}/rejects", account_routes::rejects)
        .post("/v1/accounts/{id}/credits", money_routes::credit)
        .post(
            "/v1/accounts/{id}/billing-periods/close",
            money_routes::close_billing_period,
        )
        .get("/v1/exports/usage.csv", usage_export::usage_csv)
        .get("/v1/exports/usage.parquet", usage_export::usage_parquet);
    // Portal bodies are a few fields; the intake's large limit is for CDR batches.
    portal.router = portal
        .router
        .layer(DefaultBodyLimit::max(PORTAL_BODY_BYTES_MAX));
    RouteTable::new()
        .post("/v1/cdrs", http_intake::post_cdrs)
        .post("/v1/calls/authorize", http_calls::authorize)
        .post("/v1/calls/{call_id}/keepalive", http_calls::keepalive)
        .post("/v1/calls/{call_id}/end", http_calls::end)
        .get("/healthz", || async { "ok\n" })
        .get("/readyz", http_intake::readyz)
        .get("/metrics", http_intake::metrics)
        .get("/openapi.json", openapi::document)
        .merge(portal)
}

/// The daemon's HTTP service: the route table, a JSON 404 elsewhere, the intake's body limit,
/// and per-route metrics and JSON error bodies around all of it.
pub fn router(shared: Arc<DaemonShared>) -> Router {
    let body_limit = shared.config.request_bytes_max;
    route_table()
        .router
        .fallback(http_layers::no_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            http_layers::observe_requests,
        ))
        .with_state(shared)
}
