//! Per-client rate limits (a token bucket per client from `governor`), so one runaway
//! integration cannot starve the others.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One bucket per client, sized by the client's `requests_per_second` (burst of the same size).
#[derive(Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Takes one request from `client`'s bucket; `Err` is how long until the next is allowed.
    pub fn check(&self, client: &str, per_second: u32) -> Result<(), Duration> {
        let limiter = {
            let mut buckets = self.buckets.lock().expect("rate limit table poisoned");
            let entry = buckets
                .entry(client.to_owned())
                .or_insert_with(|| (per_second, Arc::new(limiter(per_second))));
            if entry.0 != per_second {
                *entry = (per_second, Arc::new(limiter(per_second)));
            }
            Arc::clone(&entry.1)
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

fn limiter(per_second: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_second(n).allow_burst(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let limits = RateLimits::default();
        for _ in 0..5 {
            assert!(limits.check("a", 5).is_ok());
        }
        let wait = limits.check("a", 5).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(limits.check("b", 5).is_ok());
    }
}
