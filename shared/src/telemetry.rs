//! Logging: `tracing` to stdout, human-readable or JSON (`LOG_FORMAT`),
//! filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// The filter when `RUST_LOG` is unset or does not parse.
const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=warn,amq_protocol=warn";

/// lapin logs every message the broker returns (unroutable) at `warn`, body
/// and all: an event's body holds the end user's phone number. Always off,
/// whatever `RUST_LOG` says; the publisher's own error names the routing key.
const RETURNED_MESSAGES: &str = "lapin::returned_messages=off";

/// The log filter for a `RUST_LOG` value (`None`: unset).
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let filter = rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    match RETURNED_MESSAGES.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Installs the global subscriber. Safe to call more than once (tests).
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let json = std::env::var("LOG_FORMAT").map(|v| v == "json").unwrap_or(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true))
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    // Already installed (several apps in one test process): keep the first.
    let _ = result;
}

/// Resolves on SIGTERM or SIGINT and cancels `cancel`.
pub async fn shutdown_signal(cancel: tokio_util::sync::CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::filter;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::{fmt, prelude::*};

    /// What a subscriber with the filter for `rust_log` prints for a
    /// returned message's log line and for another lapin warning.
    fn printed(rust_log: Option<&str>) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || Writer(buffer.clone())
        };
        let subscriber = tracing_subscriber::registry()
            .with(filter(rust_log))
            .with(fmt::layer().with_writer(writer).with_ansi(false));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "lapin::returned_messages", message = "+50760000001", "Server returned us a message");
            tracing::warn!(target: "lapin::channels", "a channel closed");
        });
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_returned_message_body_is_never_logged() {
        for rust_log in [None, Some("info"), Some("warn"), Some("lapin=trace")] {
            let printed = printed(rust_log);
            assert!(!printed.contains("+50760000001"), "{rust_log:?}: {printed}");
            assert!(printed.contains("a channel closed"), "{rust_log:?}: {printed}");
        }
    }
}
