//! `baton serve` end to end, as a client uses it: the binary started on a free loopback port,
//! its API driven over real HTTP.
//!
//! - `tasks`: submit, status, report, list, cancel, idempotency, `429` on a full queue, bad input.
//! - `events`: a task's event stream from submission to report, resumed with `Last-Event-ID`.
//! - `guard`: the bearer token, foreign `Host` and `Origin`, the body cap.
//! - `approvals`: a destructive call waits for an approval given over the API.
//! - `durable`: a restarted server answers for old tasks; those it was running end `interrupted`.
//! - `money`: 1,000 tasks submitted concurrently, conservation exact; the topology's budget holds.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod common;
use common::server::Server;
use common::{example, temp_file, temp_path};

/// The research example (a lead fanning out to three analysts, no approvals), edited.
fn research(name: &str, replacements: &[(&str, &str)], tail: &str) -> PathBuf {
    let body = example("research.yaml", replacements) + tail;
    temp_file(name, &body)
}

mod tasks {
    use super::*;

    /// A submitted task runs at once, its status says so, and once it ends its record carries
    /// the answer and the same report as `baton run --json`; the list shows it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submit_then_status_then_report() {
        let s = Server::start(&research("serve-a.yaml", &[], ""), &[], &[]);
        let (status, body) = s
            .post(
                "/v1/tasks",
                json!({"task": "How healthy are our services?"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_u64().expect("id");
        assert_eq!(body["status_url"], format!("/v1/tasks/{id}"));
        assert_eq!(body["events_url"], format!("/v1/tasks/{id}/events"));
        let done = s.finished(id).await;
        assert_eq!(done["status"], "completed", "{done}");
        let report = &done["report"];
        assert_eq!(report["outcome"], "completed");
        assert_eq!(done["answer"], report["answer"]);
        assert_eq!(done["cost_nanousd"], report["totals"]["cost_nanousd"]);
        assert!(report["totals"]["cost_nanousd"].as_u64().expect("cost") > 0);
        let names: Vec<&str> = report["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|a| a["name"].as_str().expect("name"))
            .collect();
        assert!(
            names.contains(&"lead") && names.contains(&"checkout-analyst"),
            "{names:?}"
        );
        let (status, list) = s.get("/v1/tasks?status=completed&limit=10").await;
        assert_eq!(status, 200);
        assert_eq!(list["tasks"][0]["id"], id);
        assert!(
            list["tasks"][0].get("report").is_none(),
            "the list is a summary"
        );
        let (_, none) = s.get("/v1/tasks?status=failed").await;
        assert_eq!(none["tasks"], json!([]));
        let (status, _) = s.get("/v1/tasks/999999999").await;
        assert_eq!(status, 404);
        // What the server answered is what its OpenAPI document says it answers.
        let (_, doc) = s.get("/openapi.json").await;
        let conforms = |name: &str, value: &Value| {
            let mut schema = doc.clone();
            schema["$ref"] = json!(format!("#/components/schemas/{name}"));
            let validator = jsonschema::validator_for(&schema).expect("a valid schema");
            let errors: Vec<String> = validator
                .iter_errors(value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{value}");
        };
        let mut strict = doc.clone();
        strict["$ref"] = json!("#/components/schemas/TaskRecord");
        let validator = jsonschema::validator_for(&strict).expect("a valid schema");
        assert!(
            !validator.is_valid(&json!({"id": "x"})),
            "the schemas constrain"
        );
        conforms("TaskLinks", &body);
        conforms("TaskRecord", &done);
        conforms("TaskList", &list);
        for (path, name) in [
            ("/v1/summary", "Summary"),
            ("/v1/topology", "TopologyView"),
            ("/v1/agents", "AgentList"),
            ("/v1/loops", "LoopList"),
            ("/v1/tasks/999999999", "ErrorBody"),
            ("/readyz", "Probe"),
        ] {
            let (_, v) = s.get(path).await;
            conforms(name, &v);
        }
        let metrics = s
            .http
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        // Every series names the topology it counts (the dashboard's `topology` variable).
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("baton_tasks_total{topology=\"")
                    && l.ends_with(",agent=\"lead\",outcome=\"completed\"} 1")),
            "{metrics}"
        );
        let stream = s
            .events(&format!("/v1/tasks/{id}/events"), None, 10_000)
            .await;
        for (_, _, data) in &stream {
            conforms("StreamEvent", data);
        }
    }

    /// The same idempotency key returns the same task and never runs it twice; the key reused
    /// for another task is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idempotency_keys() {
        let s = Server::start(&research("serve-b.yaml", &[], ""), &[], &[]);
        let first = json!({"task": "How healthy are our services?", "idempotency_key": "alert-42"});
        let (a, body_a) = s.post("/v1/tasks", first.clone()).await;
        let (b, body_b) = s.post("/v1/tasks", first).await;
        assert_eq!((a, b), (202, 200));
        assert_eq!(body_a["id"], body_b["id"]);
        let (c, body_c) = s
            .post(
                "/v1/tasks",
                json!({"task": "something else", "idempotency_key": "alert-42"}),
            )
            .await;
        assert_eq!(c, 422, "{body_c}");
        assert!(
            body_c["error"]
                .as_str()
                .expect("error")
                .contains("alert-42")
        );
        s.finished(body_a["id"].as_u64().expect("id")).await;
        let (_, list) = s.get("/v1/tasks").await;
        assert_eq!(
            list["tasks"].as_array().expect("tasks").len(),
            1,
            "ran once"
        );
    }

    /// With the root agent's slots and queue full, a submission is refused at once with `429`
    /// and `Retry-After`; a cancelled task ends `cancelled`, and cancelling it again is `409`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_is_429_and_cancel_ends_a_task() {
        let file = research(
            "serve-c.yaml",
            &[
                ("latency: 100ms", "latency: 60s"),
                (
                    "  lead:\n    models: [frontier]",
                    "  lead:\n    max_concurrency: 1\n    queue: 1\n    models: [frontier]",
                ),
            ],
            "",
        );
        let s = Server::start(&file, &[], &[]);
        let one = s.submit("How healthy are our services?").await;
        let two = s.submit("How healthy are our services?").await;
        let r = s
            .http
            .post(s.url("/v1/tasks"))
            .json(&json!({"task": "a third"}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.expect("json");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .contains("max_concurrency"),
            "{body}"
        );
        for id in [one, two] {
            let (status, body) = s.delete(&format!("/v1/tasks/{id}")).await;
            assert_eq!(status, 202, "{body}");
        }
        for id in [one, two] {
            let done = s.finished(id).await;
            assert_eq!(done["status"], "cancelled", "{done}");
            assert_eq!(done["report"]["outcome"], "cancelled");
        }
        let (status, _) = s.delete(&format!("/v1/tasks/{one}")).await;
        assert_eq!(status, 409, "already ended");
        let (status, _) = s.delete("/v1/tasks/123456789").await;
        assert_eq!(status, 404);
        // Room again: the next submission is taken.
        s.submit("again").await;
    }

    /// Bad input gets a clear `400` naming the field; nothing runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_submissions_name_what_is_wrong() {
        let s = Server::start(&research("serve-d.yaml", &[], ""), &[], &[]);
        for (body, needle) in [
            (json!({"task": ""}), "`task` is empty"),
            (json!({"task": "x", "budget_usd": -1}), "budget_usd"),
            (json!({"task": "x", "budget_usd": "lots"}), "budget_usd"),
            (json!({"task": "x", "budget_usd": 0}), "more than zero"),
            (json!({"task": "x", "deadline": "soon"}), "deadline"),
            (
                json!({"task": "x", "colour": "red"}),
                "unknown field `colour`",
            ),
            (json!({"nothing": true}), "the body"),
        ] {
            let (status, reply) = s.post("/v1/tasks", body.clone()).await;
            assert_eq!(status, 400, "{body} → {reply}");
            let error = reply["error"].as_str().expect("an error");
            assert!(error.contains(needle), "{body} → {error}");
        }
        let (_, list) = s.get("/v1/tasks").await;
        assert_eq!(list["tasks"], json!([]), "nothing ran");
        let (status, _) = s.get("/v1/tasks?limit=0").await;
        assert_eq!(status, 400);
    }
}

mod events {
    use super::*;

    /// A task's stream carries its whole run, parallel sub-tasks included (each event tied to its
    /// root), ends with the report, and resumes after a `Last-Event-ID`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_stream_from_submission_to_report_resumable() {
        let s = Server::start(&research("serve-e.yaml", &[], ""), &[], &[]);
        let id = s.submit("How healthy are our services?").await;
        let all = s
            .events(&format!("/v1/tasks/{id}/events"), None, 10_000)
            .await;
        let kinds: Vec<&str> = all.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task_submitted"));
        assert_eq!(kinds.last(), Some(&"task_report"), "{kinds:?}");
        assert!(
            all.iter().all(|(_, _, d)| d["root"] == id),
            "every event is this task's"
        );
        let starts = all.iter().filter(|(_, k, _)| k == "task_start").count();
        assert_eq!(starts, 4, "the lead and its three analysts");
        let calls = all.iter().filter(|(_, k, _)| k == "model_call").count();
        let done = s.finished(id).await;
        let booked: u64 = all
            .iter()
            .filter(|(_, k, _)| k == "model_call")
            .map(|(_, _, d)| d["cost_nanousd"].as_u64().expect("cost"))
            .sum();
        assert_eq!(
            booked,
            done["cost_nanousd"].as_u64().expect("cost"),
            "the stream's costs add up"
        );
        assert!(calls >= 4);
        let ids: Vec<u64> = all.iter().map(|(i, _, _)| *i).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
        // Resumed after the third event: the rest, nothing twice.
        let rest = s
            .events(&format!("/v1/tasks/{id}/events"), Some(ids[2]), 10_000)
            .await;
        assert_eq!(rest.first().map(|e| e.0), Some(ids[3]));
        assert_eq!(rest.len(), all.len() - 3);
        // The global stream has it too.
        let global = s.events("/v1/events", None, all.len()).await;
        assert!(
            global
                .iter()
                .any(|(_, k, d)| k == "task_report" && d["task"] == id)
        );
        let (status, _) = s.get("/v1/tasks/987654321/events").await;
        assert_eq!(status, 404);
    }
}

mod guard {
    use super::*;

    /// With BATON_TOKEN: no token or a wrong one is `401`, the right one passes; the probes and
    /// the console page need none. Foreign `Host` and `Origin` are `403`; a body past the cap is
    /// `413`; a POST that is not JSON is `415`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn token_host_origin_and_body_cap() {
        let s = Server::start(
            &research("serve-f.yaml", &[], ""),
            &[],
            &[("BATON_TOKEN", "s3cret-t0ken")],
        );
        let get = |auth: Option<&str>| {
            let mut r = s.http.get(s.url("/v1/tasks"));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send()
        };
        assert_eq!(get(None).await.expect("GET").status().as_u16(), 401);
        assert_eq!(
            get(Some("Bearer wrong"))
                .await
                .expect("GET")
                .status()
                .as_u16(),
            401
        );
        assert_eq!(
            get(Some("Bearer s3cret-t0ken"))
                .await
                .expect("GET")
                .status()
                .as_u16(),
            200
        );
        for open in ["/healthz", "/readyz", "/", "/console.js"] {
            let r = s.http.get(s.url(open)).send().await.expect("GET");
            assert_eq!(r.status().as_u16(), 200, "{open}");
        }
        let (status, _) = s.get("/metrics").await;
        assert_eq!(status, 401, "metrics reveal spend: token needed");
        let auth = "Bearer s3cret-t0ken";
        let r = s
            .http
            .get(s.url("/v1/tasks"))
            .header("Authorization", auth)
            .header("Host", "attacker.example")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 403, "foreign Host");
        let r = s
            .http
            .post(s.url("/v1/tasks"))
            .header("Authorization", auth)
            .header("Origin", "http://attacker.example")
            .json(&json!({"task": "x"}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 403, "foreign Origin");
        let r = s
            .http
            .post(s.url("/v1/tasks"))
            .header("Authorization", auth)
            .header("Content-Type", "text/plain")
            .body(r#"{"task": "x"}"#)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 415, "not JSON");
        let big = "x".repeat(300 * 1024);
        let r = s
            .http
            .post(s.url("/v1/tasks"))
            .header("Authorization", auth)
            .json(&json!({"task": big}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 413, "past the body cap");
        let r = s.http.get(s.url("/")).send().await.expect("GET");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        let (_, list) = {
            let r = s
                .http
                .get(s.url("/v1/tasks"))
                .header("Authorization", auth)
                .send()
                .await
                .expect("GET");
            (r.status(), r.json::<Value>().await.expect("json"))
        };
        assert_eq!(list["tasks"], json!([]), "nothing ran");
    }

    /// `on_interrupted: resume` asks for a task to be run again on another replica: without a
    /// shared ledger there is none, and it is refused rather than ignored — per task (`400`
    /// naming the field) and as the server's default (at start).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resume_without_a_shared_ledger_is_refused() {
        let s = Server::start(&research("serve-resume-alone.yaml", &[], ""), &[], &[]);
        let (status, body) = s
            .post(
                "/v1/tasks",
                json!({"task": "How healthy are our services?", "on_interrupted": "resume"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().expect("an error");
        assert!(
            error.contains("on_interrupted") && error.contains("--ledger"),
            "{error}"
        );
        let (status, body) = s
            .post(
                "/v1/tasks",
                json!({"task": "How healthy are our services?", "on_interrupted": "later"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = s
            .post(
                "/v1/tasks",
                json!({"task": "How healthy are our services?", "on_interrupted": "end"}),
            )
            .await;
        assert_eq!(status, 202, "`end` is what happens anyway: {body}");
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "serve",
                "examples/topologies/research.yaml",
                "--addr",
                "127.0.0.1:0",
                "--on-interrupted",
                "resume",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--on-interrupted resume needs a shared ledger"),
            "{err}"
        );
    }

    /// A non-loopback address without a token is refused at start.
    #[test]
    fn no_token_off_loopback_is_refused() {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "serve",
                "examples/topologies/research.yaml",
                "--addr",
                "0.0.0.0:0",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("BATON_TOKEN")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("without a token") && err.contains("BATON_TOKEN"),
            "{err}"
        );
    }
}

mod approvals {
    use super::*;

    /// ops-triage's restart needs an approval: it waits in /v1/approvals with the task it belongs
    /// to, is approved over the API, and the task completes with the restart done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_destructive_call_waits_for_an_approval_given_over_the_api() {
        let file = temp_file("serve-triage.yaml", &example("ops-triage.yaml", &[]));
        let s = Server::start(&file, &[], &[]);
        let id = s.submit("p99 latency of checkout doubled at 14:05").await;
        let mut pending = Value::Null;
        for _ in 0..200 {
            let (_, list) = s.get("/v1/approvals").await;
            if let Some(p) = list
                .as_array()
                .and_then(|l| l.iter().find(|a| a["state"] == "pending"))
            {
                pending = p.clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pending["tool"], "restart_service", "{pending}");
        assert!(
            pending["dry_run"]
                .as_str()
                .is_some_and(|d| d.contains("checkout-api")),
            "the dry run's result is shown with the request: {pending}"
        );
        assert_eq!(pending["root"], id, "tied to the served task");
        let (status, running) = s.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!((status, running["status"].as_str()), (200, Some("running")));
        let (status, answered) = s
            .post(
                &format!("/v1/approvals/{}/approve", pending["id"]),
                json!({"by": "alice"}),
            )
            .await;
        assert_eq!(status, 200, "{answered}");
        assert_eq!(answered["by"], "alice");
        let done = s.finished(id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert!(
            done["answer"]
                .as_str()
                .expect("answer")
                .contains("restarted checkout-api"),
            "{done}"
        );
    }
}

mod durable {
    use super::*;

    /// With `--state`, a server killed mid-task and started again still answers for the tasks it
    /// finished, and the one it was running ends `interrupted`, charged its worst case (its
    /// budget), which the topology's budget counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_server_answers_for_old_tasks() {
        let state = temp_path("serve-state.redb");
        let fast = research("serve-g1.yaml", &[], "");
        let slow = research("serve-g2.yaml", &[("latency: 100ms", "latency: 60s")], "");
        let state_arg = state.to_str().expect("utf-8");
        let (done_id, slow_id, done_cost) = {
            let mut s = Server::start(&fast, &["--state", state_arg], &[]);
            let done_id = s.submit("How healthy are our services?").await;
            let done = s.finished(done_id).await;
            assert_eq!(done["status"], "completed");
            s.kill();
            let mut s = Server::start(&slow, &["--state", state_arg], &[]);
            let (status, body) = s
                .post(
                    "/v1/tasks",
                    json!({"task": "slow one", "budget_usd": "0.05", "idempotency_key": "k1"}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            let slow_id = body["id"].as_u64().expect("id");
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.kill();
            (
                done_id,
                slow_id,
                done["cost_nanousd"].as_u64().expect("cost"),
            )
        };
        let s = Server::start(&fast, &["--state", state_arg], &[]);
        let (status, old) = s.get(&format!("/v1/tasks/{done_id}")).await;
        assert_eq!(status, 200, "a finished task is still answered for");
        assert_eq!(old["status"], "completed");
        assert_eq!(old["report"]["outcome"], "completed");
        let (_, lost) = s.get(&format!("/v1/tasks/{slow_id}")).await;
        assert_eq!(lost["status"], "interrupted", "{lost}");
        assert_eq!(lost["cost_nanousd"], 50_000_000u64, "charged its budget");
        let (_, summary) = s.get("/v1/summary").await;
        assert_eq!(
            summary["budget"]["spent_nanousd"].as_u64(),
            Some(done_cost + 50_000_000),
            "the budget counts both: {summary}"
        );
        // The idempotency key still names the old task: it is not run again.
        let (status, again) = s
            .post(
                "/v1/tasks",
                json!({"task": "slow one", "idempotency_key": "k1"}),
            )
            .await;
        assert_eq!((status, again["id"].as_u64()), (200, Some(slow_id)));
    }
}

mod drain {
    use super::*;

    /// SIGTERM drains: the server stops taking tasks, gives running ones `--grace` to end, then
    /// cancels them — each recorded `cancelled` (not lost, not `interrupted`) — and exits 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_cancels_what_outlives_the_grace_and_records_it() {
        let state = temp_path("serve-drain.redb");
        let state_arg = state.to_str().expect("utf-8");
        let slow = research("serve-j.yaml", &[("latency: 100ms", "latency: 60s")], "");
        let mut s = Server::start(&slow, &["--state", state_arg, "--grace", "300ms"], &[]);
        let id = s.submit("How healthy are our services?").await;
        // Until the task is running (its first 60 s model call under way): polled, not slept.
        let mut status = serde_json::Value::Null;
        for _ in 0..200 {
            status = s.get(&format!("/v1/tasks/{id}")).await.1["status"].clone();
            if status == "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(status, "running");
        assert_eq!(s.terminate(), Some(0));
        assert!(s.log().contains("draining"), "{}", s.log());
        let s = Server::start(&slow, &["--state", state_arg], &[]);
        let (_, r) = s.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(r["status"], "cancelled", "{r}");
        assert_eq!(r["report"]["outcome"], "cancelled");
    }
}

mod money {
    use super::*;

    /// 1,000 tasks submitted at once over HTTP (50 clients): every one ends with one recorded
    /// outcome, and the topology budget's spend is exactly the sum of the tasks' reports.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_submissions_conserve_money() {
        let s = Arc::new(Server::start(
            &research("serve-h.yaml", &[("latency: 100ms", "latency: 5ms")], ""),
            &[],
            &[],
        ));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let mut clients = Vec::new();
        for c in 0..50 {
            let (s, ids) = (Arc::clone(&s), Arc::clone(&ids));
            clients.push(tokio::spawn(async move {
                for i in 0..20 {
                    let id = s
                        .submit(&format!("How healthy are our services? ({c}/{i})"))
                        .await;
                    ids.lock().expect("ids").push(id);
                }
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
        let ids = ids.lock().expect("ids").clone();
        assert_eq!(ids.len(), 1000);
        let mut sum = 0;
        for id in &ids {
            let done = s.finished(*id).await;
            assert_ne!(done["status"], "running");
            let report_cost = done["report"]["totals"]["cost_nanousd"]
                .as_u64()
                .expect("a report");
            assert_eq!(done["cost_nanousd"].as_u64(), Some(report_cost));
            sum += report_cost;
        }
        let (_, summary) = s.get("/v1/summary").await;
        assert_eq!(
            summary["budget"]["spent_nanousd"].as_u64(),
            Some(sum),
            "{summary}"
        );
        assert_eq!(summary["in_flight"], 0);
        let total: u64 = summary["tasks"]
            .as_object()
            .expect("counts")
            .values()
            .map(|v| v.as_u64().expect("count"))
            .sum();
        assert_eq!(total, 1000, "one outcome each: {summary}");
    }

    /// The topology's `budget: { max_usd }` caps all served tasks together: once spent, tasks end
    /// `budget_exceeded` and the spend never passes the cap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_topology_budget_caps_all_tasks_together() {
        let s = Server::start(
            &research(
                "serve-i.yaml",
                &[("latency: 100ms", "latency: 5ms")],
                "\nbudget:\n  max_usd: 0.05\n",
            ),
            &[],
            &[],
        );
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(
                s.submit(&format!("How healthy are our services? {i}"))
                    .await,
            );
        }
        let mut outcomes = std::collections::BTreeMap::new();
        for id in ids {
            let done = s.finished(id).await;
            *outcomes
                .entry(done["status"].as_str().expect("status").to_string())
                .or_insert(0) += 1;
        }
        assert!(
            outcomes.get("budget_exceeded").copied().unwrap_or(0) > 0,
            "{outcomes:?}"
        );
        let (_, summary) = s.get("/v1/summary").await;
        let spent = summary["budget"]["spent_nanousd"].as_u64().expect("spent");
        assert!(spent <= 50_000_000, "never past the cap: {spent}");
        assert_eq!(summary["budget"]["max_nanousd"], 50_000_000u64);
    }
}

mod loops {
    use super::*;

    async fn runs(s: &Server, name: &str) -> (u64, bool) {
        let (_, body) = s.get("/v1/loops").await;
        let l = body["loops"]
            .as_array()
            .expect("loops")
            .iter()
            .find(|l| l["schedule"] == name)
            .unwrap_or_else(|| panic!("no loop {name}: {body}"))
            .clone();
        (
            l["runs"].as_u64().expect("runs"),
            l["paused"].as_bool().expect("paused"),
        )
    }

    /// The topology's standing loops run beside served tasks (a served task's approval waits in
    /// the queue without holding up the loops); one paused over the API starts no
    /// run until resumed, and stays paused across a restart with `--state`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loops_run_and_pause_and_resume_over_the_api() {
        let state = temp_path("serve-loops.redb");
        let state_arg = state.to_str().expect("utf-8");
        let file = common::fast_ops_loop();
        let mut s = Server::start(&file, &["--state", state_arg], &[]);
        // (checkout-latency's runs wait for an approval in the queue: search-latency's do not.)
        let name = "search-latency";
        for _ in 0..100 {
            if runs(&s, name).await.0 >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, view) = s.post(&format!("/v1/loops/{name}/pause"), json!({})).await;
        assert_eq!(
            (status, view["paused"].as_bool()),
            (200, Some(true)),
            "{view}"
        );
        let next = view["next_tick_ms"].as_u64().expect("the next tick");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        assert!(
            next + 50 >= now && next <= now + 1_100,
            "every 1s: {next} vs {now}"
        );
        // A run started before the pause may still end; none starts after it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (before, paused) = runs(&s, name).await;
        assert!(before >= 1 && paused);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(runs(&s, name).await.0, before, "no run while paused");
        let (status, _) = s.post("/v1/loops/nope/pause", json!({})).await;
        assert_eq!(status, 404);
        let (status, view) = s.post(&format!("/v1/loops/{name}/resume"), json!({})).await;
        assert_eq!((status, view["paused"].as_bool()), (200, Some(false)));
        let mut resumed = false;
        for _ in 0..100 {
            if runs(&s, name).await.0 > before {
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(resumed, "runs again once resumed");
        // Served tasks run beside the loops.
        let id = s.submit("p99 latency of checkout doubled at 14:05").await;
        assert_ne!(s.finished(id).await["status"], "running");
        s.post(&format!("/v1/loops/{name}/pause"), json!({})).await;
        s.kill();
        let s = Server::start(&file, &["--state", state_arg], &[]);
        assert!(runs(&s, name).await.1, "still paused after the restart");
    }
}

/// `baton serve --ledger`: replicas (separate processes) sharing one PostgreSQL ledger — one
/// task queue, one budget. Skipped, saying why, without a test server (`BATON_TEST_POSTGRES_URL`;
/// required in CI).
mod replicas {
    use super::*;

    /// The database's own view: each budget's spent and leased, the tasks by status, and how many
    /// replicas ran tasks.
    async fn db(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connects");
        let h = tokio::spawn(async move {
            let _ = conn.await;
        });
        (client, h)
    }

    async fn budget(client: &tokio_postgres::Client, name: &str) -> (i64, i64, i64) {
        let r = client
            .query_one(
                "SELECT spent_nanousd, leased_nanousd, limit_nanousd FROM baton_budgets WHERE name = $1",
                &[&name],
            )
            .await
            .expect("the budget");
        (r.get(0), r.get(1), r.get(2))
    }

    fn replica(topology: &std::path::Path, url: &str, lease: &str) -> Server {
        Server::start(topology, &["--ledger", url, "--ledger-lease", lease], &[])
    }

    /// Three replicas × 1,000 tasks submitted concurrently (round robin), against one
    /// `budget: max_usd` that covers about half of them: the fleet never spends more, to the
    /// nano-dollar; the database's spend is exactly the sum of the tasks' reports; every task
    /// ends once; tasks run on every replica; any replica answers for any task and streams its
    /// events; idempotency keys hold across replicas.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_share_one_queue_and_one_budget() {
        let Some(url) = baton_pg::testing::database("serve_replicas").await else {
            return;
        };
        let topology = research(
            "serve-replicas.yaml",
            &[
                ("latency: 100ms", "latency: 5ms"),
                ("name: research", "name: research\nbudget:\n  max_usd: 1.45"),
            ],
            "",
        );
        let servers: Vec<Arc<Server>> = (0..3)
            .map(|_| Arc::new(replica(&topology, &url, "30s")))
            .collect();
        // A key used on one replica names the same task on another.
        let (status, first) = servers[0]
            .post(
                "/v1/tasks",
                json!({"task": "keyed", "idempotency_key": "k-1"}),
            )
            .await;
        assert_eq!(status, 202, "{first}");
        let (status, again) = servers[2]
            .post(
                "/v1/tasks",
                json!({"task": "keyed", "idempotency_key": "k-1"}),
            )
            .await;
        assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
        let (status, _) = servers[1]
            .post(
                "/v1/tasks",
                json!({"task": "other", "idempotency_key": "k-1"}),
            )
            .await;
        assert_eq!(
            status, 422,
            "a key reused for another text, on another replica"
        );

        let ids = Arc::new(Mutex::new(vec![first["id"].as_u64().expect("id")]));
        let mut clients = Vec::new();
        for c in 0..40 {
            let (s, ids) = (Arc::clone(&servers[c % 3]), Arc::clone(&ids));
            clients.push(tokio::spawn(async move {
                for i in 0..25 {
                    let id = s
                        .submit(&format!("How healthy are our services? ({c}/{i})"))
                        .await;
                    ids.lock().expect("ids").push(id);
                }
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
        let ids = ids.lock().expect("ids").clone();
        assert_eq!(ids.len(), 1001);
        let (mut sum, mut outcomes) = (0u64, std::collections::BTreeMap::<String, u64>::new());
        for (n, id) in ids.iter().enumerate() {
            // Asked of any replica, whichever ran it.
            let done = servers[n % 3].finished(*id).await;
            let cost = done["cost_nanousd"].as_u64().expect("a cost");
            assert_eq!(
                Some(cost),
                done["report"]["totals"]["cost_nanousd"].as_u64(),
                "{done}"
            );
            sum += cost;
            *outcomes
                .entry(done["status"].as_str().expect("status").to_string())
                .or_default() += 1;
        }
        assert!(
            outcomes.get("budget_exceeded").copied().unwrap_or(0) > 0
                && outcomes.get("completed").copied().unwrap_or(0) > 0,
            "about half completed, the rest refused by the shared budget: {outcomes:?}"
        );
        // A task's events, streamed by a replica that did not run it (each replica runs about a
        // third): from submission to report.
        let (client, _conn) = db(&url).await;
        let last = *ids.last().expect("a task");
        let mut streamed = false;
        for s in &servers {
            let events = s
                .events(&format!("/v1/tasks/{last}/events"), None, 10_000)
                .await;
            let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
            assert_eq!(kinds.first(), Some(&"task_submitted"), "{kinds:?}");
            assert_eq!(kinds.last(), Some(&"task_report"), "{kinds:?}");
            streamed = true;
        }
        assert!(streamed);
        let replicas: i64 = client
            .query_one(
                "SELECT count(DISTINCT replica) FROM baton_tasks WHERE topology = 'research'",
                &[],
            )
            .await
            .expect("replicas")
            .get(0);
        assert_eq!(replicas, 3, "every replica took tasks");
        let unfinished: i64 = client
            .query_one(
                "SELECT count(*) FROM baton_tasks WHERE status IN ('queued', 'running')",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(unfinished, 0);
        // The replicas settle their leases as they stop: the database then holds exactly what the
        // tasks' reports spent, within the limit.
        for s in servers {
            let mut s = Arc::try_unwrap(s).ok().expect("the clients are done");
            assert_eq!(s.terminate(), Some(0), "{}", s.log());
        }
        let (spent, leased, limit) = budget(&client, "research").await;
        assert_eq!(leased, 0, "every lease settled");
        assert!(spent <= limit, "overspent: {spent} > {limit}");
        assert_eq!(
            u64::try_from(spent).expect("spent"),
            sum,
            "the database holds what the tasks' reports spent: {outcomes:?}"
        );
    }

    /// kill -9 of one of three replicas mid-run: no task is lost (each ends once, on some
    /// replica: those the dead one was running end `interrupted`, taken over once their lease
    /// lapses), nothing is charged twice (the database's spend is what the surviving reports say
    /// plus what the reaper booked for the dead replica's leases), and nothing is overspent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_replicas_tasks_end_once_on_the_others() {
        let Some(url) = baton_pg::testing::database("serve_kill").await else {
            return;
        };
        let topology = research(
            "serve-kill.yaml",
            &[
                ("latency: 100ms", "latency: 1s"),
                ("name: research", "name: research\nbudget:\n  max_usd: 5"),
            ],
            "",
        );
        let mut victim = replica(&topology, &url, "2s");
        let others: Vec<Server> = (0..2).map(|_| replica(&topology, &url, "2s")).collect();
        let mut ids = Vec::new();
        for i in 0..60 {
            let s = match i % 3 {
                0 => &victim,
                n => &others[n - 1],
            };
            ids.push(
                s.submit(&format!("How healthy are our services? ({i})"))
                    .await,
            );
        }
        // Mid-run (each task takes about 4 s of model latency).
        tokio::time::sleep(Duration::from_millis(500)).await;
        victim.kill();
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        let mut reported = 0u64;
        for id in &ids {
            let done = others[0].finished(*id).await;
            let status = done["status"].as_str().expect("status").to_string();
            if status != "interrupted" {
                reported += done["cost_nanousd"].as_u64().expect("a cost");
            }
            *outcomes.entry(status).or_default() += 1;
        }
        assert_eq!(outcomes.values().sum::<u64>(), 60, "{outcomes:?}");
        assert!(
            outcomes.get("interrupted").copied().unwrap_or(0) > 0,
            "the dead replica was running some: {outcomes:?}"
        );
        // The survivors counted the takeovers they made: one per interrupted task.
        let mut taken_over = 0;
        for s in &others {
            let text = s
                .http
                .get(s.url("/metrics"))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("text");
            taken_over += text
                .lines()
                .filter(|l| l.starts_with("baton_shared_tasks_taken_over_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        assert_eq!(Some(&taken_over), outcomes.get("interrupted"));
        for mut s in others {
            assert_eq!(s.terminate(), Some(0), "{}", s.log());
        }
        let (client, _conn) = db(&url).await;
        // The dead replica's leases: booked by a survivor's reaper, or by this one once they
        // expire (the survivors settled theirs as they stopped).
        let check = baton_pg::SharedLedger::connect(&url, "check", Duration::from_secs(30))
            .await
            .expect("connects");
        let mut waited = 0;
        let (spent, leased, limit) = loop {
            check.reap().await.expect("reaps");
            let b = budget(&client, "research").await;
            if b.1 == 0 || waited > 100 {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        };
        let reaped: i64 = client
            .query_one(
                "SELECT COALESCE(sum(used_nanousd), 0)::bigint FROM baton_leases WHERE reaped",
                &[],
            )
            .await
            .expect("reaped")
            .get(0);
        assert!(reaped > 0, "the dead replica's leases were reaped");
        assert_eq!(leased, 0);
        assert!(spent <= limit);
        // The dead replica's tasks that completed before it died are in both `reported` and its
        // reaped leases; so the database books at least the survivors' own and at most both.
        let spent = u64::try_from(spent).expect("spent");
        let reaped = u64::try_from(reaped).expect("reaped");
        assert!(
            spent <= reported + reaped && spent >= reaped,
            "spent {spent}, reported {reported}, reaped {reaped}: {outcomes:?}"
        );
        let unfinished: i64 = client
            .query_one(
                "SELECT count(*) FROM baton_tasks WHERE status IN ('queued', 'running')",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(unfinished, 0);
    }

    /// A string as an SQL literal.
    fn lit(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    /// Writes into the database what a replica that died leaves of a task it was running: the
    /// task's row, running under a lease that has lapsed, taken `attempts` times; and, when
    /// given (`limit`, `used`, `held`), the task's shared account with the dead run's lapsed lease
    /// on it (it had spent `used` and reported `held` more in flight). One transaction, so that a
    /// replica takes the task with its account. Returns the task's id.
    async fn dead_run(
        client: &tokio_postgres::Client,
        request: &Value,
        attempts: i32,
        account: Option<(i64, i64, i64)>,
    ) -> u64 {
        let id: i64 = client
            .query_one("SELECT nextval('baton_tasks_id_seq')", &[])
            .await
            .expect("an id")
            .get(0);
        let task = request["task"].as_str().expect("a task");
        let record = json!({"id": id, "task": task, "status": "running", "submitted_ms": 1,
            "cost_nanousd": 0});
        let mut sql = String::from("BEGIN;");
        if let Some((limit, used, held)) = account {
            let (name, amount) = (format!("research/task/{id}"), used + held + 1_000);
            sql += &format!(
                "INSERT INTO baton_budgets (name, limit_nanousd, leased_nanousd)
                     VALUES ({name}, {limit}, {amount});
                 INSERT INTO baton_leases (id, budget, replica, amount_nanousd, used_nanousd,
                                           held_nanousd, expires_at)
                     VALUES ({lease}, {name}, 'ghost', {amount}, {used}, {held},
                             now() - interval '1 second');",
                name = lit(&name),
                lease = lit(&format!("ghost-{id}")),
            );
        }
        sql += &format!(
            "INSERT INTO baton_tasks (id, topology, text, request, status, replica, lease_expires,
                                      attempts, record)
                 VALUES ({id}, 'research', {text}, {request}, 'running', 'ghost',
                         now() - interval '1 second', {attempts}, {record});
             COMMIT;",
            text = lit(task),
            request = lit(&request.to_string()),
            record = lit(&record.to_string()),
        );
        client.batch_execute(&sql).await.expect("the dead run");
        u64::try_from(id).expect("an id")
    }

    /// The sum of a counter's series in a replica's `/metrics`.
    async fn counter(s: &Server, name: &str) -> u64 {
        let text = s
            .http
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A task whose replica died is run again by the replica that takes it over when it was
    /// submitted with `on_interrupted: resume`, within what its own budget has left once the dead
    /// run's lease is booked (at its ceiling: what it spent and held): with room it completes,
    /// its cost what its account booked for both runs, to the nano-dollar; without room its calls
    /// are refused by its account, which never exceeds the limit; after three runs it ends
    /// `interrupted`; and a task that did not ask for it ends `interrupted` as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_replicas_resumable_tasks_run_again_within_their_budget() {
        let Some(url) = baton_pg::testing::database("serve_resume").await else {
            return;
        };
        let topology = research(
            "serve-resume.yaml",
            &[("latency: 100ms", "latency: 5ms")],
            "",
        );
        let mut s = replica(&topology, &url, "30s");
        let (client, _conn) = db(&url).await;
        let resume = |task: &str, usd: &str| json!({"task": task, "budget_usd": usd, "on_interrupted": "resume"});
        // Room: $0.05, of which the dead run booked 0.003 (spent 0.002, 0.001 in flight).
        let roomy = dead_run(
            &client,
            &resume("How healthy are our services? (roomy)", "0.05"),
            1,
            Some((50_000_000, 2_000_000, 1_000_000)),
        )
        .await;
        // No room: $0.01, of which the dead run booked all but 1,000 nano-dollars.
        let spent = dead_run(
            &client,
            &resume("How healthy are our services? (spent)", "0.01"),
            1,
            Some((10_000_000, 9_000_000, 999_000)),
        )
        .await;
        // Its third run died too.
        let thrice = dead_run(
            &client,
            &resume("How healthy are our services? (thrice)", "0.05"),
            3,
            None,
        )
        .await;
        // It did not ask to be resumed.
        let ended = dead_run(
            &client,
            &json!({"task": "How healthy are our services? (ended)"}),
            1,
            None,
        )
        .await;

        let done = s.finished(roomy).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["resumed"], 1, "{done}");
        let this_run = done["report"]["totals"]["cost_nanousd"]
            .as_u64()
            .expect("the run's cost");
        assert!(this_run > 0);
        assert_eq!(
            done["cost_nanousd"].as_u64(),
            Some(3_000_000 + this_run),
            "both runs: {done}"
        );
        let (booked, leased, limit) = budget(&client, &format!("research/task/{roomy}")).await;
        assert_eq!(
            (booked, leased, limit),
            (3_000_000 + this_run as i64, 0, 50_000_000)
        );
        let events = s
            .events(&format!("/v1/tasks/{roomy}/events"), None, 10_000)
            .await;
        let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task_resumed"), "{kinds:?}");
        assert_eq!(events[0].2["run"], 2);
        assert_eq!(kinds.last(), Some(&"task_report"), "{kinds:?}");

        let done = s.finished(spent).await;
        assert_eq!(done["status"], "budget_exceeded", "{done}");
        assert!(
            done["error"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("research/task/{spent}"))),
            "the task's account refused: {done}"
        );
        assert_eq!(done["cost_nanousd"], 9_999_000, "{done}");
        let (booked, leased, limit) = budget(&client, &format!("research/task/{spent}")).await;
        assert_eq!((booked, leased), (9_999_000, 0));
        assert!(booked <= limit);

        let done = s.finished(thrice).await;
        assert_eq!(done["status"], "interrupted", "{done}");
        assert!(
            done["error"]
                .as_str()
                .is_some_and(|e| e.contains("its 3 runs")),
            "{done}"
        );
        let done = s.finished(ended).await;
        assert_eq!(done["status"], "interrupted", "{done}");
        assert!(
            done["error"]
                .as_str()
                .is_some_and(|e| e.contains("the replica running this task stopped")),
            "{done}"
        );
        assert_eq!(counter(&s, "baton_shared_tasks_taken_over_total").await, 4);
        assert_eq!(counter(&s, "baton_shared_tasks_resumed_total").await, 2);
        assert_eq!(s.terminate(), Some(0), "{}", s.log());
    }

    /// kill -9 of a replica running tasks submitted with `on_interrupted: resume`: the survivor
    /// runs each of them again once its lease lapses, so that every task completes (none ends
    /// `interrupted`), and each resumed task's runs together stay within its budget in the
    /// database, its cost what its account booked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_replicas_resumable_tasks_complete_on_the_survivor() {
        let Some(url) = baton_pg::testing::database("serve_kill_resume").await else {
            return;
        };
        let topology = research(
            "serve-kill-resume.yaml",
            &[
                ("latency: 100ms", "latency: 1s"),
                ("name: research", "name: research\nbudget:\n  max_usd: 5"),
            ],
            "",
        );
        let mut victim = Server::start(
            &topology,
            &[
                "--ledger",
                &url,
                "--ledger-lease",
                "2s",
                "--on-interrupted",
                "resume",
            ],
            &[],
        );
        let survivor = replica(&topology, &url, "2s");
        let mut ids = Vec::new();
        for i in 0..8 {
            // Those that do not say take the replica's default (the victim's: resume).
            let (status, body) = victim
                .post(
                    "/v1/tasks",
                    json!({"task": format!("How healthy are our services? ({i})"), "budget_usd": "0.05"}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            ids.push(body["id"].as_u64().expect("id"));
        }
        // Mid-run (each task takes about 4 s of model latency).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        victim.kill();
        let (client, _conn) = db(&url).await;
        let mut resumed = 0;
        for id in &ids {
            let done = survivor.finished(*id).await;
            assert_eq!(done["status"], "completed", "{done}");
            if done["resumed"] == 1 {
                resumed += 1;
                let cost = done["cost_nanousd"].as_u64().expect("a cost");
                let this_run = done["report"]["totals"]["cost_nanousd"]
                    .as_u64()
                    .expect("the run's cost");
                let (booked, leased, limit) = budget(&client, &format!("research/task/{id}")).await;
                assert!(booked + leased <= limit, "{booked} + {leased} > {limit}");
                // What the account booked for both runs (a lease of the dead run not yet lapsed
                // when the task ended counts whole: an upper bound, never less than the booking).
                let (booked, limit) = (
                    u64::try_from(booked).expect("booked"),
                    u64::try_from(limit).expect("limit"),
                );
                assert!(
                    this_run <= booked && booked <= cost && cost <= limit,
                    "run {this_run}, booked {booked}, cost {cost}, limit {limit}: {done}"
                );
            }
        }
        assert!(resumed > 0, "the victim was running some");
        assert_eq!(
            counter(&survivor, "baton_shared_tasks_resumed_total").await,
            resumed
        );
    }
}
