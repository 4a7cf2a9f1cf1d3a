//! A client-side request budget shaped like ARM's own throttling, so idbind waits its turn instead of
//! provoking 429s (aad-pod-identity's controller collapsed under 429 storms).
//!
//! ARM limits a principal per subscription with token buckets (writes: 200, refilling 10/s; deletes: 200,
//! 10/s; reads: 250, 25/s) and the managed-identity API adds its own limits per subscription and per identity
//! (create/update 2/s and 0.25/s, get 10/s and 0.5/s, list 5/s, delete 2/s and 0.25/s). See
//! docs/azure.md#arm-throttling and docs/azure.md#managed-identity-limits. A request takes one token from
//! every bucket that applies, all or none, so a request never half-spends.
//!
//! The limits shared with other callers (ARM's subscription-wide buckets count every principal's requests;
//! the managed-identity limits are per subscription, whoever calls) are not known to be idbind's alone: what
//! a 429 teaches about them is in [`learned`].
//!
//! The core is pure (time and randomness are passed in) and tested without a clock; `SharedBudget` is the
//! async wrapper the controller awaits.

pub mod learned;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use learned::Learned;

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

/// A limit other callers spend too: ARM's bucket of a kind of operation, or the managed-identity API's limit
/// per subscription of an operation. (The per-identity limits are left out: only writers of the same identity
/// share them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SharedLimit {
    Arm(OpKind),
    Msi(MsiOp),
}

impl SharedLimit {
    /// Every shared limit, in the order metrics list them.
    pub const ALL: [SharedLimit; 7] = [
        SharedLimit::Arm(OpKind::Read),
        SharedLimit::Arm(OpKind::Write),
        SharedLimit::Arm(OpKind::Delete),
        SharedLimit::Msi(MsiOp::CreateOrUpdate),
        SharedLimit::Msi(MsiOp::Get),
        SharedLimit::Msi(MsiOp::List),
        SharedLimit::Msi(MsiOp::Delete),
    ];

    /// Its name in metrics (`limit` label).
    pub fn label(self) -> &'static str {
        match self {
            SharedLimit::Arm(OpKind::Read) => "arm_reads",
            SharedLimit::Arm(OpKind::Write) => "arm_writes",
            SharedLimit::Arm(OpKind::Delete) => "arm_deletes",
            SharedLimit::Msi(MsiOp::CreateOrUpdate) => "msi_create_or_update",
            SharedLimit::Msi(MsiOp::Get) => "msi_get",
            SharedLimit::Msi(MsiOp::List) => "msi_list",
            SharedLimit::Msi(MsiOp::Delete) => "msi_delete",
        }
    }

    /// The limit a 429 for `req` with ARM error `code` was for. ARM names its own throttling
    /// (`SubscriptionRequestsThrottled`, `TenantRequestsThrottled`: docs/azure.md#arm-errors); any other 429
    /// of a managed-identity request is the managed-identity API's. Its per-identity limit cannot be told
    /// apart from its per-subscription one by the answer, and idbind's own budget keeps it off the former, so
    /// the latter is what someone else spent.
    pub fn of_429(req: &Request, code: &str) -> SharedLimit {
        let arm_says = matches!(code, "SubscriptionRequestsThrottled" | "TenantRequestsThrottled");
        match &req.msi {
            Some((op, _)) if !arm_says => SharedLimit::Msi(*op),
            _ => SharedLimit::Arm(req.kind),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Shared(SharedLimit),
    MsiResource(MsiOp, String),
}

/// The budget: one bucket per key, created on first use and dropped once full again, so memory follows the
/// identities in flight, not all identities ever seen.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    buckets: HashMap<Key, Bucket>,
    /// What 429s taught about the shared limits; a limit not here is used in full.
    learned: HashMap<SharedLimit, Learned>,
    /// Draws the cut of each 429 ([`learned::CUT`]).
    rng: fastrand::Rng,
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
    /// A budget whose cuts are drawn from `seed`: each process seeds its own, so a fleet's operators draw
    /// differently.
    pub fn new(limits: Limits, seed: u64) -> Self {
        Budget {
            limits,
            buckets: HashMap::new(),
            learned: HashMap::new(),
            rng: fastrand::Rng::with_seed(seed),
            booked: HashMap::new(),
            turns: HashMap::new(),
            prune_above: 1024,
        }
    }

    /// The documented rate of a shared limit.
    fn documented(&self, limit: SharedLimit) -> Rate {
        match limit {
            SharedLimit::Arm(OpKind::Read) => self.limits.reads,
            SharedLimit::Arm(OpKind::Write) => self.limits.writes,
            SharedLimit::Arm(OpKind::Delete) => self.limits.deletes,
            SharedLimit::Msi(op) => msi_rate(&self.limits.msi_subscription, op),
        }
    }

    /// The rate idbind may use of a shared limit at `now`: the documented one times what it learned, with a
    /// burst of at least one request.
    pub fn learned_rate(&self, limit: SharedLimit, now: Instant) -> Rate {
        let documented = self.documented(limit);
        let fraction = self.learned.get(&limit).map_or(1.0, |l| l.fraction(now));
        Rate::new((documented.capacity * fraction).max(1.0), documented.per_second * fraction)
    }

    fn rate(&self, key: &Key, now: Instant) -> Rate {
        match key {
            Key::Shared(limit) => self.learned_rate(*limit, now),
            Key::MsiResource(op, _) => msi_rate(&self.limits.msi_resource, *op),
        }
    }

    /// How long from `now` a 429 still holds the limit `key` stands for.
    fn held(&self, key: &Key, now: Instant) -> Option<Duration> {
        match key {
            Key::Shared(limit) => self.learned.get(limit).and_then(|l| l.held(now)),
            Key::MsiResource(..) => None,
        }
    }

    /// When a 429's hold of the limit `key` stands for ends, if one was ever learned.
    fn open_at(&self, key: &Key, now: Instant) -> Option<Instant> {
        match key {
            Key::Shared(limit) => self.learned.get(limit).map(|l| l.open_at(now)),
            Key::MsiResource(..) => None,
        }
    }

    fn keys(req: &Request) -> Vec<Key> {
        let mut keys = vec![Key::Shared(SharedLimit::Arm(req.kind))];
        if let Some((op, resource)) = &req.msi {
            keys.push(Key::Shared(SharedLimit::Msi(*op)));
            keys.push(Key::MsiResource(*op, resource.to_ascii_lowercase()));
        }
        keys
    }

    /// The bucket of `key`, refilled to `now` at the rate that applies now.
    fn bucket(&mut self, key: &Key, now: Instant) -> &mut Bucket {
        let rate = self.rate(key, now);
        let bucket = self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(rate, now));
        bucket.refill(now);
        bucket.rate = rate;
        bucket.tokens = bucket.tokens.min(rate.capacity);
        bucket
    }

    /// Admits `req` now, or says how long to wait before asking again; takes no token unless every bucket has
    /// one and no limit it needs is held.
    pub fn try_acquire(&mut self, req: &Request, now: Instant) -> Result<(), Duration> {
        let keys = Self::keys(req);
        let mut wait = Duration::ZERO;
        for key in &keys {
            let held = self.held(key, now).unwrap_or_default();
            wait = wait.max(self.bucket(key, now).wait()).max(held);
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

    /// A random part of one interval of `req`'s managed-identity limit per subscription (nothing for other
    /// requests): added to the wait of a request that has to wait for a token, so paced creates go out at a
    /// random point of their interval.
    ///
    /// An idbind pacing its creates at the documented rate would otherwise send each one the moment a token
    /// is back at Azure: alone it loses nothing by that, but in a fleet the one pacing at the full rate takes
    /// every token as it comes back, never meets a 429, and leaves the others to share what it leaves until
    /// it is done. Sending at a random point lets the others' requests take some of those tokens, so it meets
    /// the 429s that teach it to share. The token is taken when the request goes, after the wait, so idbind's
    /// buckets and Azure's count the same requests at the same time and the lone idbind still meets no 429.
    pub fn pacing_jitter(&mut self, req: &Request) -> Duration {
        let Some((op, _)) = &req.msi else {
            return Duration::ZERO;
        };
        per_request(self.documented(SharedLimit::Msi(*op)))
            .map_or(Duration::ZERO, |i| i.mul_f64(self.rng.f64()))
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
        if let Some(at) = self.turns.get(holder).copied() {
            // A 429 since the turn was given holds the limit: the turn moves to the hold's end, so the
            // reconcile comes back then instead of reading Azure for a create that would be refused.
            let open = Self::keys(req).iter().filter_map(|k| self.open_at(k, now)).max().unwrap_or(at);
            let at = at.max(open);
            self.turns.insert(holder.to_string(), at);
            return at;
        }
        let keys: Vec<Key> =
            Self::keys(req).into_iter().filter(|k| !matches!(k, Key::Shared(SharedLimit::Arm(_)))).collect();
        let mut at = now;
        for key in &keys {
            let rate = self.rate(key, now);
            at = at.max(now + self.bucket(key, now).wait() + self.held(key, now).unwrap_or_default());
            if let (Some(booked), Some(burst)) =
                (self.booked.get(key), per_request(rate).map(|i| i.mul_f64((rate.capacity - 1.0).max(0.0))))
            {
                at = at.max(booked.checked_sub(burst).unwrap_or(now));
            }
        }
        for key in keys {
            if let Some(interval) = per_request(self.rate(&key, now)) {
                let booked = self.booked.entry(key).or_insert(at);
                *booked = (*booked).max(at) + interval;
            }
        }
        self.turns.insert(holder.to_string(), at);
        at
    }

    /// Azure answered `req`, which this budget admitted, with 429 and ARM error `code`: someone else spends
    /// the limit too. Holds it until `retry_after` has passed and cuts its rate ([`learned`]). Returns the
    /// limit.
    pub fn throttled(
        &mut self,
        req: &Request,
        code: &str,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> SharedLimit {
        let limit = SharedLimit::of_429(req, code);
        let (low, high) = (*learned::CUT.start(), *learned::CUT.end());
        let cut = low + self.rng.f64() * (high - low);
        self.learned.entry(limit).or_insert_with(|| Learned::full(now)).throttled(now, retry_after, cut);
        // What the bucket holds was shaped by the old rate: none of it may go out before the hold ends.
        let key = Key::Shared(limit);
        let bucket = self.bucket(&key, now);
        bucket.tokens = bucket.tokens.min(0.0);
        limit
    }

    /// Each shared limit's rate at `now` (requests per second), for the metrics.
    pub fn learned_rates(&self, now: Instant) -> Vec<(SharedLimit, f64)> {
        SharedLimit::ALL.iter().map(|l| (*l, self.learned_rate(*l, now).per_second)).collect()
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
        self.learned.retain(|_, learned| !learned.forgotten(now));
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

/// `op`'s rate in a managed-identity limits table (every op is listed; one request per second otherwise).
fn msi_rate(table: &[(MsiOp, Rate); 4], op: MsiOp) -> Rate {
    table.iter().find(|(o, _)| *o == op).map_or(Rate::new(1.0, 1.0), |(_, r)| *r)
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
    /// A budget with cuts drawn from a seed of this process's own (its id and start time), so the operators
    /// of a fleet do not draw alike.
    pub fn new(limits: Limits) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        SharedBudget { inner: Arc::new(Mutex::new(Budget::new(limits, seed))) }
    }

    /// The budget, locked. Never held across an await, so a std mutex (which the metrics' scrape can take
    /// without a runtime) is right.
    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Now on tokio's clock (not std's), so tests with a paused clock see time pass.
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    pub async fn acquire(&self, req: &Request) -> Duration {
        let start = tokio::time::Instant::now();
        loop {
            let verdict = {
                let mut budget = self.lock();
                let now = Self::now();
                budget.maybe_prune(now);
                budget.try_acquire(req, now).map_err(|wait| wait + budget.pacing_jitter(req))
            };
            match verdict {
                Ok(()) => return start.elapsed(),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// How long from now `holder`'s turn to send `req` is (see [`Budget::turn`]).
    pub async fn turn(&self, holder: &str, req: &Request) -> Duration {
        let mut budget = self.lock();
        let now = Self::now();
        budget.maybe_prune(now);
        budget.turn(holder, req, now).saturating_duration_since(now)
    }

    /// `holder` takes (or gives up) its turn.
    pub async fn end_turn(&self, holder: &str) {
        self.lock().end_turn(holder);
    }

    /// Azure answered `req` with 429 (see [`Budget::throttled`]); the limit it was for.
    pub fn throttled(&self, req: &Request, code: &str, retry_after: Option<Duration>) -> SharedLimit {
        self.lock().throttled(req, code, retry_after, Self::now())
    }

    /// Each shared limit's learned rate now, requests per second.
    pub fn learned_rates(&self) -> Vec<(SharedLimit, f64)> {
        self.lock().learned_rates(Self::now())
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

    fn msi_get(id: &str) -> Request {
        Request { kind: OpKind::Read, msi: Some((MsiOp::Get, id.into())) }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_429_holds_back_the_requests_of_its_limit_until_retry_after_and_no_others() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default(), 7);
        assert_eq!(b.try_acquire(&msi_put("/id/a"), t0), Ok(()));
        let limit = b.throttled(&msi_put("/id/a"), "TooManyRequests", Some(20 * SECOND), t0);
        assert_eq!(limit, SharedLimit::Msi(MsiOp::CreateOrUpdate));
        // Another identity's create shares the per-subscription limit: it waits out the Retry-After.
        assert_eq!(b.try_acquire(&msi_put("/id/b"), t0), Err(20 * SECOND));
        assert_eq!(b.try_acquire(&msi_put("/id/b"), t0 + 19 * SECOND), Err(SECOND));
        // Reads of identities and ARM's other writes (role assignments, credentials) do not share it.
        assert_eq!(b.try_acquire(&msi_get("/id/b"), t0), Ok(()));
        assert_eq!(b.try_acquire(&write(), t0), Ok(()));
        assert_eq!(b.try_acquire(&msi_put("/id/b"), t0 + 20 * SECOND), Ok(()));
    }

    #[test]
    fn arm_s_own_throttling_holds_arm_s_bucket_of_that_kind() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default(), 7);
        let limit = b.throttled(&msi_put("/id/a"), "SubscriptionRequestsThrottled", Some(5 * SECOND), t0);
        assert_eq!(limit, SharedLimit::Arm(OpKind::Write));
        assert_eq!(b.try_acquire(&write(), t0 + SECOND), Err(4 * SECOND));
        assert_eq!(b.try_acquire(&msi_get("/id/a"), t0 + SECOND), Ok(()), "reads are another bucket");
        assert_eq!(SharedLimit::of_429(&write(), "TooManyRequests"), SharedLimit::Arm(OpKind::Write));
    }

    #[test]
    fn after_a_429_creates_go_out_at_the_learned_rate_and_the_full_rate_comes_back() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default(), 7);
        let create = SharedLimit::Msi(MsiOp::CreateOrUpdate);
        b.throttled(&msi_put("/id/a"), "TooManyRequests", Some(SECOND), t0);
        let rate = b.learned_rate(create, t0).per_second;
        assert!((1.0..=1.5).contains(&rate), "2/s cut by a draw from {:?}: {rate}", learned::CUT);
        // Past the hold, one create per learned interval (the burst is one request at most now).
        let open = t0 + SECOND;
        assert_eq!(b.try_acquire(&msi_put("/id/b"), open), Ok(()));
        // At the documented rate the bucket would hold a burst of two by now; cut, it holds less than two.
        let wait = b.try_acquire(&msi_put("/id/c"), open).expect_err("the next waits");
        assert!(wait.as_secs_f64() <= 1.0 / rate, "within one learned interval: {wait:?}");
        // Alone again, the documented rate is back within half a minute, and the limit is forgotten.
        let later = t0 + Duration::from_secs_f64(0.5 / learned::RECOVERY_PER_SECOND) + SECOND;
        assert_eq!(b.learned_rate(create, later), Rate::new(2.0, 2.0));
        b.prune(later);
        assert!(b.learned.is_empty());
    }

    #[test]
    fn a_turn_given_before_a_429_moves_to_the_end_of_its_hold() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default(), 7);
        let turn = b.turn("x", &msi_put("/id/x"), t0);
        assert_eq!(turn, t0);
        b.throttled(&msi_put("/id/a"), "TooManyRequests", Some(20 * SECOND), t0);
        assert_eq!(b.turn("x", &msi_put("/id/x"), t0), t0 + 20 * SECOND, "no read for a refused create");
        assert!(b.turn("y", &msi_put("/id/y"), t0) >= t0 + 20 * SECOND, "new turns start after it too");
        // A turn for a read is not held.
        assert_eq!(b.turn("z", &msi_get("/id/z"), t0), t0);
    }

    #[test]
    fn paced_creates_wait_a_random_part_of_their_interval_more() {
        let mut b = Budget::new(Limits::default(), 7);
        let jitters: Vec<Duration> = (0..20).map(|_| b.pacing_jitter(&msi_put("/id/a"))).collect();
        assert!(jitters.iter().all(|d| *d < Duration::from_millis(500)), "within 0.5 s at 2/s: {jitters:?}");
        assert!(jitters.iter().any(|d| *d > Duration::from_millis(100)), "{jitters:?}");
        // Requests that no fleet shares at this rate are never held back.
        assert_eq!(b.pacing_jitter(&write()), Duration::ZERO);
    }

    #[test]
    fn operators_seeded_differently_cut_differently() {
        let t0 = Instant::now();
        let create = SharedLimit::Msi(MsiOp::CreateOrUpdate);
        let rates: Vec<f64> = (1..=4)
            .map(|seed| {
                let mut b = Budget::new(Limits::default(), seed);
                b.throttled(&msi_put("/id/a"), "TooManyRequests", Some(SECOND), t0);
                b.learned_rate(create, t0).per_second
            })
            .collect();
        let distinct: std::collections::BTreeSet<u64> = rates.iter().map(|r| r.to_bits()).collect();
        assert_eq!(distinct.len(), 4, "{rates:?}");
        let learned: Vec<(SharedLimit, f64)> = Budget::new(Limits::default(), 1).learned_rates(t0);
        assert_eq!(learned.len(), SharedLimit::ALL.len());
        assert!(learned.contains(&(create, 2.0)));
    }

    #[test]
    fn a_burst_of_the_bucket_size_passes_then_the_refill_rate_rules() {
        let t0 = Instant::now();
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
        let mut b = Budget::new(Limits::default(), 7);
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
