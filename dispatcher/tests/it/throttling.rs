//! A provider that answers "too many requests" (429 with `Retry-After`, as
//! Twilio does over an account's concurrency): every code still arrives
//! exactly once, no throttled send is tried again before its `Retry-After`,
//! and a long `Retry-After` rests the provider for every send of the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::dispatch::{form, Harness};
use wiremock::matchers::method;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

/// What the stand-in saw, per number (E.164).
#[derive(Default)]
struct Seen {
    /// Distinct numbers in order of their first request.
    numbers: Vec<String>,
    /// When each throttled number was answered 429.
    throttled: HashMap<String, Instant>,
    /// Every request, by number, with its time.
    requests: Vec<(String, Instant)>,
    /// Accepted messages per number.
    accepted: HashMap<String, usize>,
}

/// Twilio answering 429 to the first request of every `every`-th new
/// number (or only to the very first request when `only_first`), with
/// `Retry-After: retry_after`; accepting everything else.
#[derive(Clone)]
struct Throttling {
    every: usize,
    only_first: bool,
    retry_after: u64,
    seen: Arc<Mutex<Seen>>,
}

impl Respond for Throttling {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = form(request).get("To").cloned().unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        seen.requests.push((to.clone(), Instant::now()));
        let new = !seen.numbers.contains(&to);
        if new {
            seen.numbers.push(to.clone());
        }
        let throttle = new
            && if self.only_first {
                seen.numbers.len() == 1
            } else {
                (seen.numbers.len() - 1).is_multiple_of(self.every)
            };
        if throttle {
            seen.throttled.insert(to, Instant::now());
            return ResponseTemplate::new(429)
                .insert_header("retry-after", self.retry_after.to_string().as_str())
                .set_body_json(json!({"code": 20429, "message": "Too Many Requests", "status": 429}));
        }
        *seen.accepted.entry(to.clone()).or_default() += 1;
        let sid = format!("SM{:032}", seen.requests.len());
        ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
    }
}

async fn stand_in(h: &Harness, every: usize, only_first: bool, retry_after: u64) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let throttling = Throttling {
        every,
        only_first,
        retry_after,
        seen: seen.clone(),
    };
    Mock::given(method("POST"))
        .respond_with(throttling)
        .mount(&h.twilio)
        .await;
    seen
}

#[tokio::test]
async fn throttled_sends_wait_their_retry_after_and_every_code_arrives_once() {
    let h = Harness::new().await;
    // One new number in 4 is throttled at first, for 1 s.
    let seen = stand_in(&h, 4, false, 1).await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let phones: Vec<String> = (0..24).map(|n| format!("626477{n:02}")).collect();
    let ids = futures_util::future::join_all(
        phones
            .iter()
            .map(|phone| h.create_id(&project, &flow, phone, json!({}))),
    )
    .await;
    for id in &ids {
        let settled = h.settled(id).await;
        assert_eq!(settled["status"], "sent", "{settled}");
    }
    assert_eq!(h.recorded_sends().await.len(), ids.len());

    let seen = seen.lock().unwrap();
    let expected: Vec<String> = phones.iter().map(|p| format!("+507{p}")).collect();
    for number in &expected {
        assert_eq!(seen.accepted.get(number), Some(&1), "{number} accepted exactly once");
    }
    assert_eq!(seen.throttled.len(), 6, "one number in 4 throttled at first");
    assert_eq!(
        seen.requests.len(),
        expected.len() + seen.throttled.len(),
        "one more request per throttled number, no more: no retry storm"
    );
    for (number, throttled_at) in &seen.throttled {
        let retried = seen
            .requests
            .iter()
            .filter(|(to, at)| to == number && at > throttled_at)
            .map(|(_, at)| at.duration_since(*throttled_at))
            .min()
            .expect("the throttled number tried again");
        assert!(
            retried >= Duration::from_secs(1),
            "{number} tried again {retried:?} after its 429, before its Retry-After (1 s)"
        );
    }
}

#[tokio::test]
async fn a_long_retry_after_rests_the_provider_for_every_send() {
    let h = Harness::new().await;
    // The first request is answered 429 with a 6 s Retry-After: longer than
    // a send waits in process, so the provider rests and the sends park.
    let seen = stand_in(&h, usize::MAX, true, 6).await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let first = h.create_id(&project, &flow, "62647701", json!({})).await;
    let throttled_at = testkit::eventually(Duration::from_secs(10), "the first send to be throttled", || async {
        seen.lock().unwrap().throttled.values().next().copied()
    })
    .await;
    // Created during the rest: it waits for the rest too.
    let second = h.create_id(&project, &flow, "62647702", json!({})).await;
    for id in [&first, &second] {
        let settled = h.settled(id).await;
        assert_eq!(settled["status"], "sent", "{settled}");
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 3, "the 429, then one request per code");
    for (number, at) in seen.requests.iter().skip(1) {
        let after = at.duration_since(throttled_at);
        assert!(
            after >= Duration::from_secs(6),
            "{number} requested {after:?} after the 429, inside the provider's 6 s rest"
        );
    }
    assert_eq!(seen.accepted.values().copied().collect::<Vec<_>>(), vec![1, 1]);
}
