//! Real TLS listeners for the transport-security tests, with certificates made on the spot.
//!
//! - [`TestPki`]: a certificate authority of its own, a server certificate for `localhost`
//!   and `127.0.0.1`, and a client certificate, as PEM files.
//! - [`TlsPostgres`]: a throwaway PostgreSQL cluster (this machine's binaries, `initdb` into
//!   a temporary directory, a free port) that accepts TLS connections only.
//! - [`TlsRabbitMq`]: a throwaway RabbitMQ node with only a TLS listener, which requires a
//!   client certificate.
//! - [`TlsTerminator`]: a TLS listener in front of a plain TCP server (the in-process Kafka
//!   broker, which has no TLS listener of its own).
//!
//! The machine's shared PostgreSQL and RabbitMQ are never touched. Each server lives in a
//! directory of its own and stops when its value is dropped, and also when the test process
//! dies: it runs under a shell that waits on a pipe from the test and stops the server as
//! soon as the pipe closes.

use std::{
    fs,
    io::Write as _,
    net::TcpListener as StdTcpListener,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};
use sqlx::Connection as _;
use tokio::net::{TcpListener, TcpStream};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A certificate authority and the certificates it signed, as PEM files in a temporary
/// directory (removed on drop).
pub struct TestPki {
    dir: TempDir,
    ca: CertificateDer<'static>,
    server_certificate: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A new CA (its own key: another `TestPki` is a CA that nothing here trusts), a server
    /// certificate for `localhost` and `127.0.0.1`, and a client certificate.
    pub fn generate() -> Self {
        let dir = TempDir::new("pki");
        let mut params = CertificateParams::default();
        // A name of its own too: a client that trusts another test CA finds no issuer.
        let name = format!("Shop test CA {}", uuid::Uuid::new_v4().simple());
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, key_pair())
            .unwrap_or_else(|e| panic!("the test CA: {e}"));
        let leaf = |names: &[&str], usage: ExtendedKeyUsagePurpose| {
            let key = key_pair();
            let mut params =
                CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                    .unwrap_or_else(|e| panic!("certificate names {names:?}: {e}"));
            params.distinguished_name.push(DnType::CommonName, names[0]);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let certificate = params
                .signed_by(&key, &ca)
                .unwrap_or_else(|e| panic!("signing a test certificate: {e}"));
            (certificate, key)
        };
        let (server, server_key) = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(&["shop-client"], ExtendedKeyUsagePurpose::ClientAuth);
        let pki = Self {
            ca: ca.der().clone(),
            server_certificate: server.der().clone(),
            server_key: server_key.serialize_der(),
            dir,
        };
        pki.write("ca.pem", &ca.pem());
        pki.write("server.pem", &server.pem());
        pki.write("server.key", &server_key.serialize_pem());
        pki.write("client.pem", &client.pem());
        pki.write("client.key", &client_key.serialize_pem());
        pki
    }

    fn write(&self, name: &str, content: &str) {
        let path = self.dir.path().join(name);
        fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        if name.ends_with(".key") {
            set_mode(&path, 0o600);
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> String {
        self.file("ca.pem")
    }

    pub fn server_certificate_file(&self) -> String {
        self.file("server.pem")
    }

    pub fn server_key_file(&self) -> String {
        self.file("server.key")
    }

    /// A client certificate signed by the CA, for servers that require one.
    pub fn client_certificate_file(&self) -> String {
        self.file("client.pem")
    }

    pub fn client_key_file(&self) -> String {
        self.file("client.key")
    }

    /// A rustls server configuration with the server certificate; with
    /// `require_client_certificate`, clients must present a certificate signed by the CA.
    pub fn server_config(&self, require_client_certificate: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("TLS versions: {e}"));
        let builder = if require_client_certificate {
            let mut roots = RootCertStore::empty();
            roots
                .add(self.ca.clone())
                .unwrap_or_else(|e| panic!("the test CA as a root: {e}"));
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap_or_else(|e| panic!("the client certificate verifier: {e}"));
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        Arc::new(
            builder
                .with_single_cert(vec![self.server_certificate.clone()], key)
                .unwrap_or_else(|e| panic!("the TLS server configuration: {e}")),
        )
    }
}

fn key_pair() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("generating a key: {e}"))
}

/// A TLS listener on 127.0.0.1 that forwards the decrypted bytes to a plain TCP server.
/// Connections whose handshake fails (a client that does not trust the certificate, or
/// presents none when one is required) are closed.
pub struct TlsTerminator {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTerminator {
    pub async fn start(upstream: &str, config: Arc<ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the TLS listener: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the TLS listener's address: {e}"))
            .to_string();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { address, task }
    }

    /// `127.0.0.1:<port>` of the TLS listener.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PostgreSQL cluster of its own that accepts TLS connections only (`hostssl`; plain
/// connections are rejected), with the server certificate of a [`TestPki`]. It listens on
/// 127.0.0.1, which the certificate names, and on 127.0.0.2, which it does not.
pub struct TlsPostgres {
    // Declared first: dropped (stopped) before its directory goes.
    server: Supervised,
    port: u16,
    _dir: TempDir,
}

impl TlsPostgres {
    pub async fn start(pki: &TestPki) -> Self {
        let dir = TempDir::new("postgres-tls");
        // PostgreSQL refuses to run as root: then it runs as the `postgres` account, which
        // must own its files.
        let owner = running_as_root().then(|| account("postgres"));
        let prefix: Vec<String> = match &owner {
            Some(_) => [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ]
            .map(str::to_owned)
            .to_vec(),
            None => Vec::new(),
        };
        let data = dir.path().join("data");
        let certificate = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        let hba = dir.path().join("pg_hba.conf");
        copy(&pki.server_certificate_file(), &certificate);
        copy(&pki.server_key_file(), &key);
        set_mode(&key, 0o600);
        fs::write(
            &hba,
            "local all all trust\n\
             hostssl all all 127.0.0.0/8 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )
        .unwrap_or_else(|e| panic!("writing pg_hba.conf: {e}"));
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), &certificate, &key, &hba] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            }
        }
        let mut initdb = prefix.clone();
        initdb.push(pg_bin("initdb").display().to_string());
        initdb.extend(["-D".to_owned(), data.display().to_string()]);
        initdb.extend(["-U", "postgres", "-A", "trust", "-E", "UTF8", "-N"].map(str::to_owned));
        let initdb = Command::new(&initdb[0])
            .args(&initdb[1..])
            .output()
            .unwrap_or_else(|e| panic!("running initdb (PostgreSQL's binaries are needed): {e}"));
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let setting = |name: &str, value: &Path| format!("{name}={}", value.display());
        let mut command = prefix.clone();
        command.extend([
            pg_bin("postgres").display().to_string(),
            "-D".to_owned(),
            data.display().to_string(),
            "-p".to_owned(),
            port.to_string(),
            "-k".to_owned(),
            dir.path().display().to_string(),
        ]);
        for option in [
            "listen_addresses=127.0.0.1,127.0.0.2".to_owned(),
            "ssl=on".to_owned(),
            setting("ssl_cert_file", &certificate),
            setting("ssl_key_file", &key),
            setting("hba_file", &hba),
            "fsync=off".to_owned(),
            "max_connections=20".to_owned(),
            "shared_buffers=16MB".to_owned(),
        ] {
            command.extend(["-c".to_owned(), option]);
        }
        // SIGINT: PostgreSQL's fast shutdown, which disconnects clients.
        let server = Supervised::start(&command, &[], "INT", &dir.path().join("postgres.log"));
        let mut postgres = Self {
            server,
            port,
            _dir: dir,
        };
        let probe = postgres.url("127.0.0.1", "sslmode=require");
        wait_for(&mut postgres.server, "PostgreSQL", || async {
            sqlx::PgConnection::connect(&probe).await.is_ok()
        })
        .await;
        postgres
    }

    /// `postgres://postgres@<host>:<port>/postgres?<query>`.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

/// A RabbitMQ node of its own, with only TLS listeners, which require a client certificate
/// signed by the [`TestPki`]'s CA: on 127.0.0.1, which the server certificate names, and on
/// 127.0.0.2, which it does not. Its name, ports, configuration and
/// data directory are its own; it shares only the machine's `epmd`.
pub struct TlsRabbitMq {
    // Declared first: dropped (stopped) before its directory goes.
    server: Supervised,
    port: u16,
    _dir: TempDir,
}

impl TlsRabbitMq {
    pub const USER: &'static str = "shop";
    pub const PASSWORD: &'static str = "shop-tls-test";

    pub async fn start(pki: &TestPki) -> Self {
        let dir = TempDir::new("rabbitmq-tls");
        let port = free_port();
        let config = dir.path().join("rabbitmq.conf");
        fs::write(
            &config,
            format!(
                "listeners.tcp = none\n\
                 listeners.ssl.default = 127.0.0.1:{port}\n\
                 listeners.ssl.unnamed = 127.0.0.2:{port}\n\
                 ssl_options.cacertfile = {ca}\n\
                 ssl_options.certfile = {certificate}\n\
                 ssl_options.keyfile = {key}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n\
                 default_user = {user}\n\
                 default_pass = {password}\n\
                 loopback_users = none\n",
                ca = pki.ca_file(),
                certificate = pki.server_certificate_file(),
                key = pki.server_key_file(),
                user = Self::USER,
                password = Self::PASSWORD,
            ),
        )
        .unwrap_or_else(|e| panic!("writing rabbitmq.conf: {e}"));
        let plugins = dir.path().join("enabled_plugins");
        fs::write(&plugins, "[].\n").unwrap_or_else(|e| panic!("writing enabled_plugins: {e}"));
        let path = |name: &str| dir.path().join(name).display().to_string();
        let node = format!(
            "shop-tls-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let env = [
            ("RABBITMQ_NODENAME", node),
            ("RABBITMQ_NODE_PORT", free_port().to_string()),
            ("RABBITMQ_DIST_PORT", free_port().to_string()),
            ("RABBITMQ_CONFIG_FILE", config.display().to_string()),
            // Nothing of the machine's node: not its environment file, advanced config or
            // plugins (whose listeners would take the shared node's ports).
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                plugins.display().to_string(),
            ),
            ("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins-expand")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("rabbitmq.pid")),
            ("RABBITMQ_LOGS", "-".to_owned()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
        ];
        // Debian's /usr/sbin wrapper switches to the `rabbitmq` account and its directory;
        // the script it wraps runs the node as whoever starts it.
        let program = ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("rabbitmq-server");
        // SIGTERM: the script stops the node gracefully.
        let server = Supervised::start(
            &[program.to_owned()],
            &env,
            "TERM",
            &dir.path().join("rabbitmq.log"),
        );
        let mut rabbitmq = Self {
            server,
            port,
            _dir: dir,
        };
        // The listeners open last, once the node has booted.
        wait_for(&mut rabbitmq.server, "RabbitMQ", || async {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        rabbitmq
    }

    /// `amqps://shop:…@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        self.url_for_host("127.0.0.1")
    }

    /// The URL for another host of the node's listeners (`127.0.0.2`).
    pub fn url_for_host(&self, host: &str) -> String {
        format!(
            "amqps://{}:{}@{host}:{}/%2f",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }
}

/// A server process under a shell that stops it (with `stop_signal`) when its standard
/// input closes: when this value is dropped, or when the test process dies.
struct Supervised {
    shell: Child,
    log: PathBuf,
}

impl Supervised {
    fn start(command: &[String], env: &[(&str, String)], stop_signal: &str, log: &Path) -> Self {
        let output =
            fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let errors = output
            .try_clone()
            .unwrap_or_else(|e| panic!("the log file: {e}"));
        let script = format!(
            r#""$@" & pid=$!; read -r _; kill -{stop_signal} "$pid" 2>/dev/null; wait "$pid""#
        );
        let shell = Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Self {
            shell,
            log: log.to_owned(),
        }
    }

    /// Whether the server (its shell) has already stopped.
    fn exited(&mut self) -> bool {
        matches!(self.shell.try_wait(), Ok(Some(_)))
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.shell.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.shell.wait();
    }
}

/// Polls `ready` until it holds, or fails the test with the server's log.
async fn wait_for<F, Fut>(server: &mut Supervised, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while !ready().await {
        assert!(
            !server.exited(),
            "the throwaway {what} stopped during start-up; its log:\n{}",
            server.log()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the throwaway {what} did not start within {START_TIMEOUT:?}; its log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("shop-{prefix}-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn copy(from: &str, to: &Path) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("copying {from}: {e}"));
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective user.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of a local account, from /etc/passwd.
fn account(name: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .unwrap_or_else(|| {
            panic!("no `{name}` account: PostgreSQL cannot run as root, and runs as `{name}` then")
        })
}

/// A PostgreSQL server binary: from the newest /usr/lib/postgresql/<version>/bin (Debian
/// keeps them off the PATH), else from the PATH.
fn pg_bin(name: &str) -> PathBuf {
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path().join("bin").join(name);
            path.exists().then_some((version, path))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map_or_else(|| PathBuf::from(name), |(_, path)| path)
}
