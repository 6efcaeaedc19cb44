//! A running `baton serve` for the tests that drive its API or its console.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// A running `baton serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
    pub(crate) http: reqwest::Client,
}

impl Server {
    pub(crate) fn start(file: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.arg("serve")
            .arg(file)
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("BATON_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("baton serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ready: console at http://") {
                    let _ = tx.send(addr.trim_end_matches('/').to_string());
                }
                sink.lock().expect("log").push_str(&format!("{line}\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the server did not start:\n{}", log.lock().expect("log")));
        Server {
            child,
            base: format!("http://{addr}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Submits `task`, which must be accepted; its id.
    pub(crate) async fn submit(&self, task: &str) -> u64 {
        let (status, body) = self.post("/v1/tasks", json!({"task": task})).await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_u64().expect("an id")
    }

    /// Waits until task `id` is no longer running; its record.
    pub(crate) async fn finished(&self, id: u64) -> Value {
        for _ in 0..600 {
            let (status, body) = self.get(&format!("/v1/tasks/{id}")).await;
            assert_eq!(status, 200, "{body}");
            // (`queued`: waiting in a shared queue for a replica.)
            if body["status"] != "running" && body["status"] != "queued" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {id} did not end:\n{}", self.log());
    }

    /// Reads an SSE stream until it ends (or `max` events): the events' (id, kind, data).
    pub(crate) async fn events(
        &self,
        path: &str,
        last_event_id: Option<u64>,
        max: usize,
    ) -> Vec<(u64, String, Value)> {
        use futures::StreamExt as _;
        let mut req = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = req.send().await.expect("GET events");
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/event-stream")
        );
        let mut stream = r.bytes_stream();
        let mut text = String::new();
        let mut out = Vec::new();
        while out.len() < max {
            let Ok(Some(chunk)) =
                tokio::time::timeout(Duration::from_secs(30), stream.next()).await
            else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk.expect("a chunk")));
            while let Some(cut) = text.find("\n\n") {
                let block: String = text.drain(..cut + 2).collect();
                let (mut id, mut kind, mut data) = (0, String::new(), Value::Null);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().expect("a numeric id");
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).expect("JSON data");
                    }
                }
                if id > 0 {
                    out.push((id, kind, data));
                }
            }
        }
        out
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGTERM, then waits (up to 30 s) for the process to exit; its exit code.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM sent");
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not exit after SIGTERM:\n{}", self.log());
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
