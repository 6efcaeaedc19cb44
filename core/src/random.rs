//! The one pseudo-random mixer Baton uses where it needs reproducible spread without a
//! generator's state: retry jitter, loop jitter, fault injection.

/// The splitmix64 step: `z` advanced by the golden gamma and mixed (Steele, Lea and Flood's
/// SplitMix64 finaliser). A counter fed through it gives a well-spread reproducible sequence;
/// one seed gives one well-spread value.
#[must_use]
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's increment: 2^64 divided by the golden ratio, odd.
pub(crate) const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs of the reference implementation seeded with 0 (Vigna's splitmix64.c):
        // each is the mix of the state after one more gamma.
        let mut state = 0u64;
        let mut next = || {
            let out = splitmix64(state);
            state = state.wrapping_add(GOLDEN_GAMMA);
            out
        };
        assert_eq!(next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(next(), 0x06C4_5D18_8009_454F);
    }
}
