//! `models:` resolved and checked: prices (the topology's or the built-in table), retries, HTTP
//! endpoints and keys, and each agent's ladder.

use super::*;

impl Validator<'_> {
    /// Warns when the ladder puts a frontier or pricier model before a cheaper one: the router
    /// tries models in ladder order.
    pub(super) fn check_ladder(
        &mut self,
        name: &str,
        a: &AgentSpec,
        models: &BTreeMap<Arc<str>, ModelDef>,
    ) {
        let Some(first) = a.models.first().and_then(|m| models.get(m.as_str())) else {
            return;
        };
        let probe = |m: &ModelDef| m.price.worst_case(1000, 1000);
        let cheaper = a.models[1..]
            .iter()
            .filter_map(|m| models.get(m.as_str()))
            .find(|m| {
                (first.tier == Some(Tier::Frontier) && m.tier == Some(Tier::Local))
                    || probe(m) < probe(first)
            });
        if let Some(c) = cheaper {
            self.warn(
                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("models"), Seg::Item(&first.name)],
                format!("`{}` comes first on `{name}`'s ladder but `{}` is cheaper: the router tries models in order", first.name, c.name),
                Some(format!("put `{}` first (the ladder is cheapest first)", c.name)),
            );
        }
        if a.privacy == Some(Privacy::LocalOnly)
            && !a
                .models
                .iter()
                .filter_map(|m| models.get(m.as_str()))
                .any(|m| m.tier == Some(Tier::Local))
        {
            self.warn(
                &[Seg::Key("agents"), Seg::Key(name), Seg::Key("privacy")],
                format!("`{name}` is `privacy: local_only` but no model on its ladder is `tier: local`: every step of it will fail"),
                Some("add a local model (`provider: local`, or an endpoint marked `tier: local`) to its `models:`".into()),
            );
        }
        if a.min_confidence.is_some() && a.on_missing_confidence != Some(MissingConfidence::Accept)
        {
            let rungs = a.models.len();
            for (i, m) in a.models.iter().enumerate() {
                let Some(m) = models.get(m.as_str()) else {
                    continue;
                };
                if m.tier == Some(Tier::Local) && !m.logprobs && i + 1 < rungs {
                    self.warn(
                        &[Seg::Key("agents"), Seg::Key(name), Seg::Key("min_confidence")],
                        format!("`{name}` has `min_confidence`, but model `{}` says its server returns no token probabilities (`logprobs: false`): every answer of it will be set aside", m.name),
                        Some("drop `min_confidence`, set `on_missing_confidence: accept`, or use a server that returns logprobs".into()),
                    );
                }
            }
        }
    }

    pub(super) fn check_models(
        &mut self,
        models: &BTreeMap<String, ModelSpec>,
        base: &Path,
    ) -> BTreeMap<Arc<str>, ModelDef> {
        models
            .iter()
            .map(|(name, m)| {
                let def = self.check_model(name, m, base);
                (Arc::clone(&def.name), def)
            })
            .collect()
    }

    /// One model: its keys checked, its defaults applied.
    fn check_model(&mut self, name: &str, m: &ModelSpec, base: &Path) -> ModelDef {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        let rules = self.check_rules(name, m, base);
        self.check_http(name, m);
        let local = self.check_local(name, m, base);
        if m.faults.is_some() && m.provider != Provider::Scripted {
            self.report(
                &at("faults"),
                "`faults` applies to scripted models only".into(),
                None,
            );
        }
        self.check_faults(&[Seg::Key("models"), Seg::Key(name)], m.faults.as_ref());
        self.check_model_limits(name, m);
        let wire = m.model.clone().unwrap_or_else(|| name.to_string());
        let (price, price_source) = self.model_price(name, m, &wire);
        let size = self.check_size(name, m, &wire);
        if m.prompt_cache.is_some() && m.provider != Provider::Anthropic {
            self.report(
                &at("prompt_cache"),
                "`prompt_cache` applies to `anthropic` models".into(),
                Some("OpenAI caches long prompts by itself; its cached tokens are priced at `cached_input`".into()),
            );
        }
        let retry = self.model_retry(name, m);
        let name: Arc<str> = name.into();
        ModelDef {
            name,
            provider: m.provider,
            rules,
            latency: m.latency,
            price,
            max_output_tokens: m.max_output_tokens,
            context_window: m
                .context_window
                .or(local.as_ref().map(|l: &LocalDef| l.context)),
            tier: m
                .tier
                .or((m.provider == Provider::Local).then_some(Tier::Local)),
            quality: m.quality.unwrap_or(defaults::MODEL_QUALITY),
            timeout: m.timeout.unwrap_or(defaults::MODEL_TIMEOUT),
            faults: m.faults.clone(),
            wire_model: wire,
            endpoint: m.endpoint.clone(),
            api_key: m.api_key.clone(),
            stream: m.stream.unwrap_or(false),
            connect_timeout: m.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT),
            retry,
            price_source,
            tool_choice: m.tool_choice.unwrap_or_default(),
            null_content: m.null_content.unwrap_or_default(),
            logprobs: m
                .logprobs
                .unwrap_or(!matches!(m.provider, Provider::Anthropic)),
            local,
            size,
            prompt_cache: m.prompt_cache.unwrap_or(false),
        }
    }

    /// A scripted model's rules file: present, and loading as the run would load it.
    fn check_rules(&mut self, name: &str, m: &ModelSpec, base: &Path) -> Option<PathBuf> {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        match (m.provider, &m.rules) {
            (Provider::Scripted, None) => {
                self.report(
                    &at("provider"),
                    format!("scripted model `{name}` needs `rules:`"),
                    Some("point `rules:` at a rules file".into()),
                );
                None
            }
            (Provider::Scripted, Some(r)) => {
                let p = base.join(r);
                if !p.is_file() {
                    self.report(
                        &at("rules"),
                        format!("rules file `{}` not found", p.display()),
                        Some("paths are relative to the topology file".into()),
                    );
                } else if let Err(e) = baton_core::ScriptedModel::from_file(name, &p) {
                    // The rules load as the run would load them: a file that cannot is
                    // this topology's error, found by `validate`, not at start.
                    self.report(
                        &at("rules"),
                        rules_problem(&p, &e),
                        Some("the rules language: docs/scripted.md".into()),
                    );
                }
                Some(p)
            }
            (_, Some(_)) => {
                self.report(
                    &at("rules"),
                    "`rules` applies to scripted models only".into(),
                    None,
                );
                None
            }
            (_, None) => None,
        }
    }

    /// A model's bounded numbers: quality, timeout, context window, completion ceiling.
    fn check_model_limits(&mut self, name: &str, m: &ModelSpec) {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        if m.quality.is_some_and(|q| q > 100) {
            self.report(
                &at("quality"),
                "`quality` is a score from 0 to 100".into(),
                None,
            );
        }
        if m.timeout.is_some_and(|t| t.is_zero()) {
            self.report(
                &at("timeout"),
                "`timeout` must be longer than zero".into(),
                None,
            );
        }
        if let Some(w) = m.context_window
            && w <= m.max_output_tokens
        {
            self.report(
                &at("context_window"),
                format!(
                    "a context window of {w} tokens leaves no room for a prompt next to `max_output_tokens: {}`",
                    m.max_output_tokens
                ),
                Some("the window holds the prompt and the completion: make it larger than max_output_tokens".into()),
            );
        }
        if m.max_output_tokens == 0 {
            self.report(
                &at("max_output_tokens"),
                "`max_output_tokens` must be at least 1".into(),
                None,
            );
        }
    }

    /// A model's price: the topology's, free for a local model, or the built-in table's for a
    /// hosted model it knows; otherwise an error.
    fn model_price(&mut self, name: &str, m: &ModelSpec, wire: &str) -> (Price, PriceSource) {
        match &m.price {
            Some(p) => (
                Price::per_mtok(
                    p.input.0,
                    p.output.0,
                    p.cached_input.map_or(p.input.0, |c| c.0),
                )
                .with_cache_write(p.cache_write.map_or(p.input.0, |c| c.0)),
                PriceSource::Topology,
            ),
            // Nothing is metered on this machine's CPU.
            None if m.provider == Provider::Local => (Price::default(), PriceSource::Topology),
            None => match baton_core::prices::builtin_price(wire) {
                Some(p) if m.provider.is_http() => (p, PriceSource::BuiltIn),
                _ => {
                    let hint = if m.provider.is_http() {
                        format!(
                            "the built-in price table (as of {}) does not know `{wire}`: add `price: {{ input: …, output: … }}` (dollars per million tokens)",
                            baton_core::prices::PRICES_AS_OF
                        )
                    } else {
                        "add `price: { input: …, output: … }` (dollars per million tokens)".into()
                    };
                    self.report(
                        &[Seg::Key("models"), Seg::Key(name)],
                        format!("model `{name}` has no price"),
                        Some(hint),
                    );
                    (Price::default(), PriceSource::Topology)
                }
            },
        }
    }

    /// A model's retry policy, its defaults applied.
    fn model_retry(&mut self, name: &str, m: &ModelSpec) -> RetryPolicy {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        let retry = m.retry.clone().unwrap_or_default();
        if retry.max_attempts == Some(0) {
            self.report(
                &at("retry"),
                "`retry.max_attempts` must be at least 1 (1 means no retry)".into(),
                None,
            );
        }
        RetryPolicy {
            max_attempts: retry
                .max_attempts
                .unwrap_or(if m.provider.is_http() {
                    defaults::HTTP_MAX_ATTEMPTS
                } else {
                    1
                })
                .max(1),
            base_delay: retry.base_delay.unwrap_or(defaults::RETRY_BASE_DELAY),
            max_delay: retry.max_delay.unwrap_or(defaults::RETRY_MAX_DELAY),
            max_retry_after: retry.max_retry_after.unwrap_or(defaults::MAX_RETRY_AFTER),
        }
    }

    /// `provider: local`'s keys: the GGUF file (which must exist and be one: a missing file names
    /// the fetch script) and its bounded numbers; elsewhere they are refused.
    pub(super) fn check_local(
        &mut self,
        name: &str,
        m: &ModelSpec,
        base: &Path,
    ) -> Option<LocalDef> {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        let keys = [
            (m.path.is_some(), "path"),
            (m.context.is_some(), "context"),
            (m.threads.is_some(), "threads"),
            (m.instances.is_some(), "instances"),
            (m.temperature.is_some(), "temperature"),
            (m.seed.is_some(), "seed"),
        ];
        if m.provider != Provider::Local {
            for (set, key) in keys {
                if set {
                    self.report(
                        &at(key),
                        format!("`{key}` applies to `local` models only"),
                        None,
                    );
                }
            }
            return None;
        }
        let Some(raw) = &m.path else {
            self.report(
                &at("provider"),
                format!("local model `{name}` needs `path:` (a GGUF file)"),
                Some(format!(
                    "fetch the example model with {} and write `path: ~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf`",
                    FETCH_SCRIPT
                )),
            );
            return None;
        };
        let path = match expand_path(raw) {
            Ok(p) => base.join(p),
            Err(var) => {
                self.report(
                    &at("path"),
                    format!("`path` names the environment variable `{var}`, which is not set"),
                    Some(format!("set {var}, or write the path out")),
                );
                return None;
            }
        };
        match std::fs::File::open(&path) {
            Err(_) => self.report(
                &at("path"),
                format!("model file `{}` not found", path.display()),
                Some(format!(
                    "fetch the example model with {FETCH_SCRIPT}; relative paths are relative to the topology file"
                )),
            ),
            Ok(mut f) => {
                use std::io::Read;
                let mut magic = [0u8; 4];
                if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
                    self.report(
                        &at("path"),
                        format!("`{}` is not a GGUF model file", path.display()),
                        Some("llama.cpp loads GGUF files (`.gguf`)".into()),
                    );
                }
            }
        }
        for (v, key) in [
            (m.context, "context"),
            (m.threads, "threads"),
            (m.instances, "instances"),
        ] {
            if v == Some(0) {
                self.report(&at(key), format!("`{key}` must be at least 1"), None);
            }
        }
        if let Some(t) = m.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            self.report(
                &at("temperature"),
                format!("`temperature` is a number from 0 to 2, not {t}"),
                Some("0 always takes the likeliest token (the default)".into()),
            );
        }
        let context = m.context.unwrap_or(defaults::LOCAL_CONTEXT);
        if context <= m.max_output_tokens {
            self.report(
                &at("context"),
                format!(
                    "a context of {context} tokens leaves no room for a prompt next to `max_output_tokens: {}`",
                    m.max_output_tokens
                ),
                Some("the context holds the prompt and the completion".into()),
            );
        }
        Some(LocalDef {
            path,
            context,
            threads: m.threads.unwrap_or(1).max(1),
            instances: m.instances.unwrap_or(1).max(1),
            temperature: m.temperature.unwrap_or(0.0),
            seed: m.seed.unwrap_or(0),
        })
    }

    /// Keys that only make sense for HTTP providers, and their shape.
    pub(super) fn check_http(&mut self, name: &str, m: &ModelSpec) {
        let at = |k: &'static str| [Seg::Key("models"), Seg::Key(name), Seg::Key(k)];
        if !m.provider.is_http() {
            for (set, key) in [
                (m.endpoint.is_some(), "endpoint"),
                (m.api_key.is_some(), "api_key"),
                (m.stream.is_some(), "stream"),
                (m.model.is_some(), "model"),
                (m.connect_timeout.is_some(), "connect_timeout"),
            ] {
                if set {
                    self.report(
                        &at(key),
                        format!("`{key}` applies to `openai` and `anthropic` models only"),
                        None,
                    );
                }
            }
            return;
        }
        if let Some(e) = &m.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            self.report(
                &at("endpoint"),
                format!("endpoint `{e}` is not an http:// or https:// URL"),
                None,
            );
        }
        if let Some(k) = &m.api_key {
            let ok = k
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .is_some_and(|v| {
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if !ok {
                // Never echo the value: it may be a key pasted by mistake.
                self.report_redacted(
                    &at("api_key"),
                    "secrets are given by reference, never inline".into(),
                    Some("write `api_key: ${OPENAI_API_KEY}` and set the variable in the environment".into()),
                );
            }
        }
    }
}

/// What is wrong with a rules file, where (`file:line:column` when the parser said), and the
/// did-you-mean for a misspelt key.
fn rules_problem(path: &Path, e: &baton_core::Error) -> String {
    let said = match e {
        baton_core::Error::Rules { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let located = said.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(" column ")?;
        let (column, what) = rest.split_once(": ")?;
        Some((line.to_string(), column.to_string(), what.to_string()))
    });
    match located {
        Some((line, column, what)) => {
            // (The parser repeats the position at the end.)
            let what = match what.rsplit_once(" at line ") {
                Some((head, tail)) if tail.contains(", column ") => head.to_string(),
                _ => what,
            };
            let what = if what.starts_with("unknown field") || what.starts_with("unknown variant") {
                // Said in Baton's words, with the closest name.
                super::parse_message(&what)
            } else {
                what
            };
            format!("rules file {}:{line}:{column}: {what}", path.display())
        }
        None => format!("rules file {}: {said}", path.display()),
    }
}

use baton_core::LOCAL_MODEL_FETCH_SCRIPT as FETCH_SCRIPT;

/// `raw` with `${VAR}`s replaced from the environment and a leading `~` by `$HOME`; the name of
/// the first variable that is not set otherwise.
pub(crate) fn expand_path(raw: &str) -> Result<PathBuf, String> {
    let mut out = String::with_capacity(raw.len());
    let mut s = raw;
    if let Some(rest) = s.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
    {
        out.push_str(&std::env::var("HOME").map_err(|_| "HOME".to_string())?);
        s = rest;
    }
    while let Some(start) = s.find("${") {
        out.push_str(&s[..start]);
        let Some(end) = s[start..].find('}') else {
            break;
        };
        let var = &s[start + 2..start + end];
        out.push_str(&std::env::var(var).map_err(|_| var.to_string())?);
        s = &s[start + end + 1..];
    }
    out.push_str(s);
    Ok(PathBuf::from(out))
}
