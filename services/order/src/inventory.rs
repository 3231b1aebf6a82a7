//! order-service's view of inventory-service: current prices, read over REST through the
//! shared client (timeout, retries for this idempotent GET, circuit breaker).
//!
//! A lookup is made on the customer's behalf, with their token (`on_behalf_of`):
//! inventory-service then rate-limits it as that customer. Anonymous, every customer's
//! lookups from one order-service pod shared one address's limit, and above about 100
//! orders a second all of them got 429 and then 503.

use std::{collections::HashMap, sync::Arc};

use service_kit::{
    auth::BearerToken,
    client::{ClientError, ServiceClient},
    request_context::RequestContext,
};
use shop_model::{
    ProductId,
    api::{Page, Product},
};

pub struct InventoryClient {
    /// One client (and circuit breaker) for every request.
    client: Arc<ServiceClient>,
    customer: Option<BearerToken>,
}

impl InventoryClient {
    pub fn new(client: ServiceClient) -> Self {
        Self {
            client: Arc::new(client),
            customer: None,
        }
    }

    /// The same client, calling on behalf of the customer whose token this is.
    pub fn on_behalf_of(&self, customer: BearerToken) -> Self {
        Self {
            client: Arc::clone(&self.client),
            customer: Some(customer),
        }
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
            .get_json(
                "/api/v1/products",
                &[("ids", ids)],
                context,
                self.customer.as_ref(),
            )
            .await?;
        Ok(page.items.into_iter().map(|p| (p.id, p)).collect())
    }
}
