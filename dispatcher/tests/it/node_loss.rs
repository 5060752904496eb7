//! Running on more than one broker (docs/contract.md §12), every process real: the
//! API, the dispatcher and the webhook worker are child processes given the
//! same `AMQP_URL` list (`testkit::stack`).
//!
//! - A first broker that is down costs nothing: each process connects to the
//!   next one, and a code goes out end to end.
//! - SIGKILL of the cluster node all three are connected to, in the middle
//!   of a burst of creates: every create is answered 200, every code reaches
//!   the provider (a repeat carries the same code), codes validate, and the
//!   `validated` webhooks arrive. The test prints how long codes stalled.
//!
//! `cargo test -p dispatcher --test node_loss -- --nocapture` shows the
//! figures; `TEST_PROCESS_LOGS=1` adds the processes' logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::stack::{Sms, SmsSink, Stack, DELAY_TIERS};
use testkit::webhooks::{Receiver, SECRET};
use testkit::TestApp;

const DISPATCHER: &str = env!("CARGO_BIN_EXE_dispatcher");
/// A provider's latency.
const SMS_LATENCY: Duration = Duration::from_millis(20);
/// Creates in flight at once during a burst (a few, so that the API is
/// still taking creates when the node dies).
const CONCURRENCY: usize = 4;

/// One create of a burst.
struct Create {
    phone: String,
    sent: Instant,
    answered: Instant,
    /// The status, or the transport error.
    outcome: Result<StatusCode, String>,
}

/// Creates a validation for each of `phones`, [`CONCURRENCY`] at a time,
/// counting answers in `answered`.
async fn burst(stack: &Stack, project: &str, flow: &str, phones: &[String], answered: &AtomicUsize) -> Vec<Create> {
    futures_util::stream::iter(phones)
        .map(|phone| async move {
            let sent = Instant::now();
            let outcome = stack
                .post("/v2/phone-validations", TestApp::create_body(project, flow, phone))
                .await
                .map(|(status, _)| status)
                .map_err(|e| e.to_string());
            answered.fetch_add(1, Ordering::Relaxed);
            Create {
                phone: phone.clone(),
                sent,
                answered: Instant::now(),
                outcome,
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// `count` numbers (+507, 8 digits) starting at `6{first:07}`.
fn phones(first: usize, count: usize) -> Vec<String> {
    (first..first + count).map(|n| format!("6{n:07}")).collect()
}

/// Waits until every one of `phones` has a code; returns the messages for
/// them, by number, in arrival order.
async fn codes_out(sms: &SmsSink, phones: &[String], timeout: Duration) -> HashMap<String, Vec<Sms>> {
    let wanted: HashSet<String> = phones.iter().map(|p| format!("+507{p}")).collect();
    testkit::eventually(timeout, "a code for every number", || async {
        let mut by_number: HashMap<String, Vec<Sms>> = HashMap::new();
        for sms in sms.messages().into_iter().filter(|m| wanted.contains(&m.to)) {
            by_number.entry(sms.to.clone()).or_default().push(sms);
        }
        (by_number.len() == wanted.len()).then_some(by_number)
    })
    .await
}

/// Every create answered 200; every number's messages carry one code.
fn check_burst(creates: &[Create], codes: &HashMap<String, Vec<Sms>>) -> usize {
    let refused: Vec<_> = creates
        .iter()
        .filter(|c| c.outcome != Ok(StatusCode::OK))
        .map(|c| (&c.phone, &c.outcome))
        .collect();
    assert!(refused.is_empty(), "creates not answered 200: {refused:?}");
    let mut repeated = 0;
    for (to, messages) in codes {
        let distinct: HashSet<&str> = messages.iter().map(|m| m.code.as_str()).collect();
        assert_eq!(distinct.len(), 1, "{to} got different codes: {distinct:?}");
        repeated += usize::from(messages.len() > 1);
    }
    repeated
}

/// When the last number got its first code.
fn last_first_code(codes: &HashMap<String, Vec<Sms>>) -> Instant {
    codes.values().map(|m| m[0].at).max().expect("some codes")
}

/// The longest wait between two consecutive messages among `codes`, from
/// `from` on (counting `from` as a message).
fn longest_pause(codes: &HashMap<String, Vec<Sms>>, from: Instant) -> Duration {
    let mut at: Vec<Instant> = codes
        .values()
        .flatten()
        .map(|m| m.at)
        .filter(|at| *at >= from)
        .collect();
    at.push(from);
    at.sort();
    at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Validates each of `phones` with the code it got; their ids.
async fn validate_all(stack: &Stack, phones: &[&String], codes: &HashMap<String, Vec<Sms>>) -> HashSet<String> {
    for phone in phones {
        let code = &codes[&format!("+507{phone}")][0].code;
        assert_eq!(stack.validate(phone, code).await, StatusCode::OK, "{phone} with {code}");
    }
    let numbers: Vec<&str> = phones.iter().map(|p| p.as_str()).collect();
    sqlx::query_scalar("SELECT id FROM phone_validations WHERE phone = ANY($1) AND status = 'validated'")
        .bind(&numbers)
        .fetch_all(&stack.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Waits for a signed `validated` webhook for each of `ids`.
async fn webhooks_for(receiver: &Receiver, ids: &HashSet<String>, timeout: Duration) {
    let received = receiver.wait_for(ids.len(), timeout).await;
    let mut seen = HashSet::new();
    for request in &received {
        request.verify(SECRET).expect("a valid signature");
        let body = request.json();
        assert_eq!(body["type"], "phone_validation_validated", "{body}");
        seen.insert(body["object"]["_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(&seen, ids, "one validated webhook per validation");
}

/// The clients connected to node `index`, by connection name (`api`,
/// `dispatcher`, `webhook-worker`), as `rabbitmqctl list_connections` shows them.
async fn connected_to(cluster: &Cluster, index: usize) -> HashSet<String> {
    let port = cluster.node(index).port;
    let out = cluster
        .ctl(
            index,
            &[
                "-q",
                "list_connections",
                "port",
                "client_properties",
                "--formatter",
                "json",
            ],
        )
        .await;
    let connections: Vec<Value> = serde_json::from_str(out.trim()).expect("list_connections JSON");
    connections
        .iter()
        .filter(|c| c["port"] == port)
        .flat_map(|c| {
            let properties = c["client_properties"].to_string();
            ["api", "dispatcher", "webhook-worker"]
                .into_iter()
                .filter(move |name| properties.contains(&format!("\"{name}\"")))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_whose_first_broker_is_down_connects_to_the_next_one() {
    let closed = testkit::process::free_port();
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f,{}", testkit::amqp_url());
    let prefix = format!("test.firstdown.{}.", ObjectId::new());
    let sms = SmsSink::start(SMS_LATENCY).await;
    let receiver = Receiver::answering(200).await;
    let stack = Stack::start(DISPATCHER, &amqp_url, &prefix, &sms).await;

    let (project, flow) = stack
        .project_and_flow(json!({"resendCooldownSeconds": 0, "webhookUrl": receiver.url()}))
        .await;
    let numbers = phones(2_710_000, 3);
    let creates = burst(&stack, &project, &flow, &numbers, &AtomicUsize::new(0)).await;
    let codes = codes_out(&sms, &numbers, Duration::from_secs(30)).await;
    check_burst(&creates, &codes);
    let ids = validate_all(&stack, &numbers.iter().collect::<Vec<_>>(), &codes).await;
    webhooks_for(&receiver, &ids, Duration::from_secs(30)).await;

    drop(stack);
    testkit::delete_namespace(&Topology::new(prefix), &DELAY_TIERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_of_the_cluster_node_every_process_uses_loses_no_create_code_or_webhook() {
    const BURST: usize = 360;
    let t0 = Instant::now();
    // The cluster boots (tens of seconds) while the rest is set up.
    let booting = tokio::task::spawn_blocking(Cluster::start);
    let sms = SmsSink::start(SMS_LATENCY).await;
    let receiver = Receiver::answering(200).await;
    let cluster = booting.await.unwrap();
    println!("cluster of 3 started in {:?}", cluster.started_in);

    let prefix = format!("test.nodeloss.{}.", ObjectId::new());
    let stack = Stack::start(DISPATCHER, &cluster.amqp_url(), &prefix, &sms).await;
    let on_node_1 = testkit::eventually(Duration::from_secs(30), "every process on node 1", || async {
        let names = connected_to(&cluster, 1).await;
        (names.len() == 3).then_some(names)
    })
    .await;
    println!("{on_node_1:?} connected to node 1 at {:?}", t0.elapsed());
    let (project, flow) = stack
        .project_and_flow(json!({"resendCooldownSeconds": 0, "webhookUrl": receiver.url()}))
        .await;

    // A burst with every node up: the baseline.
    let numbers = phones(2_720_000, BURST);
    let started = Instant::now();
    let creates = burst(&stack, &project, &flow, &numbers, &AtomicUsize::new(0)).await;
    let answered_in = started.elapsed();
    let codes = codes_out(&sms, &numbers, Duration::from_secs(60)).await;
    check_burst(&creates, &codes);
    let baseline = last_first_code(&codes) - started;
    println!(
        "baseline: {BURST} creates answered in {answered_in:?}, every code out {baseline:?} after the first create \
         (longest pause between codes {:?})",
        longest_pause(&codes, started)
    );

    // The same burst; node 1 SIGKILLed once a third of it is answered.
    let numbers = phones(2_730_000, BURST);
    let answered = AtomicUsize::new(0);
    let started = Instant::now();
    let kill = async {
        testkit::eventually(Duration::from_secs(60), "a third of the burst answered", || async {
            (answered.load(Ordering::Relaxed) >= BURST / 3).then_some(())
        })
        .await;
        let killing = Instant::now();
        cluster.kill(1).await;
        let killed = Instant::now();
        // Each process has noticed by now (the kill waits for the node to be gone).
        let mut ready_again = Vec::new();
        for url in &stack.ready_urls {
            testkit::eventually(Duration::from_secs(30), &format!("{url} ready again"), || async {
                let ready = stack.http.get(url).send().await.ok()?;
                ready.status().is_success().then_some(())
            })
            .await;
            ready_again.push(killing.elapsed());
        }
        (killing, killed, ready_again)
    };
    let (creates, (killing, killed, ready_again)) =
        tokio::join!(burst(&stack, &project, &flow, &numbers, &answered), kill);
    let answered_in = started.elapsed();
    let codes = codes_out(&sms, &numbers, Duration::from_secs(45)).await;
    let repeated = check_burst(&creates, &codes);
    let before_kill = creates.iter().filter(|c| c.answered < killing).count();
    let codes_before_kill = codes.values().filter(|m| m[0].at < killing).count();
    assert!(
        before_kill < BURST && codes_before_kill < BURST,
        "the kill came mid-burst ({before_kill} creates answered and {codes_before_kill} codes out before it)"
    );
    let after_kill = creates.iter().filter(|c| c.sent >= killed).count();
    let first_after = codes
        .values()
        .flatten()
        .map(|m| m.at)
        .filter(|at| *at >= killing)
        .min()
        .expect("codes after the kill")
        - killing;
    let all_out = last_first_code(&codes);
    println!(
        "node 1 SIGKILLed {:?} into the burst (the kill command took {:?}); {before_kill} creates answered and \
         {codes_before_kill} codes out before it",
        killing - started,
        killed - killing,
    );
    println!("api, dispatcher, webhook-worker ready again (on node 2) {ready_again:?} after the kill");
    println!(
        "first code after the kill {first_after:?}; longest pause between codes {:?}; {repeated} numbers got a \
         repeat (the same code)",
        longest_pause(&codes, killing)
    );
    println!(
        "with the kill: all {BURST} creates answered 200 in {answered_in:?} ({after_kill} sent once the node was \
         dead); every code out {:?} after the first create, {:?} after the kill",
        all_out - started,
        all_out - killing,
    );

    // Every process moved to node 2, the one after the lost node in the list.
    let on_node_2 = testkit::eventually(Duration::from_secs(30), "every process on node 2", || async {
        let names = connected_to(&cluster, 2).await;
        (names.len() == 3).then_some(names)
    })
    .await;
    assert_eq!(on_node_2, on_node_1);

    // Codes from before and after the kill validate; each sends its webhook.
    let mut by_arrival: Vec<(&String, Instant)> = creates
        .iter()
        .map(|c| (&c.phone, codes[&format!("+507{}", c.phone)][0].at))
        .collect();
    by_arrival.sort_by_key(|(_, at)| *at);
    let sample: Vec<&String> = by_arrival
        .iter()
        .take(3)
        .chain(by_arrival.iter().rev().take(3))
        .map(|(phone, _)| *phone)
        .collect();
    let validated = Instant::now();
    let ids = validate_all(&stack, &sample, &codes).await;
    assert_eq!(ids.len(), sample.len());
    webhooks_for(&receiver, &ids, Duration::from_secs(30)).await;
    println!(
        "{} validations validated on the two nodes left, webhooks in {:?}; test ran {:?}",
        ids.len(),
        validated.elapsed(),
        t0.elapsed()
    );
    // The processes go before the cluster (declared first, dropped last).
    drop(stack);
}
