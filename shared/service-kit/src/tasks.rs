//! Background work of a service (the outbox relay, event consumers), started with the
//! HTTP server and stopped after it on shutdown.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Tasks that run until the service stops. Each gets a cancellation token and must return
/// soon after it is cancelled, finishing the unit of work in hand (the message being
/// handled, the batch being published) rather than abandoning it.
#[derive(Default)]
pub struct BackgroundTasks {
    shutdown: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

/// How long stopping waits for the tasks before giving up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl BackgroundTasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.shutdown.child_token()));
        self.running.push((name, handle));
    }

    /// Cancels every task and waits for them to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for (name, handle) in self.running {
            match tokio::time::timeout(STOP_TIMEOUT, handle).await {
                Ok(Ok(())) => tracing::info!(task = name, "stopped"),
                Ok(Err(error)) => tracing::error!(task = name, error = %error, "task panicked"),
                Err(_) => tracing::warn!(task = name, "did not stop in time"),
            }
        }
    }
}
