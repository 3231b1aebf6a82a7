//! Password hashing with Argon2id (the algorithm OWASP recommends), off the async
//! executor: a hash takes tens of milliseconds of CPU by design, and running it on a
//! worker thread would stall every other request on that thread.
//!
//! Each hash also takes 19 MiB of memory, so the number running at once is bounded
//! (`PASSWORD_HASH_CONCURRENCY`, default one per CPU). A burst of sign-ins beyond that
//! waits its turn for at most `PASSWORD_HASH_QUEUE_TIMEOUT_MS`, then is answered 503 with
//! `Retry-After`: under a flood of logins the service sheds load instead of running
//! hundreds of hashes at once on the blocking thread pool and running out of memory.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{error::UserError, settings::PasswordSettings};

/// A well-formed Argon2id hash with the default parameters, of no known password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
    WzJaX0zZq1JvNOQ7Qdnd6D0SKo6dvTDrGRVsRDCXZPU";

/// Hashes and verifies passwords, a bounded number at a time. Cheap to clone: the clones
/// share the bound.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Passwords {
    pub fn new(settings: &PasswordSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            queue_timeout: settings.queue_timeout,
        }
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, UserError> {
        self.run(move || {
            Argon2::default()
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await?
        .map_err(UserError::from)
    }

    /// Whether `password` matches `stored_hash`. When the account does not exist the
    /// caller passes `None` and a dummy hash is checked anyway, so that "no such user" and
    /// "wrong password" take the same time and an attacker cannot probe which e-mails are
    /// registered.
    pub async fn verify(
        &self,
        password: SecretString,
        stored_hash: Option<String>,
    ) -> Result<bool, UserError> {
        self.run(move || {
            let exists = stored_hash.is_some();
            let hash = stored_hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let matches = Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                .is_ok();
            exists && matches
        })
        .await
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let _permit = self.permit().await?;
        tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task panicked")
            .map_err(UserError::from)
    }

    /// Waits for a free slot, at most the queue timeout. The permit is held until the hash
    /// is done (a hash whose caller went away still runs to the end on its thread, but it
    /// no longer counts: the bound is on callers waiting, which is what a flood creates).
    async fn permit(&self) -> Result<SemaphorePermit<'_>, UserError> {
        match tokio::time::timeout(self.queue_timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(UserError::Unexpected(closed.into())),
            Err(_) => {
                tracing::warn!(
                    waited_ms = self.queue_timeout.as_millis() as u64,
                    "every password-hashing slot is busy; shedding the request"
                );
                Err(UserError::Busy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords(concurrency: usize, queue_timeout_ms: u64) -> Passwords {
        Passwords::new(&PasswordSettings {
            concurrency,
            queue_timeout: Duration::from_millis(queue_timeout_ms),
        })
    }

    async fn hash(password: SecretString) -> Result<String, UserError> {
        passwords(2, 5_000).hash(password).await
    }

    async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, UserError> {
        passwords(2, 5_000).verify(password, stored).await
    }

    #[tokio::test]
    async fn when_every_slot_stays_busy_a_request_is_shed_after_the_queue_timeout() {
        let passwords = passwords(1, 50);
        let busy = passwords.permits.acquire().await.expect("the only slot");

        let shed = passwords.verify(SecretString::from("anything"), None).await;
        assert!(matches!(shed, Err(UserError::Busy)), "{shed:?}");

        drop(busy);
        let served = passwords.verify(SecretString::from("anything"), None).await;
        assert!(matches!(served, Ok(false)), "{served:?}");
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_freed_within_the_queue_timeout() {
        let passwords = passwords(1, 10_000);
        let busy = passwords.permits.acquire().await.expect("the only slot");
        let waiting = tokio::spawn({
            let passwords = passwords.clone();
            async move { passwords.hash(SecretString::from("correct horse")).await }
        });
        // On this single-threaded runtime, yielding runs the request until it blocks:
        // queued behind the busy slot.
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the request did not wait for the slot"
        );

        drop(busy);
        let hashed = waiting.await.expect("joined");
        assert!(hashed.is_ok_and(|h| h.starts_with("$argon2id$")));
    }

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
