//! What the budget learns from Azure's 429s about a limit it shares with others.
//!
//! The budget admits a request only when its own buckets, shaped like Azure's documented limits, have a
//! token. A 429 for a request the budget admitted therefore means someone else spends the same limit: the
//! managed-identity limits are per subscription and per tenant, not per caller, so every cluster's idbind in
//! one subscription draws on them (docs/azure.md#managed-identity-limits). Alone, idbind can use the whole
//! rate; in a fleet of K it gets about a K-th, and nobody tells it K.
//!
//! So each shared limit keeps a learned fraction of its documented rate, the classic additive increase,
//! multiplicative decrease of congestion control: a 429 cuts the fraction by a factor drawn from [`CUT`] (the
//! draw keeps K operators that meet the same 429 at the same moment from cutting and growing back in
//! lock-step), and every second without one adds [`RECOVERY_PER_SECOND`] of the documented rate back, up to
//! all of it, so idbind alone again is back at the full rate within half a minute. A 429 also holds the limit
//! closed until its `Retry-After` has passed: Azure does not process a request sent earlier
//! (docs/azure.md#arm-throttling), so sending one would only spend a request and provoke the next 429.
//!
//! Pure: time and the random draw are passed in.

use std::{
    ops::RangeInclusive,
    time::{Duration, Instant},
};

/// The fraction of the learned rate left after a 429: a draw from this range.
pub const CUT: RangeInclusive<f64> = 0.5..=0.75;

/// How much of the documented rate comes back per second without a 429: from half the rate to all of it in 25
/// seconds, so a fleet's operators probe for room slowly enough that few of their requests meet a 429.
pub const RECOVERY_PER_SECOND: f64 = 0.02;

/// The least fraction a limit is cut to: with 16 clusters or more in one subscription each still sends
/// something, and Azure's 429s (honoured to the second) do the rest.
pub const FLOOR: f64 = 1.0 / 16.0;

/// How long a 429 without a `Retry-After` holds its limit: ARM always sends one, so this is a guess at the
/// shortest it sends (docs/azure.md#arm-throttling).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);

/// One shared limit's learned fraction of its documented rate, and how long it is held after a 429.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learned {
    /// The fraction at `since`; it grows by [`RECOVERY_PER_SECOND`] per second after.
    fraction: f64,
    since: Instant,
    /// Until then, no request that needs the limit is sent.
    held_until: Option<Instant>,
}

impl Learned {
    /// The whole documented rate: what idbind assumes until Azure says otherwise.
    pub fn full(now: Instant) -> Self {
        Learned { fraction: 1.0, since: now, held_until: None }
    }

    /// The fraction of the documented rate idbind may use at `now`.
    pub fn fraction(&self, now: Instant) -> f64 {
        let recovered = now.saturating_duration_since(self.since).as_secs_f64() * RECOVERY_PER_SECOND;
        (self.fraction + recovered).min(1.0)
    }

    /// Whether nothing is learned any more: the full rate, no hold (the entry can be forgotten).
    pub fn forgotten(&self, now: Instant) -> bool {
        self.fraction(now) >= 1.0 && self.held(now).is_none()
    }

    /// How long from `now` the limit is still held, if it is.
    pub fn held(&self, now: Instant) -> Option<Duration> {
        self.held_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// When the hold ends (`now` when there is none).
    pub fn open_at(&self, now: Instant) -> Instant {
        self.held_until.map_or(now, |until| until.max(now))
    }

    /// Azure answered 429 at `now`, saying to retry after `retry_after`; `cut` is the draw from [`CUT`].
    ///
    /// One cut per hold: the other requests in flight when Azure began refusing are answered 429 too, and
    /// their answers say nothing new. The hold itself only ever grows, so no request is sent before any
    /// `Retry-After` Azure gave has passed.
    pub fn throttled(&mut self, now: Instant, retry_after: Option<Duration>, cut: f64) {
        let until = now + retry_after.unwrap_or(DEFAULT_HOLD);
        if self.held(now).is_none() {
            self.fraction = (self.fraction(now) * cut.clamp(*CUT.start(), *CUT.end())).max(FLOOR);
            self.since = now;
        }
        self.held_until = Some(self.held_until.map_or(until, |held| held.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_limit_is_used_in_full_until_azure_says_otherwise() {
        let t0 = Instant::now();
        let learned = Learned::full(t0);
        assert_eq!((learned.fraction(t0), learned.held(t0)), (1.0, None));
        assert!(learned.forgotten(t0 + 100 * SECOND));
    }

    #[test]
    fn a_429_cuts_the_rate_and_holds_the_limit_for_its_retry_after() {
        let t0 = Instant::now();
        let mut learned = Learned::full(t0);
        learned.throttled(t0, Some(20 * SECOND), 0.5);
        assert_eq!(learned.fraction(t0), 0.5);
        assert_eq!(learned.held(t0), Some(20 * SECOND));
        assert_eq!(learned.held(t0 + 19 * SECOND), Some(SECOND));
        assert_eq!(learned.held(t0 + 20 * SECOND), None);
        assert_eq!(learned.open_at(t0), t0 + 20 * SECOND);
        assert!(!learned.forgotten(t0 + 20 * SECOND), "still below the full rate");
    }

    #[test]
    fn the_429s_of_requests_already_in_flight_cut_once_and_never_shorten_the_hold() {
        let t0 = Instant::now();
        let mut learned = Learned::full(t0);
        learned.throttled(t0, Some(5 * SECOND), 0.5);
        learned.throttled(t0 + SECOND, Some(2 * SECOND), 0.5);
        assert_eq!(learned.fraction(t0 + SECOND), 0.5 + RECOVERY_PER_SECOND, "one cut per hold");
        assert_eq!(learned.held(t0 + SECOND), Some(4 * SECOND), "the earlier, longer hold stands");
        learned.throttled(t0 + 2 * SECOND, Some(10 * SECOND), 0.5);
        assert_eq!(learned.held(t0 + 2 * SECOND), Some(10 * SECOND), "a longer Retry-After extends it");
        // Once the hold has passed, the next 429 is news: another cut.
        let after = t0 + 12 * SECOND;
        let before_cut = learned.fraction(after);
        learned.throttled(after, Some(SECOND), 0.5);
        assert_eq!(learned.fraction(after), before_cut * 0.5);
    }

    #[test]
    fn alone_again_the_rate_grows_back_to_the_full_rate() {
        let t0 = Instant::now();
        let mut learned = Learned::full(t0);
        learned.throttled(t0, Some(SECOND), 0.5);
        let half_way = t0 + Duration::from_secs_f64(0.25 / RECOVERY_PER_SECOND);
        assert!((learned.fraction(half_way) - 0.75).abs() < 1e-9);
        let recovered = t0 + Duration::from_secs_f64(0.5 / RECOVERY_PER_SECOND);
        assert_eq!(learned.fraction(recovered), 1.0);
        assert!(learned.forgotten(recovered));
        assert_eq!(learned.fraction(recovered + 100 * SECOND), 1.0, "never above the documented rate");
    }

    #[test]
    fn cuts_stop_at_the_floor_and_stay_inside_the_cut_range() {
        let t0 = Instant::now();
        let mut learned = Learned::full(t0);
        let mut last = t0;
        for i in 0..20 {
            last = t0 + Duration::from_millis(1001 * i);
            learned.throttled(last, Some(SECOND), 0.5);
        }
        assert_eq!(learned.fraction(last), FLOOR);
        let mut one = Learned::full(t0);
        one.throttled(t0, None, 0.1);
        assert_eq!(one.fraction(t0), *CUT.start(), "a draw outside the range is clamped to it");
        assert_eq!(one.held(t0), Some(DEFAULT_HOLD));
    }
}
