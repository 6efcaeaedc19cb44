//! Run with `cargo run --example custom_tool`.
//!
//! A tree built in code, with a tool and a model of your own: a `desk` agent asks its `forecaster`
//! sub-agent, which calls the `weather` tool. Then the report: outcome, answer, cost per agent.

use baton::prelude::*;
use baton::serde_json::{Value, json};

/// A tool of your own: any type that implements `Tool`.
struct Weather;

#[async_trait]
impl Tool for Weather {
    fn name(&self) -> &str {
        "weather"
    }
    fn description(&self) -> &str {
        "Current weather for a city."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }
    async fn call(&self, args: Value) -> Result<String, ToolError> {
        Ok(format!("{}: 21°C, clear skies", str_arg(&args, "city")?))
    }
}

/// A model of your own: delegates, calls the tool, then answers with what it observed.
struct House;

#[async_trait]
impl Model for House {
    async fn call(&self, req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let last = req.messages.last().map_or("", |m| m.content.as_str());
        let (text, call) = match (req.agent, req.step) {
            ("desk", 1) => (
                None,
                Some(("delegate", json!({"agent": "forecaster", "task": "Lisbon"}))),
            ),
            ("forecaster", 1) => (None, Some(("weather", json!({"city": last})))),
            ("forecaster", _) => (Some(format!("Forecast: {last}")), None),
            _ => (Some(last.to_string()), None),
        };
        let tool_calls = call.into_iter().map(|(name, arguments)| ToolCall {
            id: "1".into(),
            name: name.into(),
            arguments,
        });
        let usage = TokenUsage {
            input: baton::core::scripted::input_tokens(req.messages, req.tools),
            output: 12,
            cached_input: 0,
        };
        Ok(ModelResponse {
            text,
            tool_calls: tool_calls.collect(),
            usage,
            ..Default::default()
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let price = |s| NanoUsd::parse_usd(s);
    let topology = TopologyBuilder::new("weather-desk")
        .model("house", ModelSpec::custom(price("0.50")?, price("1.50")?))
        .tool("weather", ToolSpec::custom())
        .agent("desk", AgentSpec::new(["house"]).children(["forecaster"]))
        .agent("forecaster", AgentSpec::new(["house"]).tools(["weather"]))
        .build()?;
    let runtime = Runtime::builder(topology)
        .model("house", House)
        .tool(Weather)
        .start()
        .await?;
    let report = runtime.run("What's the weather in Lisbon?").await?;
    println!(
        "{}: {}",
        report.outcome,
        report.answer.as_deref().unwrap_or("-")
    );
    for a in &report.agents {
        println!(
            "  {:<11} {} calls  {:>4} tokens  {}",
            a.name,
            a.model_calls,
            a.tokens_in + a.tokens_out,
            NanoUsd(a.cost_nanousd)
        );
    }
    println!("  total       {}", NanoUsd(report.totals.cost_nanousd));
    runtime.shutdown().await;
    Ok(())
}
