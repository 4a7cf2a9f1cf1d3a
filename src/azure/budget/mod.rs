//! A client-side request budget shaped like ARM's own throttling, so idbind waits its turn instead of
//! provoking 429s (aad-pod-identity's controller collapsed under 429 storms).
//!
//! ARM limits a principal per subscription with token buckets (writes: 200, refilling 10/s; deletes: 200,
//! 10/s; reads: 250, 25/s) and the managed-identity API adds its own limits per subscription and per identity
//! (create/update 2/s and 0.25/s, get 10/s and 0.5/s, list 5/s, delete 2/s and 0.25/s). See
//! docs/azure.md#arm-throttling and docs/azure.md#managed-identity-limits. A request takes one token from
//! every bucket that applies, all or none, so a request never half-spends.
//!
//! The core is pure (time is passed in) and tested without a clock; `SharedBudget` is the async wrapper the
//! controller awaits.

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
    /// For managed-identity operations: the operation and the identity's resource id (lowercased by the
    /// caller or not: it is compared case-insensitively).
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
        // The MSI buckets hold one second's worth (at least one request): the documented figures are rates,
        // and a burst of one is the most a 0.25/s limit can mean.
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
    /// Every capacity and rate multiplied by `factor` (a subscription with raised limits, or a benchmark
    /// against a simulator with scaled limits). Capacities stay at least one request.
    pub fn scaled(&self, factor: f64) -> Limits {
        let s = |r: Rate| Rate::new((r.capacity * factor).max(1.0), r.per_second * factor);
        let table = |t: &[(MsiOp, Rate); 4]| t.map(|(op, r)| (op, s(r)));
        Limits {
            reads: s(self.reads),
            writes: s(self.writes),
            deletes: s(self.deletes),
            msi_subscription: table(&self.msi_subscription),
            msi_resource: table(&self.msi_resource),
        }
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

/// The budget: one bucket per key, created on first use and dropped once full again, so memory follows the
/// identities in flight, not all identities ever seen.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    buckets: HashMap<Key, Bucket>,
    /// Per managed-identity bucket: when the turns handed out so far will have used it up (the "theoretical
    /// arrival time" of a generic cell-rate algorithm). Only for [`Budget::turn`].
    booked: HashMap<Key, Instant>,
    /// Holder → the turn it was given and has not taken yet.
    turns: HashMap<String, Instant>,
    prune_above: usize,
}

/// A turn nobody came back for within this long after it is dropped (its binding was deleted, or its plan
/// changed); the budget it booked was simply not used.
const TURN_EXPIRY: Duration = Duration::from_secs(60);

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            buckets: HashMap::new(),
            booked: HashMap::new(),
            turns: HashMap::new(),
            prune_above: 1024,
        }
    }

    fn rate(&self, key: &Key) -> Rate {
        let find = |table: &[(MsiOp, Rate); 4], op: &MsiOp| {
            table.iter().find(|(o, _)| o == op).map(|(_, r)| *r).unwrap_or(Rate::new(1.0, 1.0))
        };
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

    /// Admits `req` now, or says how long to wait before asking again; takes no token unless every bucket has
    /// one.
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

    /// When `holder` may send `req`: a turn booked on the managed-identity buckets the request needs, in the
    /// order turns are asked for, at their rate (after their burst). Asking again before the turn is taken
    /// gives the same time.
    ///
    /// This is what lets a reconcile that would wait long for the budget leave and come back (a requeue at
    /// its turn) instead of holding a worker while it waits: with 1,000 identities to create at 2 per second,
    /// every worker would otherwise sit in such a wait and an edit of any other binding would queue behind
    /// all of them. Only the managed-identity buckets are booked: they are what a backlog exhausts (2
    /// creates/s against ARM's 10 writes/s), and booking ARM's shared buckets this way would put every other
    /// write behind the backlog's turns too. The request itself still passes [`Budget::try_acquire`] when
    /// sent.
    pub fn turn(&mut self, holder: &str, req: &Request, now: Instant) -> Instant {
        if let Some(at) = self.turns.get(holder) {
            return *at;
        }
        let keys: Vec<Key> = Self::keys(req).into_iter().filter(|k| !matches!(k, Key::Arm(_))).collect();
        let mut at = now;
        for key in &keys {
            let rate = self.rate(key);
            let bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(rate, now));
            bucket.refill(now);
            at = at.max(now + bucket.wait());
            if let (Some(booked), Some(burst)) =
                (self.booked.get(key), per_request(rate).map(|i| i.mul_f64((rate.capacity - 1.0).max(0.0))))
            {
                at = at.max(booked.checked_sub(burst).unwrap_or(now));
            }
        }
        for key in keys {
            if let Some(interval) = per_request(self.rate(&key)) {
                let booked = self.booked.entry(key).or_insert(at);
                *booked = (*booked).max(at) + interval;
            }
        }
        self.turns.insert(holder.to_string(), at);
        at
    }

    /// `holder` takes (or gives up) its turn.
    pub fn end_turn(&mut self, holder: &str) {
        self.turns.remove(holder);
    }

    /// Drops per-identity buckets that are full again (they would be recreated full), bookings that are past,
    /// and turns nobody came back for.
    pub fn prune(&mut self, now: Instant) {
        self.buckets.retain(|key, bucket| {
            bucket.refill(now);
            !(matches!(key, Key::MsiResource(..)) && bucket.is_full())
        });
        self.booked.retain(|_, booked| *booked > now);
        self.turns.retain(|_, at| *at + TURN_EXPIRY > now);
    }

    /// Prunes once what is held has doubled since the last pruning (at least 1,024 entries), so pruning costs
    /// O(1) per request on average however many identities are in flight.
    pub fn maybe_prune(&mut self, now: Instant) {
        if self.bucket_count() > self.prune_above {
            self.prune(now);
            self.prune_above = (2 * self.bucket_count()).max(1024);
        }
    }

    /// Buckets, bookings and turns held (for tests and pruning).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len() + self.booked.len() + self.turns.len()
    }
}

/// The time one request takes of a bucket's rate (`None` for a bucket that never refills).
fn per_request(rate: Rate) -> Option<Duration> {
    (rate.per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / rate.per_second))
}

/// The budget shared by all reconcilers. `acquire` waits (without holding the lock) until the request is
/// admitted and returns how long it waited, for the budget-wait metric.
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
                budget.maybe_prune(now);
                budget.try_acquire(req, now)
            };
            match verdict {
                Ok(()) => return start.elapsed(),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// How long from now `holder`'s turn to send `req` is (see [`Budget::turn`]).
    pub async fn turn(&self, holder: &str, req: &Request) -> Duration {
        let mut budget = self.inner.lock().await;
        let now = tokio::time::Instant::now().into_std();
        budget.maybe_prune(now);
        budget.turn(holder, req, now).saturating_duration_since(now)
    }

    /// `holder` takes (or gives up) its turn.
    pub async fn end_turn(&self, holder: &str) {
        self.inner.lock().await.end_turn(holder);
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
        assert_eq!(
            b.try_acquire(&msi_put("/SUB/S/RG/R/ID/a"), t0),
            Err(Duration::from_secs(4)),
            "ids compare case-insensitively"
        );
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
        assert_eq!(
            b.try_acquire(&msi_put("b"), t0),
            Ok(()),
            "the subscription bucket still had its second token"
        );
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

    #[test]
    fn turns_follow_the_managed_identity_rate_in_the_order_asked() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        let turns: Vec<Duration> =
            (0..1000).map(|i| b.turn(&format!("b{i}"), &msi_put(&format!("id{i}")), t0) - t0).collect();
        // The subscription's burst of two, then one every half second (2/s).
        assert_eq!(
            &turns[..4],
            &[Duration::ZERO, Duration::ZERO, Duration::from_millis(500), Duration::from_secs(1)]
        );
        assert!(turns.windows(2).all(|w| w[0] <= w[1]), "first asked, first served");
        let last = turns[999].as_secs_f64();
        assert!((last - 499.0).abs() < 0.01, "the 1,000th create's turn is at {last} s");
        // Asking again before taking it changes nothing; after taking it, a new turn is later.
        assert_eq!(b.turn("b3", &msi_put("id3"), t0 + Duration::from_secs(1)), t0 + turns[3]);
        b.end_turn("b3");
        assert!(b.turn("b3", &msi_put("id3"), t0 + Duration::from_secs(1)) > t0 + turns[999]);
    }

    #[test]
    fn turns_book_nothing_of_arm_s_shared_buckets() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        for i in 0..1000 {
            b.turn(&format!("b{i}"), &msi_put(&format!("id{i}")), t0);
        }
        // Writes that need no managed-identity bucket (FICs, role assignments) pass at once: the backlog's
        // turns do not queue them.
        for _ in 0..100 {
            assert_eq!(b.try_acquire(&write(), t0), Ok(()));
        }
        assert_eq!(
            b.turn("arm-only", &write(), t0),
            t0,
            "a request with no managed-identity bucket has its turn now"
        );
    }

    #[test]
    fn a_turn_respects_tokens_already_spent_and_the_per_identity_limit() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        assert_eq!(b.try_acquire(&msi_put("a"), t0), Ok(()));
        assert_eq!(
            b.turn("x", &msi_put("a"), t0),
            t0 + Duration::from_secs(4),
            "identity a was written just now: 1 per 4 s"
        );
        assert_eq!(
            b.turn("y", &msi_put("a"), t0),
            t0 + Duration::from_secs(8),
            "and the next one 4 s after that"
        );
    }

    #[test]
    fn turns_nobody_takes_expire() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default());
        for i in 0..10 {
            b.turn(&format!("b{i}"), &msi_put(&format!("id{i}")), t0);
        }
        b.prune(t0 + Duration::from_secs(120));
        assert_eq!(
            b.bucket_count(),
            1,
            "turns, bookings and idle identities' buckets gone: the subscription's bucket stays"
        );
        assert_eq!(
            b.turn("b9", &msi_put("id9"), t0 + Duration::from_secs(120)),
            t0 + Duration::from_secs(120),
            "a fresh turn, at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_budget_waits_for_its_turn() {
        let budget = SharedBudget::new(Limits::default());
        assert_eq!(budget.acquire(&msi_put("x")).await, Duration::ZERO);
        let waited = budget.acquire(&msi_put("x")).await;
        assert!(waited >= Duration::from_secs(4), "waited {waited:?}");
    }
}
