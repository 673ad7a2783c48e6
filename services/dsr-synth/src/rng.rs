//! Seeding and sampling helpers.
//!
//! Every random stream is derived from `(seed, stream, index)` by hashing, never from a
//! shared generator, so a chunk produces the same values whichever thread runs it and
//! whatever ran before it. Event ids are hashes too (not SHA-1 `derived_id`s): millions of
//! them are needed and a hash costs a few nanoseconds.

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

/// The generator of every stream: PCG-64 (MCG variant), fast and statistically sound.
pub(crate) type Rng = rand_pcg::Pcg64Mcg;

/// Which kind of randomness a stream feeds; part of the hash so streams never overlap.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Areas = 1,
    Households = 2,
    Events = 3,
    Shocks = 4,
    RegistrationIds = 5,
    EventIds = 6,
    ShockIds = 7,
}

/// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 128 well-mixed bits from a seed, a stream and two indices.
#[inline]
pub(crate) fn hash128(seed: u64, stream: Stream, a: u64, b: u64) -> u128 {
    let h1 = mix64(seed ^ mix64((stream as u64) ^ mix64(a ^ mix64(b))));
    let h2 = mix64(h1 ^ 0xD6E8_FEB8_6659_FD93 ^ a.rotate_left(17) ^ b.rotate_left(41));
    ((h1 as u128) << 64) | h2 as u128
}

/// The generator of one stream.
pub(crate) fn rng_for(seed: u64, stream: Stream, index: u64) -> Rng {
    Rng::new(hash128(seed, stream, index, 0))
}

/// A deterministic event id: a UUID version 8 ("custom") whose bits are a hash.
#[inline]
pub(crate) fn event_id(seed: u64, stream: Stream, a: u64, b: u64) -> uuid::Uuid {
    uuid::Builder::from_custom_bytes(hash128(seed, stream, a, b).to_be_bytes()).into_uuid()
}

/// A standard normal variate.
#[inline]
pub(crate) fn normal(rng: &mut Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// A log-normal variate with the given median and log-scale spread.
#[inline]
pub(crate) fn lognormal(rng: &mut Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Uniform in `[0, 1)`.
#[inline]
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    rng.random::<f64>()
}

/// True with probability `p`.
#[inline]
pub(crate) fn chance(rng: &mut Rng, p: f64) -> bool {
    unit(rng) < p
}

/// Uniform integer in `[lo, hi]` (inclusive).
#[inline]
pub(crate) fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Uniform index in `[0, n)`; `n` must be positive.
#[inline]
pub(crate) fn index(rng: &mut Rng, n: usize) -> usize {
    rng.random_range(0..n)
}

/// A Poisson variate by inversion (Knuth); the means used here are small.
pub(crate) fn poisson(rng: &mut Rng, mean: f64) -> u32 {
    let limit = (-mean.max(0.0)).exp();
    let mut k = 0;
    let mut p = unit(rng);
    while p > limit && k < 64 {
        k += 1;
        p *= unit(rng);
    }
    k
}

/// Picks an index with probability proportional to `weights`.
pub(crate) fn weighted(rng: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = unit(rng) * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// The logistic function, for turning a latent score into a probability.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map(|_| rng_for(1, Stream::Events, 0).random())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = rng_for(1, Stream::Events, 0);
        let mut y = rng_for(1, Stream::Events, 1);
        let mut z = rng_for(1, Stream::Households, 0);
        let (x, y, z): (u64, u64, u64) = (x.random(), y.random(), z.random());
        assert!(x != y && x != z && y != z);
    }

    #[test]
    fn event_ids_are_version_8() {
        let id = event_id(7, Stream::EventIds, 1, 2);
        assert_eq!(id.get_version_num(), 8);
        assert_ne!(id, event_id(7, Stream::EventIds, 2, 1));
    }

    #[test]
    fn poisson_mean_is_close() {
        let mut rng = rng_for(3, Stream::Households, 0);
        let n = 20_000;
        let sum: u32 = (0..n).map(|_| poisson(&mut rng, 2.5)).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 2.5).abs() < 0.1, "{mean}");
    }
}
