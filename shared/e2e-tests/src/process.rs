//! A service binary running as a child process.

use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Once,
};

/// Builds the service binaries once per test process, so the tests never run stale ones.
/// The command is exactly `make test`'s (`cargo build --workspace --bins`): the same
/// feature resolution, so after `make test` built them this is a no-op (another package
/// selection would resolve features differently and rebuild everything).
pub fn build_binaries() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the service binaries failed");
    });
}

fn binary_path(name: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug").join(name)
}

pub struct ServiceProcess {
    name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl ServiceProcess {
    pub fn spawn(binary: &str, env: &[(String, String)], log: &Path) -> Self {
        let out = File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary_path(binary))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        Self {
            name: binary.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// Fails the test, with the end of the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("{} exited ({status}):\n{}", self.name, tail.join("\n"));
        }
    }

    /// How the process ended, if it has; a test that fails because something else
    /// stopped a service says so in its report.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The file the process logs to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM, the orchestrator's polite stop, and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("waiting for the process")
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
