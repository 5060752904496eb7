//! The webhook bench's receivers: a fast one that notes each event once
//! (and its latency), and a black hole that accepts and never answers.

use axum::body::Bytes;
use axum::extract::State;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Event ids seen, and when each was published and received.
#[derive(Default)]
pub struct Arrivals {
    pub seen: HashSet<String>,
    /// (occurredAt, received) per distinct event.
    times: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    duplicates: usize,
}

pub type Shared = Arc<Mutex<Arrivals>>;

async fn receive(State(arrivals): State<Shared>, body: Bytes) -> axum::http::StatusCode {
    let now = chrono::Utc::now();
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let occurred = value["occurredAt"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let id = value["eventId"].as_str().unwrap_or_default().to_owned();
    if let Ok(mut arrivals) = arrivals.lock() {
        if arrivals.seen.insert(id) {
            if let Some(occurred) = occurred {
                arrivals.times.push((occurred.with_timezone(&chrono::Utc), now));
            }
        } else {
            arrivals.duplicates += 1;
        }
    }
    axum::http::StatusCode::NO_CONTENT
}

pub async fn receiver() -> anyhow::Result<(String, Shared)> {
    let arrivals: Shared = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let router = axum::Router::new().fallback(receive).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((url, arrivals))
}

/// Accepts connections and never answers.
pub async fn black_hole() -> anyhow::Result<BlackHole> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(BlackHole { url, task })
}

/// A black-holed endpoint; dropped, it closes every connection it holds, so
/// the requests waiting on it fail at once instead of timing out.
pub struct BlackHole {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `arrivals` has seen `count` distinct events; returns the elapsed time.
pub async fn wait_for(arrivals: &Shared, count: usize, started: Instant) -> anyhow::Result<Duration> {
    let deadline = Duration::from_secs(120);
    loop {
        let seen = arrivals.lock().map(|a| a.seen.len()).unwrap_or(0);
        if seen >= count {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "only {seen} of {count} delivered after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until each of `arrivals` has seen `count` distinct events; returns the elapsed time.
pub async fn wait_for_all(arrivals: &[Shared], count: usize, started: Instant) -> anyhow::Result<Duration> {
    let mut took = Duration::ZERO;
    for one in arrivals {
        took = wait_for(one, count, started).await?;
    }
    Ok(took)
}

/// Prints a run's line over several receivers (`count` events each); its
/// rate in deliveries per second.
pub fn report_all(
    label: &str,
    arrivals: &[Shared],
    count: usize,
    took: Duration,
    clock: chrono::DateTime<chrono::Utc>,
) -> f64 {
    let merged: Shared = Arc::default();
    if let Ok(mut all) = merged.lock() {
        for one in arrivals {
            if let Ok(one) = one.lock() {
                all.times.extend(one.times.iter().copied());
                all.duplicates += one.duplicates;
            }
        }
    }
    report(label, &merged, count * arrivals.len(), took, clock)
}

/// Prints a run's line; its rate. Latency runs from the event's
/// `occurredAt`, or from `clock` when that is later (a backlog's start).
pub fn report(
    label: &str,
    arrivals: &Shared,
    count: usize,
    took: Duration,
    clock: chrono::DateTime<chrono::Utc>,
) -> f64 {
    let (times, duplicates) = arrivals
        .lock()
        .map(|a| (a.times.clone(), a.duplicates))
        .unwrap_or_default();
    let latencies = times
        .iter()
        .map(|(occurred, received)| {
            (*received - (*occurred).max(clock)).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect();
    let (p50, p99, max) = crate::percentiles(latencies);
    let rate = count as f64 / took.as_secs_f64();
    println!(
        "{label}: {count} delivered in {:.2} s ({rate:.0}/s); to receipt p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; duplicates {duplicates}",
        took.as_secs_f64()
    );
    rate
}
