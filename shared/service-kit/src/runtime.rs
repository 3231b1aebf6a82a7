//! The life of a service process, written once: what every service's
//! `Application::build` would otherwise repeat.
//!
//! ```text
//! ServiceRuntime::start   bind the listener (port 0 in tests), connect and migrate the
//!                         database, connect the event bus, start the outbox relay
//!   .consume(handler)     start the service's event consumer (if it consumes)
//!   .serve(..)            start the HTTP server: routes, auth, health (readiness by the
//!                         database, the broker reported), metrics, API docs
//! RunningService::run_until_stopped
//!                         until SIGTERM/SIGINT, then stop HTTP gracefully and then the
//!                         background tasks
//! ```

use std::net::TcpListener;

use actix_web::{dev::Server, web};
use sqlx::{PgPool, migrate::Migrator};

use crate::{
    auth::Authenticator,
    config::{DatabaseSettings, HttpSettings},
    db,
    events::{self, EventBus, EventBusSettings, consumer::EventHandler},
    health::{BrokerCheck, DatabaseCheck, Readiness},
    http::{self, ApiInfo, HttpDeps, Routes},
    tasks::BackgroundTasks,
};

/// A service being started.
pub struct ServiceRuntime {
    info: &'static ApiInfo,
    listener: TcpListener,
    pool: PgPool,
    bus: EventBus,
    events: EventBusSettings,
    metrics: prometheus::Registry,
    tasks: BackgroundTasks,
}

impl ServiceRuntime {
    /// Binds the listener first (so the port is known), then connects the database (with
    /// the kit's and the service's migrations) and the event bus, and starts the outbox
    /// relay: every service publishes.
    pub async fn start(
        info: &'static ApiInfo,
        http: &HttpSettings,
        database: &DatabaseSettings,
        migrator: &Migrator,
        events: &EventBusSettings,
    ) -> anyhow::Result<Self> {
        let listener = http::bind(&http.addr)?;
        let pool = db::connect_and_migrate(database, migrator).await?;
        let bus = EventBus::connect(events, info.service).await?;
        let metrics = prometheus::Registry::new();
        // CPU, memory, open files and threads of this process (`process_*`), and the pool.
        metrics.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        db::register_pool_metrics(&pool, database.max_connections, &metrics)?;
        let mut tasks = BackgroundTasks::new();
        events::spawn_relay(&mut tasks, pool.clone(), bus.clone(), events, &metrics)?;
        Ok(Self {
            info,
            listener,
            pool,
            bus,
            events: events.clone(),
            metrics,
            tasks,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The registry `/metrics` serves: a service registers its own metrics here.
    pub fn metrics(&self) -> &prometheus::Registry {
        &self.metrics
    }

    /// Starts the service's event consumer: the entry of `shop_model::events::CONSUMERS`
    /// named after the service, applied by `handler`.
    pub fn consume<H: EventHandler>(&mut self, handler: H) -> anyhow::Result<()> {
        events::spawn_consumer(
            &mut self.tasks,
            self.pool.clone(),
            self.bus.clone(),
            self.info.service,
            handler,
            &self.events,
            &self.metrics,
        )
    }

    /// Starts the HTTP server. The pool is registered as `web::Data<PgPool>`;
    /// `app_data` registers the service's other shared state.
    pub fn serve<D>(
        self,
        settings: &HttpSettings,
        routes: Routes,
        authenticator: Authenticator,
        app_data: D,
    ) -> anyhow::Result<RunningService>
    where
        D: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let port = self.listener.local_addr()?.port();
        let mut tasks = self.tasks;
        let readiness = Readiness::new()?
            .with(DatabaseCheck(self.pool.clone()))
            .with(BrokerCheck(self.bus));
        readiness.watch(&mut tasks, &self.metrics)?;
        let deps = HttpDeps {
            authenticator: web::Data::new(authenticator),
            readiness,
            metrics: self.metrics,
        };
        let pool = web::Data::new(self.pool);
        let server = http::serve(
            self.listener,
            settings,
            self.info,
            routes,
            deps,
            move |cfg| {
                cfg.app_data(pool.clone());
                app_data(cfg);
            },
        )?;
        tracing::info!(port, service = self.info.service, "listening");
        Ok(RunningService {
            port,
            server,
            tasks,
        })
    }
}

/// A started service.
pub struct RunningService {
    port: u16,
    server: Server,
    tasks: BackgroundTasks,
}

impl RunningService {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        http::run_until_stopped(self.server, self.tasks).await
    }
}
