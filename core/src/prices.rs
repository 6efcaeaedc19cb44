//! Built-in prices of common hosted models, in dollars per million tokens, as published by the
//! providers. A topology's `price:` overrides them. Prices change: the table says when it was taken.

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

/// The built-in price of `model` (longest matching prefix), if the table knows it.
pub fn builtin_price(model: &str) -> Option<Price> {
    TABLE
        .iter()
        .filter(|(prefix, ..)| model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(_, i, o, c)| {
            Price::per_mtok(NanoUsd(i * 1000), NanoUsd(o * 1000), NanoUsd(c * 1000))
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
    }
}
