//! The HTTP bootstrap shared by every service: one function builds the server with the
//! same middleware, error handlers, health, metrics and API documentation everywhere, and
//! one function runs it until SIGTERM/SIGINT with a graceful shutdown.
//!
//! A service supplies only its routes (`fn(&mut ServiceConfig)`, handlers annotated with
//! `#[utoipa::path]`) and its shared state; the OpenAPI document is generated from those
//! same routes, so it cannot drift from the code.

use std::{collections::HashMap, net::TcpListener};

use actix_web::{App, HttpServer, dev::Server, web};
use actix_web_prom::PrometheusMetricsBuilder;
use anyhow::Context;
use tracing_actix_web::TracingLogger;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, ResponseBuilder,
    header::HeaderBuilder,
    schema::{ObjectBuilder, Type},
    security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_actix_web::{AppExt, service_config::ServiceConfig};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth::Authenticator,
    config::HttpSettings,
    error,
    health::{self, Readiness},
    rate_limit::RateLimit,
    tasks::BackgroundTasks,
    telemetry::{AccessLog, RequestSpan},
};

/// Mounts a service's resource routes.
pub type Routes = fn(&mut ServiceConfig);

/// What the API document says about the service.
#[derive(Debug, Clone, Copy)]
pub struct ApiInfo {
    /// Short name, e.g. `order-service`; also a label on every metric.
    pub service: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub version: &'static str,
}

/// The name of the bearer-token security scheme handlers refer to
/// (`security(("bearer" = []))`).
pub const BEARER_SCHEME: &str = "bearer";

/// The OpenAPI document of a service: its routes plus the health endpoints.
pub fn openapi(info: &ApiInfo, routes: Routes) -> OpenApi {
    let (_, document) = App::new()
        .into_utoipa_app()
        .openapi(base_document(info))
        .configure(kit_routes)
        .configure(routes)
        .split_for_parts();
    let mut document = document;
    document_rate_limit(&mut document);
    document
}

/// The rate limiter ([`crate::rate_limit`]) may answer 429 on every route it covers, so
/// every such operation documents it; written once here rather than on every handler.
fn document_rate_limit(document: &mut OpenApi) {
    let retry_after = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new().schema_type(Type::Integer).build(),
        ))
        .description(Some("Seconds to wait before the next request"))
        .build();
    let too_many = ResponseBuilder::new()
        .description("Too many requests from this caller (see `Retry-After`)")
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .header("Retry-After", retry_after)
        .build();
    for (path, item) in document.paths.paths.iter_mut() {
        if crate::rate_limit::is_exempt(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| too_many.clone().into());
        }
    }
}

fn base_document(info: &ApiInfo) -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(info.title)
                .description(Some(info.description))
                .version(info.version),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER_SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    document
}

fn kit_routes(config: &mut ServiceConfig) {
    config.service(health::live).service(health::ready);
}

/// Binds the listening socket. Separate from [`serve`] so that `Application::build` can
/// learn the port before anything else starts (tests bind port 0).
pub fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))
}

/// Everything the shared middleware needs.
pub struct HttpDeps {
    pub authenticator: web::Data<Authenticator>,
    pub readiness: Readiness,
    /// Where the service's own metrics (e.g. the outbox gauges) are registered; served on
    /// `/metrics` with the HTTP metrics.
    pub metrics: prometheus::Registry,
}

/// Builds the HTTP server. `app_data` registers the service's shared state (pool,
/// clients, ...) in each worker.
pub fn serve<D>(
    listener: TcpListener,
    settings: &HttpSettings,
    info: &ApiInfo,
    routes: Routes,
    deps: HttpDeps,
    app_data: D,
) -> anyhow::Result<Server>
where
    D: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let document = openapi(info, routes);
    deps.authenticator.register_metrics(&deps.metrics)?;
    // The middleware only records; `/metrics` is a route of its own below. (Given an
    // endpoint, the middleware still runs the app's handler for it — the 404 of an unknown
    // route, logged on every scrape — and replaces the body afterwards.)
    let registry = web::Data::new(deps.metrics.clone());
    let metrics = PrometheusMetricsBuilder::new("shop")
        .registry(deps.metrics)
        .const_labels(HashMap::from([("service".to_owned(), info.service.to_owned())]))
        .exclude("/metrics")
        .exclude_regex("^/swagger-ui")
        .exclude_regex("^/api-docs")
        // Unknown paths all count as one series instead of one per path a scanner tries.
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(|e| anyhow::anyhow!("metrics set-up failed: {e}"))?;
    let rate_limit = RateLimit::new(&settings.rate_limit);
    let body_limit = settings.body_limit_bytes;
    let readiness = web::Data::new(deps.readiness);
    let authenticator = deps.authenticator;

    let mut server = HttpServer::new(move || {
        let json = web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(error::json_error_handler);
        App::new()
            // Middleware runs bottom-up on the way in: the request span and request id
            // exist before anything logs, metrics see every response, and rate limiting
            // happens before any handler work.
            .wrap(rate_limit.clone())
            .wrap(AccessLog)
            .wrap(metrics.clone())
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(json)
            .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
            .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
            .app_data(authenticator.clone())
            .app_data(readiness.clone())
            .app_data(registry.clone())
            .configure(app_data.clone())
            .into_utoipa_app()
            .configure(kit_routes)
            .configure(routes)
            .into_app()
            .service(
                SwaggerUi::new("/swagger-ui/{_:.*}")
                    .url("/api-docs/openapi.json", document.clone()),
            )
            // Typed without the slash, the page is still found.
            .service(web::redirect("/swagger-ui", "/swagger-ui/").permanent())
            .route("/metrics", web::get().to(serve_metrics))
            .default_service(web::to(error::route_not_found))
    })
    .listen(listener)?
    // Signals are handled by `run_until_stopped`, which also stops background work.
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// `GET /metrics`: every metric of the registry (HTTP, outbox, consumers, the service's
/// own, process) in the Prometheus text format.
async fn serve_metrics(registry: web::Data<prometheus::Registry>) -> actix_web::HttpResponse {
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode_to_string(&registry.gather()) {
        Ok(text) => actix_web::HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(text),
        Err(error) => {
            tracing::error!(%error, "metrics could not be encoded");
            actix_web::HttpResponse::InternalServerError().finish()
        }
    }
}

/// Runs the server and the background tasks until SIGTERM or SIGINT, then shuts down
/// gracefully: the listener closes at once, in-flight requests get the configured time to
/// finish, and then the background tasks finish the work in hand and stop.
pub async fn run_until_stopped(server: Server, tasks: BackgroundTasks) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut serving = tokio::spawn(server);
    let result = tokio::select! {
        // The server only finishes by itself if it failed.
        result = &mut serving => result.context("server task panicked").and_then(|r| r.map_err(Into::into)),
        signal = wait_for_signal() => {
            signal?;
            tracing::info!("shutdown signal received; finishing in-flight requests");
            handle.stop(true).await;
            serving.await.context("server task panicked").and_then(|r| r.map_err(Into::into))
        }
    };
    tasks.stop().await;
    tracing::info!("stopped");
    result
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
    }
    Ok(())
}
