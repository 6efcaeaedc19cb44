//! The console in a real browser: `baton serve` on the ops-triage example, Debian's headless
//! Chromium driven through chromedriver (WebDriver). A task is submitted from the page, its
//! timeline fills in, the destructive restart it proposes is approved by clicking, and the task
//! completes. Screenshots are saved as `target/console-*.png`.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`); skipped
//! with a notice without them, required when `BATON_REQUIRE_BROWSER` is set (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

mod common;
use common::server::Server;
use common::{example, skip_notice, temp_file};

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver and the browser, or `None` (skipped; a failure when the browser is required).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let found =
        find(&["chromedriver"]).zip(find(&["chromium", "chromium-browser", "google-chrome"]));
    if found.is_none() {
        assert!(
            std::env::var_os("BATON_REQUIRE_BROWSER").is_none(),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        skip_notice("no headless Chromium here (apt-get install chromium chromium-driver)");
    }
    found
}

fn start_driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn session(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1500,950"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).expect("target/");
    std::fs::write(dir.join(format!("console-{name}.png")), png).expect("saved");
}

/// Waits for `css` to match, up to 30 s.
async fn wait(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_watch_and_approve_from_the_console() {
    let Some((chromedriver, chromium)) = browser() else {
        return;
    };
    let file = temp_file("console-triage.yaml", &example("ops-triage.yaml", &[]));
    let server = Server::start(&file, &[], &[]);
    let driver = start_driver(&chromedriver);
    let client = session(&driver, &chromium).await;
    client.goto(&server.base).await.expect("the console loads");
    // The supervision tree of the topology.
    wait(&client, "#tree li[data-agent='rca']").await;
    let title = client
        .find(Locator::Id("topology"))
        .await
        .expect("title")
        .text()
        .await
        .expect("text");
    assert_eq!(title, "ops-triage");

    // Submit a task from the page.
    client
        .find(Locator::Id("task-text"))
        .await
        .expect("the task box")
        .send_keys("p99 latency of checkout doubled at 14:05")
        .await
        .expect("typed");
    client
        .find(Locator::Id("submit-button"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("clicked");
    // Its timeline fills in, sub-tasks in their own lanes, and the restart waits for approval.
    wait(&client, "#timeline .ev[data-kind='model_call']").await;
    wait(&client, "#approvals .approval button[data-verb='approve']").await;
    wait(
        &client,
        "#timeline .ev[data-kind='task_start'] .lanes .lane.empty",
    )
    .await;
    shot(&client, "approval").await;
    let (_, tasks) = server.get("/v1/tasks").await;
    let id = tasks["tasks"][0]["id"]
        .as_u64()
        .expect("the submitted task");
    assert_eq!(
        tasks["tasks"][0]["status"], "running",
        "waiting for the approval"
    );
    wait(&client, "#approvals .approval button[data-verb='approve']")
        .await
        .click()
        .await
        .expect("approved by clicking");

    // The task completes; the page shows it.
    wait(&client, "#task-head .status.completed").await;
    wait(&client, "#timeline .ev[data-kind='task_report']").await;
    wait(&client, "#tasks tr.selected .status.completed").await;
    wait(&client, "#n-completed[data-n='1']").await;
    wait(
        &client,
        "#tree li[data-agent='triage'] > .state:not(.running)",
    )
    .await;
    shot(&client, "timeline").await;
    let done = server.finished(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, approvals) = server.get("/v1/approvals").await;
    assert_eq!(approvals[0]["state"], "approved");
    assert_eq!(approvals[0]["by"], "console", "answered from the console");
    client.close().await.expect("session closed");
}
