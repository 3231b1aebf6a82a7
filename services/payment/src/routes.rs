//! The REST API of payment-service: wallets, and the payments of an order.
//!
//! Money moves here only when an admin credits a wallet. Charges and refunds are the
//! saga's business: the event consumers call [`crate::wallets`], and this API shows their
//! results, and every movement in a wallet's ledger.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use service_kit::{
    ApiError, Problem,
    auth::{Admin, Identity},
    idempotency::IdempotencyKey,
    pagination::{PageParams, PageRequest, into_page},
};
use shop_model::{
    Cents, OrderId, UserId,
    api::{CreditWallet, Page, Payment, Wallet},
};
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    error::PaymentError,
    ledger::LedgerEntry,
    repository,
    wallets::{self, AdminCredit, Credited},
};

pub fn configure(config: &mut ServiceConfig) {
    config
        // Before `/wallets/{user_id}`, which would otherwise try to read `me` as an id.
        .service(my_wallet)
        .service(get_wallet)
        .service(credit_wallet)
        .service(wallet_ledger)
        .service(list_payments);
}

/// The caller's wallet.
#[utoipa::path(
    tag = "wallets",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's wallet", body = Wallet),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no wallet yet: it is opened shortly after registration", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/wallets/me")]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn my_wallet(
    pool: web::Data<PgPool>,
    identity: Identity,
) -> Result<web::Json<Wallet>, ApiError> {
    find_wallet(&pool, identity.user_id).await.map(web::Json)
}

/// Any user's wallet (admins only).
#[utoipa::path(
    tag = "wallets",
    security(("bearer" = [])),
    params(("user_id" = UserId, Path, description = "The wallet owner's user id")),
    responses(
        (status = 200, description = "The wallet", body = Wallet),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user has no wallet", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/wallets/{user_id}")]
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
async fn get_wallet(
    pool: web::Data<PgPool>,
    _admin: Admin,
    user_id: web::Path<UserId>,
) -> Result<web::Json<Wallet>, ApiError> {
    find_wallet(&pool, user_id.into_inner())
        .await
        .map(web::Json)
}

async fn find_wallet(pool: &PgPool, user_id: UserId) -> Result<Wallet, ApiError> {
    let mut conn = pool.acquire().await.map_err(PaymentError::from)?;
    repository::find_wallet(&mut conn, user_id)
        .await
        .map_err(PaymentError::from)?
        .ok_or_else(|| PaymentError::WalletNotFound.into())
}

/// Add money to a wallet (admins only).
///
/// Answers the wallet with its new balance. The credit is a row of the wallet's ledger.
///
/// Send an `Idempotency-Key` header (any unique string, at most 255 characters) to make
/// retries safe, as for `POST /api/v1/orders`: the same key with the same wallet and amount
/// credits once and answers the same balance every time (with `Idempotent-Replayed: true`
/// on the repeats); the same key for another wallet or amount is refused with 422. Keys
/// are scoped to the admin who sends them.
#[utoipa::path(
    tag = "wallets",
    security(("bearer" = [])),
    params(
        ("user_id" = UserId, Path, description = "The wallet owner's user id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe"),
    ),
    request_body = CreditWallet,
    responses(
        (status = 200, description = "The wallet with its new balance (for a replay, the balance the first request left)", body = Wallet,
            headers(("Idempotent-Replayed" = String, description = "`true` when an earlier request with this Idempotency-Key made the credit"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user has no wallet", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`amount_cents` is not positive, the new balance would be too large, or an Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/wallets/{user_id}/credit")]
#[tracing::instrument(skip_all, fields(user_id = %user_id, admin_id = %admin.0.user_id))]
async fn credit_wallet(
    pool: web::Data<PgPool>,
    admin: Admin,
    user_id: web::Path<UserId>,
    key: Result<IdempotencyKey, ApiError>,
    body: web::Json<CreditWallet>,
) -> Result<HttpResponse, ApiError> {
    // After authentication, so a caller without a token gets 401 (see the kit's module).
    let key = key?;
    let amount = Cents::positive(body.amount_cents)
        .map_err(|e| ApiError::validation("amount_cents", e.to_string()))?;
    let request = AdminCredit {
        user_id: user_id.into_inner(),
        amount,
        admin_id: admin.0.user_id,
        idempotency_key: key.as_deref(),
    };
    let mut conn = pool.acquire().await.map_err(PaymentError::from)?;
    let Credited { wallet, replayed } = wallets::credit(&mut conn, &request).await?;
    let mut response = HttpResponse::Ok();
    if replayed {
        // Tells a client (and an operator reading logs) that no money moved this time.
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(wallet))
}

/// Every change of a wallet's balance, oldest first (admins only).
///
/// The opening credit, admin credits, and the charges and refunds of orders; the balance
/// is the sum of the amounts. Each entry shows the balance it left. Rows are never changed
/// or deleted.
#[utoipa::path(
    tag = "wallets",
    security(("bearer" = [])),
    params(
        ("user_id" = UserId, Path, description = "The wallet owner's user id"),
        PageParams,
    ),
    responses(
        (status = 200, description = "One page of the wallet's ledger, oldest first", body = Page<LedgerEntry>),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user has no wallet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`limit` or `cursor` is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/wallets/{user_id}/ledger")]
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
async fn wallet_ledger(
    pool: web::Data<PgPool>,
    _admin: Admin,
    user_id: web::Path<UserId>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<LedgerEntry>>, ApiError> {
    let user_id = user_id.into_inner();
    let page = PageRequest::try_from(&*page)?;
    // An unknown wallet is 404, not an empty page.
    find_wallet(&pool, user_id).await?;
    let mut conn = pool.acquire().await.map_err(PaymentError::from)?;
    let rows = repository::list_ledger(&mut conn, user_id, page)
        .await
        .map_err(PaymentError::from)?;
    Ok(web::Json(into_page(rows, page, |entry| entry.id)))
}

/// `?order_id=` of `GET /api/v1/payments`. Read as text so that a missing or malformed id
/// gets a 422 naming the field, like every other invalid input.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PaymentFilter {
    /// The order whose payments to list.
    #[param(required = true, value_type = OrderId)]
    order_id: Option<String>,
}

impl PaymentFilter {
    fn order_id(&self) -> Result<OrderId, ApiError> {
        let raw = self
            .order_id
            .as_deref()
            .ok_or_else(|| ApiError::validation("order_id", "is required"))?;
        raw.trim()
            .parse()
            .map_err(|_| ApiError::validation("order_id", "must be a UUID"))
    }
}

/// The payments of an order, oldest first.
///
/// An order has at most a charge and, once it is cancelled after payment, a refund.
/// Customers see only their own payments, so another user's order answers an empty list,
/// which reveals nothing about it; admins see every payment of the order.
#[utoipa::path(
    tag = "payments",
    security(("bearer" = [])),
    params(PaymentFilter, PageParams),
    responses(
        (status = 200, description = "One page of the order's payments, oldest first", body = Page<Payment>),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`order_id` is missing or not a UUID, or `limit` or `cursor` is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/payments")]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn list_payments(
    pool: web::Data<PgPool>,
    identity: Identity,
    filter: web::Query<PaymentFilter>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<Payment>>, ApiError> {
    let order_id = filter.order_id()?;
    let page = PageRequest::try_from(&*page)?;
    let only_user = (!identity.is_admin()).then_some(identity.user_id);
    let mut conn = pool.acquire().await.map_err(PaymentError::from)?;
    let rows = repository::list_payments(&mut conn, order_id, only_user, page)
        .await
        .map_err(PaymentError::from)?;
    Ok(web::Json(into_page(rows, page, |payment| {
        payment.id.as_uuid()
    })))
}
