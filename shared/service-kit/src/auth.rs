//! Bearer-token authentication.
//!
//! user-service signs short-lived EdDSA JWTs with a private key and publishes the public
//! half at `/.well-known/jwks.json`. Every other service verifies tokens against that JWKS,
//! so no service but user-service can mint a token and there is no shared secret to leak.
//!
//! How a verifier keeps the key set ([`JwksPolicy`] holds the numbers), so that neither an
//! outage of user-service nor tokens naming made-up key ids can slow it down:
//! - it is fetched at start-up and confirmed again in the background every few minutes;
//!   requests are served from the keys already known meanwhile (stale-while-revalidate),
//!   and keys no fetch has confirmed for an hour are dropped;
//! - a token naming a key id the set does not know (a rotation) makes it fetch at once, but
//!   at most one fetch is attempted per interval, successful or not, and only one runs at a
//!   time: such a request waits at most for the fetch in flight (bounded by its timeout),
//!   and while fetching is throttled it gets 503 with `Retry-After` at once, never a wait;
//! - a key id that a fetch has just shown to be absent is answered 401 without fetching
//!   for a while (a bounded negative cache);
//! - the rate limiter verifies against the keys already known only ([`authenticate_cached`]);
//! - a set that publishes the development key id has that key refused unless
//!   `JWT_ALLOW_DEV_KEY=true`: the development key is public.
//!
//! `shop_jwks_fetches_total{outcome}` counts fetches (`ok`, `error`) and the requests that
//! would have fetched but were throttled (`throttled`).

use std::{
    collections::HashMap,
    future::{Future, Ready, ready},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use prometheus::{IntCounterVec, Opts, Registry};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shop_model::{Role, UserId};
use tokio::sync::watch;
use tracing::Instrument;
use url::Url;

use crate::{
    config::{AuthSettings, JwksPolicy},
    error::ApiError,
    telemetry,
};

/// Tokens are signed with Ed25519. Pinning the algorithm stops "alg confusion" attacks.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// The development signing key (`config/dev/`). It is public — it is in the repository and
/// in every image — so user-service signs with it only when `JWT_ALLOW_DEV_KEY=true`, and
/// verifiers refuse a key set that publishes it unless they have the same flag.
pub const DEV_SIGNING_KEY: &str = include_str!("../../../config/dev/jwt-signing-key.pem");

/// The key id (RFC 7638 thumbprint) of [`DEV_SIGNING_KEY`]; a test derives it from the key.
pub fn dev_key_id() -> &'static str {
    "h9q8XgDOMc_5IX9HolABSN3HNbmzQZ8NWGJkB8dse-U"
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// Who is calling: the verified subject and role of the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Allows the owner of a resource, or an admin.
    pub fn can_access(&self, owner: UserId) -> bool {
        self.is_admin() || self.user_id == owner
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>` (no scheme, another scheme).
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("signing keys unavailable: {reason}")]
    KeysUnavailable {
        reason: String,
        retry_after: Duration,
    },
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => {
                Self::Unauthorized("Send `Authorization: Bearer <token>`.".to_owned())
            }
            // Not the token's fault: say what the header must look like.
            AuthError::Malformed => Self::Unauthorized(
                "The Authorization header must be `Bearer ` followed by the token.".to_owned(),
            ),
            // The precise reason (expired, wrong audience, ...) is logged, not returned: it
            // would help an attacker more than a legitimate client.
            AuthError::Invalid(reason) => {
                tracing::info!(%reason, "token rejected");
                Self::Unauthorized("The bearer token is invalid or expired.".to_owned())
            }
            AuthError::KeysUnavailable {
                reason,
                retry_after,
            } => {
                tracing::warn!(%reason, "cannot verify tokens");
                Self::Unavailable {
                    detail: "Tokens cannot be verified right now; try again shortly.".to_owned(),
                    retry_after,
                }
            }
        }
    }
}

/// Verifies bearer tokens. Shared by all workers of a service (`web::Data`).
pub struct Authenticator {
    keys: KeySource,
    validation: Validation,
}

enum KeySource {
    /// Keys known up front (user-service verifies with its own keys).
    Fixed(HashMap<String, DecodingKey>),
    Remote(Arc<RemoteJwks>),
}

/// The longest key id looked up. Ours are 43-character thumbprints; the bound keeps what
/// a made-up key id can cost (in the negative cache, in logs) small.
const MAX_KEY_ID_LEN: usize = 128;

impl Authenticator {
    /// Verifies against the JWKS that user-service publishes. Starts fetching it at once,
    /// in the background, on the current tokio runtime, which must outlive the
    /// authenticator (the service's main runtime does).
    pub fn remote(settings: &AuthSettings) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            anyhow::anyhow!("Authenticator::remote must be called inside a tokio runtime")
        })?;
        let http = reqwest::Client::builder()
            .timeout(settings.jwks.fetch_timeout)
            .build()?;
        let fetches = IntCounterVec::new(
            Opts::new(
                "shop_jwks_fetches_total",
                "Fetches of user-service's key set (ok, error), and requests that needed one \
                 while fetching was throttled (throttled)",
            ),
            &["outcome"],
        )?;
        for outcome in [FETCH_OK, FETCH_ERROR, FETCH_THROTTLED] {
            fetches.with_label_values(&[outcome]);
        }
        let (fetched, _) = watch::channel(0);
        let remote = Arc::new(RemoteJwks {
            url: settings.jwks_url.clone(),
            http,
            policy: settings.jwks.clone(),
            allow_dev_key: settings.allow_dev_key,
            runtime: runtime.clone(),
            state: Mutex::new(JwksState::default()),
            fetched,
            fetches,
        });
        runtime.spawn(keep_fresh(Arc::downgrade(&remote)));
        Ok(Self {
            keys: KeySource::Remote(remote),
            validation: validation(&settings.issuer, &settings.audience),
        })
    }

    /// Verifies against a key set held in memory.
    pub fn with_key_set(jwks: &JwkSet, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        Ok(Self {
            keys: KeySource::Fixed(decoding_keys(jwks)?),
            validation: validation(issuer, audience),
        })
    }

    /// Registers `shop_jwks_fetches_total` (a verifier of a remote key set only).
    pub fn register_metrics(&self, registry: &Registry) -> anyhow::Result<()> {
        if let KeySource::Remote(remote) = &self.keys {
            registry.register(Box::new(remote.fetches.clone()))?;
        }
        Ok(())
    }

    /// Verifies a token; may wait for the key-set fetch in flight when the token names a
    /// key id that is not known yet (see the module comment).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let kid = key_id(token)?;
        let key = match &self.keys {
            KeySource::Fixed(keys) => keys.get(&kid).cloned().ok_or_else(|| unknown_kid(&kid))?,
            KeySource::Remote(remote) => remote.key(&kid).await?,
        };
        self.identity(token, &key)
    }

    /// Verifies against the keys already known, never fetching and never waiting: `None`
    /// when that cannot verify the token.
    pub fn verify_cached(&self, token: &str) -> Option<Identity> {
        let kid = key_id(token).ok()?;
        let key = match &self.keys {
            KeySource::Fixed(keys) => keys.get(&kid).cloned(),
            KeySource::Remote(remote) => remote.cached(&kid),
        }?;
        self.identity(token, &key).ok()
    }

    fn identity(&self, token: &str, key: &DecodingKey) -> Result<Identity, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Identity {
            user_id: claims.sub,
            role: claims.role,
        })
    }
}

fn key_id(token: &str) -> Result<String, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| AuthError::Invalid(format!("malformed header: {e}")))?;
    let kid = header
        .kid
        .ok_or_else(|| AuthError::Invalid("no `kid` in header".to_owned()))?;
    if kid.len() > MAX_KEY_ID_LEN {
        return Err(AuthError::Invalid("`kid` too long".to_owned()));
    }
    Ok(kid)
}

fn unknown_kid(kid: &str) -> AuthError {
    AuthError::Invalid(format!("unknown key id {kid}"))
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(ALGORITHM);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    validation
}

fn decoding_keys(jwks: &JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    jwks.keys
        .iter()
        .filter_map(|jwk| jwk.common.key_id.clone().map(|kid| (kid, jwk)))
        .map(|(kid, jwk)| Ok((kid, DecodingKey::from_jwk(jwk)?)))
        .collect()
}

const FETCH_OK: &str = "ok";
const FETCH_ERROR: &str = "error";
const FETCH_THROTTLED: &str = "throttled";

/// user-service's key set as this verifier knows it.
struct RemoteJwks {
    url: Url,
    http: reqwest::Client,
    policy: JwksPolicy,
    allow_dev_key: bool,
    /// Where fetches run: the runtime that built the service. A fetch that other requests
    /// wait for must not belong to (and be cancelled with) the request that started it.
    runtime: tokio::runtime::Handle,
    /// Never held across an `.await`.
    state: Mutex<JwksState>,
    /// Bumped whenever a fetch ends; requests waiting for the fetch in flight watch it.
    fetched: watch::Sender<u64>,
    fetches: IntCounterVec,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, DecodingKey>,
    /// When a fetch last succeeded: when `keys` were last confirmed.
    confirmed_at: Option<Instant>,
    /// When the last fetch that counts against [`JwksPolicy::min_fetch_interval`] started.
    /// Every fetch counts, successful or not, except the one at start-up, which no
    /// request caused (a service often starts before user-service is up).
    attempted_at: Option<Instant>,
    /// When the last fetch ended, and whether it failed.
    finished_at: Option<Instant>,
    last_failed: bool,
    fetching: bool,
    unknown: UnknownKeyIds,
}

enum Lookup {
    Known(DecodingKey),
    /// A recent fetch showed that the set does not have it.
    Absent,
    /// Not known; only a fetch can tell.
    Missing,
}

impl JwksState {
    fn lookup(&mut self, kid: &str, policy: &JwksPolicy, url: &Url, now: Instant) -> Lookup {
        if !self.keys.is_empty()
            && self
                .confirmed_at
                .is_some_and(|at| now.duration_since(at) >= policy.max_key_staleness)
        {
            tracing::error!(
                %url,
                max_staleness_secs = policy.max_key_staleness.as_secs(),
                "no fetch has confirmed the signing keys for too long; they are no longer trusted"
            );
            self.keys.clear();
        }
        if let Some(key) = self.keys.get(kid) {
            Lookup::Known(key.clone())
        } else if self.unknown.contains(kid, now, policy.unknown_kid_ttl) {
            Lookup::Absent
        } else {
            Lookup::Missing
        }
    }

    /// How long until a fetch may be attempted again; `None` when it may now.
    fn throttled_for(&self, policy: &JwksPolicy, now: Instant) -> Option<Duration> {
        let next = self.attempted_at? + policy.min_fetch_interval;
        (next > now).then(|| next - now)
    }

    /// When the background refresh should next fetch.
    fn refresh_due(&self, policy: &JwksPolicy, now: Instant) -> Instant {
        let due = match (self.last_failed, self.confirmed_at, self.finished_at) {
            (true, _, Some(finished)) => finished + policy.retry_interval,
            (false, Some(confirmed), _) => confirmed + policy.refresh_interval,
            _ => now,
        };
        match self.attempted_at {
            Some(attempted) => due.max(attempted + policy.min_fetch_interval),
            None => due,
        }
    }
}

impl RemoteJwks {
    fn lock(&self) -> MutexGuard<'_, JwksState> {
        // Every update leaves the state whole: a panic elsewhere cannot half-write it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        match self
            .lock()
            .lookup(kid, &self.policy, &self.url, Instant::now())
        {
            Lookup::Known(key) => Some(key),
            Lookup::Absent | Lookup::Missing => None,
        }
    }

    async fn key(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, AuthError> {
        let (mut fetched, asked_at, fetch) = {
            let mut state = self.lock();
            let now = Instant::now();
            match state.lookup(kid, &self.policy, &self.url, now) {
                Lookup::Known(key) => return Ok(key),
                Lookup::Absent => return Err(unknown_kid(kid)),
                Lookup::Missing => {}
            }
            let fetch = if state.fetching {
                None
            } else if let Some(wait) = state.throttled_for(&self.policy, now) {
                self.fetches.with_label_values(&[FETCH_THROTTLED]).inc();
                return Err(self.unavailable(&state, kid, wait));
            } else {
                Some(self.begin_fetch(&mut state, now, true))
            };
            (self.fetched.subscribe(), now, fetch)
        };
        if let Some(fetch) = fetch {
            self.runtime.spawn(fetch.run());
        }
        // The fetch gives up after `fetch_timeout` by itself; the margin covers the rest.
        let bound = self.policy.fetch_timeout + Duration::from_millis(500);
        let _ = tokio::time::timeout(bound, fetched.changed()).await;

        let mut state = self.lock();
        let now = Instant::now();
        match state.lookup(kid, &self.policy, &self.url, now) {
            Lookup::Known(key) => Ok(key),
            Lookup::Absent => Err(unknown_kid(kid)),
            Lookup::Missing => {
                let answered = !state.last_failed
                    && !state.fetching
                    && state.confirmed_at.is_some_and(|at| at >= asked_at);
                if answered {
                    let policy = &self.policy;
                    state.unknown.insert(kid, now, policy);
                    Err(unknown_kid(kid))
                } else {
                    let wait = state
                        .throttled_for(&self.policy, now)
                        .unwrap_or(Duration::ZERO);
                    Err(self.unavailable(&state, kid, wait))
                }
            }
        }
    }

    /// 503: the key id may be one we cannot see yet (a rotation), so the client should
    /// retry once a fetch may run again.
    fn unavailable(&self, state: &JwksState, kid: &str, wait: Duration) -> AuthError {
        let reason = if state.keys.is_empty() {
            format!(
                "no trusted keys: the key set at {} could not be fetched",
                self.url
            )
        } else if state.last_failed {
            format!(
                "key id {kid} is not known and the key set at {} cannot be fetched",
                self.url
            )
        } else {
            format!("key id {kid} is not known and fetching the key set again is throttled")
        };
        AuthError::KeysUnavailable {
            reason,
            retry_after: wait.max(Duration::from_secs(1)),
        }
    }

    /// Marks a fetch as in flight; the caller spawns the returned fetch once the state is
    /// unlocked.
    fn begin_fetch(
        self: &Arc<Self>,
        state: &mut JwksState,
        now: Instant,
        throttles: bool,
    ) -> Fetch {
        state.fetching = true;
        if throttles {
            state.attempted_at = Some(now);
        }
        Fetch {
            jwks: Arc::clone(self),
            outcome: None,
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let mut request = self.http.get(self.url.clone()).build()?;
        let span = telemetry::client_span(&mut request, None, 0);
        let response = self.http.execute(request).instrument(span.clone()).await;
        telemetry::record_response(&span, &response);
        let jwks: JwkSet = response?
            .error_for_status()?
            .json()
            .instrument(span)
            .await?;
        let mut keys = decoding_keys(&jwks)?;
        if !self.allow_dev_key && keys.remove(dev_key_id()).is_some() {
            tracing::error!(
                url = %self.url,
                kid = dev_key_id(),
                "the key set publishes the development signing key, which is public, so tokens \
                 it signed are refused: set JWT_ALLOW_DEV_KEY=true in development, or configure \
                 a real JWT_SIGNING_KEY for user-service"
            );
        }
        Ok(keys)
    }

    fn store(&self, outcome: anyhow::Result<HashMap<String, DecodingKey>>) {
        let now = Instant::now();
        {
            let mut state = self.lock();
            state.fetching = false;
            state.finished_at = Some(now);
            match outcome {
                Ok(keys) => {
                    let changed = keys.len() != state.keys.len()
                        || keys.keys().any(|kid| !state.keys.contains_key(kid));
                    if changed {
                        tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
                    }
                    state.keys = keys;
                    state.confirmed_at = Some(now);
                    state.last_failed = false;
                    self.fetches.with_label_values(&[FETCH_OK]).inc();
                }
                // Keep serving with the keys we have: an outage of user-service must not
                // log everybody out.
                Err(error) => {
                    tracing::warn!(url = %self.url, error = format!("{error:#}"), "JWKS fetch failed");
                    state.last_failed = true;
                    self.fetches.with_label_values(&[FETCH_ERROR]).inc();
                }
            }
        }
        self.fetched.send_modify(|generation| *generation += 1);
    }
}

/// A fetch in flight. However it ends (also when its task is dropped with its runtime),
/// the state learns that it ended, so nobody waits for it and the next one can start.
struct Fetch {
    jwks: Arc<RemoteJwks>,
    outcome: Option<anyhow::Result<HashMap<String, DecodingKey>>>,
}

impl Fetch {
    async fn run(mut self) {
        self.outcome = Some(self.jwks.fetch().await);
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err(anyhow::anyhow!("the fetch was cancelled")));
        self.jwks.store(outcome);
    }
}

/// The background refresh: fetches at start-up, then confirms the keys every
/// `refresh_interval` (every `retry_interval` after a failure). Stops when the
/// authenticator is dropped.
async fn keep_fresh(jwks: Weak<RemoteJwks>) {
    let mut first = true;
    loop {
        let (fetch, mut fetched, wait) = {
            let Some(jwks) = jwks.upgrade() else { return };
            let mut state = jwks.lock();
            let now = Instant::now();
            let due = state.refresh_due(&jwks.policy, now);
            if state.fetching {
                (None, Some(jwks.fetched.subscribe()), Duration::ZERO)
            } else if due > now {
                (None, None, due - now)
            } else {
                let fetch = jwks.begin_fetch(&mut state, now, !first);
                (Some(fetch), None, Duration::ZERO)
            }
        };
        first = false;
        if let Some(fetch) = fetch {
            fetch.run().await;
        } else if let Some(fetched) = fetched.as_mut() {
            let _ = fetched.changed().await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Key ids that a successful fetch did not contain, for a while, and only so many: the
/// oldest is forgotten when it is full.
#[derive(Default)]
struct UnknownKeyIds {
    seen: HashMap<String, Instant>,
}

impl UnknownKeyIds {
    fn contains(&mut self, kid: &str, now: Instant, ttl: Duration) -> bool {
        match self.seen.get(kid) {
            Some(at) if now.duration_since(*at) < ttl => true,
            Some(_) => {
                self.seen.remove(kid);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, kid: &str, now: Instant, policy: &JwksPolicy) {
        if policy.unknown_kid_capacity == 0 {
            return;
        }
        if self.seen.len() >= policy.unknown_kid_capacity && !self.seen.contains_key(kid) {
            self.seen
                .retain(|_, at| now.duration_since(*at) < policy.unknown_kid_ttl);
            while self.seen.len() >= policy.unknown_kid_capacity {
                let oldest = self
                    .seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(kid, _)| kid.clone());
                match oldest {
                    Some(oldest) => self.seen.remove(&oldest),
                    None => break,
                };
            }
        }
        self.seen.insert(kid.to_owned(), now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

fn bearer_token(req: &HttpRequest) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// Verifies the request's bearer token once and remembers the result in the request, so
/// the rate limiter and the handler's extractor share one verification.
pub async fn authenticate(req: &HttpRequest) -> Result<Identity, AuthError> {
    if let Some(identity) = req.extensions().get::<Identity>() {
        return Ok(*identity);
    }
    let token = bearer_token(req)?;
    let authenticator =
        req.app_data::<web::Data<Authenticator>>()
            .ok_or_else(|| AuthError::KeysUnavailable {
                reason: "no authenticator configured".to_owned(),
                retry_after: Duration::from_secs(5),
            })?;
    let identity = authenticator.verify(token).await?;
    req.extensions_mut().insert(identity);
    Ok(identity)
}

/// Like [`authenticate`], but against the keys already known only: never a fetch, never a
/// wait. For the rate limiter, which sees every request, public routes included; `None`
/// when the token cannot be verified that way (the handler's extractor then tries fully).
pub fn authenticate_cached(req: &HttpRequest) -> Option<Identity> {
    if let Some(identity) = req.extensions().get::<Identity>() {
        return Some(*identity);
    }
    let token = bearer_token(req).ok()?;
    let identity = req
        .app_data::<web::Data<Authenticator>>()?
        .verify_cached(token)?;
    req.extensions_mut().insert(identity);
    Some(identity)
}

/// The caller's bearer token as it arrived, to call another service on the caller's behalf
/// ([`crate::client::ServiceClient`]): the downstream then authorises and rate-limits the
/// call as that user, not as one anonymous client, and the call can do no more than the
/// caller could. Extracting it does not verify it; take an [`Identity`] for that.
#[derive(Debug, Clone)]
pub struct BearerToken(SecretString);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl FromRequest for BearerToken {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer_token(req).map(Self::new).map_err(ApiError::from))
    }
}

impl FromRequest for Identity {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map_err(ApiError::from) })
    }
}

/// An authenticated caller with the `admin` role; customers get 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Identity);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let identity = authenticate(&req).await?;
            if identity.is_admin() {
                Ok(Self(identity))
            } else {
                Err(ApiError::Forbidden(
                    "This operation is for admins.".to_owned(),
                ))
            }
        })
    }
}

/// Signs access tokens (user-service) and describes the keys that verify them.
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    ttl: Duration,
    jwks: JwkSet,
}

/// A signed token and how long it lives.
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

impl TokenIssuer {
    /// `private_pem` is a PKCS#8 Ed25519 private key. `previous_public_pems` are public keys
    /// that were used to sign recently and must still verify during a rotation.
    pub fn from_pem(
        private_pem: &SecretString,
        previous_public_pems: &[String],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ed_pem(private_pem.expose_secret().as_bytes())
            .map_err(|e| anyhow::anyhow!("the signing key is not an Ed25519 PKCS#8 PEM: {e}"))?;
        let current = publishable(Jwk::from_encoding_key(&key, ALGORITHM)?)?;
        let kid = current
            .common
            .key_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("key id missing"))?;
        let mut keys = vec![current];
        for pem in previous_public_pems {
            let decoding = DecodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("a previous public key is not an Ed25519 PEM: {e}"))?;
            keys.push(publishable(Jwk::from_decoding_key(
                &decoding,
                Some(ALGORITHM),
            )?)?);
        }
        Ok(Self {
            key,
            kid,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            jwks: JwkSet { keys },
        })
    }

    pub fn issue(&self, user_id: UserId, role: Role) -> anyhow::Result<IssuedToken> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        self.sign(&claims).map(|token| IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// Signs arbitrary claims with the current key (tests use it for expired or
    /// wrong-audience tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

/// Marks a JWK as a signature key and names it by its RFC 7638 thumbprint, so the key id
/// is derived from the key itself and every replica agrees on it.
fn publishable(mut jwk: Jwk) -> anyhow::Result<Jwk> {
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_key_id_is_the_one_its_issuer_publishes() {
        let issuer = issuer(DEV_SIGNING_KEY, &[]);
        assert_eq!(issuer.key_id(), dev_key_id());
    }

    const DEV_KEY: &str = include_str!("../../../config/dev/jwt-signing-key.pem");
    const PREVIOUS_KEY: &str = include_str!("../../../config/dev/jwt-previous-key.pem");
    const PREVIOUS_PUBLIC: &str = include_str!("../../../config/dev/jwt-previous-key.pub.pem");

    fn issuer(pem: &str, previous: &[String]) -> TokenIssuer {
        TokenIssuer::from_pem(
            &SecretString::from(pem.to_owned()),
            previous,
            "iss",
            "aud",
            Duration::from_secs(60),
        )
        .expect("valid key")
    }

    #[tokio::test]
    async fn an_issued_token_verifies_against_the_published_keys() {
        let issuer = issuer(DEV_KEY, &[]);
        let auth = Authenticator::with_key_set(issuer.jwks(), "iss", "aud").expect("keys");
        let user = UserId::new();
        let token = issuer.issue(user, Role::Admin).expect("signed").token;
        let identity = auth.verify(&token).await.expect("valid token");
        assert_eq!(
            identity,
            Identity {
                user_id: user,
                role: Role::Admin
            }
        );
    }

    #[tokio::test]
    async fn tokens_of_the_previous_key_verify_during_rotation() {
        let old = issuer(PREVIOUS_KEY, &[]);
        let new = issuer(DEV_KEY, &[PREVIOUS_PUBLIC.to_owned()]);
        assert_eq!(new.jwks().keys.len(), 2);
        assert_ne!(old.key_id(), new.key_id());
        let auth = Authenticator::with_key_set(new.jwks(), "iss", "aud").expect("keys");
        let token = old
            .issue(UserId::new(), Role::Customer)
            .expect("signed")
            .token;
        assert!(auth.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn wrong_audience_issuer_and_expiry_are_rejected() {
        let issuer = issuer(DEV_KEY, &[]);
        let auth = Authenticator::with_key_set(issuer.jwks(), "iss", "aud").expect("keys");
        let now = jsonwebtoken::get_current_timestamp();
        let base = Claims {
            sub: UserId::new(),
            role: Role::Customer,
            iss: "iss".to_owned(),
            aud: "aud".to_owned(),
            iat: now,
            exp: now + 60,
        };
        let cases = [
            Claims {
                aud: "other".to_owned(),
                ..base.clone()
            },
            Claims {
                iss: "other".to_owned(),
                ..base.clone()
            },
            Claims {
                exp: now - 3600,
                ..base.clone()
            },
        ];
        for claims in cases {
            let token = issuer.sign(&claims).expect("signed");
            assert!(matches!(
                auth.verify(&token).await,
                Err(AuthError::Invalid(_))
            ));
        }
        assert!(matches!(
            auth.verify("garbage").await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_token_signed_by_an_unknown_key_is_rejected() {
        let trusted = issuer(DEV_KEY, &[]);
        let stranger = issuer(PREVIOUS_KEY, &[]);
        let auth = Authenticator::with_key_set(trusted.jwks(), "iss", "aud").expect("keys");
        let token = stranger
            .issue(UserId::new(), Role::Admin)
            .expect("signed")
            .token;
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn remote_keys_are_fetched_and_an_outage_is_reported_as_unavailable() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
        let issuer = issuer(DEV_KEY, &[]);
        let server = MockServer::start().await;
        let settings = |base: &str| AuthSettings {
            issuer: "iss".to_owned(),
            audience: "aud".to_owned(),
            ..AuthSettings::for_tests(&Url::parse(base).expect("url"))
        };
        let token = issuer
            .issue(UserId::new(), Role::Customer)
            .expect("signed")
            .token;

        let down = Authenticator::remote(&settings("http://127.0.0.1:9")).expect("client");
        assert!(matches!(
            down.verify(&token).await,
            Err(AuthError::KeysUnavailable { .. })
        ));

        Mock::given(path("/.well-known/jwks.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(issuer.jwks()))
            .expect(1)
            .mount(&server)
            .await;
        let auth = Authenticator::remote(&settings(&server.uri())).expect("client");
        assert!(auth.verify(&token).await.is_ok());
        // Cached: the second verification does not fetch again (`expect(1)` above).
        assert!(auth.verify(&token).await.is_ok());
    }

    #[test]
    fn the_unknown_key_ids_remembered_stay_within_the_capacity() {
        let policy = JwksPolicy {
            unknown_kid_capacity: 16,
            ..JwksPolicy::default()
        };
        let mut unknown = UnknownKeyIds::default();
        let start = Instant::now();
        for i in 0..100u64 {
            unknown.insert(
                &format!("kid-{i}"),
                start + Duration::from_millis(i),
                &policy,
            );
            assert!(unknown.len() <= 16);
        }
        let last = start + Duration::from_millis(99);
        assert!(unknown.contains("kid-99", last, policy.unknown_kid_ttl));
        assert!(
            !unknown.contains("kid-0", last, policy.unknown_kid_ttl),
            "the oldest went first"
        );
        let later = last + policy.unknown_kid_ttl;
        assert!(
            !unknown.contains("kid-99", later, policy.unknown_kid_ttl),
            "entries expire"
        );
    }
}
