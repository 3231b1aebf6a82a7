//! The events the services exchange, and the CloudEvents 1.0 envelope that carries them.
//!
//! Each event type is versioned in its name (`shop.order.placed.v1`). A change that a
//! consumer of the previous version could not read — a removed or retyped field — is a
//! new version, published alongside the old one until every consumer has moved; adding an
//! optional field is not. `docs/events/` holds the machine-readable contract and a test
//! compares it with these types.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{OrderId, PaymentId, ProductId, UserId};

/// Where each kind of event is published. One topic (Kafka) or routing-key prefix
/// (RabbitMQ) per publishing service; the partition key is the aggregate id, so the events
/// of one order (or user) are delivered in the order they were written.
pub mod topics {
    pub const USERS: &str = "shop.users";
    pub const ORDERS: &str = "shop.orders";
    pub const INVENTORY: &str = "shop.inventory";
    pub const PAYMENTS: &str = "shop.payments";
    /// Every topic above.
    pub const ALL: [&str; 4] = [USERS, ORDERS, INVENTORY, PAYMENTS];
    /// Where consumers put the messages they gave up on (RabbitMQ: a queue of this name).
    pub const DEAD_LETTERS: &str = "shop.dead-letters";
}

/// An event payload with its fixed CloudEvents `type` and the topic it is published to.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The CloudEvents `type`, e.g. `shop.order.placed.v1`.
    const TYPE: &'static str;
    /// The topic it is published to.
    const TOPIC: &'static str;
    /// The aggregate id: the CloudEvents `subject` and the partition key.
    fn subject(&self) -> String;
}

/// The CloudEvents 1.0 attributes of a message. On the wire they travel as message headers
/// (binary content mode) and the body is the event's JSON `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub specversion: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub subject: String,
    pub datacontenttype: String,
}

impl CloudEvent {
    pub const SPEC_VERSION: &'static str = "1.0";
    pub const CONTENT_TYPE: &'static str = "application/json";

    /// The attributes of a new event of type `E` about `subject`, from `source`
    /// (e.g. `/order-service`).
    pub fn new<E: Event>(source: &str, event: &E) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.to_owned(),
            event_type: E::TYPE.to_owned(),
            specversion: Self::SPEC_VERSION.to_owned(),
            time: OffsetDateTime::now_utc(),
            subject: event.subject(),
            datacontenttype: Self::CONTENT_TYPE.to_owned(),
        }
    }
}

macro_rules! event {
    ($name:ident, $type:literal, $topic:expr, |$e:ident| $subject:expr) => {
        impl Event for $name {
            const TYPE: &'static str = $type;
            const TOPIC: &'static str = $topic;
            fn subject(&self) -> String {
                let $e = self;
                $subject.to_string()
            }
        }
    };
}

/// A customer account was created. payment-service opens their wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRegistered {
    /// The new account.
    pub user_id: UserId,
    /// The account's email address, which it logs in with.
    pub email: String,
    /// The name the customer gave.
    pub name: String,
}
event!(
    UserRegistered,
    "shop.user.registered.v1",
    topics::USERS,
    |e| e.user_id
);

/// One line of an order, with the price the customer agreed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: ProductId,
    /// How many units (1 to 1000).
    pub quantity: i32,
    /// The price of one unit in cents, as it was when the order was placed.
    pub unit_price_cents: i64,
}

/// An order was placed. inventory-service tries to reserve all its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: OrderId,
    /// The customer who placed it.
    pub user_id: UserId,
    /// What was ordered; at least one line.
    pub items: Vec<OrderLine>,
    /// The sum of quantity × unit price over the lines, in cents.
    pub total_cents: i64,
}
event!(OrderPlaced, "shop.order.placed.v1", topics::ORDERS, |e| e
    .order_id);

/// The order was paid. inventory-service turns its reservation into a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: OrderId,
    /// Its customer.
    pub user_id: UserId,
}
event!(
    OrderConfirmed,
    "shop.order.confirmed.v1",
    topics::ORDERS,
    |e| e.order_id
);

/// The order will not be fulfilled: cancelled by a person, or rejected after stock was
/// reserved. inventory-service releases or returns its stock; payment-service refunds a
/// captured payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: OrderId,
    /// Its customer.
    pub user_id: UserId,
    /// `cancelled_by_customer`, `cancelled_by_admin`, `insufficient_funds`, ...
    pub reason: String,
}
event!(
    OrderCancelled,
    "shop.order.cancelled.v1",
    topics::ORDERS,
    |e| e.order_id
);

/// Every line of the order is reserved. payment-service charges the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockReserved {
    /// The order.
    pub order_id: OrderId,
    /// Its customer, whose wallet is charged.
    pub user_id: UserId,
    /// The order total to charge, in cents.
    pub total_cents: i64,
}
event!(
    StockReserved,
    "shop.inventory.stock-reserved.v1",
    topics::INVENTORY,
    |e| e.order_id
);

/// The order cannot be reserved; nothing was reserved. order-service rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockRejected {
    /// The order.
    pub order_id: OrderId,
    /// Its customer.
    pub user_id: UserId,
    /// `out_of_stock`, `unknown_product`, or `order_cancelled` (the order's cancellation
    /// reached inventory first; order-service has the order cancelled already).
    pub reason: String,
    /// The products that could not be reserved (none for `order_cancelled`).
    pub product_ids: Vec<ProductId>,
}
event!(
    StockRejected,
    "shop.inventory.stock-rejected.v1",
    topics::INVENTORY,
    |e| e.order_id
);

/// The stock of a cancelled order is available again (released or returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockReleased {
    /// The cancelled order.
    pub order_id: OrderId,
}
event!(
    StockReleased,
    "shop.inventory.stock-released.v1",
    topics::INVENTORY,
    |e| e.order_id
);

/// The order total was taken from the wallet. order-service confirms the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentSucceeded {
    /// The order.
    pub order_id: OrderId,
    /// Its customer, whose wallet was charged.
    pub user_id: UserId,
    /// The payment.
    pub payment_id: PaymentId,
    /// The amount taken, in cents.
    pub amount_cents: i64,
}
event!(
    PaymentSucceeded,
    "shop.payment.succeeded.v1",
    topics::PAYMENTS,
    |e| e.order_id
);

/// The order could not be paid; nothing was taken. order-service rejects the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentFailed {
    /// The order.
    pub order_id: OrderId,
    /// Its customer.
    pub user_id: UserId,
    /// `insufficient_funds`, `no_wallet` or `order_cancelled`.
    pub reason: String,
}
event!(
    PaymentFailed,
    "shop.payment.failed.v1",
    topics::PAYMENTS,
    |e| e.order_id
);

/// A captured payment of a cancelled order went back to the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentRefunded {
    /// The cancelled order.
    pub order_id: OrderId,
    /// Its customer, whose wallet was credited.
    pub user_id: UserId,
    /// The refund (a payment of its own, listed with the order's payments).
    pub payment_id: PaymentId,
    /// The amount returned, in cents.
    pub amount_cents: i64,
}
event!(
    PaymentRefunded,
    "shop.payment.refunded.v1",
    topics::PAYMENTS,
    |e| e.order_id
);

/// Every event type and its topic.
pub const EVENT_TYPES: [(&str, &str); 10] = [
    (UserRegistered::TYPE, UserRegistered::TOPIC),
    (OrderPlaced::TYPE, OrderPlaced::TOPIC),
    (OrderConfirmed::TYPE, OrderConfirmed::TOPIC),
    (OrderCancelled::TYPE, OrderCancelled::TOPIC),
    (StockReserved::TYPE, StockReserved::TOPIC),
    (StockRejected::TYPE, StockRejected::TOPIC),
    (StockReleased::TYPE, StockReleased::TOPIC),
    (PaymentSucceeded::TYPE, PaymentSucceeded::TOPIC),
    (PaymentFailed::TYPE, PaymentFailed::TOPIC),
    (PaymentRefunded::TYPE, PaymentRefunded::TOPIC),
];

/// Who consumes what: the choreography of the saga in one table. Brokers that route by
/// binding (RabbitMQ) declare every consumer's queue from it at start-up, whichever
/// service starts first, so no event is published before the queue that must receive it
/// exists. The event catalogue in `docs/` is generated from it too.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSpec {
    pub name: &'static str,
    pub event_types: &'static [&'static str],
}

pub const CONSUMERS: [ConsumerSpec; 3] = [
    ConsumerSpec {
        name: "inventory-service",
        event_types: &[
            OrderPlaced::TYPE,
            OrderConfirmed::TYPE,
            OrderCancelled::TYPE,
        ],
    },
    ConsumerSpec {
        name: "payment-service",
        event_types: &[
            UserRegistered::TYPE,
            StockReserved::TYPE,
            OrderCancelled::TYPE,
        ],
    },
    ConsumerSpec {
        name: "order-service",
        event_types: &[
            StockReserved::TYPE,
            StockRejected::TYPE,
            PaymentSucceeded::TYPE,
            PaymentFailed::TYPE,
            PaymentRefunded::TYPE,
        ],
    },
];

impl ConsumerSpec {
    /// The spec of the consumer called `name`.
    pub fn named(name: &str) -> Option<Self> {
        CONSUMERS.into_iter().find(|c| c.name == name)
    }

    /// The topics its event types are published to.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics: Vec<&'static str> = self
            .event_types
            .iter()
            .filter_map(|t| {
                EVENT_TYPES
                    .iter()
                    .find(|(et, _)| et == t)
                    .map(|(_, topic)| *topic)
            })
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumed_event_type_exists_and_maps_to_its_topic() {
        for consumer in CONSUMERS {
            for event_type in consumer.event_types {
                assert!(
                    EVENT_TYPES.iter().any(|(t, _)| t == event_type),
                    "{event_type}"
                );
            }
        }
        let payment = ConsumerSpec::named("payment-service").expect("declared");
        assert_eq!(
            payment.topics(),
            vec![topics::INVENTORY, topics::ORDERS, topics::USERS]
        );
    }

    #[test]
    fn event_types_are_versioned_and_unique() {
        let types = [
            UserRegistered::TYPE,
            OrderPlaced::TYPE,
            OrderConfirmed::TYPE,
            OrderCancelled::TYPE,
            StockReserved::TYPE,
            StockRejected::TYPE,
            StockReleased::TYPE,
            PaymentSucceeded::TYPE,
            PaymentFailed::TYPE,
            PaymentRefunded::TYPE,
        ];
        let unique: std::collections::HashSet<_> = types.iter().collect();
        assert_eq!(unique.len(), types.len());
        for t in types {
            assert!(t.starts_with("shop.") && t.ends_with(".v1"), "{t}");
        }
    }

    #[test]
    fn the_envelope_names_the_subject_and_type() {
        let event = OrderConfirmed {
            order_id: OrderId::new(),
            user_id: UserId::new(),
        };
        let envelope = CloudEvent::new("/order-service", &event);
        assert_eq!(envelope.event_type, "shop.order.confirmed.v1");
        assert_eq!(envelope.subject, event.order_id.to_string());
        assert_eq!(envelope.specversion, "1.0");
        assert!(uuid::Uuid::parse_str(&envelope.id).is_ok());
    }
}
