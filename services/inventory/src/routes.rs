//! The REST API of inventory-service: the catalog (public) and its administration.

use actix_web::{HttpResponse, get, http::header, post, web};
use serde::Deserialize;
use service_kit::{
    ApiError, FieldErrors, Problem,
    auth::Admin,
    db::is_unique_violation,
    pagination::{PageParams, PageRequest, into_page},
};
use shop_model::{
    ProductId,
    api::{NewProduct, Page, Product, StockAdjustment},
};
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    domain::{ProductDraft, ProductIds, StockDelta},
    error::InventoryError,
    repository,
};

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(list_products)
        .service(get_product)
        .service(create_product)
        .service(adjust_stock);
}

/// `?ids=` of the product list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LookupParams {
    /// Comma-separated product ids, at most 100: instead of a page of the catalog, answer
    /// the products among them that exist, all at once (`next_cursor` is null). Cannot be
    /// combined with `limit` or `cursor`.
    ids: Option<String>,
}

/// The catalog, a page at a time in creation order; or a batch of products by id.
#[utoipa::path(
    tag = "products",
    params(PageParams, LookupParams),
    responses(
        (status = 200, description = "A page of products, or the products found by `ids`", body = Page<Product>),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit`, `cursor` or `ids`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/products")]
#[tracing::instrument(skip_all)]
async fn list_products(
    pool: web::Data<PgPool>,
    page: web::Query<PageParams>,
    lookup: web::Query<LookupParams>,
) -> Result<web::Json<Page<Product>>, ApiError> {
    match &lookup.ids {
        Some(ids) => {
            let ids = lookup_ids(ids, &page)?;
            let mut conn = pool.acquire().await.map_err(InventoryError::from)?;
            let items = repository::find_many(&mut conn, &ids.as_uuids())
                .await
                .map_err(InventoryError::from)?;
            Ok(web::Json(Page {
                items,
                next_cursor: None,
            }))
        }
        None => {
            let request = PageRequest::try_from(&*page)?;
            let mut conn = pool.acquire().await.map_err(InventoryError::from)?;
            let rows = repository::list(&mut conn, request)
                .await
                .map_err(InventoryError::from)?;
            Ok(web::Json(into_page(rows, request, |p| p.id.as_uuid())))
        }
    }
}

/// A batch lookup answers everything it finds at once, so paging it would mean nothing.
fn lookup_ids(raw: &str, page: &PageParams) -> Result<ProductIds, ApiError> {
    let mut errors = FieldErrors::new();
    if page.limit.is_some() {
        errors.add("limit", "does not apply to a lookup by `ids`");
    }
    if page.cursor.is_some() {
        errors.add("cursor", "does not apply to a lookup by `ids`");
    }
    match errors.check("ids", ProductIds::parse(raw)) {
        Some(ids) if errors.is_empty() => Ok(ids),
        _ => Err(errors.into()),
    }
}

/// A product by id.
#[utoipa::path(
    tag = "products",
    params(("id" = ProductId, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/products/{id}")]
#[tracing::instrument(skip_all, fields(product_id = %id))]
async fn get_product(
    pool: web::Data<PgPool>,
    id: web::Path<ProductId>,
) -> Result<web::Json<Product>, ApiError> {
    let mut conn = pool.acquire().await.map_err(InventoryError::from)?;
    repository::find_by_id(&mut conn, id.into_inner())
        .await
        .map_err(InventoryError::from)?
        .map(web::Json)
        .ok_or_else(|| InventoryError::NotFound.into())
}

/// Add a product to the catalog (admins only).
#[utoipa::path(
    tag = "products",
    security(("bearer" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "The product was created", body = Product),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A product with this SKU exists (SKUs are case-insensitive)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/products")]
#[tracing::instrument(skip_all, fields(user_id = %admin.user_id))]
async fn create_product(
    pool: web::Data<PgPool>,
    Admin(admin): Admin,
    body: web::Json<NewProduct>,
) -> Result<HttpResponse, ApiError> {
    let draft = ProductDraft::try_from(body.into_inner())?;
    let mut conn = pool.acquire().await.map_err(InventoryError::from)?;
    let product = repository::insert(&mut conn, ProductId::new(), &draft)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, Some("products_sku_key")) {
                InventoryError::SkuTaken(draft.sku.clone())
            } else {
                InventoryError::Database(e)
            }
        })?;
    tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/products/{}", product.id)))
        .json(product))
}

/// Add units to the stock on hand (a delivery) or remove them (a write-off, a count
/// correction); admins only. Units reserved for orders cannot be removed.
#[utoipa::path(
    tag = "products",
    security(("bearer" = [])),
    params(("id" = ProductId, Path, description = "Product id")),
    request_body = StockAdjustment,
    responses(
        (status = 200, description = "The product with its new stock", body = Product),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stock on hand would fall below the reserved units (or exceed the maximum)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`delta` is zero or out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/products/{id}/stock")]
#[tracing::instrument(skip_all, fields(product_id = %id, user_id = %admin.user_id))]
async fn adjust_stock(
    pool: web::Data<PgPool>,
    Admin(admin): Admin,
    id: web::Path<ProductId>,
    body: web::Json<StockAdjustment>,
) -> Result<web::Json<Product>, ApiError> {
    let id = id.into_inner();
    let delta = StockDelta::new(body.delta).map_err(|e| ApiError::validation("delta", e.0))?;
    let mut conn = pool.acquire().await.map_err(InventoryError::from)?;
    if let Some(product) = repository::adjust_stock(&mut conn, id, delta)
        .await
        .map_err(InventoryError::from)?
    {
        tracing::info!(
            delta = delta.get(),
            available = product.available,
            "stock adjusted"
        );
        return Ok(web::Json(product));
    }
    // Nothing changed: either there is no such product, or the guard refused the change.
    // Adding units can only be refused for overflow; removing them, for taking the stock
    // below zero or below what is reserved for orders, which the client is told apart.
    let Some(product) = repository::find_by_id(&mut conn, id)
        .await
        .map_err(InventoryError::from)?
    else {
        return Err(InventoryError::NotFound.into());
    };
    let on_hand = i64::from(product.available) + i64::from(product.reserved);
    let error = if delta.is_increase() {
        InventoryError::AboveMaximum
    } else if on_hand + i64::from(delta.get()) < 0 {
        InventoryError::BelowZero { on_hand }
    } else {
        InventoryError::BelowReserved {
            reserved: product.reserved,
        }
    };
    Err(error.into())
}
