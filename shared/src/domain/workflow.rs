//! A validation's workflow (docs/contract.md §14): the channels its code goes
//! by, in order, and the steps between them. The first channel sends at
//! create; each later one is a *step*, sent at most once per validation
//! (a `send_failovers` row whose cause names the step, claimed with a lease
//! like any failover), with the same code. A step is requested when the
//! channel timeout passes with the validation still open (a timer parked in
//! a delay tier of the dispatch queue), at once when the previous channel
//! failed for good (a permanent provider error, an `undelivered`/`failed`
//! receipt), or by `POST /v2/phone-validations/{id}/next-channel`.

use super::{Gateway, PhoneSettings};

/// The prefix of a step's failover cause: `channel_1` is the second channel.
const STEP_PREFIX: &str = "channel_";

/// The channels a validation with `gateway` goes by, in order. The flow's
/// `channels` when the validation goes by their first one (the flow's
/// default); a create that named another gateway goes by that one alone.
/// Gateway `none` sends nothing.
pub fn channels(settings: Option<&PhoneSettings>, gateway: Gateway) -> Vec<Gateway> {
    if gateway == Gateway::None {
        return Vec::new();
    }
    match settings {
        Some(settings) if settings.channels.first() == Some(&gateway) => settings.channels.clone(),
        _ => vec![gateway],
    }
}

/// The failover cause of step `index` (the index of its channel, 1 or more).
pub fn step_cause(index: usize) -> String {
    format!("{STEP_PREFIX}{index}")
}

/// The channel index a step's cause names (`None`: not a workflow step).
pub fn step_of(cause: &str) -> Option<usize> {
    cause
        .strip_prefix(STEP_PREFIX)?
        .parse()
        .ok()
        .filter(|index| *index >= 1)
}

/// Where `channel` (the one of the last send, `providerConfirmation.channel`)
/// stands among `channels`; a send recorded before channels existed was the first.
pub fn position(channels: &[Gateway], channel: Option<&str>) -> usize {
    channel
        .and_then(|name| channels.iter().position(|c| c.as_str() == name))
        .unwrap_or(0)
}

/// The step after the channel at `current`, if any: (its index, its channel).
pub fn next(channels: &[Gateway], current: usize) -> Option<(usize, Gateway)> {
    let index = current + 1;
    channels.get(index).map(|channel| (index, *channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_follows_its_flows_channels_unless_it_named_another_gateway() {
        let settings = PhoneSettings {
            channels: vec![Gateway::Sms, Gateway::Voice],
            ..PhoneSettings::default()
        };
        assert_eq!(channels(Some(&settings), Gateway::Sms), [Gateway::Sms, Gateway::Voice]);
        assert_eq!(channels(Some(&settings), Gateway::Whatsapp), [Gateway::Whatsapp]);
        assert_eq!(channels(None, Gateway::Voice), [Gateway::Voice]);
        assert!(channels(Some(&settings), Gateway::None).is_empty());
    }

    #[test]
    fn steps_round_trip_and_follow_the_current_channel() {
        assert_eq!(step_of(&step_cause(2)), Some(2));
        assert_eq!(step_of("channel_0"), None, "the first channel is no step");
        assert_eq!(step_of("sms_undelivered"), None);
        assert_eq!(step_of("channel_x"), None);
        let flow = [Gateway::Sms, Gateway::Whatsapp, Gateway::Voice];
        assert_eq!(position(&flow, Some("whatsapp")), 1);
        assert_eq!(position(&flow, None), 0);
        assert_eq!(next(&flow, 0), Some((1, Gateway::Whatsapp)));
        assert_eq!(next(&flow, 2), None);
    }
}
