//! What the HTTP server does below the handlers, seen from a raw TCP client:
//! bodies over the limit refused in the envelope without poisoning the
//! connection, header and body read timeouts, the connection limit, and
//! the per-route HTTP metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::api_process::ApiProcess;
use testkit::TestApp;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One response as it came off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into()))
    }
}

async fn connect(addr: &str) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.expect("connect to the API"))
}

async fn send(connection: &mut BufReader<TcpStream>, bytes: &[u8]) {
    connection.get_mut().write_all(bytes).await.expect("send");
}

/// Reads one response (with a `Content-Length` body); `None` when the
/// server closed (or reset) the connection instead.
async fn read_response(connection: &mut BufReader<TcpStream>) -> Option<RawResponse> {
    let mut status_line = String::new();
    if connection.read_line(&mut status_line).await.ok()? == 0 {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if connection.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    let mut body = vec![0; length];
    connection.read_exact(&mut body).await.ok()?;
    Some(RawResponse { status, headers, body })
}

/// `future`, or a test failure naming `what` after `deadline`.
async fn within<T>(deadline: Duration, what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(deadline, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {deadline:?} waiting for {what}"))
}

const DEADLINE: Duration = Duration::from_secs(5);

fn too_large() -> Value {
    json!({"code": "PayloadTooLarge", "message": "413:payload_too_large"})
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

fn post_head(token: &str, framing: &str) -> String {
    format!(
        "POST /v2/projects HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_arrives() {
    let app = TestApp::spawn().await;
    let mut connection = connect(&addr(&app)).await;
    // Only the head: the answer must not wait for 10 MB that never come.
    let head = post_head(&app.token, &format!("Content-Length: {}", 10 * 1024 * 1024));
    send(&mut connection, head.as_bytes()).await;
    let response = within(DEADLINE, "the 413", read_response(&mut connection))
        .await
        .expect("an answer, not a closed connection");
    assert_eq!(response.status, 413);
    assert_eq!(response.json(), too_large());
    assert_eq!(response.header("connection"), Some("close"));
    assert!(response.header("x-request-id").is_some());
    assert!(
        within(DEADLINE, "the connection to close", read_response(&mut connection))
            .await
            .is_none(),
        "the unread body closes the connection"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_once_and_never_read_as_the_next_request() {
    let app = TestApp::spawn().await;
    let connection = TcpStream::connect(addr(&app)).await.unwrap();
    let (reader, mut writer) = connection.into_split();
    let mut request = post_head(&app.token, &format!("Content-Length: {}", 200 * 1024)).into_bytes();
    request.extend(std::iter::repeat_n(b'x', 200 * 1024));
    // A second request on the same connection, right behind the body.
    request.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n");
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut reader = BufReader::new(reader);
    let read = async move {
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.ok()?;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, reader.read_to_end(&mut rest)).await;
        Some((status_line, String::from_utf8_lossy(&rest).into_owned()))
    };
    let (status_line, rest) = within(DEADLINE * 2, "the answer", read).await.unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(rest.to_ascii_lowercase().contains("connection: close"), "{rest}");
    assert!(rest.contains(r#""message":"413:payload_too_large""#), "{rest}");
    assert_eq!(rest.matches("HTTP/1.1").count(), 0, "one answer only: {rest}");
    drop(writing.await);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let mut connection = connect(&addr(&app)).await;
    let mut request = post_head(&app.token, "Transfer-Encoding: chunked").into_bytes();
    let chunk = vec![b'x'; 8 * 1024];
    for _ in 0..10 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    send(&mut connection, &request).await;
    let response = within(DEADLINE, "the 413", read_response(&mut connection))
        .await
        .expect("an answer");
    assert_eq!((response.status, response.json()), (413, too_large()));
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_keep_alive_client_carries_on_after_an_oversized_body() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024));
    for _ in 0..2 {
        let refused = app
            .http
            .post(format!("{}/v2/projects", app.base))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("an answer to the oversized body");
        assert_eq!(refused.status(), 413);
        assert_eq!(refused.json::<Value>().await.unwrap(), too_large());
        let next = app.get("/v2/projects").await;
        assert_eq!(next.status, 200, "{:?}", next.body);
    }
}

#[tokio::test]
async fn a_keep_alive_connection_serves_request_after_request() {
    let app = TestApp::spawn().await;
    let mut connection = connect(&addr(&app)).await;
    send(
        &mut connection,
        b"GET /health HTTP/1.1\r\nHost: api\r\n\r\nGET /health HTTP/1.1\r\nHost: api\r\n\r\n",
    )
    .await;
    for _ in 0..2 {
        let response = within(DEADLINE, "an answer", read_response(&mut connection))
            .await
            .expect("an answer");
        assert_eq!(response.status, 200);
        assert_ne!(response.header("connection"), Some("close"));
    }
}

/// Waits until the server closes `connection`, failing after `DEADLINE`;
/// returns how long it took.
async fn closed_within_deadline(connection: &mut BufReader<TcpStream>) -> Duration {
    let started = Instant::now();
    let answer = within(
        DEADLINE,
        "the server to close the connection",
        read_response(connection),
    )
    .await;
    assert!(answer.is_none(), "closed without an answer: {answer:?}");
    started.elapsed()
}

#[tokio::test]
async fn clients_that_do_not_finish_their_headers_or_stay_idle_are_disconnected() {
    let api = ApiProcess::start(env!("CARGO_BIN_EXE_api"), &[("HTTP_HEADER_TIMEOUT_MS", "500".into())]).await;
    let mut partial = connect(&api.addr).await;
    send(&mut partial, b"GET /health HTTP/1.1\r\nHost: api\r\n").await;
    let mut silent = connect(&api.addr).await;
    let mut idle = connect(&api.addr).await;
    send(&mut idle, b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n").await;
    let answered = within(DEADLINE, "an answer", read_response(&mut idle)).await;
    assert_eq!(answered.map(|r| r.status), Some(200));
    for connection in [&mut partial, &mut silent, &mut idle] {
        closed_within_deadline(connection).await;
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_and_closed() {
    let api = ApiProcess::start(env!("CARGO_BIN_EXE_api"), &[("HTTP_BODY_TIMEOUT_MS", "500".into())]).await;
    let mut connection = connect(&api.addr).await;
    send(
        &mut connection,
        post_head(&api.token, "Content-Length: 1000").as_bytes(),
    )
    .await;
    send(&mut connection, b"{\"name\": \"").await;
    let response = within(DEADLINE, "the 408", read_response(&mut connection))
        .await
        .expect("an answer");
    assert_eq!(response.status, 408);
    assert_eq!(
        response.json(),
        json!({"code": "RequestTimeout", "message": "408:request_timeout"})
    );
    assert_eq!(response.header("connection"), Some("close"));
    closed_within_deadline(&mut connection).await;
    let projects: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(projects, 0);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let api = ApiProcess::start(env!("CARGO_BIN_EXE_api"), &[("HTTP_MAX_CONNECTIONS", "1".into())]).await;
    let health = b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n";
    let mut first = connect(&api.addr).await;
    send(&mut first, health).await;
    let answered = within(DEADLINE, "the first answer", read_response(&mut first)).await;
    assert_eq!(answered.map(|r| r.status), Some(200));
    // The first connection is kept alive and holds the only slot.
    let mut second = connect(&api.addr).await;
    send(&mut second, health).await;
    let early = tokio::time::timeout(Duration::from_millis(500), read_response(&mut second)).await;
    assert!(early.is_err(), "answered while the slot was taken: {early:?}");
    drop(first);
    let answered = within(DEADLINE, "the second answer", read_response(&mut second)).await;
    assert_eq!(answered.map(|r| r.status), Some(200));
}

#[tokio::test]
async fn http_metrics_are_labelled_by_route_template_never_by_raw_path() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let id = app.create_id(&project, &flow, "62617737", json!({})).await;
    assert_eq!(app.get(&format!("/v2/phone-validations/{id}")).await.status, 200);
    let missing = app.get(&format!("/v2/nothing/{id}")).await;
    assert_eq!(missing.status, 404);
    let text = app.metrics().await;
    let has_line = |name: &str, labels: &[&str]| {
        text.lines()
            .any(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
    };
    let route = r#"route="/v2/phone-validations/{id}""#;
    assert!(
        has_line("http_requests_total{", &[route, r#"method="GET""#, r#"status="200""#]),
        "{text}"
    );
    assert!(
        has_line(
            "http_requests_total{",
            &[
                r#"method="POST""#,
                r#"route="/v2/phone-validations""#,
                r#"status="200""#
            ]
        ),
        "{text}"
    );
    assert!(
        has_line("http_request_duration_seconds_bucket{", &[route, r#"method="GET""#]),
        "{text}"
    );
    assert!(
        has_line("http_requests_total{", &[r#"route="unmatched""#, r#"status="404""#]),
        "{text}"
    );
    assert!(!text.contains(&id), "the raw path is never a label: {text}");
}
