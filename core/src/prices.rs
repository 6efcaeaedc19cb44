//! Built-in prices of common hosted models, in dollars per million tokens, as published by the
//! providers. A topology's `price:` overrides them. Prices change: the table says when it was taken.

use crate::energy::ModelSize;
use crate::money::{NanoUsd, Price};

/// When the table was taken from the providers' price pages.
pub const PRICES_AS_OF: &str = "2025-08";

/// (model name prefix, input, output, cached input), dollars per million tokens, as integer
/// micro-dollars per million (so the table itself is exact).
const TABLE: &[(&str, u64, u64, u64)] = &[
    // OpenAI
    ("gpt-4o-mini", 150_000, 600_000, 75_000),
    ("gpt-4o", 2_500_000, 10_000_000, 1_250_000),
    ("gpt-4.1-nano", 100_000, 400_000, 25_000),
    ("gpt-4.1-mini", 400_000, 1_600_000, 100_000),
    ("gpt-4.1", 2_000_000, 8_000_000, 500_000),
    ("gpt-5-nano", 50_000, 400_000, 5_000),
    ("gpt-5-mini", 250_000, 2_000_000, 25_000),
    ("gpt-5", 1_250_000, 10_000_000, 125_000),
    ("o4-mini", 1_100_000, 4_400_000, 275_000),
    ("o3", 2_000_000, 8_000_000, 500_000),
    // Anthropic (cached input = cache reads)
    ("claude-opus-4", 15_000_000, 75_000_000, 1_500_000),
    ("claude-sonnet-4", 3_000_000, 15_000_000, 300_000),
    ("claude-3-7-sonnet", 3_000_000, 15_000_000, 300_000),
    ("claude-3-5-haiku", 800_000, 4_000_000, 80_000),
    ("claude-haiku-4", 1_000_000, 5_000_000, 100_000),
];

/// Anthropic bills a prompt-cache write (5-minute cache) at 1.25× the input price; OpenAI
/// does not bill writes apart.
const ANTHROPIC_CACHE_WRITE: (u64, u64) = (5, 4);

/// The built-in price of `model` (longest matching prefix), if the table knows it.
pub fn builtin_price(model: &str) -> Option<Price> {
    TABLE
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(prefix, i, o, c)| {
            let p = Price::per_mtok(NanoUsd(i * 1000), NanoUsd(o * 1000), NanoUsd(c * 1000));
            if prefix.starts_with("claude") {
                let (num, den) = ANTHROPIC_CACHE_WRITE;
                p.with_cache_write(NanoUsd(i * 1000 * num / den))
            } else {
                p
            }
        })
}

/// Where the built-in model sizes come from.
pub const SIZES_SOURCE: &str = "EcoLogits' model repository (ecologits/data/models.json): \
    the providers have not published these architectures; EcoLogits' estimated ranges, taken at \
    their midpoint";

/// (model name prefix, active parameters min and max, total parameters), billions. Only
/// models whose size EcoLogits publishes an estimate for; the rest have no energy figure
/// unless the topology declares `params_b`.
const SIZES: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o-mini", 8.0, 28.0, 28.0),
    ("gpt-4o", 55.0, 220.0, 440.0),
    ("gpt-4.1-nano", 10.0, 37.0, 37.0),
    ("gpt-4.1-mini", 40.0, 112.0, 112.0),
    ("gpt-4.1", 44.0, 176.0, 352.0),
    ("o4-mini", 8.0, 28.0, 28.0),
];

/// The built-in size estimate of `model` (longest matching prefix): the midpoint of the
/// estimated range of active parameters, and the total (the range's top for a dense model).
pub fn builtin_size(model: &str) -> Option<ModelSize> {
    SIZES
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(_, lo, hi, total)| ModelSize {
            active_b: (lo + hi) / 2.0,
            total_b: total,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mini = builtin_price("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini.input_per_mtok, NanoUsd(150_000_000));
        let big = builtin_price("gpt-4o-2024-08-06").unwrap();
        assert_eq!(big.output_per_mtok, NanoUsd::from_usd(10));
        assert_eq!(
            builtin_price("claude-sonnet-4-20250514")
                .unwrap()
                .cached_input_per_mtok,
            NanoUsd(300_000_000)
        );
        assert!(builtin_price("llama-3.1-8b").is_none());
        // Anthropic cache writes: 1.25 × $3.
        assert_eq!(
            builtin_price("claude-sonnet-4-5")
                .unwrap()
                .cache_write_per_mtok,
            NanoUsd(3_750_000_000)
        );
        assert_eq!(mini.cache_write_per_mtok, mini.input_per_mtok);
        let s = builtin_size("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((s.active_b, s.total_b), (18.0, 28.0));
        assert_eq!(builtin_size("gpt-4o-2024-08-06").unwrap().active_b, 137.5);
        assert!(
            builtin_size("claude-sonnet-4").is_none(),
            "no published estimate"
        );
    }
}
