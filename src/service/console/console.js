// Baton's console: plain JavaScript over the JSON API and its Server-Sent-Events streams.
// Every text that comes from a task, a model or a tool is escaped before it is shown.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const usd = (n) => n == null ? "—" : "$" + (n / 1e9).toFixed(n >= 1e9 ? 2 : 6);
const state = { token: sessionStorage.getItem("baton-token") || "", selected: null, taskStream: null, topology: null, agents: {}, lanes: null };

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { $("token-form").hidden = false; throw new Error("a token is required"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Server-Sent Events through fetch (so that the token travels in a header, never in a URL),
// reconnecting with Last-Event-ID.
function follow(path, onEvent, onEnd) {
  const control = { stopped: false, last: 0, abort: new AbortController() };
  (async () => {
    while (!control.stopped) {
      try {
        const headers = { "Accept": "text/event-stream" };
        if (state.token) headers["Authorization"] = "Bearer " + state.token;
        if (control.last) headers["Last-Event-ID"] = String(control.last);
        const response = await fetch(path, { headers, signal: control.abort.signal });
        if (response.status === 401) { $("token-form").hidden = false; return; }
        if (!response.ok || !response.body) throw new Error(response.statusText);
        $("conn").textContent = "live";
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let id = null, data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("id:")) id = Number(line.slice(3).trim());
              else if (line.startsWith("data:")) data += line.slice(5).trimStart();
            }
            if (!data) continue;
            if (id) control.last = id;
            try { onEvent(JSON.parse(data)); } catch (e) { console.error(e); }
          }
        }
        if (onEnd) { onEnd(); return; }
      } catch (e) {
        if (control.stopped) return;
        $("conn").textContent = "reconnecting…";
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return { stop() { control.stopped = true; control.abort.abort(); } };
}

// Bar widths are set through the CSSOM: the content security policy allows no inline styles.
function applyBars(root) {
  for (const d of root.querySelectorAll("[data-pct]")) d.style.width = d.dataset.pct + "%";
}

// The supervision tree, live.
function renderTree() {
  const t = state.topology;
  if (!t) return;
  const byName = Object.fromEntries(t.agents.map((a) => [a.name, a]));
  const max = Math.max(1, ...Object.values(state.agents).map((s) => s.spent_nanousd || 0));
  const node = (name, seen) => {
    if (seen.has(name)) return "";
    seen.add(name);
    const a = byName[name] || { children: [] };
    const s = state.agents[name] || {};
    const running = s.running || 0;
    const label = running ? `running ${running}` : "idle";
    const ended = Object.entries(s.ended || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    const pct = Math.min(100, Math.round(100 * (s.spent_nanousd || 0) / max));
    const kids = (a.children || []).map((c) => node(c, seen)).join("");
    return `<li class="agent" data-agent="${esc(name)}"><span class="name">${esc(name)}</span>` +
      `<span class="state ${running ? "running" : ""}">${esc(label)}</span>` +
      `<div class="bar"><div data-pct="${pct}"></div></div>` +
      `<div class="figures">${usd(s.spent_nanousd || 0)} · ${s.tokens_in || 0}→${s.tokens_out || 0} tok · ` +
      `${s.model_errors || 0} errors · ${s.restarts || 0} restarts${s.budget_actions ? ` · ${s.budget_actions} budget actions` : ""}` +
      `${a.max_usd_per_task_nanousd ? ` · ${usd(a.max_usd_per_task_nanousd)}/task` : ""}${ended ? `<br>${esc(ended)}` : ""}</div>` +
      (kids ? `<ul>${kids}</ul>` : "") + `</li>`;
  };
  const html = node(t.root, new Set());
  if (html === state.treeHtml) return;
  state.treeHtml = html;
  $("tree").innerHTML = html;
  applyBars($("tree"));
}

function bar(label, spent, limit) {
  if (limit == null) return `<div>${esc(label)}: ${usd(spent)}</div>`;
  const pct = Math.min(100, Math.round(100 * spent / limit));
  const cls = pct >= 100 ? "over" : pct >= 80 ? "warn" : "";
  return `<div>${esc(label)}: ${usd(spent)} of ${usd(limit)}</div><div class="bar ${cls}"><div data-pct="${pct}"></div></div>`;
}

function renderSummary(s) {
  const b = s.budget || {};
  $("budget").innerHTML = bar("spent", b.spent_nanousd, b.max_nanousd) +
    (b.max_per_day_nanousd != null ? bar("today", b.day_spent_nanousd, b.max_per_day_nanousd) : "") +
    (b.max_per_hour_nanousd != null ? bar("this hour", b.hour_spent_nanousd, b.max_per_hour_nanousd) : "");
  applyBars($("budget"));
  const counts = s.tasks || {};
  const done = counts.completed || 0;
  $("totals").innerHTML = `<span>in flight ${s.in_flight}</span><span id="n-completed" data-n="${done}">completed ${done}</span>` +
    `<span>spent ${usd(b.spent_nanousd)}</span><span>today ${usd(b.day_spent_nanousd)}</span>` +
    `<span>per completed workflow ${usd(s.cost_per_completed_nanousd)}</span>` +
    `<span>routing saved ${usd(s.routing_saved_nanousd)}</span>` +
    (s.draining ? `<span>draining</span>` : "");
}

// The task list: running first, then newest first.
async function refreshTasks() {
  const { tasks } = await api("/v1/tasks?limit=1000");
  tasks.sort((a, b) => (b.status === "running") - (a.status === "running") || b.id - a.id);
  $("tasks").tBodies[0].innerHTML = tasks.map((t) =>
    `<tr data-id="${t.id}" class="${t.id === state.selected ? "selected" : ""}"><td>${t.id}</td>` +
    `<td class="status ${esc(t.status)}">${esc(t.status)}</td><td>${usd(t.cost_nanousd)}</td>` +
    `<td class="task" title="${esc(t.task)}">${esc(t.task)}</td></tr>`).join("");
}

let tasksTimer = null;
function soon() { if (!tasksTimer) tasksTimer = setTimeout(() => { tasksTimer = null; refreshTasks().catch(() => {}); }, 300); }

// The timeline of one task: a row per event, a lane per (sub-)task, parallel branches side by side.
function laneOf(e) {
  const L = state.lanes;
  if (e.task == null) return 0;
  if (L.of.has(e.task)) return L.of.get(e.task);
  let i = 0;
  while (L.busy.has(i)) i++;
  L.busy.add(i);
  L.of.set(e.task, i);
  return i;
}

function describe(e) {
  const k = `<span class="k ${esc(e.kind)}">${esc(e.kind.replace("_", " "))}</span>`;
  switch (e.kind) {
    case "task_submitted": return `${k}${esc(e.text)}`;
    case "task_start": return `${k}<b>${esc(e.agent)}</b> task ${e.task}${e.parent ? ` (from ${e.parent})` : ""}`;
    case "model_call": return `${k}<b>${esc(e.agent)}</b> · ${esc(e.model)} · step ${e.step} · ${e.tokens_in}→${e.tokens_out} tok · ${usd(e.cost_nanousd)} · ${e.latency_ms} ms${e.estimated ? " · estimated" : ""}${e.truncated ? " · truncated" : ""}`;
    case "tool_call": return `${k}<b>${esc(e.agent)}</b> → ${esc(e.tool)}<pre>${esc(JSON.stringify(e.arguments))}</pre>`;
    case "tool_result": return `${k}${esc(e.tool)} (${esc(e.outcome)})<pre>${esc(e.result)}</pre>`;
    case "policy": return `${k}${esc(e.tool)}: <b>${esc(e.decision)}</b> (${esc(e.rule)}) ${esc(e.reason)}`;
    case "budget": return `${k}<b>${esc(e.agent)}</b> ${esc(e.action)}`;
    case "model_error": return `${k}<b>${esc(e.agent)}</b> ${esc(e.model)}: ${esc(e.error)}`;
    case "model_retry": return `${k}${esc(e.model)} attempt ${e.attempt} in ${e.delay_ms} ms`;
    case "escalation": return `${k}${esc(e.model || e.supervisor)}: ${esc(e.reason)}`;
    case "task_end": return `${k}<b>${esc(e.agent)}</b> ${esc(e.outcome)}<pre>${esc(e.detail)}</pre>`;
    case "task_report": return `${k}<span class="status ${esc(e.status)}">${esc(e.status)}</span> · ${usd(e.cost_nanousd)}<pre>${esc(e.answer ?? e.error ?? "")}</pre>`;
    default: return `${k}<pre>${esc(JSON.stringify(e))}</pre>`;
  }
}

function addEvent(e) {
  const L = state.lanes;
  if (L.t0 == null) L.t0 = e.at_ms;
  const lane = laneOf(e);
  const cells = [];
  for (let i = 0; i < lane; i++) cells.push(`<div class="lane empty"></div>`);
  cells.push(`<div class="lane">${describe(e)}</div>`);
  const row = document.createElement("div");
  row.className = "ev";
  row.dataset.kind = e.kind;
  row.innerHTML = `<span class="t">+${((e.at_ms - L.t0) / 1000).toFixed(2)}s</span><div class="lanes">${cells.join("")}</div>`;
  $("timeline").appendChild(row);
  if (e.kind === "task_end" && e.task != null) L.busy.delete(L.of.get(e.task));
  if (e.kind === "model_call") {
    L.spent += e.cost_nanousd || 0;
    const c = $("head-cost");
    if (c) c.textContent = usd(L.spent);
  }
  if (e.kind === "task_report") { soon(); showHead(state.selected); }
}

async function showHead(id) {
  const t = await api(`/v1/tasks/${id}`);
  if (state.lanes && t.status === "running") state.lanes.spent = Math.max(state.lanes.spent, t.cost_nanousd);
  $("task-head").innerHTML = `<div><span class="status ${esc(t.status)}">${esc(t.status)}</span> · <span id="head-cost">${usd(t.status === "running" && state.lanes ? state.lanes.spent : t.cost_nanousd)}</span>` +
    `${t.status === "running" ? ` · <button id="cancel">Cancel</button>` : ""}</div><pre>${esc(t.task)}</pre>`;
  const c = $("cancel");
  if (c) c.onclick = () => api(`/v1/tasks/${id}`, { method: "DELETE" }).catch((e) => alert(e.message));
}

function select(id) {
  if (state.taskStream) state.taskStream.stop();
  state.selected = id;
  state.lanes = { of: new Map(), busy: new Set(), t0: null, spent: 0 };
  $("timeline").innerHTML = "";
  $("timeline-title").textContent = `task ${id}`;
  for (const tr of $("tasks").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.id) === id);
  showHead(id).catch(() => {});
  state.taskStream = follow(`/v1/tasks/${id}/events`, addEvent, () => {});
}

async function refreshApprovals() {
  const list = await api("/v1/approvals");
  const pending = list.filter((a) => a.state === "pending");
  $("approvals-count").textContent = pending.length || "";
  list.sort((a, b) => (b.state === "pending") - (a.state === "pending") || b.id - a.id);
  // Re-rendered only when something changed, so that a button is never replaced under a click.
  const key = JSON.stringify(list.slice(0, 50));
  if (key === state.approvalsKey) return;
  state.approvalsKey = key;
  $("approvals").innerHTML = list.slice(0, 50).map((a) =>
    `<div class="approval ${a.state === "pending" ? "" : "answered"}" data-approval="${a.id}">` +
    `<b>#${a.id}</b> <b>${esc(a.agent)}</b> wants <b>${esc(a.tool)}</b> (task ${a.root || a.task})` +
    `<pre>${esc(JSON.stringify(a.arguments))}</pre>` +
    `<div class="muted">policy: approval${a.dry_run != null ? " · its dry run said:" : " · no dry run"}</div>` +
    (a.dry_run != null ? `<pre>${esc(a.dry_run)}</pre>` : "") +
    (a.state === "pending"
      ? `<button data-verb="approve">Approve</button><button data-verb="deny">Deny</button>`
      : `<span class="muted">${esc(a.state)}${a.by ? " by " + esc(a.by) : ""}${a.reason ? ": " + esc(a.reason) : ""}</span>`) +
    `</div>`).join("") || `<div class="muted">none</div>`;
}

async function refreshLoops() {
  const { loops } = await api("/v1/loops");
  const html = loops.map((l) =>
    `<div class="loop" data-loop="${esc(l.schedule)}"><b>${esc(l.schedule)}</b> <span class="muted">${esc(l.cadence)}</span> · breaker ${esc(l.breaker)}` +
    ` <button data-loop-verb="${l.paused ? "resume" : "pause"}">${l.paused ? "Resume" : "Pause"}</button>${l.paused ? ` <span class="badge">paused</span>` : ""}<br>` +
    `${l.runs} runs, ${l.skipped} skipped${l.next_tick_ms ? ` · next ${new Date(l.next_tick_ms).toLocaleTimeString()}` : ""} · period ${usd(l.period_spent_nanousd)}${l.period_limit_nanousd != null ? " of " + usd(l.period_limit_nanousd) : ""}` +
    (l.last_run ? `<br><span class="muted">last: run ${l.last_run.run} ${esc(l.last_run.outcome)} ${usd(l.last_run.cost_nanousd)}</span>` : "") +
    `</div>`).join("") || `<div class="muted">none</div>`;
  if (html !== state.loopsHtml) { state.loopsHtml = html; $("loops").innerHTML = html; }
}

async function poll() {
  try {
    const [summary, agents] = await Promise.all([api("/v1/summary"), api("/v1/agents")]);
    state.agents = agents.agents;
    renderSummary(summary);
    renderTree();
    await refreshApprovals();
    await refreshLoops();
  } catch (e) { /* shown by the connection indicator */ }
}

let pollTimer = null;
function pollSoon() { if (!pollTimer) pollTimer = setTimeout(() => { pollTimer = null; poll(); }, 200); }

async function start() {
  try {
    state.topology = await api("/v1/topology");
    $("topology").textContent = state.topology.name;
  } catch (e) { $("conn").textContent = e.message; return; }
  await refreshTasks();
  await poll();
  setInterval(poll, 1000);
  setInterval(() => refreshTasks().catch(() => {}), 5000);
  follow("/v1/events", (e) => {
    if (e.kind === "task_submitted" || e.kind === "task_report") { soon(); pollSoon(); }
    else if (e.kind === "task_start" || e.kind === "task_end" || e.kind === "restart") pollSoon();
    if (e.kind === "policy" && e.decision === "requested") refreshApprovals().catch(() => {});
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = state.token;
  $("token-form").onsubmit = (ev) => {
    ev.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("baton-token", state.token);
    $("token-form").hidden = true;
    start();
  };
  $("tasks").tBodies[0].onclick = (ev) => {
    const tr = ev.target.closest("tr");
    if (tr) select(Number(tr.dataset.id));
  };
  $("approvals").onclick = (ev) => {
    const verb = ev.target.dataset && ev.target.dataset.verb;
    const box = ev.target.closest(".approval");
    if (!verb || !box) return;
    api(`/v1/approvals/${box.dataset.approval}/${verb}`, { method: "POST", body: JSON.stringify({ by: "console" }) })
      .then(refreshApprovals).catch((e) => alert(e.message));
  };
  $("loops").onclick = (ev) => {
    const verb = ev.target.dataset && ev.target.dataset.loopVerb;
    const box = ev.target.closest(".loop");
    if (!verb || !box) return;
    api(`/v1/loops/${encodeURIComponent(box.dataset.loop)}/${verb}`, { method: "POST", body: "{}" })
      .then(refreshLoops).catch((e) => alert(e.message));
  };
  $("submit").onsubmit = async (ev) => {
    ev.preventDefault();
    $("submit-error").textContent = "";
    const body = { task: $("task-text").value };
    if ($("task-budget").value) body.budget_usd = $("task-budget").value;
    if ($("task-deadline").value) body.deadline = $("task-deadline").value;
    try {
      const r = await api("/v1/tasks", { method: "POST", body: JSON.stringify(body) });
      $("task-text").value = "";
      await refreshTasks();
      select(r.id);
    } catch (e) { $("submit-error").textContent = e.message; }
  };
  start();
});
