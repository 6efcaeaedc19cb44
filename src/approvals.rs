//! `baton approvals ...`: a client of a running `baton run --approvals-addr ADDR`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Sends one request to the approvals endpoint; returns the status code and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = std::env::var("BATON_APPROVALS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The body of a 200 answer; anything else is reported on stderr (`None`).
fn ok_body(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    match request(addr, method, path, body) {
        Ok((200, body)) => Some(body),
        Ok((status, body)) => {
            eprintln!("error: {addr} answered {status}: {body}");
            None
        }
        Err(e) => {
            eprintln!("error: cannot reach the approvals endpoint at {addr}: {e}");
            None
        }
    }
}

/// `baton approvals list`: every request, as JSON lines; pending ones first in a human list.
pub(crate) fn list(addr: SocketAddr, json: bool) -> ExitCode {
    let Some(body) = ok_body(addr, "GET", "/approvals", "") else {
        return ExitCode::FAILURE;
    };
    let records: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    for r in &records {
        if json {
            println!("{r}");
        } else {
            println!(
                "#{} {} · {} wants {} {}{}",
                r["id"],
                r["state"].as_str().unwrap_or("?"),
                r["agent"].as_str().unwrap_or("?"),
                r["tool"].as_str().unwrap_or("?"),
                r["arguments"],
                if r["orphaned"] == true {
                    " (asked before a restart)"
                } else {
                    ""
                }
            );
        }
    }
    ExitCode::SUCCESS
}

/// `baton approvals approve|deny ID`.
pub(crate) fn answer(
    addr: SocketAddr,
    id: u64,
    approve: bool,
    by: Option<String>,
    reason: Option<String>,
) -> ExitCode {
    let verb = if approve { "approve" } else { "deny" };
    let by = by.or_else(|| std::env::var("USER").ok());
    let body = serde_json::json!({"by": by, "reason": reason}).to_string();
    match ok_body(addr, "POST", &format!("/approvals/{id}/{verb}"), &body) {
        Some(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}
