//! Values a product, a stock change and a reservation must satisfy, parsed once at the
//! edge, and the rule that decides whether an order's stock can be reserved.

use std::collections::BTreeMap;

use service_kit::FieldErrors;
use shop_model::{Cents, InvalidValue, ProductId, Sku, api::NewProduct, events::OrderLine};

/// A product name: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidValue("must not be empty".to_owned()));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidValue(
                "must not contain control characters".to_owned(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product description: up to 2000 characters after trimming; may be empty. Line breaks
/// and tabs are allowed, other control characters are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let description = raw.trim();
        if description.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        if description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(InvalidValue(
                "must not contain control characters other than line breaks and tabs".to_owned(),
            ));
        }
        Ok(Self(description.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Units of a product on hand: 0 to `i32::MAX`, the range of the `on_hand` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock(i32);

impl Stock {
    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        i32::try_from(value)
            .ok()
            .filter(|units| *units >= 0)
            .map(Self)
            .ok_or_else(|| InvalidValue(format!("must be between 0 and {}", i32::MAX)))
    }

    pub const fn get(self) -> i32 {
        self.0
    }
}

/// A change to the units on hand: positive for a delivery, negative for a write-off. Never
/// zero, since a request that changes nothing is almost certainly a client bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockDelta(i32);

impl StockDelta {
    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        let delta = i32::try_from(value)
            .map_err(|_| InvalidValue(format!("must be between {} and {}", i32::MIN, i32::MAX)))?;
        if delta == 0 {
            return Err(InvalidValue("must not be zero".to_owned()));
        }
        Ok(Self(delta))
    }

    pub const fn get(self) -> i32 {
        self.0
    }

    pub const fn is_increase(self) -> bool {
        self.0 > 0
    }
}

/// The ids of a batch lookup (`?ids=a,b,c`): 1 to 100 product ids, without duplicates,
/// in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductIds(Vec<ProductId>);

impl ProductIds {
    /// One lookup answers at most one page of the list.
    pub const MAX: usize = service_kit::pagination::MAX_LIMIT as usize;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.trim().is_empty() {
            return Err(InvalidValue("must list at least one product id".to_owned()));
        }
        let listed: Vec<&str> = raw.split(',').map(str::trim).collect();
        if listed.len() > Self::MAX {
            return Err(InvalidValue(format!(
                "must list at most {} product ids",
                Self::MAX
            )));
        }
        let mut ids = listed
            .into_iter()
            .map(|id| {
                id.parse::<ProductId>()
                    .map_err(|_| InvalidValue(format!("`{id}` is not a product id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(Self(ids))
    }

    pub fn as_uuids(&self) -> Vec<uuid::Uuid> {
        self.0.iter().map(ProductId::as_uuid).collect()
    }
}

/// A product about to be created, every field valid.
#[derive(Debug, Clone)]
pub struct ProductDraft {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Cents,
    pub stock: Stock,
}

impl TryFrom<NewProduct> for ProductDraft {
    type Error = FieldErrors;

    fn try_from(body: NewProduct) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::new();
        let sku = errors.check("sku", Sku::parse(&body.sku));
        let name = errors.check("name", ProductName::parse(&body.name));
        let description = errors.check("description", Description::parse(&body.description));
        let price = errors.check("price_cents", Cents::new(body.price_cents));
        let stock = errors.check("stock", Stock::new(body.stock));
        match (sku, name, description, price, stock) {
            (Some(sku), Some(name), Some(description), Some(price), Some(stock)) => Ok(Self {
                sku,
                name,
                description,
                price,
                stock,
            }),
            _ => Err(errors),
        }
    }
}

/// The units an order asks for, per product: what `OrderPlaced` must reserve.
///
/// Every quantity is positive, and lines for the same product are added up, since a
/// reservation holds one row per product (order-service never sends two such lines, but
/// nothing in the event's schema forbids them). Products are kept in id order, the order
/// in which their rows are locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDemand(BTreeMap<ProductId, i32>);

impl OrderDemand {
    pub fn parse(lines: &[OrderLine]) -> Result<Self, InvalidValue> {
        if lines.is_empty() {
            return Err(InvalidValue(
                "an order must have at least one line".to_owned(),
            ));
        }
        let mut units = BTreeMap::new();
        for line in lines {
            if line.quantity < 1 {
                return Err(InvalidValue(format!(
                    "the quantity of product {} must be at least 1, not {}",
                    line.product_id, line.quantity
                )));
            }
            let total: &mut i32 = units.entry(line.product_id).or_default();
            *total = total.checked_add(line.quantity).ok_or_else(|| {
                InvalidValue(format!(
                    "the quantity of product {} is too large",
                    line.product_id
                ))
            })?;
        }
        Ok(Self(units))
    }

    /// The products, in id order.
    pub fn product_ids(&self) -> Vec<uuid::Uuid> {
        self.0.keys().map(ProductId::as_uuid).collect()
    }

    /// The units of each product, in the order of [`Self::product_ids`].
    pub fn quantities(&self) -> Vec<i32> {
        self.0.values().copied().collect()
    }

    /// Whether all of the demand can be reserved from `stock` (the current stock of the
    /// demanded products that exist). If not, says why, naming every product at fault:
    /// an unknown product rules the order out whatever the stock, so it is reported
    /// before any shortage.
    pub fn check_against(&self, stock: &[StockLevel]) -> Result<(), Rejection> {
        let level = |id: &ProductId| stock.iter().find(|level| level.product_id == *id);
        let unknown: Vec<ProductId> = self
            .0
            .keys()
            .filter(|id| level(id).is_none())
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Err(Rejection {
                reason: RejectionReason::UnknownProduct,
                product_ids: unknown,
            });
        }
        let short: Vec<ProductId> = self
            .0
            .iter()
            .filter(|(id, units)| level(id).is_some_and(|l| l.available() < i64::from(**units)))
            .map(|(id, _)| *id)
            .collect();
        if !short.is_empty() {
            return Err(Rejection {
                reason: RejectionReason::OutOfStock,
                product_ids: short,
            });
        }
        Ok(())
    }
}

/// The stock of one product, as read (and locked) before reserving from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: ProductId,
    pub on_hand: i32,
    pub reserved: i32,
}

impl StockLevel {
    /// The units that can still be reserved.
    pub fn available(&self) -> i64 {
        i64::from(self.on_hand) - i64::from(self.reserved)
    }
}

/// Why an order's stock cannot be reserved, and which of its products are to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectionReason,
    pub product_ids: Vec<ProductId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionReason {
    /// A product of the order is not in the catalog.
    UnknownProduct,
    /// Fewer units of a product are available than the order asks for.
    OutOfStock,
    /// The order was cancelled before its `OrderPlaced` was handled; no product is at
    /// fault (the saga decides this, never [`OrderDemand::check_against`]).
    OrderCancelled,
}

impl RejectionReason {
    /// The `reason` of a `StockRejected` event.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownProduct => "unknown_product",
            Self::OutOfStock => "out_of_stock",
            Self::OrderCancelled => "order_cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(
            ProductName::parse("  Enamel mug ").map(|n| n.0),
            Ok("Enamel mug".to_owned())
        );
        assert!(ProductName::parse("   ").is_err());
        assert!(ProductName::parse("mug\u{7}").is_err());
        assert!(ProductName::parse(&"é".repeat(200)).is_ok());
        assert!(ProductName::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn descriptions_may_be_empty_or_span_lines_but_are_bounded() {
        assert_eq!(Description::parse("").map(|d| d.0), Ok(String::new()));
        assert!(Description::parse("Two\nlines\twith a tab").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse(&"d".repeat(2000)).is_ok());
        assert!(Description::parse(&"d".repeat(2001)).is_err());
    }

    #[test]
    fn stock_fits_the_on_hand_column() {
        assert_eq!(Stock::new(0).map(Stock::get), Ok(0));
        assert_eq!(
            Stock::new(i64::from(i32::MAX)).map(Stock::get),
            Ok(i32::MAX)
        );
        assert!(Stock::new(-1).is_err());
        assert!(Stock::new(i64::from(i32::MAX) + 1).is_err());
    }

    #[test]
    fn a_stock_delta_is_non_zero_and_fits_an_i32() {
        assert!(StockDelta::new(0).is_err());
        assert_eq!(StockDelta::new(-5).map(StockDelta::get), Ok(-5));
        assert!(StockDelta::new(3).is_ok_and(StockDelta::is_increase));
        assert!(StockDelta::new(i64::from(i32::MIN)).is_ok());
        assert!(StockDelta::new(i64::from(i32::MIN) - 1).is_err());
        assert!(StockDelta::new(i64::from(i32::MAX) + 1).is_err());
    }

    #[test]
    fn product_ids_are_deduplicated_and_sorted() {
        let (first, second) = (ProductId::new(), ProductId::new());
        let ids = ProductIds::parse(&format!("{second}, {first},{second}")).expect("valid");
        assert_eq!(ids.as_uuids(), [first.as_uuid(), second.as_uuid()]);
    }

    #[test]
    fn product_ids_must_be_uuids_and_at_most_a_page() {
        assert!(ProductIds::parse("").is_err());
        assert!(ProductIds::parse("not-a-uuid").is_err());
        assert!(ProductIds::parse(&format!("{},", ProductId::new())).is_err());
        let ids = |n: usize| {
            (0..n)
                .map(|_| ProductId::new().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(ProductIds::parse(&ids(ProductIds::MAX)).is_ok());
        assert!(ProductIds::parse(&ids(ProductIds::MAX + 1)).is_err());
    }

    #[test]
    fn every_invalid_field_of_a_new_product_is_reported() {
        let body = NewProduct {
            sku: "has space".to_owned(),
            name: String::new(),
            description: "d".repeat(2001),
            price_cents: -1,
            stock: -1,
        };
        let Err(errors) = ProductDraft::try_from(body) else {
            panic!("expected errors");
        };
        let problem = service_kit::ApiError::from(errors).problem();
        let fields = problem.errors.expect("fields");
        assert_eq!(
            fields.keys().map(String::as_str).collect::<Vec<_>>(),
            ["description", "name", "price_cents", "sku", "stock"]
        );
    }

    fn line(product_id: ProductId, quantity: i32) -> OrderLine {
        OrderLine {
            product_id,
            quantity,
            unit_price_cents: 100,
        }
    }

    fn level(product_id: ProductId, on_hand: i32, reserved: i32) -> StockLevel {
        StockLevel {
            product_id,
            on_hand,
            reserved,
        }
    }

    #[test]
    fn an_order_demand_adds_up_lines_of_one_product_and_sorts_by_id() {
        let (first, second) = (ProductId::new(), ProductId::new());

        let demand =
            OrderDemand::parse(&[line(second, 2), line(first, 1), line(second, 3)]).expect("valid");

        assert_eq!(demand.product_ids(), [first.as_uuid(), second.as_uuid()]);
        assert_eq!(demand.quantities(), [1, 5]);
    }

    #[test]
    fn an_order_demand_needs_lines_with_positive_quantities_that_fit_an_i32() {
        let id = ProductId::new();
        assert!(OrderDemand::parse(&[]).is_err());
        assert!(OrderDemand::parse(&[line(id, 0)]).is_err());
        assert!(OrderDemand::parse(&[line(id, -1)]).is_err());
        assert!(OrderDemand::parse(&[line(id, i32::MAX)]).is_ok());
        assert!(OrderDemand::parse(&[line(id, i32::MAX), line(id, 1)]).is_err());
    }

    #[test]
    fn a_demand_is_met_when_every_product_has_enough_available_units() {
        let (mug, pen) = (ProductId::new(), ProductId::new());
        let demand = OrderDemand::parse(&[line(mug, 2), line(pen, 3)]).expect("valid");

        let stock = [level(mug, 5, 3), level(pen, 3, 0)];

        assert_eq!(demand.check_against(&stock), Ok(()));
    }

    #[test]
    fn a_demand_names_every_product_that_is_short() {
        let (mug, pen, cup) = (ProductId::new(), ProductId::new(), ProductId::new());
        let demand =
            OrderDemand::parse(&[line(mug, 2), line(pen, 1), line(cup, 4)]).expect("valid");

        let stock = [level(mug, 5, 4), level(pen, 1, 0), level(cup, 3, 0)];

        assert_eq!(
            demand.check_against(&stock),
            Err(Rejection {
                reason: RejectionReason::OutOfStock,
                product_ids: vec![mug, cup],
            })
        );
    }

    #[test]
    fn an_unknown_product_is_reported_before_any_shortage() {
        let (known, unknown) = (ProductId::new(), ProductId::new());
        let demand = OrderDemand::parse(&[line(known, 9), line(unknown, 1)]).expect("valid");

        let stock = [level(known, 1, 0)];

        let rejection = demand.check_against(&stock).expect_err("rejected");
        assert_eq!(rejection.reason.as_str(), "unknown_product");
        assert_eq!(rejection.product_ids, [unknown]);
        assert_eq!(RejectionReason::OutOfStock.as_str(), "out_of_stock");
    }
}
