//! A RabbitMQ virtual host per test, so that tests running in parallel never share the
//! services' fixed queue names.

use std::process::Command;

pub struct Vhost {
    name: String,
    user: String,
    password: String,
    host_port: String,
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl is needed for the RabbitMQ end-to-end tests: {e}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Vhost {
    pub async fn create() -> Self {
        Self::create_named("e2e").await
    }

    /// A vhost whose name starts with `prefix`, for `rabbitmqctl list_vhosts` readers.
    pub async fn create_named(prefix: &str) -> Self {
        let base = std::env::var("TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let url = url_parts(&base);
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let vhost = Self {
            name: name.clone(),
            user: url.0,
            password: url.1,
            host_port: url.2,
        };
        let user = vhost.user.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["-q", "add_vhost", &name]);
            rabbitmqctl(&[
                "-q",
                "set_permissions",
                "-p",
                &name,
                &user,
                ".*",
                ".*",
                ".*",
            ]);
        })
        .await
        .unwrap_or_else(|e| panic!("vhost set-up: {e}"));
        vhost
    }

    /// `host:port` of the RabbitMQ server.
    pub fn host_port(&self) -> String {
        self.host_port.clone()
    }

    /// The AMQP URL of this vhost, on the server itself.
    pub fn url(&self) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            self.user, self.password, self.host_port, self.name
        )
    }

    /// The AMQP URL of this vhost, reached through a proxy on `port`.
    pub fn url_via(&self, port: u16) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:{port}/{}",
            self.user, self.password, self.name
        )
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .output();
    }
}

/// (user, password, host:port) of an `amqp://user:password@host:port/vhost` URL.
fn url_parts(url: &str) -> (String, String, String) {
    let rest = url.strip_prefix("amqp://").unwrap_or(url);
    let (credentials, rest) = rest.split_once('@').unwrap_or(("guest:guest", rest));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let host_port = rest.split('/').next().unwrap_or("127.0.0.1:5672");
    (user.to_owned(), password.to_owned(), host_port.to_owned())
}
