//! The API's description as OpenAPI 3.1, generated from the types its handlers exchange (their
//! JSON Schemas come from the same `schemars` derives as the topology file's schema). Served at
//! `/openapi.json`, printed by `baton schema --openapi`, checked in as `schema/openapi.json`
//! (a test keeps the three the same, and every route of the router documented).

use baton::actors::ApprovalRecord;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::api::{
    AgentList, Cancelling, ErrorBody, LoopList, Probe, StreamEvent, Summary, TaskLinks, TaskList,
    TopologyView,
};
use super::{NewTask, TaskRecord};
use crate::serve::Answer;

/// The document.
pub(crate) fn document() -> Value {
    let mut generator: SchemaGenerator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let r = |schema: schemars::Schema| serde_json::to_value(schema).unwrap_or(Value::Null);
    let new_task = r(generator.subschema_for::<NewTask>());
    let links = r(generator.subschema_for::<TaskLinks>());
    let list = r(generator.subschema_for::<TaskList>());
    let record = r(generator.subschema_for::<TaskRecord>());
    let error = r(generator.subschema_for::<ErrorBody>());
    let cancelling = r(generator.subschema_for::<Cancelling>());
    let event = r(generator.subschema_for::<StreamEvent>());
    let approvals = r(generator.subschema_for::<Vec<ApprovalRecord>>());
    let approval = r(generator.subschema_for::<ApprovalRecord>());
    let answer = r(generator.subschema_for::<Answer>());
    let loops = r(generator.subschema_for::<LoopList>());
    let loop_view = r(generator.subschema_for::<super::LoopView>());
    let topology = r(generator.subschema_for::<TopologyView>());
    let agents = r(generator.subschema_for::<AgentList>());
    let summary = r(generator.subschema_for::<Summary>());
    let probe = r(generator.subschema_for::<Probe>());
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();

    let json_body = |schema: &Value, description: &str| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let err = |description: &str| json_body(&error, description);
    let guarded = |mut responses: Map<String, Value>| {
        responses.insert(
            "401".into(),
            err("A bearer token is required (BATON_TOKEN is set) and was missing or wrong."),
        );
        responses.insert("403".into(), err("The Host header does not name this server (DNS rebinding), or a request that changes something came from another Origin."));
        responses.insert("503".into(), err("The runtime is still starting, the server is draining, or (replicas on a shared ledger) the database cannot be reached: try again after Retry-After seconds."));
        Value::Object(responses)
    };
    let ok = |schema: &Value, description: &str| {
        let mut m = Map::new();
        m.insert("200".into(), json_body(schema, description));
        m
    };
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "uint64"}, "description": "The task's id."});
    let resume = json!([
        {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "integer"},
         "description": "Resume after this event (as EventSource sends it when it reconnects)."},
        {"name": "after", "in": "query", "required": false, "schema": {"type": "integer"},
         "description": "The same as Last-Event-ID, for clients that cannot set headers."}
    ]);
    let sse = |description: &str| {
        json!({"200": {"description": description,
            "content": {"text/event-stream": {"schema": event}}}})
    };

    let mut submit = Map::new();
    submit.insert("202".into(), json_body(&links, "Accepted: the task runs."));
    submit.insert("200".into(), json_body(&links, "The idempotency key named a task submitted before (header Idempotent-Replayed: true); it is not run again."));
    submit.insert(
        "400".into(),
        err("Bad input: the field and what is wrong with it."),
    );
    submit.insert("413".into(), err("The body is larger than 256 KiB."));
    submit.insert(
        "415".into(),
        err("Not sent as Content-Type: application/json."),
    );
    submit.insert(
        "422".into(),
        err("The idempotency key was used for another task."),
    );
    submit.insert("429".into(), json!({"description": "The root agent's running slots and queue are full (its max_concurrency and queue): try again after Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": error}}}));
    let mut get_task = ok(
        &record,
        "The task: its status and, once it ended, its report (the same as `baton run --json`).",
    );
    get_task.insert("404".into(), err("No such task."));
    let mut cancel = Map::new();
    cancel.insert(
        "202".into(),
        json_body(
            &cancelling,
            "Cancelling: the task ends `cancelled`, its reservations released.",
        ),
    );
    cancel.insert("404".into(), err("No such task."));
    cancel.insert("409".into(), err("The task has already ended."));
    let mut answer_responses = ok(&approval, "The request as answered.");
    answer_responses.insert("404".into(), err("No such request."));
    answer_responses.insert("409".into(), err("Already answered or timed out."));
    let mut loop_responses = ok(&loop_view, "The loop.");
    loop_responses.insert("404".into(), err("No such standing loop."));
    let mut list_responses = ok(&list, "A page of tasks, newest first.");
    list_responses.insert("400".into(), err("A bad query parameter."));

    let public = json!([]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "`baton serve FILE`: tasks for the topology's root agent, run concurrently on one runtime under the topology's budget; their events as Server-Sent Events; the approval queue; the standing loops. Money is in integer nano-dollars (1e-9 USD). With BATON_TOKEN set (required off loopback), every request but the console's files and the probes carries `Authorization: Bearer <token>`."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "BATON_TOKEN; optional when the server listens on a loopback address without one."}}
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/tasks": {
                "post": {"operationId": "submitTask", "summary": "Submit a task",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": new_task}}},
                    "responses": guarded(submit)},
                "get": {"operationId": "listTasks", "summary": "List tasks, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string"}, "description": "`queued` (replicas on a shared ledger), `running`, an outcome (`completed`, `failed`, ...) or `interrupted`."},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                        {"name": "cursor", "in": "query", "schema": {"type": "integer"}, "description": "The previous page's next_cursor."}
                    ],
                    "responses": guarded(list_responses)}
            },
            "/v1/tasks/{id}": {
                "parameters": [id_param],
                "get": {"operationId": "getTask", "summary": "A task's status and report", "responses": guarded(get_task)},
                "delete": {"operationId": "cancelTask", "summary": "Cancel a task", "responses": guarded(cancel)}
            },
            "/v1/tasks/{id}/events": {
                "parameters": [id_param],
                "get": {"operationId": "taskEvents", "summary": "A task's events as they happen",
                    "description": "Server-Sent Events: the events kept so far (after Last-Event-ID), then live ones; the stream ends after the task's `task_report`.",
                    "parameters": resume, "responses": guarded(serde_json::from_value(sse("The task's events.")).unwrap_or_default())}
            },
            "/v1/events": {
                "get": {"operationId": "allEvents", "summary": "Every task's events, and the loops'",
                    "parameters": resume, "responses": guarded(serde_json::from_value(sse("Every event, as it happens.")).unwrap_or_default())}
            },
            "/v1/approvals": {
                "get": {"operationId": "listApprovals", "summary": "The approval queue: pending, answered and timed-out requests",
                    "responses": guarded(ok(&approvals, "Every request."))}
            },
            "/v1/approvals/{id}/approve": {
                "post": {"operationId": "approve", "summary": "Approve a pending request",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                    "requestBody": {"required": false, "content": {"application/json": {"schema": answer}}},
                    "responses": guarded(answer_responses.clone())}
            },
            "/v1/approvals/{id}/deny": {
                "post": {"operationId": "deny", "summary": "Deny a pending request",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                    "requestBody": {"required": false, "content": {"application/json": {"schema": answer}}},
                    "responses": guarded(answer_responses)}
            },
            "/v1/loops": {"get": {"operationId": "listLoops", "summary": "The standing loops", "responses": guarded(ok(&loops, "One per schedule."))}},
            "/v1/loops/{name}/pause": {"post": {"operationId": "pauseLoop", "summary": "Pause a standing loop: its ticks are skipped until resumed (a run going on finishes); kept in the state file",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": guarded(loop_responses.clone())}},
            "/v1/loops/{name}/resume": {"post": {"operationId": "resumeLoop", "summary": "Resume a paused standing loop: its next tick runs",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": guarded(loop_responses)}},
            "/v1/topology": {"get": {"operationId": "getTopology", "summary": "The topology: agents, models, budget, loops", "responses": guarded(ok(&topology, "The topology."))}},
            "/v1/agents": {"get": {"operationId": "listAgents", "summary": "What each agent did since the server started", "responses": guarded(ok(&agents, "By agent."))}},
            "/v1/summary": {"get": {"operationId": "getSummary", "summary": "Counts, spend and the budget", "responses": guarded(ok(&summary, "The summary."))}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "The Prometheus text exposition.", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "security": public, "responses": ok(&probe, "The process serves.")}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: the runtime started (MCP servers connected, the state file recovered), not draining",
                "security": public,
                "responses": {"200": json_body(&probe, "Ready."), "503": json_body(&probe, "Starting, draining or down.")}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": public,
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}}}},
            "/": {"get": {"operationId": "console", "summary": "The web console", "security": public,
                "responses": {"200": {"description": "The console's page.", "content": {"text/html": {}}}}}}
        }
    })
}

#[cfg(test)]
mod tests {
    /// The checked-in `schema/openapi.json` is the generated document (regenerate it with
    /// `cargo run -- schema --openapi > schema/openapi.json`).
    #[test]
    fn the_checked_in_document_is_current() {
        let generated = super::document();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/openapi.json");
        let text = std::fs::read_to_string(path).expect("schema/openapi.json");
        let checked_in: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            checked_in == generated,
            "schema/openapi.json is stale: run `cargo run -- schema --openapi > schema/openapi.json`"
        );
    }

    /// Every route the router serves is documented, and nothing else is (read from the router's
    /// source: each `.route("PATH"` and `.nest("PREFIX"`).
    #[test]
    fn every_route_is_documented() {
        let doc = super::document();
        let documented: Vec<&String> = doc["paths"].as_object().expect("paths").keys().collect();
        let source = include_str!("api.rs");
        let literals = |call: &str| -> Vec<String> {
            source
                .match_indices(call)
                .filter_map(|(i, _)| source[i + call.len()..].trim_start().strip_prefix('"'))
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_string)
                .collect()
        };
        let routes: Vec<String> = literals(".route(")
            .into_iter()
            // The nested routers' own routes (under their prefix).
            .filter(|p| !p.starts_with("/{id}"))
            .collect();
        let prefixes = literals(".nest(");
        assert!(
            routes.len() >= 10 && prefixes.len() == 3,
            "{routes:?} {prefixes:?}"
        );
        for p in routes.iter().chain(&prefixes) {
            let asset = p.starts_with("/console.");
            assert!(
                asset || documented.contains(&p),
                "route {p} is not documented"
            );
        }
        for p in documented {
            assert!(
                routes.contains(p) || prefixes.iter().any(|x| p.starts_with(x.as_str())),
                "{p} is documented but not routed"
            );
        }
    }
}
