//! Domain value types with private fields and fallible constructors.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Why a raw value was refused. The message is meant for the API client, so it names the
/// rule, never internal details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An e-mail address, trimmed and lower-cased so that `Ann@Example.com` and
/// `ann@example.com` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let value = raw.trim().to_lowercase();
        let invalid = || InvalidValue::new("must be a valid e-mail address");
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two roles a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Self::Customer),
            "admin" => Ok(Self::Admin),
            _ => Err(InvalidValue::new("must be `customer` or `admin`")),
        }
    }
}

/// An amount of money in cents (one currency, USD). Never negative: a debit is expressed
/// by the operation, not by the sign of the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Cents(i64);

impl Cents {
    pub const ZERO: Self = Self(0);

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if value < 0 {
            return Err(InvalidValue::new("must not be negative"));
        }
        Ok(Self(value))
    }

    /// A strictly positive amount, as a credit or a charge must be.
    pub fn positive(value: i64) -> Result<Self, InvalidValue> {
        if value <= 0 {
            return Err(InvalidValue::new("must be greater than zero"));
        }
        Ok(Self(value))
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn checked_mul(self, quantity: Quantity) -> Option<Self> {
        self.0.checked_mul(i64::from(quantity.get())).map(Self)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} USD", self.0 / 100, self.0 % 100)
    }
}

/// How many units of a product an order line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(i32);

impl Quantity {
    /// A single order line may not ask for more than this; it bounds the arithmetic and
    /// catches typos such as 10000 instead of 1.
    pub const MAX: i32 = 1_000;

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if value < 1 {
            return Err(InvalidValue::new("must be at least 1"));
        }
        if value > i64::from(Self::MAX) {
            return Err(InvalidValue::new(format!("must be at most {}", Self::MAX)));
        }
        i32::try_from(value)
            .map(Self)
            .map_err(|_| InvalidValue::new("is out of range"))
    }

    pub const fn get(self) -> i32 {
        self.0
    }
}

/// A stock-keeping unit: 1 to 64 characters of letters, digits, `-`, `_` and `.`, stored
/// upper-case so that lookups are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let value = raw.trim().to_uppercase();
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(InvalidValue::new(
                "may contain only letters, digits, `-`, `_` and `.`",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised() {
        let email = Email::parse("  Ann.Smith@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "ann.smith@example.com");
    }

    #[test]
    fn email_rejects_malformed_addresses() {
        for raw in [
            "",
            "plain",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@@example.com",
            "ann smith@example.com",
            "ann@example..com",
            "ann@.example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be rejected");
        }
        let too_long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&too_long).is_err());
    }

    #[test]
    fn role_parses_only_known_roles() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("customer".parse::<Role>(), Ok(Role::Customer));
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn cents_refuse_negative_amounts() {
        assert!(Cents::new(-1).is_err());
        assert_eq!(Cents::new(0).map(Cents::get), Ok(0));
        assert!(Cents::positive(0).is_err());
        assert_eq!(Cents::positive(5).map(Cents::get), Ok(5));
    }

    #[test]
    fn cents_arithmetic_detects_overflow() {
        let big = Cents::new(i64::MAX).expect("non-negative");
        assert_eq!(big.checked_add(Cents::new(1).expect("ok")), None);
        let q = Quantity::new(2).expect("ok");
        assert_eq!(big.checked_mul(q), None);
        assert_eq!(
            Cents::new(250).expect("ok").checked_mul(q),
            Some(Cents::new(500).expect("ok"))
        );
    }

    #[test]
    fn cents_display_as_dollars() {
        assert_eq!(Cents::new(12_345).expect("ok").to_string(), "123.45 USD");
        assert_eq!(Cents::new(5).expect("ok").to_string(), "0.05 USD");
    }

    #[test]
    fn quantity_bounds() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(
            Quantity::new(i64::from(Quantity::MAX)).map(Quantity::get),
            Ok(Quantity::MAX)
        );
        assert!(Quantity::new(i64::from(Quantity::MAX) + 1).is_err());
    }

    #[test]
    fn sku_is_upper_cased_and_restricted() {
        assert_eq!(Sku::parse(" mug-01 ").expect("ok").as_str(), "MUG-01");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse("semi;colon").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }
}
