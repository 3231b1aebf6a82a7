//! Password hashing with Argon2id (the algorithm OWASP recommends), off the async
//! executor: a hash takes tens of milliseconds of CPU by design, and running it on a
//! worker thread would stall every other request on that thread.

use anyhow::Context;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};

/// A well-formed Argon2id hash with the default parameters, of no known password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
    WzJaX0zZq1JvNOQ7Qdnd6D0SKo6dvTDrGRVsRDCXZPU";

pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .context("hashing task panicked")?
}

/// Whether `password` matches `stored_hash`. When the account does not exist the caller
/// passes `None` and a dummy hash is checked anyway, so that "no such user" and "wrong
/// password" take the same time and an attacker cannot probe which e-mails are registered.
pub async fn verify(password: SecretString, stored_hash: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let exists = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), hash.as_str())
            .is_ok();
        exists && matches
    })
    .await
    .context("verification task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hash = hash(SecretString::from("correct horse"))
            .await
            .expect("hashed");
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .expect("ran")
        );
        assert!(
            !verify(SecretString::from("wrong horse"), Some(hash))
                .await
                .expect("ran")
        );
    }

    #[test]
    fn the_dummy_hash_costs_as_much_as_a_real_one() {
        // Same algorithm and parameters as fresh hashes, so checking it takes as long.
        let dummy = argon2::PasswordHash::new(DUMMY_HASH).expect("well-formed");
        let real = Argon2::default().hash_password(b"x").expect("hashed");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        assert!(
            !verify(SecretString::from("anything"), None)
                .await
                .expect("ran")
        );
    }
}
