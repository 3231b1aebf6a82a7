//! Liveness and readiness.
//!
//! `/health/live` answers 200 while the process can serve HTTP at all: an orchestrator
//! restarts the service when it stops answering. `/health/ready` answers 200 only when the
//! service's dependencies (its database, later its broker) answer too: an orchestrator
//! stops sending traffic while it is 503, without restarting anything.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One dependency that must answer for the service to be ready.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> CheckFuture<'_>;
}

/// The database answers a trivial query.
pub struct DatabaseCheck(pub PgPool);

impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.0)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

/// The event broker answers.
pub struct BrokerCheck(pub crate::events::EventBus);

impl ReadinessCheck for BrokerCheck {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(self.0.check())
    }
}

/// The checks of one service.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, check: impl ReadinessCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }
}

/// How long one check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `up` or `down`.
    pub status: &'static str,
    /// Each dependency and whether it answered.
    pub checks: BTreeMap<&'static str, &'static str>,
}

#[utoipa::path(tag = "health", responses((status = 200, description = "The process is alive")))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthReport {
        status: "up",
        checks: BTreeMap::new(),
    })
}

#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = HealthReport),
        (status = 503, description = "A dependency is down", body = HealthReport),
    )
)]
#[get("/health/ready")]
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let results = futures_util::future::join_all(readiness.checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".to_owned()),
        };
        if let Err(reason) = &outcome {
            tracing::warn!(check = check.name(), %reason, "readiness check failed");
        }
        (check.name(), outcome.is_ok())
    }))
    .await;
    let all_up = results.iter().all(|(_, up)| *up);
    let report = HealthReport {
        status: if all_up { "up" } else { "down" },
        checks: results
            .into_iter()
            .map(|(name, up)| (name, if up { "up" } else { "down" }))
            .collect(),
    };
    if all_up {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}
