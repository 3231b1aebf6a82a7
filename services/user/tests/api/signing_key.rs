//! The real binary started with a bare environment: without a signing key it must not
//! come up signing with the public development key.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;
use test_kit::{ApiClient, TestBroker, TestDatabase};

/// The user-service binary with nothing in its environment but `env`.
fn user_service(env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_user-service"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting user-service")
}

/// What user-service, started with only `env`, says on stderr as it refuses to start: it
/// must exit, unsuccessfully, within ten seconds (it is killed otherwise).
fn refusal(env: &[(&str, &str)]) -> String {
    let mut child = user_service(env);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for user-service") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("user-service still runs after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    stderr
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn started_with_only_database_url_it_exits_at_once_naming_jwt_signing_key() {
    let database = TestDatabase::create().await;
    let url = database.url().expose_secret().to_owned();

    let stderr = refusal(&[("DATABASE_URL", &url)]);

    for name in [
        "JWT_SIGNING_KEY ",
        "JWT_SIGNING_KEY_FILE",
        "JWT_ALLOW_DEV_KEY=true",
    ] {
        assert!(stderr.contains(name), "{name} not in: {stderr}");
    }
    // It stopped before touching the database: not even the migrations ran.
    let mut conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.expect("connect")
    };
    let users: Option<String> = sqlx::query_scalar("SELECT to_regclass('users')::text")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(users, None);
}

#[tokio::test]
async fn given_the_development_key_without_the_flag_it_refuses_to_start() {
    let database = TestDatabase::create().await;
    let url = database.url().expose_secret().to_owned();

    let stderr = refusal(&[
        ("DATABASE_URL", &url),
        ("JWT_SIGNING_KEY", service_kit::auth::DEV_SIGNING_KEY),
    ]);

    assert!(stderr.contains("development key"), "{stderr}");
    assert!(stderr.contains("JWT_ALLOW_DEV_KEY=true"), "{stderr}");
}

#[tokio::test]
async fn with_jwt_allow_dev_key_it_starts_with_a_warning_and_becomes_ready() {
    let database = TestDatabase::create().await;
    let broker = TestBroker::start();
    let url = database.url().expose_secret().to_owned();
    let mut child = Killed(user_service(&[
        ("DATABASE_URL", &url),
        ("JWT_ALLOW_DEV_KEY", "true"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("KAFKA_BROKERS", broker.bootstrap_servers()),
    ]));
    let stdout = child.0.stdout.take().expect("stdout");

    // The JSON log lines, up to the one that says which port it listens on; then the rest
    // is drained, so that a full pipe never blocks the service.
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut warned = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = entry["message"].as_str().unwrap_or_default();
            if entry["level"] == "WARN" && message.contains("development key") {
                warned = true;
            }
            if message == "listening" {
                let _ = found.send((warned, entry["port"].as_u64()));
            }
        }
    });
    let (warned, port) = tokio::task::spawn_blocking(move || {
        listening
            .recv_timeout(Duration::from_secs(30))
            .expect("user-service listens")
    })
    .await
    .expect("reading the log");

    assert!(warned, "no warning about the development key");
    let api = ApiClient::new(port.and_then(|p| u16::try_from(p).ok()).expect("a port"));
    test_kit::eventually(Duration::from_secs(30), "readiness", || async {
        (api.get("/health/ready").send().await.status == 200).then_some(())
    })
    .await;
}
