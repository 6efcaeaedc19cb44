//! `http_get` against a real HTTP server on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use baton_core::Tool;
use baton_providers::tools::HttpGet;
use serde_json::json;

/// Serves `/ok` (200), `/away` (302 to a host that is not allowed), `/home` (302 to `/ok`) and
/// `/broken` (500), one connection at a time, until the test ends.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let reply = match path {
                "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\nservice healthy".to_string(),
                "/away" => "HTTP/1.1 302 Found\r\nlocation: http://exfil.example/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                "/home" => format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/ok\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
                _ => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown".to_string(),
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn fetches_from_allowed_hosts_only_redirects_included() {
    let port = serve();
    let t = HttpGet::new(
        "http_get",
        vec![format!("127.0.0.1:{port}")],
        Duration::from_secs(5),
    )
    .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        t.call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": format!("{base}/ok")})
        )
        .await
        .expect("200"),
        "service healthy"
    );
    assert_eq!(
        t.call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": format!("{base}/home")})
        )
        .await
        .expect("same-host redirect"),
        "service healthy"
    );
    let e = t
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": format!("{base}/away")}),
        )
        .await
        .expect_err("a redirect elsewhere is not followed");
    assert!(
        e.to_string()
            .contains("redirects to http://exfil.example/steal"),
        "{e}"
    );
    let e = t
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": format!("{base}/broken")}),
        )
        .await
        .expect_err("500");
    assert!(
        e.to_string().contains("500 Internal Server Error: down"),
        "{e}"
    );
    let e = t
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": format!("http://localhost:{port}/ok")}),
        )
        .await
        .expect_err("another name for the host is another host");
    assert!(
        e.to_string()
            .starts_with("`localhost` is not an allowed host"),
        "{e}"
    );
    let e = t
        .call(
            &baton_core::ToolContext::new("test", baton_core::TaskId(1)),
            json!({"url": "file:///etc/passwd"}),
        )
        .await
        .expect_err("not http");
    assert!(e.to_string().contains("only http and https"), "{e}");
}
