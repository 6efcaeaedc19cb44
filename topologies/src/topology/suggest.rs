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
    let mut out = msg.to_string();
    if let Some(rest) = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))
        && let Some((field, tail)) = rest.split_once('`')
    {
        let expected: Vec<String> = tail
            .split_once("expected one of ")
            .or_else(|| tail.split_once("expected "))
            .map(|(_, list)| {
                list.split(',')
                    .map(|n| n.trim().trim_matches('`').to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(hint) = did_you_mean(field, expected.iter()) {
            out.push_str(" (hint: ");
            out.push_str(&hint);
            out.push(')');
        }
    }
    out
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
