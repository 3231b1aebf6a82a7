//! The demo catalog, loaded by `inventory-service seed-demo`.

use inventory_service::seed_demo_catalog;
use secrecy::ExposeSecret;
use shop_model::api::{Page, Product};
use sqlx::PgPool;

use crate::helpers::{TestApp, spawn_app};

async fn pool(app: &TestApp) -> PgPool {
    PgPool::connect(app.database.url().expose_secret())
        .await
        .expect("connect to the test database")
}

async fn catalog(app: &TestApp) -> Vec<Product> {
    let page: Page<Product> = app
        .api
        .get("/api/v1/products?limit=100")
        .send()
        .await
        .json();
    page.items
}

#[tokio::test]
async fn seeding_the_demo_catalog_twice_adds_its_products_once() {
    let app = spawn_app().await;
    let pool = pool(&app).await;

    let first = seed_demo_catalog(&pool).await.expect("first seed");
    let second = seed_demo_catalog(&pool).await.expect("second seed");

    assert!(first >= 8, "added {first}");
    assert_eq!(second, 0);
    assert_eq!(catalog(&app).await.len() as u64, first);
}

#[tokio::test]
async fn seeding_leaves_existing_products_with_a_demo_sku_untouched() {
    let app = spawn_app().await;
    let existing = app.create_product("demo-limited-print", 40).await;

    seed_demo_catalog(&pool(&app).await).await.expect("seeded");

    let stored: Product = app.get_product(existing.id).await.json();
    assert_eq!((stored.name, stored.available), (existing.name, 40));
}

#[tokio::test]
async fn the_demo_catalog_has_a_scarce_product_and_one_beyond_a_new_wallet() {
    let app = spawn_app().await;

    seed_demo_catalog(&pool(&app).await).await.expect("seeded");

    let products = catalog(&app).await;
    let find = |sku: &str| {
        products
            .iter()
            .find(|p| p.sku == sku)
            .unwrap_or_else(|| panic!("{sku} not in the catalog"))
    };
    assert_eq!(find("DEMO-LIMITED-PRINT").available, 2);
    assert_eq!(find("DEMO-ESPRESSO-MACHINE").price_cents, 150_000);
}
