//! The demo catalog: a handful of products to walk through the order saga with.
//!
//! It is loaded only by the explicit `inventory-service seed-demo` command, never at
//! start-up, so a production deployment never finds demo products in its catalog.

use anyhow::Context;
use shop_model::{ProductId, api::NewProduct};
use sqlx::PgPool;

use crate::{domain::ProductDraft, repository};

struct DemoProduct {
    sku: &'static str,
    name: &'static str,
    description: &'static str,
    price_cents: i64,
    stock: i64,
}

/// Mostly cheap products with plenty of stock, so that demo orders succeed, plus one for
/// each way an order can be rejected.
const DEMO_CATALOG: &[DemoProduct] = &[
    DemoProduct {
        sku: "DEMO-ENAMEL-MUG",
        name: "Enamel mug",
        description: "A 350 ml enamel mug that survives camping trips and dishwashers.",
        price_cents: 1_250,
        stock: 500,
    },
    DemoProduct {
        sku: "DEMO-NOTEBOOK-A5",
        name: "Dot-grid notebook, A5",
        description: "192 numbered pages of 100 g/m² paper that fountain pens do not bleed through.",
        price_cents: 1_800,
        stock: 400,
    },
    DemoProduct {
        sku: "DEMO-GEL-PENS",
        name: "Gel pens, set of 5",
        description: "Quick-drying 0.5 mm gel pens in black, blue, red, green and purple.",
        price_cents: 950,
        stock: 600,
    },
    DemoProduct {
        sku: "DEMO-TOTE-BAG",
        name: "Canvas tote bag",
        description: "Heavy cotton canvas with an inside pocket; holds a week of groceries.",
        price_cents: 2_200,
        stock: 300,
    },
    DemoProduct {
        sku: "DEMO-COFFEE-BEANS",
        name: "Single-origin coffee beans, 250 g",
        description: "Medium roast from Huila, Colombia. Notes of caramel and red apple.",
        price_cents: 1_600,
        stock: 250,
    },
    DemoProduct {
        sku: "DEMO-DESK-PLANT",
        name: "Desk succulent",
        description: "A small echeveria in a glazed ceramic pot. Water it once a fortnight.",
        price_cents: 1_400,
        stock: 150,
    },
    // Two in stock: a third order is rejected as out of stock.
    DemoProduct {
        sku: "DEMO-LIMITED-PRINT",
        name: "Limited-edition art print",
        description: "A signed and numbered risograph print. Only two left.",
        price_cents: 4_500,
        stock: 2,
    },
    // More than the 100000 cents a new wallet starts with: ordering it is rejected for
    // insufficient funds (and succeeds once an admin credits the wallet).
    DemoProduct {
        sku: "DEMO-ESPRESSO-MACHINE",
        name: "Espresso machine",
        description: "A dual-boiler espresso machine with a PID controller and a rotary pump.",
        price_cents: 150_000,
        stock: 20,
    },
];

/// Adds the demo catalog to the database, skipping every product whose SKU already
/// exists, and returns how many products were added. Idempotent: a second run adds none,
/// and products that were edited or sold since the first run are left as they are.
pub async fn seed_demo_catalog(pool: &PgPool) -> anyhow::Result<u64> {
    let drafts = demo_drafts()?;
    let mut tx = pool
        .begin()
        .await
        .context("starting the seed transaction")?;
    let mut added = 0;
    for draft in &drafts {
        if repository::insert_unless_sku_exists(&mut tx, ProductId::new(), draft)
            .await
            .with_context(|| format!("inserting demo product {}", draft.sku))?
        {
            added += 1;
        }
    }
    tx.commit().await.context("committing the demo catalog")?;
    Ok(added)
}

/// The demo products, through the same validation as products created over the API.
fn demo_drafts() -> anyhow::Result<Vec<ProductDraft>> {
    DEMO_CATALOG
        .iter()
        .map(|product| {
            ProductDraft::try_from(NewProduct {
                sku: product.sku.to_owned(),
                name: product.name.to_owned(),
                description: product.description.to_owned(),
                price_cents: product.price_cents,
                stock: product.stock,
            })
            .map_err(|errors| {
                anyhow::anyhow!("demo product {} is invalid: {errors:?}", product.sku)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_product_is_valid() {
        let drafts = demo_drafts().expect("valid demo products");
        assert_eq!(drafts.len(), DEMO_CATALOG.len());
    }

    #[test]
    fn the_demo_catalog_can_show_each_way_an_order_is_rejected() {
        let find = |sku: &str| {
            DEMO_CATALOG
                .iter()
                .find(|p| p.sku == sku)
                .unwrap_or_else(|| panic!("{sku} missing"))
        };
        assert_eq!(find("DEMO-LIMITED-PRINT").stock, 2);
        // Above the default WALLET_INITIAL_CREDIT_CENTS of payment-service.
        assert!(find("DEMO-ESPRESSO-MACHINE").price_cents > 100_000);
    }
}
