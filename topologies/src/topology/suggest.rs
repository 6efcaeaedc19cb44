//! Did-you-mean: the closest name within two edits, and the parser's messages with a hint for
//! unknown keys.

/// The parser's message without its own position prefix, with a did-you-mean for unknown keys.
pub(crate) fn parse_message(s: &str) -> String {
    let mut msg = s.lines().next().unwrap_or(s).trim();
    msg = msg.strip_prefix("error:").unwrap_or(msg).trim_start();
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        msg = after;
    }
    // The YAML parser's own wording, said in ours: what is wrong and what usually causes it.
    if let Some(ours) = in_our_words(msg) {
        return ours;
    }
    let (what, rest) = if let Some(rest) = msg.strip_prefix("unknown field `") {
        ("field", rest)
    } else if let Some(rest) = msg.strip_prefix("unknown variant `") {
        ("value", rest)
    } else {
        return msg.to_string();
    };
    let Some((name, tail)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let expected: Vec<String> = tail
        .split_once("expected one of ")
        .or_else(|| tail.split_once("expected "))
        .map(|(_, list)| {
            list.split(',')
                .map(|n| n.trim().trim_matches('`').to_string())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    // The parser lists every name it expected; Baton says the closest one when there is one
    // (the list is then noise), and the list, each name quoted, when there is none.
    if let Some(hint) = did_you_mean(name, expected.iter()) {
        format!("unknown {what} `{name}` (hint: {hint})")
    } else if expected.is_empty() {
        format!("unknown {what} `{name}`")
    } else {
        let list: Vec<String> = expected.iter().map(|n| format!("`{n}`")).collect();
        let here = if what == "field" {
            "the keys"
        } else {
            "the values"
        };
        format!(
            "unknown {what} `{name}`: {here} allowed here are {}",
            list.join(", ")
        )
    }
}

/// Baton's words for the YAML parser's messages about the file's structure (its own are terse:
/// "expected sequence start"); `None` for a message kept as it is.
fn in_our_words(msg: &str) -> Option<String> {
    let said = if msg.starts_with("tabs disallowed") {
        "a tab in the indentation"
    } else if msg.starts_with("expected sequence start") {
        "expected a list here: write `[a, b]`, or one `- item` per line"
    } else if msg.starts_with("expected mapping start") {
        "expected keys and values here: write `{ key: value }`, or one `key: value` per line"
    } else if msg.starts_with("illegal placement of ':' indicator")
        || msg.starts_with("mapping values are not allowed")
    {
        "a `:` YAML cannot place here: is a `[` or `{` above left unclosed, or does a value with `: ` in it need quotes?"
    } else if msg.starts_with("unclosed bracket")
        || msg.contains("did not find expected ',' or ']'")
        || msg.contains("did not find expected ',' or '}'")
    {
        "a `[` or `{` is not closed: a `]` or `}` (or a `,` between items) is missing"
    } else if msg.starts_with("found character that cannot start any token")
        || msg.starts_with("unexpected character")
    {
        "a character YAML cannot start a value with (a `@` or a backtick?): put the value in quotes"
    } else {
        return None;
    };
    Some(said.to_string())
}

/// The name among `names` closest to `wrong` (within two edits, letter case ignored): what a
/// did-you-mean suggests.
pub fn closest<'a>(wrong: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = wrong.to_lowercase();
    names
        .into_iter()
        .map(|n| (edit_distance(&lower, &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// `did you mean `x`?` for the closest name within two edits.
pub(crate) fn did_you_mean<'a>(
    wrong: &str,
    names: impl Iterator<Item = &'a String>,
) -> Option<String> {
    names
        .map(|n| (edit_distance(wrong, n), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| format!("did you mean `{n}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use crate::{Topology, TopologyError};

    fn parse_error(yaml: &str) -> String {
        match Topology::from_yaml_str(
            yaml,
            std::path::Path::new("t.yaml"),
            std::path::Path::new("."),
        ) {
            Err(TopologyError::Parse { message, .. }) => message,
            other => panic!("not a parse error: {other:?}"),
        }
    }

    /// What the YAML parser really says about broken structure reaches the user in Baton's
    /// words, never as the parser's own.
    #[test]
    fn structure_errors_are_said_in_our_words() {
        let cases = [
            ("agents:\n  a:\n    models: m\n", "expected a list here"),
            ("agents:\n  a: { models: [m]\n", "is not closed"),
            (
                "agents:\n  a:\n    models: [m\n  b: {\n",
                "a `:` YAML cannot place here",
            ),
            ("agents:\n\ta:\n", "a tab in the indentation"),
            ("agents:\n  a: `x`\n", "put the value in quotes"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(yaml, ours)| (yaml, ours, parse_error(yaml)))
            .filter(|(_, ours, said)| !said.contains(*ours))
            .map(|(yaml, _, said)| format!("{yaml:?}: {said}"))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// An unknown key or value: the closest allowed name when there is one (without the
    /// parser's full list), the allowed names in our words when there is none.
    #[test]
    fn unknown_names_get_the_closest_or_the_list() {
        let said = parse_error("agents:\n  a: { modles: [m] }\n");
        assert_eq!(
            said,
            "unknown field `modles` (hint: did you mean `models`?)"
        );
        let said = parse_error("agents:\n  a:\n    budget: { max_dollars: 1 }\n");
        assert_eq!(
            said,
            "unknown field `max_dollars`: the keys allowed here are `max_usd`, `max_tokens`, `max_steps`, `max_wall`"
        );
        let said = parse_error("models:\n  m: { provider: openia }\n");
        assert_eq!(
            said,
            "unknown value `openia` (hint: did you mean `openai`?)"
        );
        let said = parse_error("models:\n  m: { provider: gemini }\n");
        assert!(
            said.starts_with("unknown value `gemini`: the values allowed here are `scripted`, "),
            "{said}"
        );
        assert!(!said.contains("expected one of"), "{said}");
    }
}
