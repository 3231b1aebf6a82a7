//! order-service's view of inventory-service: current prices, read over REST through the
//! shared client (timeout, retries for this idempotent GET, circuit breaker).

use std::collections::HashMap;

use service_kit::{
    client::{ClientError, ServiceClient},
    request_context::RequestContext,
};
use shop_model::{
    ProductId,
    api::{Page, Product},
};

pub struct InventoryClient {
    client: ServiceClient,
}

impl InventoryClient {
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    /// The catalog entries of `ids` that exist, by id (one batch request).
    #[tracing::instrument(skip_all, fields(products = ids.len()))]
    pub async fn products(
        &self,
        ids: &[ProductId],
        context: &RequestContext,
    ) -> Result<HashMap<ProductId, Product>, ClientError> {
        let ids = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let page: Page<Product> = self
            .client
            .get_json("/api/v1/products", &[("ids", ids)], context)
            .await?;
        Ok(page.items.into_iter().map(|p| (p.id, p)).collect())
    }
}
