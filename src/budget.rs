//! A client-side request budget shaped like ARM's own throttling, so idbind waits its turn
//! instead of provoking 429s (aad-pod-identity's controller collapsed under 429 storms).
//!
//! ARM limits a principal per subscription with token buckets (writes: 200, refilling 10/s;
//! deletes: 200, 10/s; reads: 250, 25/s) and the managed-identity API adds its own limits per
//! subscription and per identity (create/update 2/s and 0.25/s, get 10/s and 0.5/s, list 5/s,
//! delete 2/s and 0.25/s). See shared/azure-rest-api/FACTS.md §1 and §5. A request takes one
//! token from every bucket that applies, all or none, so a request never half-spends.
//!
//! The core is pure (time is passed in) and tested without a clock; `SharedBudget` is the async
//! wrapper the controller awaits.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

/// ARM's operation classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read,
    Write,
    Delete,
}

/// The managed-identity API's operation classes, which it limits separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsiOp {
    CreateOrUpdate,
    Get,
    List,
    Delete,
}

/// One request to be admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: OpKind,
    /// For managed-identity operations: the operation and the identity's resource id
    /// (lowercased by the caller or not: it is compared case-insensitively).
    pub msi: Option<(MsiOp, String)>,
}

/// Capacity and refill rate per second of one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub capacity: f64,
    pub per_second: f64,
}

impl Rate {
    pub const fn new(capacity: f64, per_second: f64) -> Self {
        Rate { capacity, per_second }
    }
}

/// The limits to stay under. `Default` is ARM's documented public-cloud limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub reads: Rate,
    pub writes: Rate,
    pub deletes: Rate,
    /// Managed-identity limits per subscription and per identity, by operation.
    pub msi_subscription: [(MsiOp, Rate); 4],
    pub msi_resource: [(MsiOp, Rate); 4],
}

impl Default for Limits {
    fn default() -> Self {
        // The MSI buckets hold one second's worth (at least one request): the documented
        // figures are rates, and a burst of one is the most a 0.25/s limit can mean.
        Limits {
            reads: Rate::new(250.0, 25.0),
            writes: Rate::new(200.0, 10.0),
            deletes: Rate::new(200.0, 10.0),
            msi_subscription: [
                (MsiOp::CreateOrUpdate, Rate::new(2.0, 2.0)),
                (MsiOp::Get, Rate::new(10.0, 10.0)),
                (MsiOp::List, Rate::new(5.0, 5.0)),
                (MsiOp::Delete, Rate::new(2.0, 2.0)),
            ],
            msi_resource: [
                (MsiOp::CreateOrUpdate, Rate::new(1.0, 0.25)),
                (MsiOp::Get, Rate::new(1.0, 0.5)),
                (MsiOp::List, Rate::new(1.0, 0.25)),
                (MsiOp::Delete, Rate::new(1.0, 0.25)),
            ],
        }
    }
}

impl Limits {
    /// Every capacity and rate multiplied by `factor` (a subscription with raised limits, or a
    /// benchmark against a simulator with scaled limits). Capacities stay at least one request.
    pub fn scaled(&self, factor: f64) -> Limits {
        let s = |r: Rate| Rate::new((r.capacity * factor).max(1.0), r.per_second * factor);
        let table = |t: &[(MsiOp, Rate); 4]| t.map(|(op, r)| (op, s(r)));
        Limits { reads: s(self.reads), writes: s(self.writes), deletes: s(self.deletes), msi_subscription: table(&self.msi_subscription), msi_resource: table(&self.msi_resource) }
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Bucket { rate, tokens: rate.capacity, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.capacity);
        self.at = now;
    }

    /// How long until one token is there (zero when it is there now).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate.per_second <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second)
        }
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.rate.capacity
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Arm(OpKind),
    MsiSubscription(MsiOp),
    MsiResource(MsiOp, String),
}

/// The budget: one bucket per key, created on first use and dropped once full again, so memory
/// follows the identities in flight, not all identities ever seen.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    buckets: HashMap<Key, Bucket>,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget { limits, buckets: HashMap::new() }
    }

    fn rate(&self, key: &Key) -> Rate {
        let find = |table: &[(MsiOp, Rate); 4], op: &MsiOp| table.iter().find(|(o, _)| o == op).map(|(_, r)| *r).unwrap_or(Rate::new(1.0, 1.0));
        match key {
            Key::Arm(OpKind::Read) => self.limits.reads,
            Key::Arm(OpKind::Write) => self.limits.writes,
            Key::Arm(OpKind::Delete) => self.limits.deletes,
            Key::MsiSubscription(op) => find(&self.limits.msi_subscription, op),
            Key::MsiResource(op, _) => find(&self.limits.msi_resource, op),
        }
    }

    fn keys(req: &Request) -> Vec<Key> {
        let mut keys = vec![Key::Arm(req.kind)];
        if let Some((op, resource)) = &req.msi {
            keys.push(Key::MsiSubscription(*op));
            keys.push(Key::MsiResource(*op, resource.to_ascii_lowercase()));
        }
        keys
    }

    /// Admits `req` now, or says how long to wait before asking again; takes no token unless
    /// every bucket has one.
    pub fn try_acquire(&mut self, req: &Request, now: Instant) -> Result<(), Duration> {
        let keys = Self::keys(req);
        let mut wait = Duration::ZERO;
        for key in &keys {
            let rate = self.rate(key);
            let bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(rate, now));
            bucket.refill(now);
            wait = wait.max(bucket.wait());
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for key in &keys {
            if let Some(bucket) = self.buckets.get_mut(key) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Drops per-identity buckets that are full again (they would be recreated full).
    pub fn prune(&mut self, now: Instant) {
        self.buckets.retain(|key, bucket| {
            bucket.refill(now);
            !(matches!(key, Key::MsiResource(..)) && bucket.is_full())
        });
    }

    /// Number of buckets held (for tests and metrics).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

/// The budget shared by all reconcilers. `acquire` waits (without holding the lock) until the
/// request is admitted and returns how long it waited, for the budget-wait metric.
#[derive(Clone, Debug)]
pub struct SharedBudget {
    inner: Arc<Mutex<Budget>>,
}

impl SharedBudget {
    pub fn new(limits: Limits) -> Self {
        SharedBudget { inner: Arc::new(Mutex::new(Budget::new(limits))) }
    }

    pub async fn acquire(&self, req: &Request) -> Duration {
        // tokio's clock (not std's), so tests with a paused clock see time pass.
        let start = tokio::time::Instant::now();
        loop {
            let verdict = {
                let mut budget = self.inner.lock().await;
                let now = tokio::time::Instant::now().into_std();
                let verdict = budget.try_acquire(req, now);
                if budget.bucket_count() > 1024 {
                    budget.prune(now);
                }
                verdict
            };
            match verdict {
                Ok(()) => return start.elapsed(),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> Request {
        Request { kind: OpKind::Write, msi: None }
    }

    fn msi_put(id: &str) -> Request {
        Request { kind: OpKind::Write, msi: Some((MsiOp::CreateOrUpdate, id.into())) }
    }

    #[test]
    fn a_burst_of_the_bucket_size_passes_then_the_refill_rate_rules() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        for i in 0..200 {
            assert_eq!(b.try_acquire(&write(), t0), Ok(()), "write {i} of the first bucket");
        }
        let wait = b.try_acquire(&write(), t0).expect_err("the 201st write waits");
        assert_eq!(wait, Duration::from_millis(100), "10 writes per second");
        assert_eq!(b.try_acquire(&write(), t0 + wait), Ok(()));
    }

    #[test]
    fn one_identity_is_limited_to_one_write_per_four_seconds() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        assert_eq!(b.try_acquire(&msi_put("/sub/s/rg/r/id/A"), t0), Ok(()));
        assert_eq!(b.try_acquire(&msi_put("/SUB/S/RG/R/ID/a"), t0), Err(Duration::from_secs(4)), "ids compare case-insensitively");
        // Another identity only waits on the subscription-wide 2/s.
        assert_eq!(b.try_acquire(&msi_put("/sub/s/rg/r/id/B"), t0), Ok(()));
        assert_eq!(b.try_acquire(&msi_put("/sub/s/rg/r/id/C"), t0), Err(Duration::from_millis(500)));
    }

    #[test]
    fn a_refused_request_takes_no_token() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        assert_eq!(b.try_acquire(&msi_put("a"), t0), Ok(()));
        // Refused by the per-identity bucket: the subscription and ARM buckets keep their tokens.
        for _ in 0..10 {
            assert!(b.try_acquire(&msi_put("a"), t0).is_err());
        }
        assert_eq!(b.try_acquire(&msi_put("b"), t0), Ok(()), "the subscription bucket still had its second token");
    }

    #[test]
    fn pruning_forgets_identities_that_are_idle() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        for i in 0..100 {
            let _ = b.try_acquire(&msi_put(&format!("id{i}")), t0 + Duration::from_secs(i));
        }
        assert!(b.bucket_count() > 100);
        b.prune(t0 + Duration::from_secs(1000));
        assert_eq!(b.bucket_count(), 2, "only the ARM write and MSI subscription buckets remain");
    }

    #[test]
    fn scaled_limits_scale_rates_and_keep_a_burst_of_one() {
        let l = Limits::default().scaled(0.1);
        assert_eq!(l.writes, Rate::new(20.0, 1.0));
        assert!(l.msi_resource.iter().all(|(_, r)| r.capacity == 1.0), "{l:?}");
        assert_eq!(Limits::default().scaled(4.0).msi_subscription[0].1, Rate::new(8.0, 8.0));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_budget_waits_for_its_turn() {
        let budget = SharedBudget::new(Limits::default());
        assert_eq!(budget.acquire(&msi_put("x")).await, Duration::ZERO);
        let waited = budget.acquire(&msi_put("x")).await;
        assert!(waited >= Duration::from_secs(4), "waited {waited:?}");
    }
}
