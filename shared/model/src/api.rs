//! JSON bodies of the REST APIs, shared so that a service calling another (order-service
//! reading the catalog) and the tests use the very types the server serialises.
//!
//! Request bodies hold raw values (`String`, `i64`); handlers parse them into the value
//! types of [`crate::values`] and report every invalid field at once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{OrderId, PaymentId, ProductId, Role, UserId};

/// One page of a list. `next_cursor` is opaque; pass it back as `cursor` to get the next
/// page. It is `null` on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ----- user-service -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterUser {
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// At least 8 characters.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    #[schema(example = "Ann Smith")]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

// ----- inventory-service -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    /// Units that can still be ordered.
    pub available: i32,
    /// Units held for orders that are not settled yet.
    pub reserved: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewProduct {
    #[schema(example = "MUG-001")]
    pub sku: String,
    #[schema(example = "Enamel mug")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(example = 1250)]
    pub price_cents: i64,
    #[schema(example = 100)]
    pub stock: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockAdjustment {
    /// Units added to (positive) or removed from (negative) the stock on hand; not zero.
    #[schema(minimum = -2147483648i64, maximum = 2147483647i64)]
    pub delta: i64,
}

// ----- order-service -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    pub items: Vec<PlaceOrderItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrderItem {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrderStatus {
    type Err = crate::InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "confirmed" => Ok(Self::Confirmed),
            "rejected" => Ok(Self::Rejected),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(crate::InvalidValue(format!(
                "unknown order status `{other}`"
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub product_id: ProductId,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    /// Why the order is in its status, in words a customer understands
    /// (`out_of_stock`, `insufficient_funds`, `cancelled_by_customer`, ...).
    pub status_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// The saga of one order as order-service saw it, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderTimeline {
    pub items: Vec<OrderTimelineEntry>,
}

/// One event order-service published or applied for an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderTimelineEntry {
    /// When order-service recorded the event, with the change it caused.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The CloudEvents `type` of the event.
    #[schema(example = "shop.inventory.stock-reserved.v1")]
    pub event_type: String,
    /// The service that emitted the event.
    #[schema(example = "inventory-service")]
    pub source: String,
    /// The order's status after the event.
    pub status: OrderStatus,
}

// ----- payment-service -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Wallet {
    pub user_id: UserId,
    pub balance_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditWallet {
    #[schema(example = 5000)]
    pub amount_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentKind {
    /// Money taken from the wallet for an order.
    Charge,
    /// Money given back when a paid order is cancelled.
    Refund,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: PaymentKind,
    pub amount_cents: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}
