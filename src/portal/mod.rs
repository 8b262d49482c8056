//! The portal API under `/v1/accounts`: what customer portals and operators read. Every request
//! carries a bearer token; an account token sees its account and those below it, and anything
//! else answers 404 (never 403, so account ids do not leak). Reads go through the daemon's reader
//! connection on a blocking thread.

pub mod account_routes;
pub mod money_routes;
pub mod openapi;
pub mod query_params;
pub mod request_budget;
pub mod tokens;
pub mod usage_export;

use crate::cdr::is_plausible_identifier;
use crate::daemon::DaemonShared;
use crate::daemon::http_layers::error_response;
use crate::store::ledger_store::{LedgerStore, TokenScope, open_store};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// A refusal: its status and a message, answered as `{"code", "message"}`
/// ([`error_response`]), with `Retry-After` when the client should come back.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub fn bad_parameter(message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status, self.message);
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A handler's answer: a response, or a refusal.
pub type ApiResult = Result<Response, ApiError>;

/// Runs `read` on the daemon's reader connection (opened again after a failure). A store failure
/// is a 503; `read` answers its own 4xx.
pub async fn read_store<T: Send + 'static>(
    shared: &Arc<DaemonShared>,
    read: impl FnOnce(&mut dyn LedgerStore) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let mut store = shared.reader_store.lock().expect("reader store lock");
        if store.is_none() {
            *store = Some(open_store(&shared.location).map_err(unavailable)?);
        }
        let result = read(store.as_mut().expect("opened above").as_mut());
        if result
            .as_ref()
            .is_err_and(|refusal| refusal.status == StatusCode::SERVICE_UNAVAILABLE)
        {
            *store = None;
        }
        result
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"))?
}

/// A store error as the client sees it: 503, try again.
pub fn unavailable(error: anyhow::Error) -> ApiError {
    tracing::warn!("portal read failed: {error:#}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store does not answer; try again",
    )
}

/// The bearer token of a request (checked against the store by [`authorize_read`]), after
/// spending one request of its budget: a token over its rate is answered 429 with `Retry-After`.
/// The budget is the token's, however its header is spaced.
pub fn bearer_token(shared: &DaemonShared, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "an Authorization: Bearer token is required",
            )
        })?;
    let token = value
        .strip_prefix("Bearer ")
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be: Bearer TOKEN",
            )
        })?;
    shared
        .portal_request_budgets
        .spend(Sha256::digest(token.as_bytes()).into(), Instant::now())
        .map_err(|wait| ApiError {
            retry_after_seconds: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "this token has used its request rate; try again after Retry-After seconds",
            )
        })?;
    Ok(token)
}

/// Checks the token and that it may see `account`; returns its scope. An unknown or revoked
/// token is 401; an account it may not see, or that does not exist, is 404. Only the account's
/// own ancestry is read, however many accounts there are.
pub fn authorize_read(
    store: &mut dyn LedgerStore,
    token: &str,
    account: &str,
) -> Result<TokenScope, ApiError> {
    let scope = store
        .token_scope(&tokens::token_sha256(token))
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    // No stored account has control characters (PostgreSQL text cannot even hold a NUL): such an
    // id is answered here, not sent to the store to fail there.
    if !is_plausible_identifier(account) {
        return Err(not_found(account));
    }
    let ancestry = store.account_ancestry(account).map_err(unavailable)?;
    if !tokens::may_see(&scope, &ancestry) {
        return Err(not_found(account));
    }
    Ok(scope)
}

/// The accounts a query covers: `account` alone, or with every account below it.
pub fn covered_accounts(
    store: &mut dyn LedgerStore,
    account: &str,
    include_sub_accounts: bool,
) -> Result<Vec<String>, ApiError> {
    if !include_sub_accounts {
        return Ok(vec![account.to_string()]);
    }
    Ok(store
        .account_subtree(account)
        .map_err(unavailable)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Refuses an account token where only operators may act (the account is visible, so 403).
pub fn require_operator(scope: &TokenScope, what: &str) -> Result<(), ApiError> {
    if *scope == TokenScope::Operator {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} needs an operator token"),
        ))
    }
}

pub fn not_found(account: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no account {account:?}"))
}
