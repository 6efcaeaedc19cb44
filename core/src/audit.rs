//! The audit trail: append-only JSON lines, each record carrying the hash of the one before it,
//! so that an edited, deleted, reordered or forged record is detectable (`baton audit verify`).
//!
//! A record is `{"seq", "ts", "kind", ...fields, "prev", "hash"}`. `hash` is SHA-256 over `prev`
//! and the record's JSON without `hash` (keys in a fixed order). With `BATON_AUDIT_KEY` set it is
//! an HMAC-SHA256 under that key instead: then even someone who recomputes hashes cannot append or
//! rewrite records without the key. Each record is written and flushed at once, so a crash loses at
//! most the record being written. Opening an existing trail continues its chain.

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
    /// Opens (or creates) the trail at `path`, continuing an existing chain. Uses
    /// `BATON_AUDIT_KEY` from the environment when set.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read or opened for appending; [`Error::Rules`] (with
    /// the line) when an existing trail's last record is unreadable.
    pub fn open(path: &Path) -> Result<AuditLog, Error> {
        let key = std::env::var("BATON_AUDIT_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes);
        Self::open_with_key(path, key)
    }

    /// As [`AuditLog::open`], with an explicit key (or none).
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub fn open_with_key(path: &Path, key: Option<Vec<u8>>) -> Result<AuditLog, Error> {
        let (mut seq, mut prev) = (0, GENESIS.to_string());
        if path.exists() {
            let f = File::open(path).map_err(|e| io(path, e))?;
            let mut last = None;
            for (n, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| io(path, e))?;
                if !line.trim().is_empty() {
                    last = Some((n + 1, line));
                }
            }
            if let Some((n, line)) = last {
                let v: Value = serde_json::from_str(&line).map_err(|e| Error::Rules {
                    path: path.to_path_buf(),
                    message: format!("line {n}: the last audit record is not JSON ({e}); run `baton audit verify`"),
                })?;
                seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                prev = v
                    .get("hash")
                    .and_then(Value::as_str)
                    .unwrap_or(GENESIS)
                    .to_string();
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            key,
            state: Mutex::new((file, seq, prev)),
        })
    }

    /// Appends one record of `kind` with `fields`, chained to the previous one, and flushes it.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails.
    pub fn append(&self, kind: &str, fields: Map<String, Value>) -> Result<(), Error> {
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
        *seq += 1;
        *prev = hash;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line of the first broken record.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a trail's chain. `Ok(n)` is the number of records when it is intact.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read. A broken chain is `Ok(Err(Broken))`, naming the
/// first broken record.
pub fn verify(path: &Path, key: Option<&[u8]>) -> Result<Result<u64, Broken>, Error> {
    let f = File::open(path).map_err(|e| io(path, e))?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut count = 0;
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let broken = |reason: String| {
            Ok(Err(Broken {
                line: n + 1,
                reason,
            }))
        };
        let Ok(Value::Object(mut rec)) = serde_json::from_str::<Value>(&line) else {
            return broken("not a JSON object".into());
        };
        let Some(Value::String(hash)) = rec.remove("hash") else {
            return broken("no `hash`".into());
        };
        let seq = rec.get("seq").and_then(Value::as_u64);
        let Some(seq) = seq else {
            return broken("no `seq`".into());
        };
        if let Some(want) = expected_seq
            && seq != want
        {
            return broken(format!(
                "seq {seq} where {want} was expected: a record was deleted, inserted or moved"
            ));
        }
        if rec.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return broken(format!(
                "seq {seq}: `prev` does not match the previous record's hash: the chain is broken here"
            ));
        }
        let body = Value::Object(rec).to_string();
        if digest(key, &prev, &body) != hash {
            return broken(format!(
                "seq {seq}: the hash does not match the record: it was edited (or forged)"
            ));
        }
        prev = hash;
        expected_seq = Some(seq + 1);
        count += 1;
    }
    Ok(Ok(count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("baton-audit-{}-{name}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn write(path: &Path, n: u64, key: Option<Vec<u8>>) {
        let log = AuditLog::open_with_key(path, key).expect("open");
        for i in 0..n {
            log.append(
                "tool_call",
                fields(json!({"agent": "rca", "tool": "query", "i": i})),
            )
            .expect("append");
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").expect("write");
    }

    #[test]
    fn intact_and_continued_across_opens() {
        let p = temp("intact");
        write(&p, 3, None);
        write(&p, 2, None);
        assert_eq!(verify(&p, None).expect("read"), Ok(5));
    }

    #[test]
    fn detects_edit_delete_reorder_and_forgery() {
        let p = temp("tamper");
        write(&p, 5, None);
        let orig = lines(&p);

        let mut edited = orig.clone();
        edited[2] = edited[2].replace("\"query\"", "\"restart_service\"");
        rewrite(&p, &edited);
        let b = verify(&p, None).expect("read").expect_err("edited");
        assert_eq!(b.line, 3);
        assert!(b.reason.contains("edited"), "{b:?}");

        let mut deleted = orig.clone();
        deleted.remove(1);
        rewrite(&p, &deleted);
        let b = verify(&p, None).expect("read").expect_err("deleted");
        assert_eq!(b.line, 2);
        assert!(b.reason.contains("deleted"), "{b:?}");

        let mut reordered = orig.clone();
        reordered.swap(2, 3);
        rewrite(&p, &reordered);
        assert_eq!(
            verify(&p, None).expect("read").expect_err("reordered").line,
            3
        );

        // A forged record appended by copying the last one (seq and prev do not fit).
        let mut forged = orig.clone();
        forged.push(orig[4].clone());
        rewrite(&p, &forged);
        assert_eq!(verify(&p, None).expect("read").expect_err("forged").line, 6);
    }

    #[test]
    fn with_a_key_a_recomputed_forgery_is_caught() {
        let p = temp("keyed");
        write(&p, 2, Some(b"secret".to_vec()));
        assert_eq!(verify(&p, Some(b"secret")).expect("read"), Ok(2));
        // The forger appends a well-formed record, chained with plain SHA-256 (no key).
        let last: Value = serde_json::from_str(&lines(&p)[1]).expect("json");
        let mut rec = fields(
            json!({"seq": 3, "ts": "2026-11-24T00:00:00.000Z", "kind": "tool_call", "tool": "restart_service"}),
        );
        rec.insert("prev".into(), last["hash"].clone());
        let prev = last["hash"].as_str().expect("hash").to_string();
        let hash = digest(None, &prev, &Value::Object(rec.clone()).to_string());
        rec.insert("hash".into(), Value::from(hash));
        let mut all = lines(&p);
        all.push(Value::Object(rec).to_string());
        rewrite(&p, &all);
        let b = verify(&p, Some(b"secret"))
            .expect("read")
            .expect_err("forged");
        assert_eq!(b.line, 3);
        // Without the key the same forgery would pass: that is what the key is for.
        assert!(
            verify(&p, None).expect("read").is_err(),
            "keyed records do not verify without the key"
        );
    }
}
