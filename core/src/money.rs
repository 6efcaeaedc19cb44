//! Integer money: nano-dollars, and prices per million tokens.
//!
//! **Architecture Invariant**: no float ever enters the ledger. Amounts are parsed from their decimal text
//! (a YAML number is re-read through its shortest round-trip representation, so `0.15` is exactly
//! 150 000 000 nano-dollars) and converted once; floats appear only in human output and gauges.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::usage::TokenUsage;

/// An amount of money in integer nano-dollars (10⁻⁹ USD).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NanoUsd(pub u64);

/// Nano-dollars in one dollar.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

impl NanoUsd {
    /// Zero dollars.
    pub const ZERO: NanoUsd = NanoUsd(0);
    /// The largest representable amount (used as "no limit").
    pub const MAX: NanoUsd = NanoUsd(u64::MAX);

    /// Whole dollars.
    pub const fn from_usd(dollars: u64) -> NanoUsd {
        NanoUsd(dollars.saturating_mul(NANOS_PER_USD))
    }

    /// Parses a non-negative decimal dollar amount exactly (`"0.15"`, `"3"`, `"1e-3"` is refused).
    ///
    /// # Errors
    /// [`Error::InvalidAmount`] when the text is negative, not a plain decimal, has more than nine
    /// decimal places (finer than a nano-dollar) or overflows.
    pub fn parse_usd(text: &str) -> Result<NanoUsd, Error> {
        let bad = |reason| Error::InvalidAmount {
            input: text.to_string(),
            reason,
        };
        let t = text.trim().trim_start_matches('$');
        if t.starts_with('-') {
            return Err(bad("amounts cannot be negative"));
        }
        let t = t.strip_prefix('+').unwrap_or(t);
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad("expected a number such as 0.25"));
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a plain decimal number such as 0.25"));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 9 {
            return Err(bad("more precise than a nano-dollar (9 decimal places)"));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("too large"))?
        };
        let mut nanos: u64 = 0;
        for (i, d) in frac.bytes().enumerate() {
            nanos += u64::from(d - b'0') * 10u64.pow(8 - i as u32);
        }
        // `NanoUsd::MAX` itself means "no limit": the largest budget is one nano-dollar less.
        whole
            .checked_mul(NANOS_PER_USD)
            .and_then(|w| w.checked_add(nanos))
            .filter(|n| *n < u64::MAX)
            .map(NanoUsd)
            .ok_or_else(|| bad("too large: the largest amount is 18446744073.709551614 dollars"))
    }

    /// The amount in dollars, for human output and gauges only.
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// Saturating subtraction.
    pub const fn saturating_sub(self, other: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.saturating_sub(other.0))
    }

    /// Saturating addition.
    pub const fn saturating_add(self, other: NanoUsd) -> NanoUsd {
        NanoUsd(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for NanoUsd {
    /// `$0.001234` — six decimals, or all nine when the amount is below a micro-dollar's precision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANOS_PER_USD;
        let frac = self.0 % NANOS_PER_USD;
        if frac.is_multiple_of(1000) {
            write!(f, "${whole}.{:06}", frac / 1000)
        } else {
            write!(f, "${whole}.{frac:09}")
        }
    }
}

/// A dollar amount as written in a config file: a number or a string, read exactly into [`NanoUsd`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub NanoUsd);

impl schemars::JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A dollar amount: a non-negative number, or a decimal string (read exactly, to the nano-dollar).",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": "^\\$?[0-9]*\\.?[0-9]+$" }
            ]
        })
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Written back as a number with the exact decimal digits.
        let whole = self.0.0 / NANOS_PER_USD;
        let frac = self.0.0 % NANOS_PER_USD;
        let text = if frac == 0 {
            format!("{whole}")
        } else {
            let f = format!("{frac:09}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        };
        match text.parse::<f64>() {
            Ok(v) if format!("{v}") == text => s.serialize_f64(v),
            _ => s.serialize_str(&text),
        }
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative dollar amount such as 0.25")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Usd, E> {
                v.checked_mul(NANOS_PER_USD)
                    .filter(|n| *n < u64::MAX)
                    .map(|n| Usd(NanoUsd(n)))
                    .ok_or_else(|| {
                        E::custom("dollar amount too large (the largest is 18446744073.709551614)")
                    })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Usd, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "invalid dollar amount `{v}`: amounts cannot be negative"
                    )));
                }
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Usd, E> {
                if !v.is_finite() {
                    return Err(E::custom("dollar amount must be finite"));
                }
                // `{}` prints the shortest text that round-trips, i.e. what the user wrote.
                NanoUsd::parse_usd(&format!("{v}"))
                    .map(Usd)
                    .map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Usd, E> {
                NanoUsd::parse_usd(v).map(Usd).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A model's price in nano-dollars per **million** tokens, per kind of token.
///
/// `$3 / Mtok` is `3_000_000_000`. Costs are rounded up to the next nano-dollar once per call, so the
/// ledger never books less than the provider bills.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Price {
    /// Uncached input (prompt) tokens.
    pub input_per_mtok: NanoUsd,
    /// Output (completion) tokens.
    pub output_per_mtok: NanoUsd,
    /// Cached input tokens (prompt-cache reads).
    pub cached_input_per_mtok: NanoUsd,
    /// Input tokens written to the prompt cache (Anthropic: 1.25× the input price); the input
    /// price where writes are not billed apart.
    #[serde(default)]
    pub cache_write_per_mtok: NanoUsd,
}

impl Price {
    /// A price per million input and output tokens (cached input at the input's rate):
    /// `Price::per_million_tokens(NanoUsd::parse_usd("0.50")?, NanoUsd::parse_usd("1.50")?)`.
    pub const fn per_million_tokens(input: NanoUsd, output: NanoUsd) -> Price {
        Price::per_mtok(input, output, input)
    }

    /// A price from dollars per million input, output and cached-input tokens.
    pub const fn per_mtok(input: NanoUsd, output: NanoUsd, cached_input: NanoUsd) -> Price {
        Price {
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: cached_input,
            cache_write_per_mtok: input,
        }
    }

    /// This price with prompt-cache writes billed at `per_mtok`.
    pub const fn with_cache_write(mut self, per_mtok: NanoUsd) -> Price {
        self.cache_write_per_mtok = per_mtok;
        self
    }

    /// The cost of the tokens of one call. `usage.input` includes the cached tokens and the
    /// tokens written to the cache, each priced at its own rate.
    pub fn cost(&self, usage: &TokenUsage) -> NanoUsd {
        let cached = usage.cached_input.min(usage.input);
        let written = usage.cache_write_input.min(usage.input - cached);
        let uncached = usage.input - cached - written;
        let micro = u128::from(uncached) * u128::from(self.input_per_mtok.0)
            + u128::from(cached) * u128::from(self.cached_input_per_mtok.0)
            + u128::from(written) * u128::from(self.cache_write_per_mtok.0)
            + u128::from(usage.output) * u128::from(self.output_per_mtok.0);
        let nanos = micro.div_ceil(1_000_000);
        NanoUsd(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The most one call can cost with at most `input` prompt tokens (none assumed cached, all
    /// priced at the dearer of the input and cache-write rates) and `max_output` completion
    /// tokens: the amount the ledger reserves before the call.
    pub fn worst_case(&self, input: u64, max_output: u64) -> NanoUsd {
        let dearest = Price {
            input_per_mtok: self.input_per_mtok.max(self.cache_write_per_mtok),
            ..*self
        };
        dearest.cost(&TokenUsage {
            input,
            output: max_output,
            ..TokenUsage::default()
        })
    }

    /// What prompt caching changed on a call: its cost had nothing been read from or written to
    /// the cache, minus its cost (negative when writes cost more than reads saved).
    pub fn cache_saving(&self, usage: &TokenUsage) -> i64 {
        let plain = self.cost(&TokenUsage {
            cached_input: 0,
            cache_write_input: 0,
            ..*usage
        });
        let real = self.cost(usage);
        i64::try_from(i128::from(plain.0) - i128::from(real.0)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(NanoUsd::parse_usd("0.15").unwrap(), NanoUsd(150_000_000));
        assert_eq!(NanoUsd::parse_usd("3").unwrap(), NanoUsd(3_000_000_000));
        assert_eq!(
            NanoUsd::parse_usd("$1.000000001").unwrap(),
            NanoUsd(1_000_000_001)
        );
        assert_eq!(NanoUsd::parse_usd(".5").unwrap(), NanoUsd(500_000_000));
        assert!(NanoUsd::parse_usd("-1").is_err());
        assert!(NanoUsd::parse_usd("0.0000000001").is_err());
        assert!(NanoUsd::parse_usd("1e3").is_err());
        assert!(NanoUsd::parse_usd("").is_err());
        assert!(NanoUsd::parse_usd("99999999999999999999").is_err());
        // u64::MAX nano-dollars is the "no limit" sentinel: a budget of it would read as none.
        let e = NanoUsd::parse_usd("18446744073.709551615").expect_err("the sentinel");
        assert!(
            e.to_string()
                .contains("the largest amount is 18446744073.709551614"),
            "{e}"
        );
        assert_eq!(
            NanoUsd::parse_usd("18446744073.709551614").expect("the largest"),
            NanoUsd(u64::MAX - 1)
        );
    }

    #[test]
    fn yaml_floats_become_exact_nanos() {
        #[derive(Deserialize)]
        struct P {
            a: Usd,
            b: Usd,
            c: Usd,
        }
        let p: P = serde_saphyr::from_str("a: 0.15\nb: 2\nc: '0.1'\n").unwrap();
        assert_eq!(p.a.0, NanoUsd(150_000_000));
        assert_eq!(p.b.0, NanoUsd(2_000_000_000));
        assert_eq!(p.c.0, NanoUsd(100_000_000));
        let err = serde_saphyr::from_str::<P>("a: -1\nb: 2\nc: 1\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn cost_rounds_up_once_per_call() {
        // $3/M input, $15/M output, $0.30/M cached.
        let p = Price::per_mtok(
            NanoUsd::from_usd(3),
            NanoUsd::from_usd(15),
            NanoUsd(300_000_000),
        );
        let u = TokenUsage {
            input: 1000,
            output: 100,
            cached_input: 400,
            cache_write_input: 0,
        };
        // 600*3000 + 400*300 + 100*15000 nanos = 1_800_000 + 120_000 + 1_500_000
        assert_eq!(p.cost(&u), NanoUsd(3_420_000));
        let one = TokenUsage {
            input: 1,
            output: 0,
            cached_input: 0,
            cache_write_input: 0,
        };
        let cheap = Price::per_mtok(NanoUsd(150_000_000), NanoUsd::ZERO, NanoUsd::ZERO);
        assert_eq!(cheap.cost(&one), NanoUsd(150));
        let tiny = Price::per_mtok(NanoUsd(1), NanoUsd::ZERO, NanoUsd::ZERO);
        assert_eq!(tiny.cost(&one), NanoUsd(1), "fractions of a nano round up");
    }

    #[test]
    fn display() {
        assert_eq!(NanoUsd(1_234_000).to_string(), "$0.001234");
        assert_eq!(NanoUsd(150).to_string(), "$0.000000150");
    }

    #[test]
    fn arithmetic_and_conversions() {
        assert_eq!(NanoUsd::from_usd(2), NanoUsd(2_000_000_000));
        assert_eq!(NanoUsd::from_usd(u64::MAX), NanoUsd::MAX, "saturates");
        assert!((NanoUsd(1_500_000_000).as_usd_f64() - 1.5).abs() < 1e-12);
        assert_eq!(NanoUsd(5).saturating_sub(NanoUsd(7)), NanoUsd::ZERO);
        assert_eq!(NanoUsd(7).saturating_sub(NanoUsd(5)), NanoUsd(2));
        assert_eq!(NanoUsd(7).saturating_add(NanoUsd(5)), NanoUsd(12));
        assert_eq!(NanoUsd::MAX.saturating_add(NanoUsd(1)), NanoUsd::MAX);
        assert_eq!(NanoUsd(3_000_000_000).to_string(), "$3.000000");
        assert_eq!(NanoUsd(12_345_678_901).to_string(), "$12.345678901");
        for (text, nanos) in [
            (" 0.25 ", 250_000_000),
            ("+2", 2_000_000_000),
            ("1.", 1_000_000_000),
            ("0.100000000", 100_000_000),
            ("0.123456789", 123_456_789),
        ] {
            assert_eq!(
                NanoUsd::parse_usd(text).expect(text),
                NanoUsd(nanos),
                "{text}"
            );
        }
        for bad in ["abc", "1.2.3", ".", "$", "--1", "1,5", "a.5"] {
            assert!(NanoUsd::parse_usd(bad).is_err(), "{bad}");
        }
        let e = NanoUsd::parse_usd("a.5").expect_err("not a number");
        assert!(e.to_string().contains("plain decimal number"), "{e}");
    }

    #[test]
    fn usd_reads_every_json_number_form_and_writes_back_exactly() {
        let read = |json: &str| serde_json::from_str::<Usd>(json).map(|u| u.0);
        assert_eq!(read("3").expect("u64"), NanoUsd(3_000_000_000));
        assert_eq!(read("0.5").expect("f64"), NanoUsd(500_000_000));
        assert_eq!(read("\"$0.000000001\"").expect("str"), NanoUsd(1));
        let e = read("-2").expect_err("negative");
        assert!(e.to_string().contains("cannot be negative"), "{e}");
        let e = read("18446744074").expect_err("too large");
        assert!(e.to_string().contains("too large"), "{e}");
        let e = read("true").expect_err("not a number");
        assert!(
            e.to_string()
                .contains("a non-negative dollar amount such as 0.25"),
            "{e}"
        );
        // Integers a format hands over as signed (YAML, TOML): zero and up are dollars.
        let signed = |v: i64| {
            Usd::deserialize(
                serde::de::IntoDeserializer::<serde::de::value::Error>::into_deserializer(v),
            )
            .map(|u| u.0)
        };
        assert_eq!(signed(0).expect("zero"), NanoUsd::ZERO);
        assert_eq!(signed(4).expect("four"), NanoUsd::from_usd(4));
        assert!(signed(-1).is_err());
        let e = serde_json::from_value::<Usd>(serde_json::json!(-0.5)).expect_err("negative");
        assert!(e.to_string().contains("negative"), "{e}");
        for (nanos, json) in [
            (0, "0.0"),
            (2_000_000_000, "2.0"),
            (150_000_000, "0.15"),
            (1_000_000_001, "1.000000001"),
            (u64::MAX - 1, "\"18446744073.709551614\""),
        ] {
            let written = serde_json::to_string(&Usd(NanoUsd(nanos))).expect("json");
            assert_eq!(written, json, "{nanos}");
            assert_eq!(read(&written).expect("round trip"), NanoUsd(nanos));
        }
        let schema = schemars::schema_for!(Usd);
        assert_eq!(schema.get("title").and_then(|t| t.as_str()), Some("Usd"));
        assert!(
            schema.get("anyOf").is_some(),
            "a number or a decimal string"
        );
    }

    #[test]
    fn cache_writes_worst_cases_and_savings() {
        // $3/M input, $15/M output, $0.30/M cache reads, $3.75/M cache writes.
        let p = Price::per_mtok(
            NanoUsd::from_usd(3),
            NanoUsd::from_usd(15),
            NanoUsd(300_000_000),
        )
        .with_cache_write(NanoUsd(3_750_000_000));
        let u = TokenUsage {
            input: 1000,
            output: 10,
            cached_input: 200,
            cache_write_input: 300,
        };
        // 500*3000 + 200*300 + 300*3750 + 10*15000 = 1_500_000 + 60_000 + 1_125_000 + 150_000
        assert_eq!(p.cost(&u), NanoUsd(2_835_000));
        // Without caching: 1000*3000 + 10*15000 = 3_150_000; saved 315_000.
        assert_eq!(p.cache_saving(&u), 315_000);
        let writes_only = TokenUsage {
            cached_input: 0,
            cache_write_input: 1000,
            ..u
        };
        assert_eq!(p.cache_saving(&writes_only), -750_000, "writes cost more");
        // The worst case prices every prompt token at the dearer of input and cache writes.
        assert_eq!(p.worst_case(1000, 10), NanoUsd(3_750_000 + 150_000));
        let plain = Price::per_million_tokens(NanoUsd::from_usd(1), NanoUsd::from_usd(2));
        assert_eq!(
            plain.cached_input_per_mtok,
            NanoUsd::from_usd(1),
            "cached at the input rate"
        );
        assert_eq!(plain.cache_write_per_mtok, NanoUsd::from_usd(1));
        assert_eq!(plain.worst_case(1000, 500), NanoUsd(2_000_000));
        // More cached or written tokens than input are capped at the input.
        let odd = TokenUsage {
            input: 100,
            output: 0,
            cached_input: 150,
            cache_write_input: 50,
        };
        assert_eq!(
            p.cost(&odd),
            NanoUsd(30_000),
            "all 100 priced as cache reads"
        );
    }
}
