//! Liveness and readiness.
//!
//! `/health/live` answers 200 while the process can serve HTTP at all: an orchestrator
//! restarts the service when it stops answering. `/health/ready` answers 200 when the
//! service's database answers: an orchestrator stops sending traffic while it is 503,
//! without restarting anything.
//!
//! The broker does not decide readiness. While it is away the outbox keeps accepting work
//! (the events wait in the database and leave when it is back), so taking every replica
//! out of rotation would turn a broker outage into a full outage for no reason. Its state
//! is reported in the body (`checks.broker`) and on `/metrics` as
//! `shop_dependency_up{dependency="broker"}`, probed in the background every few seconds,
//! so an alert can fire on it.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use actix_web::{HttpResponse, get, web};
use prometheus::{IntGaugeVec, Opts, Registry};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::tasks::BackgroundTasks;

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One dependency whose state the service reports.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> CheckFuture<'_>;
    /// Whether the service is unready while this dependency is down (default: yes).
    fn decides_readiness(&self) -> bool {
        true
    }
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

/// The event broker answers. Reported, but it does not decide readiness (see the module
/// documentation).
pub struct BrokerCheck(pub crate::events::EventBus);

impl ReadinessCheck for BrokerCheck {
    fn name(&self) -> &'static str {
        "broker"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(self.0.check())
    }

    fn decides_readiness(&self) -> bool {
        false
    }
}

/// The checks of one service, and the gauge that shows their last result.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    up: IntGaugeVec,
}

/// How long one check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the background probe refreshes `shop_dependency_up`.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

impl Readiness {
    pub fn new() -> prometheus::Result<Self> {
        let up = IntGaugeVec::new(
            Opts::new(
                "shop_dependency_up",
                "1 while a dependency (database, broker) answers its health check, 0 while not",
            ),
            &["dependency"],
        )?;
        Ok(Self {
            checks: Vec::new(),
            up,
        })
    }

    pub fn with(self, check: impl ReadinessCheck + 'static) -> Self {
        let mut checks = self.checks;
        checks.push(Arc::new(check));
        Self { checks, ..self }
    }

    /// Registers `shop_dependency_up` and probes every dependency in the background, so
    /// the gauge is current even when nothing asks `/health/ready`.
    pub fn watch(&self, tasks: &mut BackgroundTasks, registry: &Registry) -> anyhow::Result<()> {
        registry.register(Box::new(self.up.clone()))?;
        let readiness = self.clone();
        tasks.spawn("dependency-probe", move |shutdown| async move {
            loop {
                readiness.evaluate().await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(PROBE_INTERVAL) => {}
                }
            }
        });
        Ok(())
    }

    /// Runs every check at once; each result also sets the gauge.
    async fn evaluate(&self) -> Vec<(&'static str, bool, bool)> {
        futures_util::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timed out".to_owned()),
            };
            if let Err(reason) = &outcome {
                tracing::warn!(check = check.name(), %reason, "dependency check failed");
            }
            self.up
                .with_label_values(&[check.name()])
                .set(i64::from(outcome.is_ok()));
            (check.name(), outcome.is_ok(), check.decides_readiness())
        }))
        .await
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `up` (ready) or `down` (not ready: a dependency that decides readiness is down).
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
        (status = 200, description = "The database answers (the broker's state is in the body)", body = HealthReport),
        (status = 503, description = "The database does not answer", body = HealthReport),
    )
)]
#[get("/health/ready")]
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let results = readiness.evaluate().await;
    let ready = results.iter().all(|(_, up, decides)| *up || !*decides);
    let report = HealthReport {
        status: if ready { "up" } else { "down" },
        checks: results
            .into_iter()
            .map(|(name, up, _)| (name, if up { "up" } else { "down" }))
            .collect(),
    };
    if ready {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}
