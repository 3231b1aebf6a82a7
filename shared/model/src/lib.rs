//! Types shared by the services: identifiers, domain value types, and the JSON bodies of
//! the public REST APIs. No I/O lives here, so every service (and every test) can depend on
//! it without pulling in a runtime.
//!
//! Value types follow "parse, don't validate": their fields are private and the only way to
//! get one is a fallible constructor, so code that holds an `Email` or a `Quantity` never has
//! to check it again.

pub mod api;
pub mod contract;
pub mod events;
pub mod ids;
pub mod values;

pub use ids::{OrderId, PaymentId, ProductId, UserId};
pub use values::{Cents, Email, InvalidValue, Quantity, Role, Sku};
