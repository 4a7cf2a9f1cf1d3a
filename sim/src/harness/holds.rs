//! Holds: "hold the Nth matching write". The held request blocks (before it changes the state, or after it
//! changed it but before it is answered) until released through `POST /_sim/holds/{id}/release` or
//! `SimHandle::release_hold`. Crash tests use it to kill the operator while a write is in flight, and ask how
//! many writes are held.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum HoldPhase {
    /// The write has not changed anything yet.
    #[default]
    BeforeCommit,
    /// The write is done; only its answer is held back.
    AfterCommit,
}

/// What to hold. Every field narrows the match; all absent matches every write.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HoldSpec {
    /// Operation name, e.g. `FederatedIdentityCredentials_CreateOrUpdate`.
    pub operation: Option<String>,
    /// Case-insensitive substring of the request path.
    pub path_contains: Option<String>,
    /// Hold the Nth matching write (1 = the next one).
    pub nth: Option<u64>,
    pub phase: HoldPhase,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldRuleStatus {
    pub id: u64,
    #[serde(flatten)]
    pub spec: HoldSpec,
    /// Matching writes seen so far.
    pub seen: u64,
    pub fired: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeldRequest {
    pub id: u64,
    pub rule_id: u64,
    pub operation: String,
    pub method: String,
    pub path: String,
    pub phase: HoldPhase,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HoldsStatus {
    pub rules: Vec<HoldRuleStatus>,
    pub held: Vec<HeldRequest>,
}

struct Held {
    info: HeldRequest,
    release: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    rules: Vec<HoldRuleStatus>,
    held: Vec<Held>,
}

pub struct Holds {
    inner: Mutex<Inner>,
    held_count: watch::Sender<usize>,
}

impl Default for Holds {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner::default()), held_count: watch::channel(0).0 }
    }
}

/// A held request waits on this.
pub struct HoldTicket {
    pub id: u64,
    rx: oneshot::Receiver<()>,
}

impl HoldTicket {
    pub async fn wait(self) {
        // A dropped sender (reset of the holds) releases too.
        let _ = self.rx.await;
    }
}

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, spec: HoldSpec) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.rules.push(HoldRuleStatus { id, spec, seen: 0, fired: false });
        id
    }

    pub fn status(&self) -> HoldsStatus {
        let inner = self.lock();
        HoldsStatus { rules: inner.rules.clone(), held: inner.held.iter().map(|h| h.info.clone()).collect() }
    }

    pub fn held_count(&self) -> usize {
        self.lock().held.len()
    }

    /// Counts this write against the rules of `phase`; returns a ticket if it must be held.
    pub fn check(&self, operation: &str, method: &str, path: &str, phase: HoldPhase) -> Option<HoldTicket> {
        let mut inner = self.lock();
        let mut fired_rule = None;
        for rule in inner.rules.iter_mut().filter(|r| !r.fired && r.spec.phase == phase) {
            let op_ok = rule.spec.operation.as_deref().is_none_or(|o| o.eq_ignore_ascii_case(operation));
            let path_ok = rule
                .spec
                .path_contains
                .as_deref()
                .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()));
            if !(op_ok && path_ok) {
                continue;
            }
            rule.seen += 1;
            if fired_rule.is_none() && rule.seen >= rule.spec.nth.unwrap_or(1) {
                rule.fired = true;
                fired_rule = Some(rule.id);
            }
        }
        let rule_id = fired_rule?;
        inner.next_id += 1;
        let id = inner.next_id;
        let (tx, rx) = oneshot::channel();
        inner.held.push(Held {
            info: HeldRequest {
                id,
                rule_id,
                operation: operation.to_owned(),
                method: method.to_owned(),
                path: path.to_owned(),
                phase,
            },
            release: tx,
        });
        let n = inner.held.len();
        drop(inner);
        self.held_count.send_replace(n);
        tracing::info!(hold = id, operation, path, "holding write");
        Some(HoldTicket { id, rx })
    }

    /// Releases one held request (by its id); false if no such request is held.
    pub fn release(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let Some(pos) = inner.held.iter().position(|h| h.info.id == id) else {
            return false;
        };
        let held = inner.held.remove(pos);
        let n = inner.held.len();
        drop(inner);
        let _ = held.release.send(());
        self.held_count.send_replace(n);
        true
    }

    /// Releases every held request; returns how many.
    pub fn release_all(&self) -> usize {
        let mut inner = self.lock();
        let held: Vec<Held> = inner.held.drain(..).collect();
        drop(inner);
        let n = held.len();
        for h in held {
            let _ = h.release.send(());
        }
        self.held_count.send_replace(0);
        n
    }

    /// Removes every rule and releases every held request.
    pub fn clear(&self) {
        self.release_all();
        self.lock().rules.clear();
    }

    /// Waits until at least `count` requests are held; false on timeout.
    pub async fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let mut rx = self.held_count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n >= count)).await.is_ok_and(|r| r.is_ok())
    }
}
