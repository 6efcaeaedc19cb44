//! The audit trail: append-only JSON lines, each record carrying the hash of the one before it,
//! so that an edited, deleted, reordered or forged record is detectable (`baton audit verify`).
//!
//! A record is `{"seq", "ts", "kind", ...fields, "prev", "hash"}`. `hash` is SHA-256 over `prev`
//! and the record's JSON without `hash` (keys in a fixed order). With a key ([`AuditLog::open_with_key`]; the `baton` binary reads it from `BATON_AUDIT_KEY`) it is
//! an HMAC-SHA256 under that key instead: then even someone who recomputes hashes cannot append or
//! rewrite records without the key. Each record is written and flushed at once, so a crash loses at
//! most the record being written; a record that must precede an action (the decision on a
//! destructive tool call) is also synced to disk ([`AuditLog::append_durable`]) and the action is
//! not taken when that fails. Opening an existing trail continues its chain; the file must be a
//! regular file, and one process at a time holds it (an advisory lock), so that two writers
//! cannot interleave their chains.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Error;

/// The hash of "no previous record".
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An open audit trail.
pub struct AuditLog {
    path: PathBuf,
    key: Option<Vec<u8>>,
    state: Mutex<(File, u64, String)>,
    failures: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn digest(key: Option<&[u8]>, prev: &str, body: &str) -> String {
    let bytes = match key {
        Some(k) => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(k).unwrap_or_else(|_| {
                // HMAC accepts keys of any length; this cannot fail.
                <Hmac<Sha256> as Mac>::new_from_slice(b"baton")
                    .expect("invariant: HMAC takes any key length")
            });
            mac.update(prev.as_bytes());
            mac.update(body.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        None => {
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(body.as_bytes());
            h.finalize().to_vec()
        }
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditLog {
    /// Opens (or creates) the trail at `path`, continuing an existing chain, unkeyed (plain
    /// SHA-256 chain). The library reads no environment: the `baton` binary passes
    /// `BATON_AUDIT_KEY` to [`AuditLog::open_with_key`].
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read or opened for appending; [`Error::Audit`] when
    /// it is not a regular file, another process holds it, or its last record is unreadable.
    pub fn open(path: &Path) -> Result<AuditLog, Error> {
        Self::open_with_key(path, None)
    }

    /// As [`AuditLog::open`], with an HMAC key (or none): a keyed chain, and a signed head
    /// beside the trail.
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub fn open_with_key(path: &Path, key: Option<Vec<u8>>) -> Result<AuditLog, Error> {
        let refuse = |message: String| Error::Audit {
            path: path.to_path_buf(),
            message,
        };
        // A device (`/dev/zero`), a FIFO or a directory is not a trail: reading one never ends
        // or allocates without bound.
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(refuse(
                    "is not a regular file (a device, FIFO or directory): give the path of a file"
                        .into(),
                ));
            }
            Ok(_) | Err(_) => {}
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        // Checked again on the open file: the path may have been swapped meanwhile.
        if !file.metadata().map_err(|e| io(path, e))?.is_file() {
            return Err(refuse("is not a regular file".into()));
        }
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => refuse(
                "another process is writing to it (two writers would interleave their chains): give each run its own trail, or wait for the other to end".into(),
            ),
            std::fs::TryLockError::Error(e) => io(path, e),
        })?;
        let (mut seq, mut prev) = (0, GENESIS.to_string());
        {
            let f = File::open(path).map_err(|e| io(path, e))?;
            let mut last = None;
            let mut reader = BufReader::new(f);
            let mut n = 0;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let read = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| io(path, e))?;
                if read == 0 {
                    break;
                }
                n += 1;
                if !buf.iter().all(u8::is_ascii_whitespace) {
                    last = Some((
                        n,
                        buf.ends_with(b"\n"),
                        String::from_utf8_lossy(&buf).into_owned(),
                    ));
                }
            }
            if let Some((n, complete, line)) = last {
                let v: Value = serde_json::from_str(&line).map_err(|e| {
                    refuse(if complete {
                        format!("line {n}: the last record is not JSON ({e}); run `baton audit verify`")
                    } else {
                        format!("line {n}: the last record is cut short (a crash while it was written?); run `baton audit verify`, and keep the damaged trail aside before starting a new one")
                    })
                })?;
                seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                prev = v
                    .get("hash")
                    .and_then(Value::as_str)
                    .unwrap_or(GENESIS)
                    .to_string();
                // Continuing the chain under another key (or none) would make it unverifiable:
                // the last record must check out under the key given.
                if let Value::Object(mut rec) = v {
                    rec.remove("hash");
                    let before = rec
                        .get("prev")
                        .and_then(Value::as_str)
                        .unwrap_or(GENESIS)
                        .to_string();
                    let body = Value::Object(rec).to_string();
                    if digest(key.as_deref(), &before, &body) != prev {
                        return Err(refuse(format!(
                            "line {n}: the last record does not verify {}: run `baton audit verify` before appending",
                            if key.is_none() {
                                "without a key (the trail is keyed? set BATON_AUDIT_KEY to continue it)"
                            } else {
                                "under this key (another key, no key, or an edited record)"
                            }
                        )));
                    }
                }
            }
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            key,
            state: Mutex::new((file, seq, prev)),
            failures: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// With a key, writes the signed head (the last record's seq and hash, under an HMAC) to
    /// `FILE.head`, replacing the previous one atomically; `baton audit verify` then catches
    /// records cut from the trail's end. Done when the log is dropped (the end of a run), and by
    /// [`AuditLog::append_durable`]. Without a key, there is no head (anyone could forge one).
    ///
    /// # Errors
    /// [`Error::Io`] when the head cannot be written.
    pub fn checkpoint(&self) -> Result<(), Error> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.1 == 0 {
            return Ok(());
        }
        let head = Head {
            seq: st.1,
            hash: st.2.clone(),
        };
        let body =
            serde_json::json!({"seq": head.seq, "hash": head.hash, "mac": head_mac(key, &head)});
        let hp = head_path(&self.path);
        let mut tmp = hp.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(body.to_string().as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &hp)
        };
        write().map_err(|e| io(&hp, e))
    }

    /// Appends failed so far (the records they held are missing from the trail).
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// As [`AuditLog::append`], then syncs the file's data to disk: when this returns `Ok`, the
    /// record survives a crash of the process or the machine.
    ///
    /// # Errors
    /// [`Error::Io`] when the write or the sync fails.
    pub fn append_durable(&self, kind: &str, fields: Map<String, Value>) -> Result<(), Error> {
        self.write(kind, fields, true)?;
        self.checkpoint()
    }

    /// Appends one record of `kind` with `fields`, chained to the previous one, and flushes it.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn append(&self, kind: &str, fields: Map<String, Value>) -> Result<(), Error> {
        self.write(kind, fields, false)
    }

    fn write(&self, kind: &str, fields: Map<String, Value>, sync: bool) -> Result<(), Error> {
        let r = self.write_inner(kind, fields, sync);
        if r.is_err() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn write_inner(&self, kind: &str, fields: Map<String, Value>, sync: bool) -> Result<(), Error> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (file, seq, prev) = &mut *st;
        let mut rec = Map::new();
        rec.insert("seq".into(), Value::from(*seq + 1));
        rec.insert("ts".into(), Value::from(now_rfc3339()));
        rec.insert("kind".into(), Value::from(kind));
        for (k, v) in fields {
            rec.insert(k, v);
        }
        rec.insert("prev".into(), Value::from(prev.clone()));
        let body = Value::Object(rec.clone()).to_string();
        let hash = digest(self.key.as_deref(), prev, &body);
        rec.insert("hash".into(), Value::from(hash.clone()));
        let mut line = Value::Object(rec).to_string();
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(|e| io(&self.path, e))?;
        file.flush().map_err(|e| io(&self.path, e))?;
        if sync {
            file.sync_data().map_err(|e| io(&self.path, e))?;
        }
        *seq += 1;
        *prev = hash;
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::error!("audit trail: the signed head was not written: {e}");
        }
    }
}

/// Now, in RFC 3339 UTC to the millisecond (`2026-12-05T23:59:01.123Z`).
fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

mod verify;

use verify::head_mac;
pub use verify::{Broken, Head, Verified, head_path, read_head, verify, verify_against};

#[cfg(test)]
mod tests;
