//! The real binaries as child processes, for tests of what only a process
//! shows: signals, crashes, start-up from the environment, failover.
//!
//! Cargo names only a crate's own binaries to its tests (`CARGO_BIN_EXE_*`).
//! A test that needs another crate's process runs its own test binary again
//! as that process ([`start_service`]): every binary's `main` is
//! `shared::process::main::<S>()`, and so is the child's.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set (to anything) to see the children's output on the test's stderr.
pub const LOGS_VAR: &str = "TEST_PROCESS_LOGS";
/// Tells a test binary started by [`start_service`] which service to be.
const SERVICE_VAR: &str = "TESTKIT_SERVICE";
/// The test a test binary must have for [`start_service`]: it calls [`serve_if_asked`].
pub const SERVICE_TEST: &str = "service_process";

/// A process of the workspace, for [`start_service`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Api,
    Dispatcher,
    WebhookWorker,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Dispatcher => "dispatcher",
            Self::WebhookWorker => "webhook-worker",
        }
    }
}

/// Starts `service` with `env` as a child process: the running test binary,
/// told to run [`SERVICE_TEST`] only and be `service` there. The test binary
/// must define `#[test] fn service_process() { testkit::process::serve_if_asked() }`.
pub fn start_service(service: Service, env: &[(&str, String)]) -> Running {
    let this = std::env::current_exe().expect("the test binary's path");
    let this = this.to_str().expect("a UTF-8 path");
    let mut env = env.to_vec();
    env.push((SERVICE_VAR, service.name().to_owned()));
    Running::start_with_args(
        this,
        &[SERVICE_TEST, "--exact", "--nocapture", "--test-threads=1"],
        &env,
    )
}

/// In a child of [`start_service`]: runs the service asked for, as its
/// binary's `main` does, and exits with its outcome. Elsewhere: nothing.
pub fn serve_if_asked() {
    let Ok(service) = std::env::var(SERVICE_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let outcome = runtime.block_on(async {
        match service.as_str() {
            "api" => shared::process::main::<api::Application>().await,
            "dispatcher" => shared::process::main::<dispatcher::Dispatcher>().await,
            "webhook-worker" => shared::process::main::<webhook_worker::WebhookWorker>().await,
            other => Err(anyhow::anyhow!("{SERVICE_VAR}={other}: no such service")),
        }
    });
    let code = match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("Error: {error:?}");
            1
        }
    };
    std::process::exit(code);
}

/// A running binary; killed when dropped.
pub struct Running {
    child: Child,
}

impl Running {
    /// Starts `binary` with `env` (and `RUST_LOG=warn` unless given).
    pub fn start(binary: &str, env: &[(&str, String)]) -> Self {
        Self::start_with_args(binary, &[], env)
    }

    /// Starts `binary` with `args` and `env` (and `RUST_LOG=warn` unless
    /// given); its output is dropped unless [`LOGS_VAR`] is set.
    pub fn start_with_args(binary: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let output = || {
            if std::env::var_os(LOGS_VAR).is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(output())
            .stderr(output());
        for (name, value) in env {
            command.env(name, value);
        }
        Self {
            child: command.spawn().expect("start the binary"),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what an orchestrator sends to stop a process).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, failing the test after `timeout`.
    pub async fn exited(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port on loopback (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
