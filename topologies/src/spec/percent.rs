//! Whole percentages in topology files (`quality`, `quality_bar`, `min_confidence`), refused in
//! the user's words: the field, its range, and what `0.5` probably meant.

/// Reads a whole percentage from 0 to 100, saying so (and what `0.5` probably meant) on anything
/// else instead of serde's "invalid type: floating point".
fn percent_of<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<u8>, D::Error> {
    struct Percent(&'static str);
    impl serde::de::Visitor<'_> for Percent {
        type Value = u8;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "`{}`: a whole number from 0 to 100", self.0)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u8, E> {
            u8::try_from(v).ok().filter(|p| *p <= 100).ok_or_else(|| {
                E::custom(format!(
                    "`{}` is {v}, out of range: write a whole number from 0 to 100",
                    self.0
                ))
            })
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u8, E> {
            u64::try_from(v)
                .map_err(|_| {
                    E::custom(format!(
                        "`{}` is {v}, out of range: write a whole number from 0 to 100",
                        self.0
                    ))
                })
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u8, E> {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            if v.fract() == 0.0 && (0.0..=100.0).contains(&v) {
                return Ok(v as u8);
            }
            let hint = if v > 0.0 && v < 1.0 {
                #[allow(clippy::cast_possible_truncation)]
                let pct = (v * 100.0).round() as i64;
                format!(" (it is a percentage: for {pct}%, write `{pct}`)")
            } else {
                String::new()
            };
            Err(E::custom(format!(
                "`{}` is {v}, not a whole number from 0 to 100{hint}",
                self.0
            )))
        }
    }
    d.deserialize_any(Percent(field)).map(Some)
}

pub(super) fn quality_pct<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    percent_of(d, "quality")
}

pub(super) fn quality_bar_pct<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u8>, D::Error> {
    percent_of(d, "quality_bar")
}

pub(super) fn min_confidence_pct<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u8>, D::Error> {
    percent_of(d, "min_confidence")
}
