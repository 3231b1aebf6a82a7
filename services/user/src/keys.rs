//! The token signing key, loaded from configuration so that every replica signs with the
//! same key and publishes the same JWKS.
//!
//! It fails closed: a deployment that forgot the key must not come up signing with the
//! development key, which is public (it is in the repository and in every image) — anyone
//! could mint `role: admin` tokens that every service accepts. The development key is
//! used only with `JWT_ALLOW_DEV_KEY=true`, and recognised by its key id however its PEM
//! is written, so setting it as `JWT_SIGNING_KEY` needs the flag too.

use anyhow::bail;
use secrecy::SecretString;
use service_kit::auth::{DEV_SIGNING_KEY, TokenIssuer, dev_key_id};

use crate::settings::TokenSettings;

/// What to set, said once for both refusals.
const WHAT_TO_SET: &str = "set JWT_SIGNING_KEY to an Ed25519 private key (PKCS#8 PEM), or \
     JWT_SIGNING_KEY_FILE to a file holding one; for local development only, \
     JWT_ALLOW_DEV_KEY=true signs with the public development key of config/dev/";

pub fn issuer(settings: &TokenSettings) -> anyhow::Result<TokenIssuer> {
    let signing_key = match (&settings.signing_key, settings.allow_dev_key) {
        (Some(key), _) => key.clone(),
        (None, true) => SecretString::from(DEV_SIGNING_KEY),
        (None, false) => bail!("no token signing key: {WHAT_TO_SET}"),
    };
    let issuer = TokenIssuer::from_pem(
        &signing_key,
        &settings.previous_public_keys,
        &settings.issuer,
        &settings.audience,
        settings.ttl,
    )?;
    if issuer.key_id() == dev_key_id() {
        if !settings.allow_dev_key {
            bail!(
                "JWT_SIGNING_KEY is the public development key, which anyone can sign \
                 tokens with: {WHAT_TO_SET}"
            );
        }
        tracing::warn!(
            key_id = issuer.key_id(),
            "signing tokens with the public development key (JWT_ALLOW_DEV_KEY=true); set \
             JWT_SIGNING_KEY or JWT_SIGNING_KEY_FILE outside development"
        );
    }
    Ok(issuer)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A private key that is not the development key.
    const OTHER_KEY: &str = include_str!("../../../config/dev/jwt-previous-key.pem");

    fn settings(signing_key: Option<&str>, allow_dev_key: bool) -> TokenSettings {
        TokenSettings {
            signing_key: signing_key.map(|pem| SecretString::from(pem.to_owned())),
            allow_dev_key,
            previous_public_keys: Vec::new(),
            issuer: "iss".to_owned(),
            audience: "aud".to_owned(),
            ttl: Duration::from_secs(60),
        }
    }

    fn refusal(settings: &TokenSettings) -> String {
        match issuer(settings) {
            Ok(_) => panic!("the key was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn without_a_key_or_the_flag_it_refuses_and_says_what_to_set() {
        let message = refusal(&settings(None, false));

        for name in [
            "JWT_SIGNING_KEY ",
            "JWT_SIGNING_KEY_FILE",
            "JWT_ALLOW_DEV_KEY=true",
        ] {
            assert!(message.contains(name), "{name} not in: {message}");
        }
    }

    #[test]
    fn the_development_key_set_explicitly_needs_the_flag_too() {
        // As the dev overlay mounts it: a file's content, with a trailing newline or not.
        for pem in [
            DEV_SIGNING_KEY.to_owned(),
            DEV_SIGNING_KEY.trim().to_owned(),
        ] {
            let message = refusal(&settings(Some(&pem), false));
            assert!(message.contains("development key"), "{message}");

            let allowed = issuer(&settings(Some(&pem), true)).expect("allowed with the flag");
            assert_eq!(allowed.key_id(), dev_key_id());
        }
    }

    #[test]
    fn with_the_flag_and_no_key_it_signs_with_the_development_key() {
        let issuer = issuer(&settings(None, true)).expect("allowed");

        assert_eq!(issuer.key_id(), dev_key_id());
    }

    #[test]
    fn a_key_of_its_own_needs_no_flag() {
        let issuer = issuer(&settings(Some(OTHER_KEY), false)).expect("a real key");

        assert_ne!(issuer.key_id(), dev_key_id());
    }
}
