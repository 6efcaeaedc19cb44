//! A rule's patterns (checked when the rules load, compiled on first use) and its reply
//! templates: named captures, `{{task}}` and `{{last}}`.

use regex::Regex;

/// A rule's regex: its syntax is checked when the rules load, and it is compiled on first use.
/// Compiling Unicode classes (`\w`, `\d`) costs up to a millisecond per pattern, which a runtime's
/// start-up should not pay for rules it may never reach.
#[derive(Debug)]
pub(super) struct Pattern {
    pub(super) src: String,
    re: std::sync::OnceLock<Option<Regex>>,
}

impl Pattern {
    pub(super) fn new(src: &str) -> Result<Pattern, String> {
        // One line, with the position: "unclosed group (at character 1)".
        regex_syntax::Parser::new()
            .parse(src)
            .map_err(|e| match &e {
                regex_syntax::Error::Parse(p) => {
                    format!("{} (at character {})", p.kind(), p.span().start.column)
                }
                regex_syntax::Error::Translate(t) => {
                    format!("{} (at character {})", t.kind(), t.span().start.column)
                }
                other => other.to_string(),
            })?;
        Ok(Pattern {
            src: src.to_string(),
            re: std::sync::OnceLock::new(),
        })
    }

    /// The compiled regex; `None` (never matches, logged once) if it parses but cannot compile
    /// (past the size limit).
    pub(super) fn get(&self) -> Option<&Regex> {
        self.re
            .get_or_init(|| match Regex::new(&self.src) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!("scripted rule regex `{}`: {e}", self.src);
                    None
                }
            })
            .as_ref()
    }
}

/// Adds a match's named captures to `caps`.
pub(super) fn push_captures(re: &Regex, c: &regex::Captures<'_>, caps: &mut Vec<(String, String)>) {
    for name in re.capture_names().flatten() {
        if let Some(m) = c.name(name) {
            caps.push((name.to_string(), m.as_str().to_string()));
        }
    }
}

/// Fills `{{task}}`, `{{last}}` and named captures into a template (unknown names stay as written).
pub(super) fn render(template: &str, task: &str, last: &str, caps: &[(String, String)]) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim();
        match key {
            "task" => out.push_str(task),
            "last" => out.push_str(last),
            _ => match caps.iter().rev().find(|(k, _)| k == key) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("{{");
                    out.push_str(&after[..close]);
                    out.push_str("}}");
                }
            },
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Fills templates into every string of a JSON value.
pub(super) fn fill_json(
    v: &serde_json::Value,
    fill: &impl Fn(&str) -> String,
) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(fill(s)),
        serde_json::Value::Array(a) => a.iter().map(|x| fill_json(x, fill)).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| (k.clone(), fill_json(x, fill)))
            .collect(),
        other => other.clone(),
    }
}
