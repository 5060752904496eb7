//! The real binaries as child processes, for tests of what only a process
//! shows: signals, crashes, start-up from the environment.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running binary; killed when dropped.
pub struct Running {
    child: Child,
}

impl Running {
    /// Starts `binary` with `env` (and `RUST_LOG=warn` unless given).
    pub fn start(binary: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
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
