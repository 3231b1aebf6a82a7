//! The REST API of order-service.

use actix_web::{HttpResponse, get, http::header, post, web};
use service_kit::{
    ApiError, Problem,
    auth::{BearerToken, Identity},
    idempotency::IdempotencyKey,
    pagination::{PageParams, PageRequest, into_page},
    request_context::RequestContext,
};
use shop_model::{
    OrderId, Role,
    api::{Order, OrderTimeline, Page, PlaceOrder},
};
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    error::OrderError,
    inventory::InventoryClient,
    metrics::OrderMetrics,
    orders::{self, Placed},
};

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(place_order)
        .service(list_orders)
        .service(get_order)
        .service(get_order_timeline)
        .service(cancel_order);
}

/// Place an order. Prices come from inventory-service at this moment and are kept in the
/// order. The order starts `pending`; the saga confirms or rejects it.
///
/// Send an `Idempotency-Key` header (any unique string, at most 255 characters) to make
/// retries safe: the same key with the same body returns the same order; the same key
/// with a different body is refused with 422.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe")),
    responses(
        (status = 202, description = "The order was accepted and is pending", body = Order),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid items, unknown products, or an Idempotency-Key reused for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "inventory-service is unavailable; nothing was stored", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders")]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn place_order(
    pool: web::Data<PgPool>,
    inventory: web::Data<InventoryClient>,
    identity: Identity,
    customer: BearerToken,
    context: RequestContext,
    key: Result<IdempotencyKey, ApiError>,
    body: web::Json<PlaceOrder>,
) -> Result<HttpResponse, ApiError> {
    // After authentication, so a caller without a token gets 401 (see the kit's module).
    let key = key?;
    let Placed { order, created } = orders::place(
        &pool,
        // Priced on the customer's behalf: inventory-service limits the lookup as them.
        &inventory.on_behalf_of(customer),
        &context,
        identity.user_id,
        key.as_deref(),
        body.into_inner(),
    )
    .await?;
    let mut response = HttpResponse::Accepted();
    response.insert_header((header::LOCATION, format!("/api/v1/orders/{}", order.id)));
    if !created {
        // Tells a client (and an operator reading logs) that no new order was made.
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(order))
}

/// The caller's orders, newest first; an admin sees everybody's.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of orders", body = Page<Order>),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders")]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn list_orders(
    pool: web::Data<PgPool>,
    identity: Identity,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<Order>>, ApiError> {
    let page = PageRequest::try_from(&params.into_inner())?;
    let owner = (identity.role != Role::Admin).then_some(identity.user_id);
    let mut conn = pool.acquire().await.map_err(OrderError::from)?;
    let rows = crate::repository::list_orders(&mut conn, owner, page.after, page.fetch_limit())
        .await
        .map_err(OrderError::from)?;
    Ok(web::Json(into_page(rows, page, |order| order.id.as_uuid())))
}

/// One order. Another customer's order answers 404, so ids reveal nothing.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order for this caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}")]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn get_order(
    pool: web::Data<PgPool>,
    identity: Identity,
    id: web::Path<OrderId>,
) -> Result<web::Json<Order>, ApiError> {
    let mut conn = pool.acquire().await.map_err(OrderError::from)?;
    let order = crate::repository::find_order(&mut conn, id.into_inner(), false)
        .await
        .map_err(OrderError::from)?
        .filter(|order| identity.can_access(order.user_id))
        .ok_or(OrderError::NotFound)?;
    Ok(web::Json(order))
}

/// The order's saga so far, oldest first: every event order-service published or applied
/// for it (placed, stock reserved or rejected, payment succeeded, failed or refunded,
/// confirmed, cancelled), with the service that emitted it and the order's status after
/// it. An event that changed nothing (a late one for a settled order, a refund) is listed
/// with the status the order kept; a duplicate delivery is not listed. At most 100 entries.
/// Like the order, another customer's answers 404.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order's events, oldest first", body = OrderTimeline),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order for this caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/orders/{id}/timeline")]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn get_order_timeline(
    pool: web::Data<PgPool>,
    identity: Identity,
    id: web::Path<OrderId>,
) -> Result<web::Json<OrderTimeline>, ApiError> {
    let id = id.into_inner();
    let mut conn = pool.acquire().await.map_err(OrderError::from)?;
    crate::repository::find_order_owner(&mut conn, id)
        .await
        .map_err(OrderError::from)?
        .filter(|owner| identity.can_access(*owner))
        .ok_or(OrderError::NotFound)?;
    let items = crate::repository::timeline(&mut conn, id)
        .await
        .map_err(OrderError::from)?;
    Ok(web::Json(OrderTimeline { items }))
}

/// Cancel a pending or confirmed order (its owner or an admin). Reserved stock is released
/// and a captured payment refunded by the saga.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The cancelled order", body = Order),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order for this caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is already rejected or cancelled", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/orders/{id}/cancel")]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn cancel_order(
    pool: web::Data<PgPool>,
    metrics: web::Data<OrderMetrics>,
    identity: Identity,
    id: web::Path<OrderId>,
) -> Result<web::Json<Order>, ApiError> {
    let order = orders::cancel(&pool, &metrics, identity, id.into_inner()).await?;
    Ok(web::Json(order))
}
