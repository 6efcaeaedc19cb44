//! `cargo run --example custom_tool`: a tree built in code, with a tool and a model of your own.
//! A `desk` agent asks its `forecaster` sub-agent, which calls the `weather` tool; then the report.

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
    async fn call(&self, _cx: &ToolContext<'_>, args: Value) -> Result<String, ToolError> {
        Ok(format!("{}: 21°C, clear skies", str_arg(&args, "city")?))
    }
}

/// A model of your own: delegates, calls the tool, then answers with what it observed.
struct House;

#[async_trait]
impl Model for House {
    async fn call(&self, req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let last = req.messages.last().map_or("", |m| m.content.as_str());
        // What a backend that counts no tokens reports: the prompt by Baton's conservative count.
        let usage = req.usage_for(12);
        Ok(match (req.agent, req.step) {
            ("desk", 1) => ModelResponse::tool_calls(
                [("delegate", json!({"agent": "forecaster", "task": "Lisbon"}))],
                usage,
            ),
            ("forecaster", 1) => {
                ModelResponse::tool_calls([("weather", json!({"city": last}))], usage)
            }
            ("forecaster", _) => ModelResponse::text(format!("Forecast: {last}"), usage),
            _ => ModelResponse::text(last, usage),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usd = NanoUsd::parse_usd;
    let topology = TopologyBuilder::new("weather-desk")
        .model(
            "house",
            ModelSpec::custom(Price::per_million_tokens(usd("0.50")?, usd("1.50")?)),
        )
        .tool("weather", ToolSpec::custom())
        .agent("desk", AgentSpec::new(["house"]).children(["forecaster"]))
        .agent("forecaster", AgentSpec::new(["house"]).tools(["weather"]))
        .build()?;
    let runtime = Runtime::builder(topology)
        .model("house", House)
        .tool(Weather)
        .start()
        .await?;
    // A task handle, as tokio::spawn gives: its id at once, `cancel()`, and awaited, the report.
    let task = runtime.spawn("What's the weather in Lisbon?");
    println!("task {} started", task.id());
    let report = task.await?;
    println!("{}: {}", report.outcome, report.answer.unwrap_or_default());
    for a in &report.agents {
        let (calls, cost) = (a.model_calls, NanoUsd(a.cost_nanousd));
        println!("  {:<11} {calls} calls  {cost}", a.name);
    }
    println!("  total       {}", NanoUsd(report.totals.cost_nanousd));
    runtime.shutdown().await;
    Ok(())
}
