//! Events about bindings. kube-runtime's `Recorder` names an Event `<object name>.<nanoseconds in hex>`,
//! which passes Kubernetes' 253-character limit on names only for objects named with at most 236 characters;
//! the API server refuses the rest, so a binding with a long (valid) name would never get its Events. Those
//! are created here under a shortened name instead (without the Recorder's series aggregation, which only
//! saves writes when one Event repeats).

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use sha2::{Digest, Sha256};

/// Kubernetes' limit on an object's name.
const NAME_MAX: usize = 253;
/// The longest name the Recorder's `.{nanos:x}` suffix (at most 17 characters) still fits.
const RECORDER_NAME_MAX: usize = NAME_MAX - 17;

/// Publishes Events through the Recorder, or directly for objects whose names are too long for it.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    client: Client,
    reporter: Reporter,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Events { recorder: Recorder::new(client.clone(), reporter.clone()), client, reporter }
    }

    /// Publishes `event` about `regarding`. The Recorder folds an Event into an earlier one with the same
    /// type, reason and action (a series), whatever its note says: for repeats of one message.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let name = regarding.name.as_deref().unwrap_or_default();
        if name.len() <= RECORDER_NAME_MAX {
            return self.recorder.publish(event, regarding).await;
        }
        self.create(event, regarding).await
    }

    /// Publishes `event` as an Event of its own, never folded into another: for Events that share a reason
    /// but say different things (each Azure change, each part of a long message), which the Recorder would
    /// merge into the first one's series.
    pub async fn publish_distinct(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.create(event, regarding).await
    }

    async fn create(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let name = regarding.name.as_deref().unwrap_or_default();
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let k8s_event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(short_name(name, now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter.instance.clone().unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &k8s_event).await.map(|_| ())
    }
}

/// An Event name for an object named `name` (too long for the Recorder's scheme): a readable prefix of it, a
/// hash of all of it (objects sharing the prefix stay apart), and the time, within 253 characters and a valid
/// DNS subdomain.
fn short_name(name: &str, nanos: i128) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let suffix = format!(".{hash}.{nanos:x}");
    let keep = NAME_MAX.saturating_sub(suffix.len()).min(name.len());
    // A DNS subdomain's labels end in a letter or digit; the cut may leave a '.' or '-' at the end.
    let prefix = name[..keep].trim_end_matches(['.', '-']);
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_subdomain(s: &str) -> bool {
        s.len() <= NAME_MAX
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn long_names_get_short_valid_distinct_event_names() {
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        // The cut falls after 225 characters: at a '.' and at a '-'.
        let cut_at_a_dot = format!("{label}.{label}.{label}.{}.{}", "c".repeat(32), "d".repeat(20));
        let cut_at_a_dash = format!("{label}.{label}.{label}.{}-{}", "e".repeat(32), "f".repeat(20));
        let nanos = 1_780_000_000_123_456_789_i128;
        for name in [&longest, &cut_at_a_dot, &cut_at_a_dash] {
            let event = short_name(name, nanos);
            assert!(is_dns_subdomain(&event), "{event}");
            assert!(event.starts_with(&name[..200]));
        }
        let twin = format!("{}x", &longest[..252]);
        assert_ne!(short_name(&longest, nanos), short_name(&twin, nanos), "same prefix, other object");
        assert_ne!(short_name(&longest, nanos), short_name(&longest, nanos + 1));
    }
}
