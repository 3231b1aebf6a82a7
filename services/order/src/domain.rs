//! An order request parsed at the edge: every line names a product id and a positive
//! quantity, no product appears twice, and the list is neither empty nor huge.

use service_kit::FieldErrors;
use shop_model::{Cents, ProductId, Quantity, api::PlaceOrder};

/// At most this many lines per order; bounds the work one request can cause.
pub const MAX_LINES: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// A valid order request, before prices are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    lines: Vec<OrderLine>,
}

impl OrderRequest {
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// A stable fingerprint of the request, to recognise an `Idempotency-Key` reused for a
    /// different body.
    pub fn fingerprint(&self) -> String {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for line in &self.lines {
            hasher.update(line.product_id.as_uuid().as_bytes());
            hasher.update(line.quantity.get().to_be_bytes());
        }
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hasher.finalize())
    }
}

impl TryFrom<PlaceOrder> for OrderRequest {
    type Error = FieldErrors;

    fn try_from(body: PlaceOrder) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::new();
        if body.items.is_empty() {
            errors.add("items", "must contain at least one item");
        }
        if body.items.len() > MAX_LINES {
            errors.add("items", format!("must contain at most {MAX_LINES} items"));
        }
        let mut lines: Vec<OrderLine> = Vec::with_capacity(body.items.len());
        for (index, item) in body.items.iter().enumerate() {
            let product_id = errors.check(
                format!("items[{index}].product_id"),
                item.product_id
                    .parse::<ProductId>()
                    .map_err(|_| "must be a product id (UUID)"),
            );
            let quantity = errors.check(
                format!("items[{index}].quantity"),
                Quantity::new(item.quantity),
            );
            if let Some(product_id) = product_id {
                if lines.iter().any(|line| line.product_id == product_id) {
                    errors.add(
                        format!("items[{index}].product_id"),
                        "appears more than once; use one line with the total quantity",
                    );
                    continue;
                }
                if let Some(quantity) = quantity {
                    lines.push(OrderLine {
                        product_id,
                        quantity,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(Self { lines })
        } else {
            Err(errors)
        }
    }
}

/// A line with the price it was bought at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Cents,
}

/// The order total, or `None` if it does not fit in the amount type.
pub fn total(lines: &[PricedLine]) -> Option<Cents> {
    lines.iter().try_fold(Cents::ZERO, |sum, line| {
        sum.checked_add(line.unit_price.checked_mul(line.quantity)?)
    })
}

#[cfg(test)]
mod tests {
    use shop_model::api::PlaceOrderItem;

    use super::*;

    fn item(product_id: &str, quantity: i64) -> PlaceOrderItem {
        PlaceOrderItem {
            product_id: product_id.to_owned(),
            quantity,
        }
    }

    #[test]
    fn a_valid_request_keeps_its_lines_in_order() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let request = OrderRequest::try_from(PlaceOrder {
            items: vec![item(&a.to_string(), 2), item(&b.to_string(), 1)],
        })
        .expect("valid");
        assert_eq!(request.lines()[0].product_id, a);
        assert_eq!(request.lines()[1].quantity.get(), 1);
    }

    #[test]
    fn every_invalid_line_is_reported_by_index() {
        let a = ProductId::new().to_string();
        let Err(errors) = OrderRequest::try_from(PlaceOrder {
            items: vec![item("nope", 1), item(&a, 0), item(&a, -1)],
        }) else {
            panic!("expected errors");
        };
        let problem = service_kit::ApiError::from(errors).problem();
        let fields = problem.errors.expect("fields");
        assert!(fields.contains_key("items[0].product_id"));
        assert!(fields.contains_key("items[1].quantity"));
        assert!(fields.contains_key("items[2].quantity"));
    }

    #[test]
    fn empty_and_duplicate_requests_are_rejected() {
        assert!(OrderRequest::try_from(PlaceOrder { items: vec![] }).is_err());
        let a = ProductId::new().to_string();
        assert!(
            OrderRequest::try_from(PlaceOrder {
                items: vec![item(&a, 1), item(&a, 2)],
            })
            .is_err()
        );
        let too_many = (0..=MAX_LINES)
            .map(|_| item(&ProductId::new().to_string(), 1))
            .collect();
        assert!(OrderRequest::try_from(PlaceOrder { items: too_many }).is_err());
    }

    #[test]
    fn the_fingerprint_depends_on_products_and_quantities() {
        let a = ProductId::new().to_string();
        let request = |q| {
            OrderRequest::try_from(PlaceOrder {
                items: vec![item(&a, q)],
            })
            .expect("valid")
        };
        assert_eq!(request(1).fingerprint(), request(1).fingerprint());
        assert_ne!(request(1).fingerprint(), request(2).fingerprint());
    }

    #[test]
    fn totals_add_up_and_detect_overflow() {
        let line = |price, quantity| PricedLine {
            product_id: ProductId::new(),
            quantity: Quantity::new(quantity).expect("valid"),
            unit_price: Cents::new(price).expect("valid"),
        };
        assert_eq!(
            total(&[line(250, 2), line(100, 3)]).map(Cents::get),
            Some(800)
        );
        assert_eq!(total(&[line(i64::MAX / 2, 3)]), None);
    }
}
