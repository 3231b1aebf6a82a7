//! Limits on guessing passwords and on mass sign-ups, on top of the kit's generic rate
//! limiter (which allows 100 requests a second per address and per pod: far too many
//! password guesses).
//!
//! - **Per account**: `LOGIN_MAX_FAILURES_PER_MINUTE` failed logins for one e-mail within
//!   a minute; after them, every login for that e-mail — the right password included — gets
//!   429 with `Retry-After` until the minute is over. A login that succeeds first starts
//!   the count afresh. Unknown e-mails are counted exactly like known ones, so the answers
//!   (and the work behind them) say nothing about which e-mails have an account.
//! - **Per client address** (an IPv4 address, or an IPv6 /64: one host usually owns a whole
//!   /64): `LOGIN_MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS` logins, whatever the account or the
//!   outcome, and `SIGNUP_MAX_PER_HOUR_PER_ADDRESS` valid sign-ups (a taken e-mail
//!   counts: the 409 tells which e-mails have an account).
//!
//! The counts live in PostgreSQL (`attempt_windows`), one fixed window per key, counted by
//! one atomic upsert: a limit holds however many replicas serve the traffic and across
//! restarts, where a per-pod count in memory would let an attacker multiply it by the
//! number of pods. A login attempt is counted before its password is checked, so that
//! concurrent guesses cannot all slip in before the first failure is recorded; a success
//! then forgets the count. The cost is one or two small writes per login and sign-up,
//! next to tens of milliseconds of Argon2.
//!
//! The per-account limit lets anyone lock an account out for a minute at a time; that is
//! the price of slowing guessing to ten a minute, and the window is kept short for it.

use std::{net::IpAddr, time::Duration};

use actix_web::HttpRequest;
use service_kit::rate_limit::client_address;
use shop_model::Email;
use sqlx::PgConnection;

use crate::{error::UserError, repository, settings::LimitSettings};

const LOGIN_WINDOW: Duration = Duration::from_secs(60);
const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);
/// Ended windows deleted each time a new one opens: the table stays about as large as the
/// number of keys seen in the last hour.
const PRUNE_BATCH: i64 = 100;

/// The limits of one service, shared by every worker.
#[derive(Debug, Clone)]
pub struct Limits {
    settings: LimitSettings,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    /// The address a request is counted against (`None` when the peer is unknown; such
    /// requests share one count).
    pub fn address(&self, request: &HttpRequest) -> Option<IpAddr> {
        client_address(request, self.settings.trust_forwarded_for)
    }

    /// Counts a login from `address`; 429 past the per-address limit.
    pub async fn login_from(
        &self,
        conn: &mut PgConnection,
        address: Option<IpAddr>,
    ) -> Result<(), UserError> {
        let max = self.settings.login_attempts_per_address;
        let key = address_key("login-from", address);
        count(conn, &key, LOGIN_WINDOW, max, "login per address").await
    }

    /// Counts a login for `email` as failed until [`Self::login_succeeded`] says
    /// otherwise; 429 once the failures of the current minute reached the limit.
    pub async fn login_for(&self, conn: &mut PgConnection, email: &Email) -> Result<(), UserError> {
        let max = self.settings.login_failures_per_account;
        count(
            conn,
            &account_key(email),
            LOGIN_WINDOW,
            max,
            "login per account",
        )
        .await
    }

    /// The password was right: the failures counted for `email` are forgotten.
    pub async fn login_succeeded(
        &self,
        conn: &mut PgConnection,
        email: &Email,
    ) -> Result<(), UserError> {
        if self.settings.login_failures_per_account == 0 {
            return Ok(());
        }
        Ok(repository::forget_attempts(conn, &account_key(email)).await?)
    }

    /// Counts a sign-up from `address`; 429 past the per-address limit.
    pub async fn signup_from(
        &self,
        conn: &mut PgConnection,
        address: Option<IpAddr>,
    ) -> Result<(), UserError> {
        let max = self.settings.signups_per_address;
        let key = address_key("signup-from", address);
        count(conn, &key, SIGNUP_WINDOW, max, "sign-up per address").await
    }
}

fn account_key(email: &Email) -> String {
    format!("login:{email}")
}

/// `prefix:address`; requests whose peer is unknown share `prefix:unknown`.
fn address_key(prefix: &str, address: Option<IpAddr>) -> String {
    match address {
        Some(address) => format!("{prefix}:{address}"),
        None => format!("{prefix}:unknown"),
    }
}

/// Counts an attempt against `key`: `Err(TooManyAttempts)` when it is beyond the `max`
/// of its window. `max == 0`: no limit, nothing counted.
async fn count(
    conn: &mut PgConnection,
    key: &str,
    window: Duration,
    max: u32,
    limit: &'static str,
) -> Result<(), UserError> {
    if max == 0 {
        return Ok(());
    }
    let counted = repository::count_attempt(conn, key, window.as_secs_f64()).await?;
    if counted.attempts == 1 {
        repository::prune_attempt_windows(conn, PRUNE_BATCH).await?;
    }
    if counted.attempts <= i64::from(max) {
        return Ok(());
    }
    // Rounded up: a client that waits exactly this long finds the window over.
    let retry_after = Duration::from_secs(counted.seconds_left.max(0.0).ceil() as u64);
    tracing::info!(
        limit,
        retry_after_secs = retry_after.as_secs(),
        "attempt over the limit"
    );
    Err(UserError::TooManyAttempts { retry_after })
}
