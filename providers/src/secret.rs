//! Secrets by reference: a topology names an environment variable (`${OPENAI_API_KEY}`), the
//! runtime reads it at start, and the value is never printed (Debug and Display redact it).

use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

/// Every secret value read in this process, so that text from outside (a provider's error body
/// that echoes a header) can be scrubbed of them before it is shown or stored.
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not scrubbed (they would redact ordinary words).
const MIN_SCRUBBED: usize = 8;

/// Remembers `value` as a secret: [`scrub`] removes it from any text from now on.
pub fn register_secret(value: &str) {
    if value.len() < MIN_SCRUBBED {
        return;
    }
    let mut known = KNOWN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
    }
}

/// `text` with every known secret value (see [`register_secret`]; every [`Secret`] read is
/// registered) replaced by `[redacted]`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let known = KNOWN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = Cow::Owned(out.replace(k.as_str(), "[redacted]"));
        }
    }
    out
}

/// A credential read from the environment.
#[derive(Clone)]
pub struct Secret {
    var: String,
    value: String,
}

impl Secret {
    /// Reads `${VAR}` from the environment.
    ///
    /// # Errors
    /// When `reference` is not of the form `${VAR}` (a literal key in a file is refused), or the
    /// variable is unset or empty. The message names the variable, never a value.
    pub fn from_reference(reference: &str) -> Result<Secret, crate::ProviderError> {
        let var = parse_reference(reference)?;
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => {
                register_secret(&v);
                Ok(Secret {
                    var: var.to_string(),
                    value: v,
                })
            }
            _ => Err(crate::ProviderError::Unset {
                var: var.to_string(),
            }),
        }
    }

    /// A secret an embedder obtained elsewhere (a vault, a keyring), shown as `${label}`. It is
    /// registered for scrubbing like one read from the environment.
    pub fn from_value(label: impl Into<String>, value: impl Into<String>) -> Secret {
        let value = value.into();
        register_secret(&value);
        Secret {
            var: label.into(),
            value,
        }
    }

    /// The value, for the request header only.
    pub(crate) fn expose(&self) -> &str {
        &self.value
    }
}

/// The variable name of a `${VAR}` reference.
///
/// # Errors
/// When the text is not a reference.
pub fn parse_reference(reference: &str) -> Result<&str, crate::ProviderError> {
    reference
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .ok_or(crate::ProviderError::NotAReference)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(${{{}}} = [redacted])", self.var)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_only_and_redacted() {
        // Typed errors a caller can branch on (#18): an inline key, an unset variable.
        assert!(matches!(
            parse_reference("sk-live-123"),
            Err(crate::ProviderError::NotAReference)
        ));
        match Secret::from_reference("${BATON_TEST_SURELY_UNSET_VAR}") {
            Err(crate::ProviderError::Unset { var }) => {
                assert_eq!(var, "BATON_TEST_SURELY_UNSET_VAR");
            }
            other => panic!("not Unset: {other:?}"),
        }
        assert_eq!(
            parse_reference("${OPENAI_API_KEY}").expect("a reference"),
            "OPENAI_API_KEY"
        );
        let s = Secret {
            var: "K".into(),
            value: "sk-secret".into(),
        };
        assert!(!format!("{s:?} {s}").contains("sk-secret"));
    }

    #[test]
    fn registered_values_are_scrubbed_from_any_text() {
        register_secret("sk-scrub-me-0123456789");
        register_secret("short");
        let echoed =
            "Invalid header: Authorization: Bearer sk-scrub-me-0123456789 (sk-scrub-me-0123456789)";
        assert_eq!(
            scrub(echoed),
            "Invalid header: Authorization: Bearer [redacted] ([redacted])"
        );
        assert_eq!(scrub("a short word"), "a short word");
    }
}
