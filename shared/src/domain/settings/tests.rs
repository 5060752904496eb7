//! The flow settings' parsing and checks.
use super::*;

#[test]
fn an_empty_patch_gives_the_contract_defaults() {
    let settings = PhoneSettingsPatch::default().apply(PhoneSettings::default()).unwrap();
    assert_eq!(settings.otp_length, 6);
    assert_eq!(settings.otp_expires_in_seconds, 600);
    assert_eq!(settings.max_attempts, 3);
    assert_eq!(settings.resend_cooldown_seconds, 60);
    assert_eq!(settings.max_sends_per_hour, 10);
    assert_eq!(settings.phone_gateway, Gateway::Sms);
}

#[test]
fn guesses_per_phone_and_hour_stay_under_one_percent_of_the_codes() {
    let with = |otp_length, max_attempts, max_sends_per_hour| {
        PhoneSettingsPatch {
            otp_length: Some(otp_length),
            max_attempts: Some(max_attempts),
            max_sends_per_hour: Some(max_sends_per_hour),
            ..Default::default()
        }
        .apply(PhoneSettings::default())
    };
    assert!(with(4, 3, 10).is_ok(), "30 guesses of 10,000 codes");
    assert!(with(4, 10, 10).is_ok(), "100 guesses: exactly 1 %");
    assert_eq!(with(4, 20, 10), Err(SettingsError("maxSendsPerHour")));
    assert_eq!(with(6, 20, 1000), Err(SettingsError("maxSendsPerHour")));
    assert!(with(6, 10, 1000).is_ok());
}

#[test]
fn countries_and_rate_limits_are_checked_and_named() {
    let patch = |json: serde_json::Value| {
        serde_json::from_value::<PhoneSettingsPatch>(json)
            .unwrap()
            .apply(PhoneSettings::default())
    };
    let settings = patch(serde_json::json!({"allowedCountries": ["pa", "CO", "PA"]})).unwrap();
    assert_eq!(settings.allowed_countries, ["PA", "CO"]);
    assert_eq!(
        patch(serde_json::json!({"allowedCountries": ["Panama"]})),
        Err(SettingsError("allowedCountries"))
    );
    assert_eq!(
        patch(serde_json::json!({"allowedCountries": ["XX"]})),
        Err(SettingsError("allowedCountries"))
    );
    assert_eq!(
        patch(serde_json::json!({"rateLimits": {"ipAddress": {"perMinute": 0}}})),
        Err(SettingsError("perMinute"))
    );
    assert_eq!(
        patch(serde_json::json!({"rateLimits": {"perDay": 0}})),
        Err(SettingsError("perDay"))
    );
    let limited = patch(serde_json::json!({"fraudGuard": "max", "rateLimits": {"ipAddress": {"perMinute": 3, "perHour": 10}, "perDay": 5000}})).unwrap();
    assert_eq!(limited.fraud_guard, GuardMode::Max);
    assert_eq!(limited.rate_limits.per_day, Some(5000));
    assert!(serde_json::from_value::<PhoneSettingsPatch>(serde_json::json!({"fraudGuard": "sometimes"})).is_err());
}

#[test]
fn language_templates_and_autofill_are_parsed_and_named_when_wrong() {
    let patch = |json: serde_json::Value, base: PhoneSettings| {
        serde_json::from_value::<PhoneSettingsPatch>(json).unwrap().apply(base)
    };
    let settings = patch(
        serde_json::json!({"language": "pt_br", "webOtpDomain": "Example.COM", "androidAppHash": "FA+9qCX9VSu",
                           "templates": {"sms": {"es-CO": "{code} es tu código"}}}),
        PhoneSettings::default(),
    )
    .unwrap();
    assert_eq!(settings.language, Some(Language::PtBr));
    assert_eq!(settings.web_otp_domain.as_deref(), Some("example.com"));
    assert_eq!(settings.templates.sms.keys().collect::<Vec<_>>(), [&Language::Es]);
    assert!(settings.check_templates("Acme").is_ok());
    let cleared = patch(
        serde_json::json!({"language": "", "webOtpDomain": "", "androidAppHash": ""}),
        settings,
    )
    .unwrap();
    assert_eq!(
        (&cleared.language, &cleared.web_otp_domain, &cleared.android_app_hash),
        (&None, &None, &None)
    );
    assert!(!serde_json::to_value(&cleared)
        .unwrap()
        .as_object()
        .unwrap()
        .contains_key("language"));
    for (json, field) in [
        (serde_json::json!({"language": "tlh"}), "language"),
        (
            serde_json::json!({"webOtpDomain": "https://example.com"}),
            "webOtpDomain",
        ),
        (serde_json::json!({"androidAppHash": "short"}), "androidAppHash"),
        (
            serde_json::json!({"templates": {"sms": {"en": "no code"}}}),
            "templates",
        ),
    ] {
        assert_eq!(patch(json, PhoneSettings::default()), Err(SettingsError(field)));
    }
    // Flows stored before the locales came keep their explicit `en`.
    let stored: PhoneSettings = serde_json::from_value(serde_json::json!({
        "phoneGateway": "sms", "otpLength": 6, "otpExpiresInSeconds": 600, "maxAttempts": 3,
        "resendCooldownSeconds": 60, "maxSendsPerHour": 10, "language": "en"
    }))
    .unwrap();
    assert_eq!(stored.language, Some(Language::En));
}

#[test]
fn channels_are_ordered_distinct_and_start_with_the_gateway() {
    let patch = |json: serde_json::Value| {
        serde_json::from_value::<PhoneSettingsPatch>(json)
            .unwrap()
            .apply(PhoneSettings::default())
    };
    let defaults = patch(serde_json::json!({})).unwrap();
    assert_eq!(defaults.channels, [Gateway::Sms]);
    assert_eq!(defaults.channel_timeout_seconds, 60);
    let workflow = patch(serde_json::json!({"channels": ["sms", "voice"], "channelTimeoutSeconds": 15})).unwrap();
    assert_eq!(workflow.channels, [Gateway::Sms, Gateway::Voice]);
    assert_eq!(workflow.phone_gateway, Gateway::Sms);
    let voice = patch(serde_json::json!({"phoneGateway": "voice"})).unwrap();
    assert_eq!(voice.channels, [Gateway::Voice]);
    let none = patch(serde_json::json!({"phoneGateway": "none"})).unwrap();
    assert!(none.channels.is_empty());
    for bad in [
        serde_json::json!({"channels": []}),
        serde_json::json!({"channels": ["sms", "sms"]}),
        serde_json::json!({"channels": ["sms", "none"]}),
        serde_json::json!({"channels": ["sms", "voice"], "phoneGateway": "voice"}),
    ] {
        assert_eq!(patch(bad.clone()), Err(SettingsError("channels")), "{bad}");
    }
    for bad in [14, 901] {
        assert_eq!(
            patch(serde_json::json!({"channelTimeoutSeconds": bad})),
            Err(SettingsError("channelTimeoutSeconds"))
        );
    }
    // A stored flow from before channels existed reads as its gateway alone.
    let stored: PhoneSettings = serde_json::from_value(serde_json::json!({
        "phoneGateway": "whatsapp", "otpLength": 6, "otpExpiresInSeconds": 600, "maxAttempts": 3,
        "resendCooldownSeconds": 60, "maxSendsPerHour": 10, "language": "en"}))
    .unwrap();
    assert!(stored.channels.is_empty());
    let updated = PhoneSettingsPatch::default().apply(stored).unwrap();
    assert_eq!(updated.channels, [Gateway::Whatsapp]);
}

#[test]
fn out_of_range_values_name_their_field() {
    let patch = PhoneSettingsPatch {
        otp_length: Some(3),
        ..Default::default()
    };
    assert_eq!(patch.apply(PhoneSettings::default()), Err(SettingsError("otpLength")));
    let patch = PhoneSettingsPatch {
        webhook_url: Some("ftp://x".into()),
        ..Default::default()
    };
    assert_eq!(patch.apply(PhoneSettings::default()), Err(SettingsError("webhookUrl")));
    let patch = PhoneSettingsPatch {
        test_numbers: Some([("+5073001234".to_owned(), "12345".to_owned())].into()),
        ..Default::default()
    };
    assert_eq!(patch.apply(PhoneSettings::default()), Err(SettingsError("testNumbers")));
}
