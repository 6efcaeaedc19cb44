//! Credentials in topology files: which names carry them, whether a value holds one inline, and
//! masking them in the source a diagnostic quotes. A topology refuses inline credentials; these
//! keep the refusal's neighbours (other diagnostics on the same line, a snippet of the file) from
//! printing them anyway.

/// Words in a header, variable or key name that say it carries a credential.
const CREDENTIAL_WORDS: &[&str] = &[
    "authorization",
    "auth",
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "cookie",
    "credential",
    "session",
];

/// Prefixes of well-known API key formats (OpenAI, Anthropic, GitHub, Slack, GitLab, AWS,
/// Google): a word starting with one is masked wherever it appears.
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "glpat-",
    "AKIA",
    "AIza",
];

/// Words that name an authentication scheme, not a secret (`Bearer ${TOKEN}`).
const SCHEMES: &[&str] = &["bearer", "basic", "token", "bot", "apikey", "digest"];

/// Whether a header, environment variable or key named `name` carries a credential
/// (`Authorization`, `Proxy-Authorization`, `Cookie`, `DB_PASSWORD`, `X-Api-Key`, ...).
pub(crate) fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    // Token *counts* (`max_tokens`, `max_output_tokens`) are not credentials.
    if n.ends_with("tokens") || n.contains("tokens_") {
        return false;
    }
    CREDENTIAL_WORDS.iter().any(|w| n.contains(w))
}

/// Whether `value` holds a literal credential: anything left once its `${VAR}` references, an
/// authentication scheme word and cookie names (`session=`) are taken away. `Bearer ${TOKEN}` is
/// clean; `Bearer sk-live-1 ${UNUSED}` is not.
pub(crate) fn has_inline_secret(value: &str) -> bool {
    let mut rest = String::with_capacity(value.len());
    let mut s = value;
    while let Some(start) = s.find("${") {
        rest.push_str(&s[..start]);
        rest.push(' ');
        match s[start..].find('}') {
            Some(end) => s = &s[start + end + 1..],
            None => {
                // An unclosed reference: what follows is literal.
                s = &s[start + 2..];
            }
        }
    }
    rest.push_str(s);
    rest.split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .filter(|w| !w.is_empty())
        .any(|w| !SCHEMES.contains(&w.to_ascii_lowercase().as_str()) && !w.ends_with('='))
}

/// `text` (a topology file's source) with credential-looking values masked by `*`, byte for byte
/// (so that diagnostics' spans still point at the same places): values of credential-named keys
/// that are not `${VAR}` references, the word after a scheme (`Bearer sk-...`), and words in a
/// well-known key format.
pub(crate) fn mask_source(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        for range in secret_ranges(line) {
            for b in &mut bytes[offset + range.start..offset + range.end] {
                *b = b'*';
            }
        }
        offset += line.len();
    }
    // Only ASCII bytes of whole characters were replaced by ASCII: still UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Byte ranges of one line to mask. Ranges cover whole characters.
fn secret_ranges(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let words = words(line);
    for (i, &(start, end)) in words.iter().enumerate() {
        let w = &line[start..end];
        let bare = w.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | '{' | '}' | '[' | ']'));
        if KEY_PREFIXES
            .iter()
            .any(|p| bare.starts_with(p) && bare.len() > p.len() + 3)
        {
            out.push(start..end);
            continue;
        }
        // A URL's password (`postgres://user:PASSWORD@host`) unless it is a `${VAR}` reference.
        if let Some(r) = url_password(w) {
            out.push(start + r.start..start + r.end);
        }
        // A scheme word followed by a literal: mask the literal.
        if matches!(bare.to_ascii_lowercase().as_str(), "bearer" | "basic")
            && let Some(&(s2, e2)) = words.get(i + 1)
            && !line[s2..e2]
                .trim_start_matches(['"', '\''])
                .starts_with("${")
        {
            out.push(s2..e2);
        }
        // `name: value` / `name = value` with a credential name: mask the value up to the end
        // of the item (`,`, `}`, end of line), unless it is only references.
        let name = bare.trim_end_matches([':', '=']);
        let sep = bare.ends_with(':')
            || bare.ends_with('=')
            || words
                .get(i + 1)
                .is_some_and(|&(s2, e2)| matches!(&line[s2..e2], ":" | "="));
        if sep && is_credential_name(name) {
            let from = words
                .get(i + 1)
                .map(|&(s2, e2)| {
                    if matches!(&line[s2..e2], ":" | "=") {
                        e2
                    } else {
                        s2
                    }
                })
                .unwrap_or(end);
            let value_end = item_end(line, from);
            let value = &line[from..value_end];
            if has_inline_secret(value.trim().trim_matches(['"', '\''])) {
                let lead = value.len() - value.trim_start().len();
                let trail = value.len() - value.trim_end().len();
                if value_end - trail > from + lead {
                    out.push(from + lead..value_end - trail);
                }
            }
        }
    }
    out
}

/// The byte range, in `word`, of the password of a URL it holds (`scheme://user:pass@host`),
/// unless the password is a `${VAR}` reference.
fn url_password(word: &str) -> Option<std::ops::Range<usize>> {
    let after = word.find("://")? + 3;
    let authority_end = word[after..]
        .find(['/', '?', '"', '\''])
        .map_or(word.len(), |e| after + e);
    let at = after + word[after..authority_end].rfind('@')?;
    let colon = after + word[after..at].find(':')?;
    let password = &word[colon + 1..at];
    let reference = password.starts_with("${") && password.ends_with('}');
    (!password.is_empty() && !reference).then_some(colon + 1..at)
}

/// Where the item starting at `from` ends: at a `,`, `}`, `#` or the line's end outside quotes
/// and `${...}` references.
fn item_end(line: &str, from: usize) -> usize {
    let mut quote: Option<char> = None;
    let mut in_ref = false;
    let mut prev = ' ';
    for (i, c) in line[from..].char_indices() {
        match c {
            '{' if prev == '$' => in_ref = true,
            '}' if in_ref => in_ref = false,
            '"' | '\'' if quote == Some(c) => quote = None,
            '"' | '\'' if quote.is_none() => quote = Some(c),
            ',' | '}' | '#' | '\n' | '\r' if quote.is_none() && !in_ref => return from + i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

/// Byte ranges of the whitespace-separated words of `line`.
fn words(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_include_passwords_cookies_and_proxy_authorization() {
        for n in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "DB_PASSWORD",
            "X-Api-Key",
            "GITHUB_TOKEN",
        ] {
            assert!(is_credential_name(n), "{n}");
        }
        for n in [
            "Accept",
            "LOG_LEVEL",
            "HOME",
            "max_tokens",
            "max_output_tokens",
        ] {
            assert!(!is_credential_name(n), "{n}");
        }
    }

    #[test]
    fn inline_secrets_are_found_next_to_unused_references() {
        assert_eq!(
            mask_source("  postgres: \"postgres://baton:hunter2@db:5432/x\"\n"),
            "  postgres: \"postgres://baton:*******@db:5432/x\"\n"
        );
        assert_eq!(
            mask_source("  postgres: postgres://baton:${PGPASSWORD}@db/x\n"),
            "  postgres: postgres://baton:${PGPASSWORD}@db/x\n"
        );
        assert!(!has_inline_secret("Bearer ${MCP_TOKEN}"));
        assert!(!has_inline_secret("session=${SESSION}"));
        assert!(!has_inline_secret("${DB_PASSWORD}"));
        assert!(has_inline_secret("Bearer sk-live-123 ${UNUSED}"));
        assert!(has_inline_secret("hunter2"));
        assert!(has_inline_secret("${A} hunter2"));
    }

    #[test]
    fn masking_keeps_offsets_and_references() {
        let src = "models:\n  m: { provider: openai, api_key: sk-live-abcdef123, model: gpt }\n\
                   headers: { Authorization: \"Bearer abcdef0123\", Accept: json }\n\
                   env: { DB_PASSWORD: hunter22, TOKEN: ${TOKEN} }\n\
                   proxy: { Proxy-Authorization: \"Bearer ${PROXY_TOKEN}\" }\n";
        let masked = mask_source(src);
        assert_eq!(masked.len(), src.len());
        for leaked in ["sk-live-abcdef123", "abcdef0123", "hunter22"] {
            assert!(!masked.contains(leaked), "{leaked}: {masked}");
        }
        for kept in [
            "provider: openai",
            "model: gpt",
            "Accept: json",
            "${TOKEN}",
            "Bearer ${PROXY_TOKEN}",
        ] {
            assert!(masked.contains(kept), "{kept}: {masked}");
        }
    }
}
