//! The token signing key, loaded from configuration so that every replica signs with the
//! same key and publishes the same JWKS.

use service_kit::auth::TokenIssuer;

use crate::settings::{DEV_SIGNING_KEY, TokenSettings};

pub fn issuer(settings: &TokenSettings) -> anyhow::Result<TokenIssuer> {
    use secrecy::ExposeSecret;
    if settings.signing_key.expose_secret().trim() == DEV_SIGNING_KEY.trim() {
        tracing::warn!(
            "signing tokens with the public development key; set JWT_SIGNING_KEY or \
             JWT_SIGNING_KEY_FILE outside development"
        );
    }
    TokenIssuer::from_pem(
        &settings.signing_key,
        &settings.previous_public_keys,
        &settings.issuer,
        &settings.audience,
        settings.ttl,
    )
}
