//! Values a registration must satisfy, parsed once at the edge.

use secrecy::SecretString;
use service_kit::FieldErrors;
use shop_model::{Email, InvalidValue, api::RegisterUser};

/// A password as the user chose it. Only its length is checked; NIST SP 800-63B advises
/// against composition rules. Never logged (the field is a `SecretString`).
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// Argon2 accepts more, but a cap keeps a single request from costing unbounded CPU.
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, InvalidValue> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(InvalidValue(format!(
                "must be at least {} characters long",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

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

/// A registration request whose every field is valid.
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub name: DisplayName,
}

impl TryFrom<RegisterUser> for NewUser {
    type Error = FieldErrors;

    fn try_from(body: RegisterUser) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::new();
        let email = errors.check("email", Email::parse(&body.email));
        let password = errors.check("password", Password::parse(body.password));
        let name = errors.check("name", DisplayName::parse(&body.name));
        match (email, password, name) {
            (Some(email), Some(password), Some(name)) => Ok(Self {
                email,
                password,
                name,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_need_eight_characters_counted_as_characters() {
        assert!(Password::parse("short".to_owned()).is_err());
        assert!(Password::parse("12345678".to_owned()).is_ok());
        // Eight characters, more than eight bytes.
        assert!(Password::parse("ééééééé".to_owned()).is_err());
        assert!(Password::parse("éééééééé".to_owned()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Ann ").map(|n| n.0).ok(),
            Some("Ann".to_owned())
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse(&"n".repeat(101)).is_err());
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let body = RegisterUser {
            email: "nope".to_owned(),
            password: "short".to_owned(),
            name: String::new(),
        };
        let Err(errors) = NewUser::try_from(body) else {
            panic!("expected errors");
        };
        let problem = service_kit::ApiError::from(errors).problem();
        let fields = problem.errors.expect("fields");
        assert_eq!(
            fields.keys().map(String::as_str).collect::<Vec<_>>(),
            ["email", "name", "password"]
        );
    }
}
