//! How the CLI prints a run: step by step (`Printer`, an observer) and the summary table.

use std::collections::HashMap;
use std::io::Write;

use baton::actors::{Event, Observer, RunReport};
use baton::core::NanoUsd;
use baton::topologies::Topology;

/// Prints the run step by step, indented by each agent's depth in the tree.
pub(crate) struct Printer {
    depth: HashMap<String, usize>,
    /// `--explain`: each step says why its model answered so (the scripted rule that fired).
    explain: bool,
}

impl Printer {
    pub(crate) fn new(t: &Topology) -> Printer {
        let mut depth = HashMap::new();
        let mut stack = vec![(t.root(), 0usize)];
        while let Some((n, d)) = stack.pop() {
            depth.insert(t.graph()[n].name.to_string(), d);
            stack.extend(t.children(n).into_iter().map(|c| (c, d + 1)));
        }
        Printer {
            depth,
            explain: false,
        }
    }

    /// Shows, on each step, why its model answered so (`--explain`).
    pub(crate) fn explain(mut self, on: bool) -> Printer {
        self.explain = on;
        self
    }

    fn pad(&self, agent: &str) -> String {
        "  ".repeat(self.depth.get(agent).copied().unwrap_or(0))
    }
}

/// Characters that must not reach a terminal raw: control characters (ESC starts the sequences
/// that move the cursor, repaint the screen or set the window title; `\r` overwrites a line) and
/// the bidirectional overrides that reorder what is shown.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character a terminal would act on written as a visible escape (`\u{1b}`):
/// model output, tool names and tool results cannot repaint the screen before a human is asked
/// to approve something.
pub(crate) fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub(crate) fn one_line(s: &str, max: usize) -> String {
    let s = safe(s);
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

impl Printer {
    /// A model call's line: step, model, tokens, cost, and what the model said beside its tool
    /// calls.
    fn step_line(&self, e: &Event<'_>) -> String {
        let Event::Step {
            agent,
            step,
            model,
            usage,
            cost,
            estimated,
            truncated,
            cpu,
            explain,
            said,
            ..
        } = e
        else {
            return String::new();
        };
        format!(
            "{}[{agent}] step {step} · {model} · {} in / {} out · {}{}{}{}{}{}",
            self.pad(agent),
            usage.input,
            usage.output,
            usd(*cost),
            if cpu.is_zero() {
                String::new()
            } else {
                format!(" · {} ms CPU", cpu.as_millis())
            },
            if *estimated {
                " (estimated: the server reported no usage)"
            } else {
                ""
            },
            if *truncated {
                " (cut at max_output_tokens)"
            } else {
                ""
            },
            match explain {
                Some(why) if self.explain => format!("\n{}  ↳ {why}", self.pad(agent)),
                _ => String::new(),
            },
            // What the model said beside its tool calls (a final answer is the ■ line).
            said.map_or(String::new(), |t| format!(
                "\n{}[{agent}] says: {}",
                self.pad(agent),
                one_line(t, 300)
            ))
        )
    }
}

impl Observer for Printer {
    fn on_event(&self, e: &Event<'_>) {
        let line = match e {
            Event::Step { .. } => self.step_line(e),
            Event::Escalated {
                agent,
                model,
                reason,
                ..
            } => format!("{}[{agent}] ↑ {model}: {reason}", self.pad(agent)),
            Event::ModelFailed {
                agent,
                model,
                error,
                ..
            } => {
                format!(
                    "{}[{agent}] ✗ {model} failed: {}",
                    self.pad(agent),
                    one_line(error, 100)
                )
            }
            Event::ToolCall {
                agent,
                tool,
                arguments,
                ..
            } => format!(
                "{}[{agent}] → {tool} {}",
                self.pad(agent),
                one_line(&arguments.to_string(), 110)
            ),
            Event::Observation {
                agent, tool, text, ..
            } => {
                format!(
                    "{}[{agent}] ← {tool}: {}",
                    self.pad(agent),
                    one_line(text, 110)
                )
            }
            Event::Finished {
                agent,
                outcome,
                detail,
                ..
            } => format!(
                "{}[{agent}] ■ {outcome}: {}",
                self.pad(agent),
                one_line(detail, 110)
            ),
            Event::Restarted {
                agent,
                supervisor,
                reason,
            } => format!(
                "{}[{agent}] ↻ restarted by {supervisor} after: {}",
                self.pad(agent),
                one_line(reason, 90)
            ),
            Event::GaveUp { supervisor, reason } => format!(
                "{}[{supervisor}] ✗ gave up: {}",
                self.pad(supervisor),
                one_line(reason, 100)
            ),
            Event::BudgetAction { agent, action, .. } => {
                format!("{}[{agent}] $ {action}", self.pad(agent))
            }
            Event::Policy {
                agent,
                tool,
                decision,
                rule,
                reason,
                ..
            } => format!(
                "{}[{agent}] ⚖ {tool}: {decision} ({rule}): {}",
                self.pad(agent),
                one_line(reason, 100)
            ),
            Event::Retrying {
                agent,
                model,
                attempt,
                delay,
                ..
            } => format!(
                "{}[{agent}] ↺ {model}: attempt {attempt} in {} ms",
                self.pad(agent),
                delay.as_millis()
            ),
            _ => return,
        };
        println!("{}", safe(&line));
    }
}

pub(crate) fn print_summary(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "outcome: {}", r.outcome)?;
    match (&r.answer, &r.error) {
        (Some(a), _) => writeln!(out, "answer:  {}", one_line(a, 400))?,
        (None, Some(e)) => writeln!(out, "reason:  {}", one_line(e, 400))?,
        _ => {}
    }
    writeln!(out)?;
    let w = r
        .agents
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<w$} {:>5} {:>5} {:>6} {:>8} {:>9} {:>10} {:>5} {:>11}  outcome",
        "agent", "tasks", "calls", "errors", "restarts", "tokens in", "tokens out", "steps", "cost"
    )?;
    for a in &r.agents {
        writeln!(
            out,
            "{:<w$} {:>5} {:>5} {:>6} {:>8} {:>9} {:>10} {:>5} {:>11}  {}",
            a.name,
            a.tasks,
            a.model_calls,
            a.model_errors,
            a.restarts,
            a.tokens_in,
            a.tokens_out,
            a.steps,
            usd(NanoUsd(a.cost_nanousd)),
            a.outcome.map_or("-", |o| o.as_str())
        )?;
    }
    let t = &r.totals;
    writeln!(
        out,
        "{:<w$} {:>5} {:>5} {:>6} {:>8} {:>9} {:>10} {:>5} {:>11}  {} ms",
        "total",
        r.tasks.len(),
        t.model_calls,
        t.model_errors,
        t.restarts,
        t.tokens_in,
        t.tokens_out,
        t.steps,
        usd(NanoUsd(t.cost_nanousd)),
        t.wall_ms
    )?;
    if r.models.len() > 1 || t.saved_vs_top_rung_nanousd > 0 {
        let by_model: Vec<String> = r
            .models
            .iter()
            .map(|m| {
                format!(
                    "{} {} call(s) {}",
                    m.name,
                    m.calls,
                    usd(NanoUsd(m.cost_nanousd))
                )
            })
            .collect();
        writeln!(
            out,
            "\nrouting: {}; saved {} against the top model of each ladder",
            by_model.join(", "),
            usd(NanoUsd(t.saved_vs_top_rung_nanousd))
        )?;
    }
    print_scoreboard(out, &r.scoreboard)
}

/// The scoreboard's lines (docs/tokenomics.md defines each figure).
pub(crate) fn print_scoreboard(
    out: &mut impl Write,
    b: &baton::actors::Scoreboard,
) -> std::io::Result<()> {
    let s = &b.sums;
    writeln!(out, "\nscoreboard:")?;
    let per = b
        .cost_per_completed_workflow_nanousd
        .map_or("-".into(), |c| usd(NanoUsd(c)));
    let roi = b.roi.map_or("-".into(), |r| format!("{r:.2}"));
    writeln!(
        out,
        "  value {} · cost {} · ROI {roi} · cost per completed workflow {per} ({} of {} completed)",
        usd(NanoUsd(b.value_nanousd)),
        usd(NanoUsd(s.cost_nanousd)),
        s.completed,
        s.workflows
    )?;
    let energy = if b.energy_method == "none" {
        "no figure (no model of known size, no CPU time measured)".to_string()
    } else {
        format!(
            "{:.3} J = {:.6} Wh ({}{})",
            b.energy_j,
            b.energy_wh,
            b.energy_method,
            if b.energy_complete {
                String::new()
            } else {
                format!(
                    "; a lower bound: {} model call(s) of unknown size",
                    s.model_calls_without_energy
                )
            }
        )
    };
    writeln!(out, "  energy {energy}")?;
    let i = &b.value_per_watt_inputs;
    writeln!(
        out,
        "  value per watt {} = {} output tokens × quality {} / ({:.6} Wh × ${:.6})",
        b.value_per_watt.map_or_else(
            || {
                if b.energy_complete {
                    "-".into()
                } else {
                    "- (energy incomplete)".into()
                }
            },
            |v| format!("{v:.1}")
        ),
        i.output_tokens,
        i.quality.map_or("-".into(), |q| format!("{q:.2}")),
        i.energy_wh,
        i.cost_usd
    )?;
    writeln!(
        out,
        "  free tier {} of steps · re-sent {} input tokens ({}){}{}",
        b.free_tier_share
            .map_or("-".into(), |f| format!("{:.0}%", f * 100.0)),
        b.tokens_resent,
        b.resent_share
            .map_or("-".into(), |f| format!("{:.0}% of input", f * 100.0)),
        if b.cache_saved_nanousd == 0 {
            String::new()
        } else {
            format!(" · caching saved {}", signed_usd(b.cache_saved_nanousd))
        },
        if b.compactions == 0 {
            String::new()
        } else {
            format!(
                " · {} compaction(s) kept {} input tokens out",
                b.compactions, b.compaction_tokens_saved
            )
        }
    )
}

fn signed_usd(n: i64) -> String {
    let abs = usd(NanoUsd(n.unsigned_abs()));
    if n < 0 { format!("-{abs}") } else { abs }
}

/// Dollars for people: six decimals (exact nano-dollars are in `--json`).
pub(crate) fn usd(n: NanoUsd) -> String {
    format!("${:.6}", n.as_usd_f64())
}
