//! Bearer-token authentication.
//!
//! user-service signs short-lived EdDSA JWTs with a private key and publishes the public
//! half at `/.well-known/jwks.json`. Every other service verifies tokens against that JWKS,
//! so no service but user-service can mint a token and there is no shared secret to leak.
//! The key set is fetched lazily, cached, and fetched again when a token names a key id
//! the cache does not know (which is what happens right after a key rotation).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shop_model::{Role, UserId};
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::{config::AuthSettings, error::ApiError};

/// Tokens are signed with Ed25519. Pinning the algorithm stops "alg confusion" attacks.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

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
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => {
                Self::Unauthorized("Send `Authorization: Bearer <token>`.".to_owned())
            }
            // The precise reason (expired, wrong audience, ...) is logged, not returned: it
            // would help an attacker more than a legitimate client.
            AuthError::Invalid(reason) => {
                tracing::info!(%reason, "token rejected");
                Self::Unauthorized("The bearer token is invalid or expired.".to_owned())
            }
            AuthError::KeysUnavailable(reason) => {
                tracing::warn!(%reason, "cannot verify tokens");
                Self::unavailable("Tokens cannot be verified right now; try again shortly.")
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
    Remote(RemoteJwks),
}

struct RemoteJwks {
    url: Url,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Serialises refreshes so a burst of requests with an unknown key id causes one fetch.
    refreshing: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// A token naming an unknown key id never triggers more than one fetch per interval, so
/// garbage tokens cannot turn the service into a JWKS flooder.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys are re-read at least this often, so a removed (revoked) key stops being trusted.
const MAX_KEY_AGE: Duration = Duration::from_secs(15 * 60);

impl Authenticator {
    /// Verifies against the JWKS that user-service publishes.
    pub fn remote(settings: &AuthSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            keys: KeySource::Remote(RemoteJwks {
                url: settings.jwks_url.clone(),
                http,
                cache: RwLock::new(KeyCache::default()),
                refreshing: Mutex::new(()),
            }),
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

    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed header: {e}")))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("no `kid` in header".to_owned()))?;
        let claims = match &self.keys {
            KeySource::Fixed(keys) => {
                let key = keys
                    .get(&kid)
                    .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid}")))?;
                self.decode(token, key)?
            }
            KeySource::Remote(remote) => {
                let key = remote.key(&kid).await?;
                self.decode(token, &key)?
            }
        };
        Ok(Identity {
            user_id: claims.sub,
            role: claims.role,
        })
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
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

impl RemoteJwks {
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < MAX_KEY_AGE);
            if let (Some(key), true) = (cache.keys.get(kid), fresh) {
                return Ok(key.clone());
            }
        }
        self.refresh().await;
        let cache = self.cache.read().await;
        match cache.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if cache.fetched_at.is_none() => Err(AuthError::KeysUnavailable(format!(
                "JWKS at {} could not be fetched",
                self.url
            ))),
            None => Err(AuthError::Invalid(format!("unknown key id {kid}"))),
        }
    }

    async fn refresh(&self) {
        let _guard = self.refreshing.lock().await;
        let recently = self
            .cache
            .read()
            .await
            .fetched_at
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL);
        if recently {
            return;
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
                *self.cache.write().await = KeyCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                };
            }
            // Keep serving with the keys we have; an outage of user-service must not log
            // everybody out.
            Err(error) => {
                tracing::warn!(url = %self.url, error = format!("{error:#}"), "JWKS fetch failed")
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let jwks: JwkSet = self
            .http
            .get(self.url.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        decoding_keys(&jwks)
    }
}

fn bearer_token(req: &HttpRequest) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("authorization header is not ASCII".to_owned()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".to_owned()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid("expected `Bearer <token>`".to_owned()));
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
    let authenticator = req
        .app_data::<web::Data<Authenticator>>()
        .ok_or_else(|| AuthError::KeysUnavailable("no authenticator configured".to_owned()))?;
    let identity = authenticator.verify(token).await?;
    req.extensions_mut().insert(identity);
    Ok(identity)
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
            jwks_url: crate::config::jwks_url(&Url::parse(base).expect("url")),
            issuer: "iss".to_owned(),
            audience: "aud".to_owned(),
        };
        let token = issuer
            .issue(UserId::new(), Role::Customer)
            .expect("signed")
            .token;

        let down = Authenticator::remote(&settings("http://127.0.0.1:9")).expect("client");
        assert!(matches!(
            down.verify(&token).await,
            Err(AuthError::KeysUnavailable(_))
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
}
