//! Clients that ask and never read their answers: each answer has
//! `HTTP_WRITE_TIMEOUT_MS` to leave, after which its connection is closed
//! and its slot of `HTTP_MAX_CONNECTIONS` freed; and SIGTERM closes what has
//! not drained within `HTTP_DRAIN_TIMEOUT_MS`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use testkit::api_process::ApiProcess;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Answers a slow reader has asked for: far more than the socket buffers of
/// both ends hold (the server's grows to 4 MiB at most, the reader's is
/// kept small), so the server is left with an answer it cannot write.
const ASKED_BYTES: usize = 32 * 1024 * 1024;

/// The size of `/openapi.json`, the largest answer that needs no token.
async fn openapi_size(api: &ApiProcess) -> usize {
    let url = format!("http://{}/openapi.json", api.addr);
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(body.len() > 1000, "{}", body.len());
    body.len()
}

/// A client that asks for `/openapi.json` again and again on one
/// connection (pipelined), never reads, and returns once the server has
/// started answering (the connection holds a slot).
async fn slow_reader(api: &ApiProcess, answer_size: usize) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(api.addr.parse().unwrap()).await.unwrap();
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: api\r\n\r\n";
    let asked = request.repeat(ASKED_BYTES / answer_size + 1);
    stream.write_all(&asked).await.unwrap();
    stream
}

/// Waits until the server has written the first bytes of an answer to
/// `reader` (peeked, not read: the reader still reads nothing).
/// Two slow readers, each being answered: both of the API's slots held.
async fn both_slots_held(api: &ApiProcess, answer_size: usize) -> Vec<TcpStream> {
    let mut readers = Vec::new();
    for _ in 0..2 {
        let reader = slow_reader(api, answer_size).await;
        answering(&reader).await;
        readers.push(reader);
    }
    readers
}

async fn answering(reader: &TcpStream) {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(Duration::from_secs(20), reader.peek(&mut first)).await;
    assert!(
        matches!(peeked, Ok(Ok(1))),
        "the server never started answering: {peeked:?}"
    );
}

/// `/health` on a fresh connection, with a bound on the wait.
async fn health(api: &ApiProcess, within: Duration) -> Result<u16, String> {
    let http = reqwest::Client::builder().timeout(within).build().unwrap();
    let answer = http.get(format!("http://{}/health", api.addr)).send().await;
    answer.map(|a| a.status().as_u16()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn slow_readers_lose_their_connection_at_the_write_deadline_and_free_their_slots() {
    let write_timeout = Duration::from_millis(1500);
    let api = ApiProcess::start(
        env!("CARGO_BIN_EXE_api"),
        &[
            ("HTTP_MAX_CONNECTIONS", "2".into()),
            ("HTTP_WRITE_TIMEOUT_MS", write_timeout.as_millis().to_string()),
        ],
    )
    .await;
    let size = openapi_size(&api).await;
    // More slow readers than slots: the third waits for one.
    let mut readers = both_slots_held(&api, size).await;
    readers.push(slow_reader(&api, size).await);

    let started = Instant::now();
    let answered = health(&api, Duration::from_secs(20)).await;
    assert_eq!(answered, Ok(200), "a slot came free");
    let waited = started.elapsed();
    assert!(
        waited < write_timeout * 4,
        "/health waited {waited:?}, about the write deadline ({write_timeout:?}) expected"
    );
    // Once the slow readers are gone, fresh requests are served at once.
    testkit::eventually(Duration::from_secs(20), "fresh requests to be served", || async {
        (health(&api, Duration::from_millis(500)).await == Ok(200)).then_some(())
    })
    .await;
    for _ in 0..3 {
        assert_eq!(health(&api, Duration::from_secs(5)).await, Ok(200));
    }
    assert_eq!(openapi_size(&api).await, size, "a reading client gets the whole answer");
}

#[tokio::test]
async fn sigterm_closes_connections_that_do_not_drain_in_time() {
    let drain = Duration::from_millis(1000);
    let mut api = ApiProcess::start(
        env!("CARGO_BIN_EXE_api"),
        &[
            ("HTTP_MAX_CONNECTIONS", "2".into()),
            // Far beyond the test: only the drain deadline can close them.
            ("HTTP_WRITE_TIMEOUT_MS", "600000".into()),
            ("HTTP_DRAIN_TIMEOUT_MS", drain.as_millis().to_string()),
        ],
    )
    .await;
    let size = openapi_size(&api).await;
    // Held open until the end: only the drain deadline closes them.
    let _readers = both_slots_held(&api, size).await;
    api.running.terminate();
    let status = api.running.exited(drain + Duration::from_secs(8)).await;
    assert!(status.success(), "{status}");
}
