//! Per-client rate limiting: a token bucket (GCRA, from `governor`) per authenticated user,
//! or per client address for anonymous calls. Over the limit a caller gets 429 with
//! `Retry-After`, which protects the service (and its database) from one noisy client.
//!
//! Keying on the user rather than the address matters behind an ingress, where every
//! request arrives from the proxy's address. Anonymous requests are keyed on the peer
//! address, or on `X-Forwarded-For` when the deployment says the proxy is trusted.
//! The token is verified against the keys already known only (never a JWKS fetch); one
//! they cannot verify counts against the address. A service calling another on a user's
//! behalf forwards the user's token, so the call counts against that user.

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use actix_web::{
    Error, HttpRequest, ResponseError,
    body::EitherBody,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
};
use futures_util::future::LocalBoxFuture;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use crate::{auth, config::RateLimitSettings, error::ApiError};

/// The limiter shared by every worker of a service.
#[derive(Clone)]
pub struct RateLimit {
    inner: Option<Arc<Limiter>>,
}

struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    trust_forwarded_for: bool,
    requests: AtomicU64,
}

impl RateLimit {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let inner = NonZeroU32::new(settings.per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
            Arc::new(Limiter {
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                trust_forwarded_for: settings.trust_forwarded_for,
                requests: AtomicU64::new(0),
            })
        });
        Self { inner }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RateLimitMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitMiddleware {
            service: Rc::new(service),
            limiter: self.inner.clone(),
        }))
    }
}

pub struct RateLimitMiddleware<S> {
    service: Rc<S>,
    limiter: Option<Arc<Limiter>>,
}

impl<S, B> Service<ServiceRequest> for RateLimitMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let limiter = match &self.limiter {
            Some(limiter) if !is_exempt(request.path()) => Arc::clone(limiter),
            _ => {
                return Box::pin(async move {
                    service.call(request).await.map(|r| r.map_into_left_body())
                });
            }
        };
        Box::pin(async move {
            let key = client_key(&request, limiter.trust_forwarded_for);
            if limiter.requests.fetch_add(1, Ordering::Relaxed) % 4096 == 0 {
                // Forget clients whose bucket is full again, so the map does not grow
                // with every address ever seen.
                limiter.limiter.retain_recent();
                limiter.limiter.shrink_to_fit();
            }
            match limiter.limiter.check_key(&key) {
                Ok(()) => service.call(request).await.map(|r| r.map_into_left_body()),
                Err(not_until) => {
                    let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                    tracing::info!(%key, retry_after_ms = retry_after.as_millis() as u64, "rate limited");
                    let response = ApiError::TooManyRequests { retry_after }.error_response();
                    Ok(request.into_response(response).map_into_right_body())
                }
            }
        })
    }
}

/// The user of a token that the keys already known verify; otherwise the address. Never a
/// key-set fetch: this runs for every request, public routes included, and must cost
/// nothing while user-service is slow or when tokens name made-up key ids.
fn client_key(request: &ServiceRequest, trust_forwarded_for: bool) -> String {
    let http = request.request();
    if let Some(identity) = auth::authenticate_cached(http) {
        return format!("user:{}", identity.user_id);
    }
    match client_address(http, trust_forwarded_for) {
        Some(address) => format!("addr:{address}"),
        None => "addr:unknown".to_owned(),
    }
}

/// The address a request is counted against: the peer, or the first `X-Forwarded-For` hop
/// when the proxy is trusted, bucketed by [`address_bucket`].
pub fn client_address(request: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    // Only `X-Forwarded-For`, which the trusted proxy sets: the standard `Forwarded`
    // header would come from the client untouched, and any client could pick a fresh key.
    let forwarded = trust_forwarded_for
        .then(|| {
            request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|first| first.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    forwarded
        .or_else(|| request.peer_addr().map(|a| a.ip()))
        .map(address_bucket)
}

/// One client, as far as limits go: an IPv4 address, or an IPv6 address's /64 (a single
/// host usually owns a whole /64, so keying on the full address lets it pick a fresh key
/// for every request).
pub fn address_bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Probes and scrapes come from the platform and must never be throttled.
pub(crate) fn is_exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_slash_64_are_one_client_and_ipv4_stays_whole() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(other));
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(address_bucket(v4), v4);
        assert_eq!(address_bucket(mapped), v4);
        assert_ne!(address_bucket("10.1.2.4".parse().expect("ip")), v4);
    }
}
