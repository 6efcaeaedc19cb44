//! `baton run FILE --tasks FILE.jsonl`: a batch of tasks at once on one runtime.
//!
//! Each line of the tasks file is a task: plain text, or `{"task": "...", "budget_usd": 0.01}`.
//! The tasks run concurrently (at most `--concurrency` at once); each finished task prints a line
//! (or, with `--json`, its report with its `task` text), then a totals table. `--budget-usd` is
//! the budget of the whole batch: every task's account is opened under one batch account, so the
//! ledger enforces it across all of them; a line's `budget_usd` caps that task alone.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use baton::actors::Runtime;
use baton::core::{Account, Budget, NanoUsd, Outcome, Usd};
use baton::topologies::Topology;
use serde::Deserialize;

/// One task of the batch.
pub(crate) struct BatchTask {
    pub(crate) task: String,
    pub(crate) budget: Option<NanoUsd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    task: String,
    #[serde(default)]
    budget_usd: Option<Usd>,
}

/// Reads a tasks file: one task a line (blank lines and lines starting with `#` skipped).
///
/// # Errors
/// A line that starts with `{` but is not `{"task": ..., "budget_usd": ...}`, an empty task or a
/// budget of zero, named by file and line.
pub(crate) fn read_tasks(path: &Path) -> anyhow::Result<Vec<BatchTask>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the tasks file {}", path.display()))?;
    let mut tasks = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let task = if line.starts_with('{') {
            let l: Line = serde_json::from_str(line).with_context(|| {
                format!(
                    "{}: not a task line (expected plain text or {{\"task\": \"...\", \"budget_usd\": 0.01}})",
                    at()
                )
            })?;
            if l.budget_usd.is_some_and(|b| b.0 == NanoUsd::ZERO) {
                bail!("{}: `budget_usd` must be more than zero", at());
            }
            BatchTask {
                task: l.task,
                budget: l.budget_usd.map(|b| b.0),
            }
        } else {
            BatchTask {
                task: line.to_string(),
                budget: None,
            }
        };
        if task.task.trim().is_empty() {
            bail!("{}: the task is empty", at());
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        bail!("{}: no tasks in the file", path.display());
    }
    Ok(tasks)
}

/// Runs the batch; returns the worst outcome (the highest exit code).
pub(crate) async fn run_batch(
    runtime: Runtime,
    topology: &Topology,
    tasks: Vec<BatchTask>,
    (concurrency, batch_budget, json): (usize, Option<NanoUsd>, bool),
) -> anyhow::Result<Outcome> {
    let root = topology.graph()[topology.root()].name.to_string();
    let batch = Account::root(0, format!("batch of {root}"), batch_budget, None);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (runtime, permits, batch) = (runtime.clone(), Arc::clone(&permits), batch.clone());
        running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let budget = Budget {
                max_cost: t.budget,
                ..Budget::UNLIMITED
            };
            let report = runtime
                .spawn_with(t.task.clone(), budget, Some(&batch))
                .await;
            (i, t.task, report)
        });
    }
    // Ctrl-C or SIGTERM cancels the batch: every task still running or waiting ends `cancelled`
    // (recorded and printed like any outcome), and the process exits 6 once all have ended.
    let interrupt = crate::loops::interrupted();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    let mut out = std::io::stdout().lock();
    let mut worst = Outcome::Completed;
    let mut counts: Vec<(Outcome, usize)> = Vec::new();
    loop {
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                eprintln!("interrupted: cancelling the batch");
                batch.cancel();
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (i, task, report) = joined.context("a task of the batch panicked")?;
        let report = report.with_context(|| format!("task {} ({task})", i + 1))?;
        if report.outcome.exit_code() > worst.exit_code() {
            worst = report.outcome;
        }
        match counts.iter_mut().find(|(o, _)| *o == report.outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((report.outcome, 1)),
        }
        if json {
            let mut value = serde_json::to_value(&report)?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("task".into(), serde_json::Value::String(task));
                obj.insert("line".into(), serde_json::json!(i + 1));
            }
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        } else {
            let said = report
                .answer
                .as_deref()
                .or(report.error.as_deref())
                .unwrap_or("");
            writeln!(
                out,
                "[{}] {} {} {} ms · {} → {}",
                i + 1,
                report.outcome,
                crate::print::usd(baton::core::NanoUsd(report.totals.cost_nanousd)),
                report.totals.queued_ms + report.totals.wall_ms,
                crate::print::one_line(&task, 60),
                crate::print::one_line(said, 90)
            )?;
        }
        out.flush()?;
    }
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    if !json {
        writeln!(out)?;
        writeln!(out, "outcome            tasks")?;
        counts.sort_by_key(|(o, _)| o.exit_code());
        for (o, n) in &counts {
            writeln!(out, "{:<18} {n:>5}", o.as_str())?;
        }
        let limit = batch_budget.map_or_else(|| "no limit".to_string(), crate::usd);
        writeln!(
            out,
            "total              {total:>5}   {} of {limit}   {} ms",
            crate::print::usd(batch.spent()),
            started.elapsed().as_millis()
        )?;
    }
    out.flush()?;
    batch
        .check_conservation()
        .map_err(|e| anyhow::anyhow!("the batch's ledger does not add up: {e}"))?;
    runtime.shutdown().await;
    Ok(worst)
}
