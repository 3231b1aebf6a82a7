//! A TCP proxy the test can close, to make a broker or PostgreSQL unreachable for a while
//! without touching the server (which other tests share).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct ChaosProxy {
    port: u16,
    open: Arc<AtomicBool>,
    /// Bumped on every cut, so forwarding tasks drop their connections.
    cuts: watch::Sender<u64>,
}

impl ChaosProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the proxy's address: {e}"))
            .port();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accept_open = Arc::clone(&open);
        let accept_cuts = cuts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cuts }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `false` drops every connection and refuses new ones; `true` lets them through again.
    pub async fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
        if !open {
            self.cuts.send_modify(|n| *n += 1);
        }
    }
}
