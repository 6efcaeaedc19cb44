//! Secrets by reference: a topology names an environment variable (`${OPENAI_API_KEY}`), the
//! runtime reads it at start, and the value is never printed (Debug and Display redact it).

use std::fmt;

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
    pub fn from_reference(reference: &str) -> Result<Secret, String> {
        let var = parse_reference(reference)?;
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret {
                var: var.to_string(),
                value: v,
            }),
            _ => Err(format!("environment variable `{var}` is not set")),
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
pub fn parse_reference(reference: &str) -> Result<&str, String> {
    reference
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .ok_or_else(|| {
            "secrets are given by reference, like `${OPENAI_API_KEY}`, never inline".to_string()
        })
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
        assert!(parse_reference("sk-live-123").is_err());
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
}
