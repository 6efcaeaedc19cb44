//! Finds the line and column of a key path in block-style YAML, so that a diagnostic about
//! `agents.rca.models[1]` can point at the text. Best effort: where the text cannot be found the
//! diagnostic keeps its key path only.

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    /// A sequence item, found by its text.
    Item(&'a str),
}

/// 1-based (line, column) of the last segment of `path` in `source`.
pub(crate) fn locate(source: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    // (indent, key) of the enclosing mappings for the current line.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let keys: Vec<&str> = path
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(*k),
            Seg::Item(_) => None,
        })
        .collect();
    let item = path.iter().find_map(|s| match s {
        Seg::Item(i) => Some(*i),
        Seg::Key(_) => None,
    });
    let mut found: Option<(usize, usize, usize)> = None; // line index, column, indent
    for (n, raw) in source.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some((fl, _, fi)) = found {
            // Looking for a block-sequence item below the found key.
            if indent <= fi && !trimmed.starts_with('-') {
                return None;
            }
            if let Some(rest) = trimmed.strip_prefix('-') {
                let rest = rest.trim().trim_matches(|c| c == '"' || c == '\'');
                if Some(rest) == item {
                    return Some((n + 1, indent + 3));
                }
            }
            let _ = fl;
            continue;
        }
        let body = trimmed.trim_start_matches("- ");
        let key_indent = indent + (trimmed.len() - body.len());
        let Some((key, value)) = body.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        while stack.last().is_some_and(|(i, _)| *i >= key_indent) {
            stack.pop();
        }
        stack.push((key_indent, key.to_string()));
        if stack.len() == keys.len() && stack.iter().zip(&keys).all(|((_, a), b)| a == b) {
            let Some(item) = item else {
                return Some((n + 1, key_indent + 1));
            };
            // Flow sequence on the same line, or a block sequence below.
            if let Some(pos) = find_word(value, item) {
                let value_start = line.len() - value.len();
                return Some((n + 1, value_start + pos + 1));
            }
            found = Some((n, key_indent, key_indent));
        }
    }
    found.map(|(l, c, _)| (l + 1, c + 1))
}

/// 1-based (line, column) of the last segment of `path` in TOML `source`: keys under `[table]`
/// headers and `key = value` lines, items found by their quoted text.
pub(crate) fn locate_toml(source: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    let keys: Vec<&str> = path
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(*k),
            Seg::Item(_) => None,
        })
        .collect();
    let item = path.iter().find_map(|s| match s {
        Seg::Item(i) => Some(*i),
        Seg::Key(_) => None,
    });
    let unquote = |k: &str| k.trim().trim_matches('"').trim_matches('\'').to_string();
    let mut table: Vec<String> = Vec::new();
    let mut in_array_of: Option<(usize, usize)> = None; // the key line of a multi-line array we search for an item
    for (n, raw) in source.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or(raw);
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((kl, kc)) = in_array_of {
            if let Some(i) = item
                && let Some(pos) = find_word(line, &format!("\"{i}\""))
            {
                return Some((n + 1, pos + 2));
            }
            if t.starts_with(']') {
                return Some((kl, kc));
            }
            continue;
        }
        if let Some(h) = t.strip_prefix('[') {
            let h = h.trim_start_matches('[').split(']').next().unwrap_or("");
            table = h.split('.').map(unquote).collect();
            let indent = line.len() - t.len();
            if item.is_none()
                && table.len() == keys.len()
                && table.iter().zip(&keys).all(|(a, b)| a == b)
            {
                return Some((n + 1, indent + 2));
            }
            continue;
        }
        let Some((key, value)) = t.split_once('=') else {
            continue;
        };
        let mut full = table.clone();
        full.extend(key.split('.').map(unquote));
        if full.len() == keys.len() && full.iter().zip(&keys).all(|(a, b)| a == b) {
            let col = line.len() - t.len() + 1;
            let Some(i) = item else {
                return Some((n + 1, col));
            };
            let value_start = line.len() - value.len();
            if let Some(pos) = find_word(value, &format!("\"{i}\"")) {
                return Some((n + 1, value_start + pos + 2));
            }
            if value.trim_start().starts_with('[') && !value.contains(']') {
                in_array_of = Some((n + 1, col));
                continue;
            }
            return Some((n + 1, col));
        }
    }
    None
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(i) = hay[from..].find(word) {
        let s = from + i;
        let e = s + word.len();
        let ok_before = s == 0 || !is_word(bytes[s - 1]);
        let ok_after = e >= bytes.len() || !is_word(bytes[e]);
        if ok_before && ok_after {
            return Some(s);
        }
        from = e;
    }
    None
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One topology written in both formats.
    const Y: &str = "models:\n  small:\n    provider: scripted\nagents:\n  lead:\n    models: [small, big]\n    children:\n      - rca\n      - paging\n    budget:\n      max_usd: 0\n  rca:\n    models: [small]\n";
    const T: &str = "[models.small]\nprovider = \"scripted\"\n\n[agents.lead]\nmodels = [\"small\", \"big\"]\nchildren = [\n  \"rca\",\n  \"paging\",\n]\n[agents.lead.budget]\nmax_usd = 0\n\n[agents.rca]\nmodels = [\"small\"]\n";

    /// `agents.lead.models[big]` as segments.
    fn path(p: &str) -> Vec<Seg<'_>> {
        p.split('.')
            .flat_map(|part| match part.split_once('[') {
                Some((key, item)) => vec![Seg::Key(key), Seg::Item(item.trim_end_matches(']'))],
                None => vec![Seg::Key(part)],
            })
            .collect()
    }

    #[test]
    fn finds_keys_and_items_in_yaml_and_toml() {
        // (path, (line, column) in the YAML, in the TOML): a key is found where it is written
        // (a TOML table at its header), a list item at its word.
        type At = Option<(usize, usize)>;
        let table: [(&str, At, At); 7] = [
            ("agents.lead", Some((5, 3)), Some((4, 2))),
            ("agents.rca", Some((12, 3)), Some((13, 2))),
            ("agents.lead.models[big]", Some((6, 21)), Some((5, 21))),
            ("agents.lead.children[paging]", Some((9, 9)), Some((8, 4))),
            ("agents.rca.models[small]", Some((13, 14)), Some((14, 12))),
            ("agents.lead.budget.max_usd", Some((11, 7)), Some((11, 1))),
            ("agents.nobody", None, None),
        ];
        for (p, yaml, toml) in table {
            assert_eq!(locate(Y, &path(p)), yaml, "{p} in YAML");
            assert_eq!(locate_toml(T, &path(p)), toml, "{p} in TOML");
        }
    }
}
