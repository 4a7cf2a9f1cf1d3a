//! ARM-style throttling with token buckets (docs/azure.md#arm-throttling): one bucket per (subscription,
//! principal, operation kind), a global one per (subscription, kind) holding `global_factor` times as much,
//! per (principal, kind) buckets for tenant-level requests, and the managed-identity RP's own limits per
//! tenant, subscription and identity (docs/azure.md#managed-identity-limits). A request passes only if every
//! bucket that applies has a token; then it takes one from each. Otherwise it is answered 429 with
//! `Retry-After` (whole seconds until every bucket it needs has a token again) and takes nothing. The buckets
//! that were empty stay closed to that caller (its principal) until that Retry-After has passed: ARM does not
//! process a request sent before the retry value it was given has elapsed and answers it with a new one, the
//! time still to wait (docs/azure.md#arm-throttling), so a client that ignores Retry-After is not let through
//! by the refill alone. Other callers of a shared bucket (the global one, the managed-identity limits) were
//! told nothing and are judged by its tokens alone [UNVERIFIED: the documentation speaks of the client that
//! was throttled; closing a shared bucket to every caller would make one cluster's 429 stop the others].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;

use axum::http::{HeaderName, HeaderValue, StatusCode};

use crate::config::{BucketSpec, MsiRate, ThrottleConfig};
use crate::error::ArmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Read,
    Write,
    Delete,
}

impl OpKind {
    fn plural(self) -> &'static str {
        match self {
            Self::Read => "reads",
            Self::Write => "writes",
            Self::Delete => "deletes",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }
}

/// The operation classes of the managed-identity limits table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsiOp {
    CreateOrUpdate,
    Get,
    List,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Principal { sub: String, oid: String, kind: OpKind },
    Global { sub: String, kind: OpKind },
    Tenant { oid: String, kind: OpKind },
    MsiTenant(MsiOp),
    MsiSubscription(String, MsiOp),
    MsiResource(String, MsiOp),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    fn refill(&mut self, spec: BucketSpec, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * spec.refill_per_sec).min(spec.capacity);
        self.last_ms = now_ms;
    }

    /// Seconds until one token is available.
    fn wait_secs(&self, spec: BucketSpec) -> f64 {
        if self.tokens >= 1.0 {
            0.0
        } else if spec.refill_per_sec <= 0.0 {
            f64::INFINITY
        } else {
            (1.0 - self.tokens) / spec.refill_per_sec
        }
    }
}

/// What a request is, for throttling.
#[derive(Debug, Clone)]
pub struct ThrottleRequest {
    pub subscription: Option<String>,
    pub principal: String,
    pub kind: OpKind,
    /// For operations on userAssignedIdentities: the limit class and the identity's id (None for lists, whose
    /// "resource" is the container).
    pub msi: Option<(MsiOp, String)>,
}

#[derive(Debug, Default)]
pub struct Throttler {
    config: Mutex<ThrottleConfig>,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    /// (bucket, lowercased principal) → until when a 429 keeps that caller out of that bucket: every request
    /// of it that needs the bucket is refused without being processed until then.
    closed: Mutex<HashMap<(BucketKey, String), u64>>,
}

fn header(name: String, value: String) -> Option<(HeaderName, HeaderValue)> {
    Some((HeaderName::try_from(name).ok()?, HeaderValue::try_from(value).ok()?))
}

/// [UNVERIFIED] burst of the MSI limits: `burst_seconds` worth (one second by default), at least one request.
fn msi_spec(rate: f64, burst_seconds: f64) -> BucketSpec {
    BucketSpec::new((rate * burst_seconds).max(1.0), rate)
}

/// The least Retry-After the managed-identity limit `key` answers with (0 for ARM's own buckets).
fn least_retry_after(cfg: &ThrottleConfig, key: &BucketKey) -> u64 {
    let r = cfg.msi.retry_after;
    match key {
        BucketKey::MsiTenant(_) => r.per_tenant_secs,
        BucketKey::MsiSubscription(..) => r.per_subscription_secs,
        BucketKey::MsiResource(..) => r.per_resource_secs,
        _ => 0,
    }
}

impl Throttler {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config: Mutex::new(config),
            buckets: Mutex::new(HashMap::new()),
            closed: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        lock(&self.config).clone()
    }

    /// Replaces the configuration and refills every bucket.
    pub fn set_config(&self, config: ThrottleConfig) {
        *lock(&self.config) = config;
        lock(&self.buckets).clear();
    }

    pub fn reset(&self) {
        lock(&self.buckets).clear();
        lock(&self.closed).clear();
    }

    /// Admits the request (returning the rate-limit headers to add) or refuses it with 429.
    pub fn admit(
        &self,
        req: &ThrottleRequest,
        now_ms: u64,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ArmError> {
        let cfg = self.config();
        if !cfg.enabled {
            return Ok(Vec::new());
        }
        let (arm_keys, report) = arm_buckets(&cfg, req);
        let msi_keys = if cfg.msi.enabled { msi_buckets(&cfg, req) } else { Vec::new() };

        let mut buckets = lock(&self.buckets);
        let mut closed = lock(&self.closed);
        let caller = req.principal.to_ascii_lowercase();
        let mut wait = 0.0_f64;
        let mut arm_wait = 0.0_f64;
        let mut empty = Vec::new();
        for (key, spec) in arm_keys.iter().chain(msi_keys.iter()) {
            let b = buckets.entry(key.clone()).or_insert(Bucket { tokens: spec.capacity, last_ms: now_ms });
            b.refill(*spec, now_ms);
            let closed_until = closed.get(&(key.clone(), caller.clone())).copied().unwrap_or(0);
            let w = if now_ms < closed_until {
                // A caller kept out keeps its time: a request sent too early does not push it further.
                (closed_until - now_ms) as f64 / 1000.0
            } else {
                let w = b.wait_secs(*spec);
                if w > 0.0 {
                    empty.push(key.clone());
                }
                w
            };
            wait = wait.max(w);
            if matches!(
                key,
                BucketKey::Principal { .. } | BucketKey::Global { .. } | BucketKey::Tenant { .. }
            ) {
                arm_wait = arm_wait.max(w);
            }
        }
        if wait > 0.0 {
            let secs = if wait.is_finite() { (wait.ceil() as u64).max(1) } else { 3600 };
            // A limit newly refused may say to wait longer than its refill takes (the strict profile).
            let secs = empty.iter().map(|k| least_retry_after(&cfg, k)).fold(secs, u64::max);
            // Closed to this caller until the Retry-After we answer has passed, as ARM keeps a throttled
            // caller out. Past closures are dropped here, so the map holds only callers kept out now.
            closed.retain(|_, until| *until > now_ms);
            for key in empty {
                closed.insert((key, caller.clone()), now_ms + secs * 1000);
            }
            let err = if arm_wait > 0.0 {
                match &req.subscription {
                    // Wording from docs/azure.md#arm-errors [OBS].
                    Some(sub) => ArmError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "SubscriptionRequestsThrottled",
                        format!(
                            "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please \
                             try again after '{secs}' seconds.",
                            req.kind.word(),
                            req.principal
                        ),
                    ),
                    // [UNVERIFIED] tenant-level wording, by analogy with the subscription one.
                    None => ArmError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TenantRequestsThrottled",
                        format!(
                            "Number of '{}' requests for tenant actor '{}' exceeded. Please try again after \
                             '{secs}' seconds.",
                            req.kind.word(),
                            req.principal
                        ),
                    ),
                }
            } else {
                // [UNVERIFIED] The managed-identity RP's own 429: the one public sample
                // (docs/azure.md#managed-identity-limits) does not show its code; `TooManyRequests` is the
                // generic code RPs use, and the wording is ours.
                ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    format!(
                        "Too many requests to the Microsoft.ManagedIdentity resource provider. Please try \
                         again after '{secs}' seconds."
                    ),
                )
            };
            let mut err = err.with_header(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
            for (name, _) in &report {
                if let Some((n, v)) = header(name.clone(), String::from("0")) {
                    err = err.with_header(n, v);
                }
            }
            return Err(err);
        }
        for (key, _) in arm_keys.iter().chain(msi_keys.iter()) {
            if let Some(b) = buckets.get_mut(key) {
                b.tokens -= 1.0;
            }
        }
        Ok(report
            .into_iter()
            .filter_map(|(name, key)| {
                let remaining = buckets.get(&key).map(|b| b.tokens.floor().max(0.0) as u64).unwrap_or(0);
                header(name, remaining.to_string())
            })
            .collect())
    }
}

type Keys = Vec<(BucketKey, BucketSpec)>;

fn arm_buckets(cfg: &ThrottleConfig, req: &ThrottleRequest) -> (Keys, Vec<(String, BucketKey)>) {
    let kind = req.kind;
    let oid = req.principal.to_ascii_lowercase();
    match &req.subscription {
        Some(sub) => {
            let sub = sub.to_ascii_lowercase();
            let spec = match kind {
                OpKind::Read => cfg.reads,
                OpKind::Write => cfg.writes,
                OpKind::Delete => cfg.deletes,
            };
            let principal = BucketKey::Principal { sub: sub.clone(), oid, kind };
            let global = BucketKey::Global { sub, kind };
            let report = vec![
                (format!("x-ms-ratelimit-remaining-subscription-{}", kind.plural()), principal.clone()),
                (format!("x-ms-ratelimit-remaining-subscription-global-{}", kind.plural()), global.clone()),
            ];
            (vec![(principal, spec), (global, spec.scaled(cfg.global_factor))], report)
        }
        None => {
            let spec = match kind {
                OpKind::Read => cfg.tenant_reads,
                OpKind::Write => cfg.tenant_writes,
                OpKind::Delete => cfg.tenant_deletes,
            };
            let tenant = BucketKey::Tenant { oid, kind };
            let report = vec![(format!("x-ms-ratelimit-remaining-tenant-{}", kind.plural()), tenant.clone())];
            (vec![(tenant, spec)], report)
        }
    }
}

fn msi_buckets(cfg: &ThrottleConfig, req: &ThrottleRequest) -> Keys {
    let Some((op, resource)) = &req.msi else {
        return Vec::new();
    };
    let rate: MsiRate = match op {
        MsiOp::CreateOrUpdate => cfg.msi.create_or_update,
        MsiOp::Get => cfg.msi.get,
        MsiOp::List => cfg.msi.list,
        MsiOp::Delete => cfg.msi.delete,
    };
    let burst = cfg.msi.burst_seconds;
    let mut keys = vec![(BucketKey::MsiTenant(*op), msi_spec(rate.per_tenant, burst))];
    if let Some(sub) = &req.subscription {
        keys.push((
            BucketKey::MsiSubscription(sub.to_ascii_lowercase(), *op),
            msi_spec(rate.per_subscription, burst),
        ));
    }
    keys.push((
        BucketKey::MsiResource(resource.to_ascii_lowercase(), *op),
        msi_spec(rate.per_resource, burst),
    ));
    keys
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data in a consistent state (every critical
    // section is a few field updates), so poisoning is safe to ignore.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MsiLimits;

    fn small() -> ThrottleConfig {
        ThrottleConfig {
            writes: BucketSpec::new(3.0, 1.0),
            msi: MsiLimits { enabled: false, ..MsiLimits::default() },
            ..ThrottleConfig::default()
        }
    }

    fn write(principal: &str) -> ThrottleRequest {
        ThrottleRequest {
            subscription: Some("S".into()),
            principal: principal.into(),
            kind: OpKind::Write,
            msi: None,
        }
    }

    #[test]
    fn bucket_empties_and_refills() {
        let t = Throttler::new(small());
        for expected in ["2", "1", "0"] {
            let headers = t.admit(&write("p"), 0).unwrap_or_default();
            let remaining = headers
                .iter()
                .find(|(n, _)| n.as_str() == "x-ms-ratelimit-remaining-subscription-writes")
                .map(|(_, v)| v.clone());
            assert_eq!(remaining, HeaderValue::from_str(expected).ok());
        }
        let err = t.admit(&write("p"), 0).err();
        assert_eq!(err.as_ref().map(|e| e.status), Some(StatusCode::TOO_MANY_REQUESTS));
        let retry = err
            .and_then(|e| e.headers.into_iter().find(|(n, _)| n == axum::http::header::RETRY_AFTER))
            .map(|(_, v)| v);
        assert_eq!(retry, Some(HeaderValue::from(1u64)));
        // Another principal has its own bucket.
        assert!(t.admit(&write("q"), 0).is_ok());
        // After Retry-After the first principal passes again.
        assert!(t.admit(&write("p"), 1000).is_ok());
    }

    fn retry_after(r: Result<Vec<(HeaderName, HeaderValue)>, ArmError>) -> Option<HeaderValue> {
        r.err()?.headers.into_iter().find(|(n, _)| n == axum::http::header::RETRY_AFTER).map(|(_, v)| v)
    }

    #[test]
    fn a_request_before_retry_after_is_not_processed_and_learns_the_time_left() {
        // 3 writes, 0.5 back per second: an empty bucket holds one token again after 2 s.
        let t = Throttler::new(ThrottleConfig { writes: BucketSpec::new(3.0, 0.5), ..small() });
        for _ in 0..3 {
            assert!(t.admit(&write("p"), 0).is_ok());
        }
        assert_eq!(retry_after(t.admit(&write("p"), 0)), Some(HeaderValue::from(2u64)));
        // Before then the answer is the time left, rounded up, and no token is taken.
        assert_eq!(retry_after(t.admit(&write("p"), 1100)), Some(HeaderValue::from(1u64)));
        assert_eq!(retry_after(t.admit(&write("p"), 1900)), Some(HeaderValue::from(1u64)));
        // Once the Retry-After has passed the request is processed, and it took the one token that came back.
        assert!(t.admit(&write("p"), 2000).is_ok());
        assert!(t.admit(&write("p"), 2000).is_err());
    }

    #[test]
    fn an_early_retry_is_refused_even_when_the_bucket_has_refilled() {
        // 10 per second: 100 ms after a 429 the bucket has a token again, but Retry-After said 1 s.
        let t = Throttler::new(ThrottleConfig { writes: BucketSpec::new(1.0, 10.0), ..small() });
        assert!(t.admit(&write("p"), 0).is_ok());
        assert_eq!(retry_after(t.admit(&write("p"), 0)), Some(HeaderValue::from(1u64)));
        assert_eq!(retry_after(t.admit(&write("p"), 500)), Some(HeaderValue::from(1u64)));
        // Another principal's bucket is not closed.
        assert!(t.admit(&write("q"), 500).is_ok());
        assert!(t.admit(&write("p"), 1000).is_ok());
    }

    #[test]
    fn a_429_keeps_out_the_caller_it_told_and_not_the_others_of_a_shared_bucket() {
        let mut cfg = ThrottleConfig::default();
        cfg.msi.enabled = true;
        let t = Throttler::new(cfg);
        let create = |principal: &str, id: &str| ThrottleRequest {
            subscription: Some("s".into()),
            principal: principal.into(),
            kind: OpKind::Write,
            msi: Some((MsiOp::CreateOrUpdate, id.into())),
        };
        // 2 creates/s per subscription, a burst of two: the third is refused, with a Retry-After of 1 s.
        assert!(t.admit(&create("a", "/x/1"), 0).is_ok());
        assert!(t.admit(&create("a", "/x/2"), 0).is_ok());
        assert_eq!(retry_after(t.admit(&create("a", "/x/3"), 0)), Some(HeaderValue::from(1u64)));
        // At 600 ms the bucket has a token again: the caller told to wait is still kept out, another is not.
        assert_eq!(retry_after(t.admit(&create("a", "/x/3"), 600)), Some(HeaderValue::from(1u64)));
        assert!(t.admit(&create("b", "/x/4"), 600).is_ok());
        // The refill is shared: nothing is left for anyone until the next token.
        assert!(t.admit(&create("b", "/x/5"), 600).is_err());
        assert!(t.admit(&create("a", "/x/3"), 1500).is_ok());
    }

    #[test]
    fn the_strict_profile_says_to_wait_20_s_and_keeps_the_caller_out_that_long() {
        let t = Throttler::new(ThrottleConfig { msi: MsiLimits::strict(), ..ThrottleConfig::default() });
        let create = |id: &str| ThrottleRequest {
            subscription: Some("s".into()),
            principal: "a".into(),
            kind: OpKind::Write,
            msi: Some((MsiOp::CreateOrUpdate, id.into())),
        };
        assert!(t.admit(&create("/x/1"), 0).is_ok());
        assert!(t.admit(&create("/x/2"), 0).is_ok());
        assert_eq!(retry_after(t.admit(&create("/x/3"), 0)), Some(HeaderValue::from(20u64)));
        // The bucket refilled long ago, but the caller was told 20 s.
        assert_eq!(retry_after(t.admit(&create("/x/3"), 5_000)), Some(HeaderValue::from(15u64)));
        assert!(t.admit(&create("/x/3"), 20_000).is_ok());
        // ARM's own buckets keep answering the time until a token is back.
        assert_eq!(
            least_retry_after(&t.config(), &BucketKey::Global { sub: "s".into(), kind: OpKind::Write }),
            0
        );
    }

    #[test]
    fn global_bucket_is_shared() {
        let mut cfg = small();
        cfg.global_factor = 2.0; // global bucket of 6
        let t = Throttler::new(cfg);
        for p in ["a", "a", "a", "b", "b", "b"] {
            assert!(t.admit(&write(p), 0).is_ok());
        }
        assert!(t.admit(&write("c"), 0).is_err());
    }

    #[test]
    fn msi_per_resource_limit() {
        let mut cfg = ThrottleConfig::default();
        cfg.msi.enabled = true;
        let t = Throttler::new(cfg);
        let get = |id: &str| ThrottleRequest {
            subscription: Some("s".into()),
            principal: "p".into(),
            kind: OpKind::Read,
            msi: Some((MsiOp::Get, id.into())),
        };
        assert!(t.admit(&get("/x/1"), 0).is_ok());
        let err = t.admit(&get("/x/1"), 100).err();
        assert_eq!(err.map(|e| e.code), Some(String::from("TooManyRequests")));
        assert!(t.admit(&get("/x/2"), 100).is_ok());
        assert!(t.admit(&get("/x/1"), 2100).is_ok());
    }

    #[test]
    fn disabled_admits_everything() {
        let t = Throttler::new(ThrottleConfig::disabled());
        for _ in 0..1000 {
            assert!(t.admit(&write("p"), 0).is_ok());
        }
    }
}
