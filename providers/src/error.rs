//! What can go wrong setting a provider up: a caller can match on it (a missing key is not a
//! broken TLS stack).

/// Why a provider, a secret or a built-in HTTP tool could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A credential given inline instead of by `${VAR}` reference.
    #[error("secrets are given by reference, like `${{OPENAI_API_KEY}}`, never inline")]
    NotAReference,
    /// The referenced environment variable is unset or empty (the message names the variable,
    /// never a value).
    #[error("environment variable `{var}` is not set")]
    Unset {
        /// The variable.
        var: String,
    },
    /// The HTTP client could not be built (its TLS provider, its settings).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}
