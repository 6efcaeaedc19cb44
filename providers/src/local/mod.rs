//! `provider: local`: a GGUF model run in-process by llama.cpp (the `local` feature).
//!
//! Nothing here is metered: the model thinks on this machine's CPU. What it costs instead is CPU
//! time, reported per call ([`ModelResponse::cpu`]).
//!
//! - **Threads of its own.** Each of the model's `instances` is an OS thread that owns one
//!   llama.cpp context; calls queue for a free instance. Inference never runs on the async
//!   runtime's workers. A call whose future is dropped (deadline, cancel, cut-off) is abandoned
//!   between two tokens (or two prompt batches), and one still queued never starts.
//! - **Exact tokens.** The prompt is the conversation through the chat template in the GGUF's
//!   metadata, counted by the model's own tokenizer: [`Model::estimate_input_tokens`] is the real
//!   prompt length, so a reservation holds exactly what the call will book.
//! - **Tool calls by grammar.** When tools are offered, sampling is constrained by a grammar built
//!   from their JSON schemas (llama.cpp's JSON-schema converter): the model can only write
//!   `{"tool": "<name>", "arguments": {…}}` with arguments of that tool's schema, or
//!   `{"answer": "…"}`. The first becomes a tool call, the second the answer's text.
//! - **Confidence from the model's own probabilities**: the geometric mean, over the tokens it
//!   generated, of the probability the model gave each one (softmax of its logits, before the
//!   grammar narrowed the choice) — the same contract as an OpenAI `logprobs` reply.
//! - **CPU time per call**: the inference thread's own CPU clock; with `threads` above one, the
//!   helper threads ggml starts for each batch run the same share of the graph and wait at its
//!   barriers spinning, and are counted at the inference thread's rate (`cpu × threads`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use baton_core::{
    Message, Model, ModelError, ModelRequest, ModelResponse, Role, TokenUsage, ToolSchema,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use baton_core::LOCAL_MODEL_FETCH_SCRIPT as FETCH_SCRIPT;

mod instance;
mod prompt;

use instance::instance;
use prompt::{assistant_text, chat_message, reply_grammar, tool_result_text, tools_preamble};

/// Where `scripts/fetch-local-model.sh` puts the model the examples and tests use:
/// `$BATON_LOCAL_MODEL` when set, otherwise `~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn fetched_model_path() -> PathBuf {
    std::env::var_os("BATON_LOCAL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

/// How an embedded model is loaded and sampled.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// Tokens one call can hold, prompt and completion (default 4096, at most what the model
    /// was trained for).
    pub context: u32,
    /// Threads per instance (default 1).
    pub threads: u32,
    /// Contexts serving calls at once (default 1); calls beyond them queue.
    pub instances: u32,
    /// Sampling temperature: 0 (the default) always takes the likeliest token, so a prompt
    /// always gets the same reply.
    pub temperature: f32,
    /// Seed of the sampler when `temperature` is above 0 (default 0: runs repeat).
    pub seed: u32,
}

impl LocalConfig {
    /// The defaults for the model at `path`.
    pub fn new(path: impl Into<PathBuf>) -> LocalConfig {
        LocalConfig {
            path: path.into(),
            context: 4096,
            threads: 1,
            instances: 1,
            temperature: 0.0,
            seed: 0,
        }
    }
}

/// Why an embedded model could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// Occurs when the model file does not exist.
    #[error(
        "model file `{path}` not found (fetch it with {FETCH_SCRIPT}, or point `path:` at a GGUF file)"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// Occurs when the file is not a GGUF model (it does not start with the GGUF magic).
    #[error("`{path}` is not a GGUF model file ({found})")]
    NotGguf {
        /// The path.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// Occurs when llama.cpp cannot load the file (truncated, corrupt, or an architecture it does
    /// not know).
    #[error(
        "llama.cpp could not load `{path}`: the file is corrupt, truncated or of an unsupported architecture ({message})"
    )]
    Load {
        /// The path.
        path: PathBuf,
        /// llama.cpp's error.
        message: String,
    },
    /// Occurs when a context of the requested size cannot be created (not enough memory).
    #[error(
        "`{path}`: a context of {context} tokens could not be created ({message}); lower `context` or `instances`"
    )]
    Context {
        /// The path.
        path: PathBuf,
        /// The requested context.
        context: u32,
        /// What failed.
        message: String,
    },
    /// Occurs when a setting is out of range.
    #[error("`{key}`: {message}")]
    Setting {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Occurs when an I/O error prevents reading the file.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// llama.cpp's backend, initialised once per process (llama-cpp-2 refuses a second
/// initialisation): for code that uses llama-cpp-2 beside Baton in the same process.
///
/// # Errors
/// When llama.cpp's backend cannot be initialised.
pub fn llama_backend() -> Result<&'static LlamaBackend, String> {
    backend()
}

fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own log lines go to `tracing` (target `llama-cpp-2`), not stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks that `path` is a readable GGUF file, with errors that say what is wrong.
fn check_file(path: &Path) -> Result<(), LocalError> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LocalError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(LocalError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if n < 4 || &magic != b"GGUF" {
        return Err(LocalError::NotGguf {
            path: path.to_path_buf(),
            found: if n == 0 {
                "the file is empty".into()
            } else {
                format!("it starts with {:?}", String::from_utf8_lossy(&magic[..n]))
            },
        });
    }
    Ok(())
}

/// One call, as an instance thread receives it.
struct Job {
    prompt: Vec<LlamaToken>,
    grammar: Option<Arc<str>>,
    max_tokens: u32,
    confidence: bool,
    cancel: Arc<AtomicBool>,
    reply: tokio::sync::oneshot::Sender<Result<Generated, String>>,
}

/// What an instance generated.
struct Generated {
    /// Prompt tokens the context already held (not computed again).
    reused: u64,
    text: String,
    output_tokens: u64,
    /// ln of the probabilities of the tokens the model chose (the end-of-generation token
    /// included), summed, and how many there were.
    log_prob: f64,
    scored: u64,
    truncated: bool,
    cpu: Duration,
}

/// What the callers and the instance threads share.
struct Shared {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    context: u32,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Grammars by tool set (the converter runs once per agent's toolset).
    grammars: Mutex<HashMap<u64, Arc<str>>>,
    /// Tokens generated by every instance, ever.
    generated: Arc<AtomicU64>,
}

/// An embedded GGUF model (`provider: local`). Cheap to share; dropping the last handle stops
/// its instance threads once their calls end.
pub struct LocalModel {
    name: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .field("context", &self.shared.context)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        // Closing the queue ends the instance threads after their current call.
        if let Ok(mut jobs) = self.shared.jobs.lock() {
            jobs.take();
        }
    }
}

impl LocalModel {
    /// Loads the model at `config.path` and starts its instances (each creates its context
    /// before this returns, so a context too large for memory fails here, not at the first call).
    ///
    /// # Errors
    /// [`LocalError`] naming what is wrong: a missing or non-GGUF file, one llama.cpp cannot
    /// load, a context that cannot be created, a setting out of range.
    pub fn load(name: impl Into<String>, config: &LocalConfig) -> Result<LocalModel, LocalError> {
        let name = name.into();
        for (key, v) in [
            ("threads", config.threads),
            ("instances", config.instances),
            ("context", config.context),
        ] {
            if v == 0 {
                return Err(LocalError::Setting {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !(config.temperature.is_finite() && (0.0..=2.0).contains(&config.temperature)) {
            return Err(LocalError::Setting {
                key: "temperature",
                message: format!("{} is not between 0 and 2", config.temperature),
            });
        }
        check_file(&config.path)?;
        let backend = backend().map_err(|message| LocalError::Load {
            path: config.path.clone(),
            message,
        })?;
        let model = LlamaModel::load_from_file(backend, &config.path, &LlamaModelParams::default())
            .map_err(|e| LocalError::Load {
                path: config.path.clone(),
                message: e.to_string(),
            })?;
        let trained = model.n_ctx_train();
        if trained > 0 && config.context > trained {
            return Err(LocalError::Setting {
                key: "context",
                message: format!(
                    "{} tokens is more than the {trained} `{}` was trained for",
                    config.context,
                    config.path.display()
                ),
            });
        }
        let template = model
            .chat_template(None)
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| LocalError::Load {
                path: config.path.clone(),
                message: format!("chat template: {e}"),
            })?;
        let model = Arc::new(model);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let generated = Arc::new(AtomicU64::new(0));
        for i in 0..config.instances {
            let model = Arc::clone(&model);
            let rx = Arc::clone(&rx);
            let ready = ready_tx.clone();
            let settings = config.clone();
            let counter = Arc::clone(&generated);
            std::thread::Builder::new()
                .name(format!("baton-local-{name}-{i}"))
                .spawn(move || instance(backend, &model, &settings, &rx, &ready, &counter))
                .map_err(|e| LocalError::Context {
                    path: config.path.clone(),
                    context: config.context,
                    message: format!("could not start a thread: {e}"),
                })?;
        }
        drop(ready_tx);
        for _ in 0..config.instances {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    return Err(LocalError::Context {
                        path: config.path.clone(),
                        context: config.context,
                        message,
                    });
                }
                Err(_) => {
                    return Err(LocalError::Context {
                        path: config.path.clone(),
                        context: config.context,
                        message: "an instance thread ended before its context was ready".into(),
                    });
                }
            }
        }
        Ok(LocalModel {
            name,
            shared: Arc::new(Shared {
                model,
                template,
                context: config.context,
                jobs: Mutex::new(Some(tx)),
                grammars: Mutex::new(HashMap::new()),
                generated,
            }),
        })
    }

    /// The model's name in the topology.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens this model has generated since it loaded, over all calls (abandoned ones
    /// included, up to where they stopped).
    pub fn generated_tokens(&self) -> u64 {
        self.shared.generated.load(Ordering::Relaxed)
    }

    /// Tokens one call can hold.
    pub fn context(&self) -> u32 {
        self.shared.context
    }

    /// The prompt `request` becomes, through the model's chat template.
    ///
    /// # Errors
    /// When the template cannot be applied (a message with a NUL byte, say).
    pub fn prompt(&self, request: &ModelRequest<'_>) -> Result<String, String> {
        let mut chat = Vec::with_capacity(request.messages.len() + 1);
        let tools = tools_preamble(request.tools);
        let mut system_done = false;
        for m in request.messages {
            let (role, content) = match m.role {
                Role::System => {
                    system_done = true;
                    ("system", format!("{}{tools}", m.content))
                }
                Role::User => ("user", m.content.clone()),
                Role::Assistant => ("assistant", assistant_text(m, !request.tools.is_empty())),
                Role::Tool => ("user", tool_result_text(m, request.messages)),
            };
            if !system_done && !tools.is_empty() && role != "system" {
                system_done = true;
                chat.push(chat_message("system", tools.trim_start().to_string())?);
            }
            chat.push(chat_message(role, content)?);
        }
        self.shared
            .model
            .apply_chat_template(&self.shared.template, &chat, true)
            .map_err(|e| format!("chat template: {e}"))
    }

    fn tokenize(&self, prompt: &str) -> Vec<LlamaToken> {
        // The template wrote the special tokens out (`<|im_start|>`): they are parsed as such.
        self.shared
            .model
            .vocab()
            .tokenize(prompt.as_bytes(), true, true)
    }

    /// The grammar for `tools`, converted once per tool set.
    ///
    /// Keyed by the tools' names: within a runtime a name is one tool, so a step does not
    /// serialise every schema to find its grammar.
    fn grammar(&self, tools: &[ToolSchema]) -> Result<Arc<str>, String> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for t in tools {
            t.name.hash(&mut h);
        }
        let key = h.finish();
        if let Some(g) = self
            .shared
            .grammars
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(g);
        }
        let grammar: Arc<str> = reply_grammar(tools)?.into();
        if let Ok(mut m) = self.shared.grammars.lock() {
            m.insert(key, Arc::clone(&grammar));
        }
        Ok(grammar)
    }

    fn malformed(&self, message: String, billed: Option<TokenUsage>) -> ModelError {
        ModelError::Malformed {
            model: self.name.clone(),
            message,
            billed,
        }
    }
}

/// Drops with the call's future: tells the instance to stop between two tokens.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl Model for LocalModel {
    async fn call(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let prompt = self.prompt(&request).map_err(|m| self.malformed(m, None))?;
        let prompt = self.tokenize(&prompt);
        let input = prompt.len() as u64;
        let grammar = if request.tools.is_empty() {
            None
        } else {
            Some(
                self.grammar(request.tools)
                    .map_err(|m| self.malformed(m, None))?,
            )
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&cancel));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            prompt,
            grammar: grammar.clone(),
            max_tokens: request.max_tokens,
            confidence: request.confidence,
            cancel,
            reply: tx,
        };
        let sent = self
            .shared
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|tx| tx.send(job).is_ok()))
            .unwrap_or(false);
        let provider = |message: String| ModelError::Provider {
            model: self.name.clone(),
            message,
        };
        if !sent {
            return Err(provider("the model's instances have stopped".into()));
        }
        let generated = rx
            .await
            .map_err(|_| provider("the instance serving the call stopped".into()))?
            .map_err(provider)?;
        let usage = TokenUsage {
            input,
            output: generated.output_tokens,
            // The prompt's beginning the context held from an earlier call: not computed again.
            cached_input: generated.reused,
            cache_write_input: 0,
        };
        // The end-of-generation token counts too: the model chose to stop.
        let confidence = (request.confidence && generated.scored > 0)
            .then(|| (generated.log_prob / generated.scored as f64).exp() as f32);
        let mut response = if grammar.is_some() && !generated.truncated {
            self.parse_reply(&generated.text, usage)?
        } else {
            ModelResponse::text(generated.text.trim().to_string(), usage)
        };
        response.confidence = confidence;
        response.truncated = generated.truncated;
        response.cpu = generated.cpu;
        Ok(response)
    }

    fn estimate_input_tokens(&self, request: &ModelRequest<'_>) -> u64 {
        match self.prompt(request) {
            Ok(p) => self.tokenize(&p).len() as u64,
            Err(_) => baton_core::conservative_input_tokens(request),
        }
    }
}

impl LocalModel {
    /// A reply written under the grammar: a tool call or an answer.
    fn parse_reply(&self, text: &str, usage: TokenUsage) -> Result<ModelResponse, ModelError> {
        let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
            self.malformed(
                format!("the reply does not parse as the grammar's JSON ({e}): {text:?}"),
                Some(usage),
            )
        })?;
        if let Some(answer) = v.get("answer").and_then(serde_json::Value::as_str) {
            return Ok(ModelResponse::text(answer.to_string(), usage));
        }
        match (
            v.get("tool").and_then(serde_json::Value::as_str),
            v.get("arguments"),
        ) {
            (Some(name), Some(arguments)) => Ok(ModelResponse::tool_calls(
                [(name.to_string(), arguments.clone())],
                usage,
            )),
            _ => Err(self.malformed(
                format!("the reply is neither a tool call nor an answer: {text:?}"),
                Some(usage),
            )),
        }
    }
}
