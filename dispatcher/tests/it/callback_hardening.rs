//! Callbacks fail closed and keep to their own provider, and a receipt that
//! comes before its send is recorded is not lost (docs/contract.md §11; issue 18,
//! items 1 and 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::config::CallbackConfig;
use api::routes::callbacks::signatures::sign;
use dispatcher::config::{BreakerConfig, SmsConfig};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::api::{PUBLIC_BASE_URL, VONAGE_SIGNATURE_SECRET};
use testkit::callbacks::{meta_notification, EarlyTwilio, TWILIO_STATUS, VONAGE_STATUS};
use testkit::dispatch::{code_in, created, form, twilio_config_at, Harness};
use testkit::TestApp;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

/// Failovers requested so far (the only way a second message goes out).
async fn failovers(h: &Harness) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM send_failovers")
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

async fn delivery_status(h: &Harness, id: &str) -> Value {
    h.validation(id).await["providerConfirmation"]["deliveryStatus"].clone()
}

/// Vonage answers every send with `message_id`.
async fn vonage_answers(h: &Harness, message_id: &str) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message-count": "1",
            "messages": [{"status": "0", "message-id": message_id, "to": "50762647737"}]})))
        .mount(&h.vonage)
        .await;
}

/// SMS through `first`, then Vonage; WhatsApp through Meta's stand-in.
/// `no_sweep`: the sweep never comes back after its first pass, so only the
/// look each side takes after its own commit can apply an early receipt.
async fn start_with_vonage_next(h: &Harness, first: dispatcher::config::SmsProviderConfig, no_sweep: bool) {
    let mut config = h.dispatcher_config();
    if no_sweep {
        config.receipt_sweep = Duration::from_secs(3600);
    }
    config.sms = SmsConfig {
        providers: vec![first, h.vonage_config()],
        routes: Vec::new(),
        breaker: BreakerConfig::default(),
    };
    h.start_dispatcher_with(config).await;
}

#[tokio::test]
async fn every_callback_fails_closed_without_its_providers_secret() {
    let callbacks = CallbackConfig {
        public_base_url: Some(PUBLIC_BASE_URL.into()),
        ..CallbackConfig::default()
    };
    let h = Harness::with_app(TestApp::spawn_with_callbacks(callbacks).await).await;
    h.sms_answers([], created("SMclosed")).await;
    let (id, _) = h
        .send_one(json!({"resendCooldownSeconds": 0}), "62647737", json!({}))
        .await;

    // The request: no VONAGE_* set, an unsigned receipt naming Twilio's message.
    let failed = [("messageId", "SMclosed"), ("status", "failed"), ("err-code", "1")];
    let vonage = format!("{}{VONAGE_STATUS}", h.base);
    let unsigned_get = h.http.get(&vonage).query(&failed).send().await.unwrap();
    assert_eq!(unsigned_get.status(), 403, "Vonage, unsigned, GET");
    let unsigned_json = h
        .http
        .post(&vonage)
        .json(&json!({"messageId": "SMclosed", "status": "failed", "err-code": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned_json.status(), 403, "Vonage, unsigned, JSON");
    let mut signed: Vec<(String, String)> = failed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    signed.push(("sig".into(), sign::vonage_md5(VONAGE_SIGNATURE_SECRET, &signed)));
    let signed = h.http.post(&vonage).form(&signed).send().await.unwrap();
    assert_eq!(
        signed.status(),
        403,
        "Vonage, signed with a secret the API does not have"
    );

    let undelivered = [
        ("MessageSid", "SMclosed"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    assert_eq!(h.twilio_status(&undelivered).await, 403, "Twilio, no TWILIO_AUTH_TOKEN");
    let unsigned_twilio = h
        .http
        .post(format!("{}{TWILIO_STATUS}", h.base))
        .form(&undelivered)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned_twilio.status(), 403, "Twilio, unsigned");
    let meta = json!([{"id": "SMclosed", "status": "failed"}]);
    assert_eq!(h.meta_statuses(meta.clone()).await, 403, "Meta, no WHATSAPP_APP_SECRET");
    let body = meta_notification(meta);
    assert_eq!(h.meta_body(&body, String::new()).await, 403, "Meta, unsigned");

    assert_eq!(delivery_status(&h, &id).await, "queued", "nothing changed");
    assert_eq!(failovers(&h).await, 0, "nothing more to send");
    assert_eq!(h.sms_requests().await.len(), 1);
}

#[tokio::test]
async fn a_callback_changes_only_messages_its_own_provider_sent() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMown")).await;
    vonage_answers(&h, "0A0000000000VON1").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": [{"id": "wamid.OWN"}]})))
        .mount(&h.whatsapp)
        .await;
    start_with_vonage_next(&h, h.twilio_config(), false).await;
    let (project, sms_flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let (whatsapp_project, whatsapp_flow) = h
        .project_and_flow(json!({"phoneGateway": "whatsapp", "smsFallback": true}))
        .await;
    let by_sms = h.create_id(&project, &sms_flow, "62647737", json!({})).await;
    assert_eq!(h.settled(&by_sms).await["providerConfirmation"]["messageId"], "SMown");
    let by_whatsapp = h
        .create_id(&whatsapp_project, &whatsapp_flow, "62647738", json!({}))
        .await;
    assert_eq!(
        h.settled(&by_whatsapp).await["providerConfirmation"]["messageId"],
        "wamid.OWN"
    );

    // Signed and well formed, but naming another provider's message: each
    // would fail the message over (or mark it) if it were its own.
    for id in ["SMown", "wamid.OWN"] {
        let vonage = [("messageId", id), ("status", "failed"), ("err-code", "1")];
        assert_eq!(h.vonage_receipt(&vonage).await, 200, "Vonage naming {id}");
    }
    let twilio = [
        ("MessageSid", "wamid.OWN"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    assert_eq!(h.twilio_status(&twilio).await, 200);
    assert_eq!(
        h.meta_statuses(json!([{"id": "SMown", "status": "failed", "errors": [{"code": 131026}]}]))
            .await,
        200
    );
    assert_eq!(delivery_status(&h, &by_sms).await, "queued");
    assert_eq!(delivery_status(&h, &by_whatsapp).await, "queued");
    assert_eq!(failovers(&h).await, 0, "no failover, so no second message");

    // Twilio's own report fails its message over to Vonage; then Twilio and
    // Meta naming Vonage's message change nothing, and Vonage's own does.
    let own = [
        ("MessageSid", "SMown"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    assert_eq!(h.twilio_status(&own).await, 200);
    testkit::eventually(Duration::from_secs(20), "the failover through Vonage", || async {
        let c = h.validation(&by_sms).await["providerConfirmation"].clone();
        (c["provider"] == "vonage").then_some(())
    })
    .await;
    let delivered = [("MessageSid", "0A0000000000VON1"), ("MessageStatus", "delivered")];
    assert_eq!(h.twilio_status(&delivered).await, 200);
    assert_eq!(
        h.meta_statuses(json!([{"id": "0A0000000000VON1", "status": "read"}]))
            .await,
        200
    );
    assert_eq!(delivery_status(&h, &by_sms).await, "queued", "not theirs");
    let vonage_delivered = [("messageId", "0A0000000000VON1"), ("status", "delivered")];
    assert_eq!(h.vonage_receipt(&vonage_delivered).await, 200);
    assert_eq!(delivery_status(&h, &by_sms).await, "delivered", "Vonage's own");
    assert_eq!(
        h.meta_statuses(json!([{"id": "wamid.OWN", "status": "read"}])).await,
        200
    );
    assert_eq!(delivery_status(&h, &by_whatsapp).await, "read", "Meta's own");
    assert_eq!(failovers(&h).await, 1);
    assert_eq!(h.sms_requests().await.len(), 1, "Twilio sent once");
    assert_eq!(h.vonage.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_receipt_that_comes_before_its_send_is_recorded_still_fails_over() {
    let h = Harness::new().await;
    let twilio = EarlyTwilio::start(&h.base, "30003").await;
    vonage_answers(&h, "0A0000000000EA01").await;
    start_with_vonage_next(&h, twilio_config_at(twilio.uri.clone()), true).await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;

    let vonage = testkit::eventually(Duration::from_secs(20), "the failover through Vonage", || async {
        h.vonage.received_requests().await.unwrap().into_iter().next()
    })
    .await;
    let log = twilio.log.lock().unwrap().receipts.clone();
    assert_eq!(log, [200], "the receipt was taken before the send was answered");
    let first = twilio.log.lock().unwrap().sends[0]["Body"].clone();
    assert_eq!(code_in(&form(&vonage)["text"]), code_in(&first), "the same code");
    let confirmation = testkit::eventually(Duration::from_secs(10), "the failover recorded", || async {
        let c = h.validation(&id).await["providerConfirmation"].clone();
        (c["provider"] == "vonage").then_some(c)
    })
    .await;
    assert_eq!(confirmation["failover"], "sms_undelivered");
    assert_eq!(confirmation["attempts"], 2);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM early_receipts")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(kept, 0, "applied, so no longer kept");
    assert_eq!(twilio.log.lock().unwrap().sends.len(), 1);
}

/// What a crash leaves (the API kept a receipt and died before looking for
/// its send; the dispatcher recorded the send and probed before the receipt
/// was committed): the dispatcher's sweep applies it. A receipt whose send
/// never comes is purged once older than the time it is kept for.
#[tokio::test]
async fn the_sweep_applies_receipts_a_crash_left_and_purges_old_ones() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMswept")).await;
    let (id, _) = h
        .send_one(json!({"resendCooldownSeconds": 0}), "62647737", json!({}))
        .await;
    sqlx::query(
        "INSERT INTO early_receipts (provider, message_id, status, rank, error_code)
         VALUES ('twilio', 'SMswept', 'delivered', 3, NULL)",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    testkit::eventually(Duration::from_secs(20), "the sweep to apply it", || async {
        (delivery_status(&h, &id).await == "delivered").then_some(())
    })
    .await;

    let unknown = [("MessageSid", "SMnobody"), ("MessageStatus", "delivered")];
    assert_eq!(h.twilio_status(&unknown).await, 200, "unknown ids answer 200");
    let kept = || async {
        sqlx::query_scalar::<_, String>("SELECT message_id FROM early_receipts")
            .fetch_all(&h.pool)
            .await
            .unwrap()
    };
    assert_eq!(kept().await, ["SMnobody"], "kept, in case its send is being recorded");
    let (applied, purged) = shared::store::receipts::sweep(&h.pool, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(applied.is_empty());
    assert_eq!((purged, kept().await.len()), (0, 1), "not old yet");
    let (_, purged) = shared::store::receipts::sweep(&h.pool, Duration::ZERO).await.unwrap();
    assert_eq!(purged, 1);
    assert!(kept().await.is_empty());
    assert_eq!(delivery_status(&h, &id).await, "delivered", "nothing else changed");
}
