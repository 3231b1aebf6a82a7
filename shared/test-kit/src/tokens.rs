//! Tokens for tests, signed with the development key that `config/dev/` documents.

use std::time::Duration;

use secrecy::SecretString;
use service_kit::{
    auth::{Claims, DEV_SIGNING_KEY, TokenIssuer},
    config::{DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER},
};
use shop_model::{Role, UserId};

/// A key that the development JWKS does not contain.
pub const UNTRUSTED_KEY: &str = include_str!("../../../config/dev/jwt-previous-key.pem");

/// The issuer of user-service with `JWT_ALLOW_DEV_KEY=true` and no key of its own
/// (development key, default issuer/audience).
pub fn issuer() -> TokenIssuer {
    issuer_with_key(DEV_SIGNING_KEY)
}

fn issuer_with_key(pem: &str) -> TokenIssuer {
    TokenIssuer::from_pem(
        &SecretString::from(pem.to_owned()),
        &[],
        DEFAULT_JWT_ISSUER,
        DEFAULT_JWT_AUDIENCE,
        Duration::from_secs(600),
    )
    .unwrap_or_else(|e| panic!("development key: {e}"))
}

/// A valid token for a new user with `role`.
pub fn for_role(role: Role) -> (UserId, String) {
    let user = UserId::new();
    (user, for_user(user, role))
}

pub fn for_user(user: UserId, role: Role) -> String {
    issuer()
        .issue(user, role)
        .unwrap_or_else(|e| panic!("sign: {e}"))
        .token
}

pub fn customer() -> (UserId, String) {
    for_role(Role::Customer)
}

pub fn admin() -> (UserId, String) {
    for_role(Role::Admin)
}

fn claims(role: Role) -> Claims {
    let now = jsonwebtoken::get_current_timestamp();
    Claims {
        sub: UserId::new(),
        role,
        iss: DEFAULT_JWT_ISSUER.to_owned(),
        aud: DEFAULT_JWT_AUDIENCE.to_owned(),
        iat: now,
        exp: now + 600,
    }
}

/// Expired an hour ago (well past any leeway).
pub fn expired() -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        iat: now - 7200,
        exp: now - 3600,
        ..claims(Role::Customer)
    };
    issuer()
        .sign(&claims)
        .unwrap_or_else(|e| panic!("sign: {e}"))
}

/// Valid in every way but meant for another audience.
pub fn wrong_audience() -> String {
    let claims = Claims {
        aud: "some-other-api".to_owned(),
        ..claims(Role::Customer)
    };
    issuer()
        .sign(&claims)
        .unwrap_or_else(|e| panic!("sign: {e}"))
}

/// Signed by a key the services do not trust.
pub fn untrusted_signature() -> String {
    issuer_with_key(UNTRUSTED_KEY)
        .issue(UserId::new(), Role::Admin)
        .unwrap_or_else(|e| panic!("sign: {e}"))
        .token
}

/// Well-formed and signed, but naming a key id that nobody publishes, a new one on every
/// call: what a client inventing key ids sends (each would make a naive verifier fetch).
pub fn unknown_key_id() -> String {
    let mut header = jsonwebtoken::Header::new(service_kit::auth::ALGORITHM);
    header.kid = Some(uuid::Uuid::new_v4().simple().to_string());
    let key = jsonwebtoken::EncodingKey::from_ed_pem(DEV_SIGNING_KEY.as_bytes())
        .unwrap_or_else(|e| panic!("development key: {e}"));
    jsonwebtoken::encode(&header, &claims(Role::Admin), &key)
        .unwrap_or_else(|e| panic!("sign: {e}"))
}

/// Not a JWT at all.
pub const GARBAGE: &str = "not-a.jwt-token";
