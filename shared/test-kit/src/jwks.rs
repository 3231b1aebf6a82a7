//! Serves the development key set at `/.well-known/jwks.json`, as user-service does.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::tokens;

pub struct JwksServer {
    base_url: url::Url,
    handle: actix_web::dev::ServerHandle,
}

impl JwksServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let jwks = tokens::issuer().jwks().clone();
        let server = HttpServer::new(move || {
            let jwks = jwks.clone();
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    let jwks = jwks.clone();
                    async move { HttpResponse::Ok().json(jwks) }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap_or_else(|e| panic!("listen: {e}"))
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: url::Url::parse(&format!("http://127.0.0.1:{port}"))
                .unwrap_or_else(|e| panic!("{e}")),
            handle,
        }
    }

    /// The "user-service URL" to configure: the JWKS is at `/.well-known/jwks.json` below it.
    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}
