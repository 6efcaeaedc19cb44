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
    let head = read_head(path, key)?;
    Ok(verify_against(path, key, head.as_ref())?.map(|v| v.records))
}

/// What an intact trail holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its records.
    pub records: u64,
    /// Its last record, as a head (`None` for an empty trail).
    pub last: Option<Head>,
}

/// A point of a trail: a record's sequence number and hash. Kept apart from the trail (the
/// signed `FILE.head`, or a value stored elsewhere and passed to `--expect-head`), it makes
/// records cut from the trail's end detectable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The record's `seq`.
    pub seq: u64,
    /// The record's `hash`.
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;
    fn from_str(s: &str) -> Result<Head, String> {
        let (seq, hash) = s.trim().split_once(':').ok_or_else(|| {
            format!("`{s}` is not a head: write SEQ:HASH (as `baton audit verify` prints it)")
        })?;
        let seq = seq
            .parse()
            .map_err(|_| format!("`{seq}` is not a sequence number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a record hash (64 hex digits)"));
        }
        Ok(Head {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Where a trail's signed head is kept: `FILE.head` beside it.
pub fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn head_mac(key: &[u8], head: &Head) -> String {
    digest(Some(key), "baton-audit-head", &head.to_string())
}

/// The signed head beside `path`, checked under `key`, if there is one.
///
/// # Errors
/// [`Error::Audit`] when the head file exists but is not a head, or its signature does not
/// verify under `key` (or there is no key to check it with).
pub fn read_head(path: &Path, key: Option<&[u8]>) -> Result<Option<Head>, Error> {
    let hp = head_path(path);
    let text = match std::fs::read_to_string(&hp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&hp, e)),
    };
    let bad = |message: String| Error::Audit {
        path: hp.clone(),
        message,
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("is not a head ({e})")))?;
    let head = Head {
        seq: v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("has no `seq`".into()))?,
        hash: v
            .get("hash")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no `hash`".into()))?
            .to_string(),
    };
    let mac = v.get("mac").and_then(Value::as_str).unwrap_or("");
    match key {
        // Without the key neither the head nor the keyed chain can be checked: the chain's
        // own verification reports that.
        None => Ok(None),
        Some(k) if head_mac(k, &head) != mac => Err(bad(
            "its signature does not verify under this key: it was edited, or written with another key".into(),
        )),
        Some(_) => Ok(Some(head)),
    }
}

/// Checks a trail's chain and, when given, that it still reaches `head` (the record `head.seq`
/// is there with `head.hash`): records cut from the end, or a trail replaced by a shorter valid
/// one, are caught.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read. A broken chain is `Ok(Err(Broken))`.
pub fn verify_against(
    path: &Path,
    key: Option<&[u8]>,
    head: Option<&Head>,
) -> Result<Result<Verified, Broken>, Error> {
    let f = File::open(path).map_err(|e| io(path, e))?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut last_seq: Option<u64> = None;
    let mut count = 0;
    let mut reader = BufReader::new(f);
    let mut raw = Vec::new();
    let mut n = 0;
    loop {
        raw.clear();
        if reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| io(path, e))?
            == 0
        {
            break;
        }
        n += 1;
        let complete = raw.ends_with(b"\n");
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let broken = |reason: String| Ok(Err(Broken { line: n, reason }));
        let Ok(Value::Object(mut rec)) = serde_json::from_str::<Value>(line) else {
            if !complete {
                return broken(
                    "the last record is cut short (a crash while it was written, or a truncated file)"
                        .into(),
                );
            }
            return broken("not a JSON object".into());
        };
        // Baton writes each record in one canonical form: any other spelling of it (a
        // duplicate key, whose first value a reader might take while the hash covered the
        // last) is not one it wrote.
        if serde_json::to_string(&rec).ok().as_deref() != Some(line) {
            return broken(
                "not in the form Baton writes (a duplicate key, or re-formatted): edited".into(),
            );
        }
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
        if let Some(h) = head
            && h.seq == seq
            && h.hash != hash
        {
            return broken(format!(
                "seq {seq}: its hash is not the one the head records: the trail was rewritten from here"
            ));
        }
        prev = hash;
        last_seq = Some(seq);
        expected_seq = Some(seq + 1);
        count += 1;
    }
    if let Some(h) = head
        && last_seq.is_none_or(|l| l < h.seq)
    {
        return Ok(Err(Broken {
            line: n + 1,
            reason: format!(
                "the trail ends at seq {}, but its head says it reached seq {}: records were cut from its end",
                last_seq.unwrap_or(0),
                h.seq
            ),
        }));
    }
    Ok(Ok(Verified {
        records: count,
        last: last_seq.map(|seq| Head { seq, hash: prev }),
    }))
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

    /// Appends to a two-record trail a well-formed third record whose hash the forger
    /// recomputed with plain SHA-256 (no key).
    fn forge_third_record(path: &Path) {
        let last: Value = serde_json::from_str(&lines(path)[1]).expect("json");
        let mut rec = fields(
            json!({"seq": 3, "ts": "2026-11-24T00:00:00.000Z", "kind": "tool_call", "tool": "restart_service"}),
        );
        rec.insert("prev".into(), last["hash"].clone());
        let prev = last["hash"].as_str().expect("hash").to_string();
        let hash = digest(None, &prev, &Value::Object(rec.clone()).to_string());
        rec.insert("hash".into(), Value::from(hash));
        let mut all = lines(path);
        all.push(Value::Object(rec).to_string());
        rewrite(path, &all);
    }

    #[test]
    fn with_a_key_a_recomputed_forgery_is_caught() {
        let p = temp("keyed");
        write(&p, 2, Some(b"secret".to_vec()));
        assert_eq!(verify(&p, Some(b"secret")).expect("read"), Ok(2));
        // The forger appends a well-formed record, chained with plain SHA-256 (no key).
        forge_third_record(&p);
        let b = verify(&p, Some(b"secret"))
            .expect("read")
            .expect_err("forged");
        assert_eq!(b.line, 3);
        // Without the key a keyed trail does not verify at all (its links are HMACs).
        assert!(
            verify(&p, None).expect("read").is_err(),
            "keyed records do not verify without the key"
        );
        // And on an unkeyed trail the same recomputed forgery passes: what the key is for.
        let q = temp("unkeyed-forgery");
        write(&q, 2, None);
        forge_third_record(&q);
        assert_eq!(
            verify(&q, None).expect("read"),
            Ok(3),
            "undetectable without a key"
        );
    }

    #[test]
    fn devices_and_fifos_are_refused_and_one_writer_holds_a_trail() {
        let e = AuditLog::open_with_key(Path::new("/dev/zero"), None).expect_err("a device");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let p = temp("locked");
        let first = AuditLog::open_with_key(&p, None).expect("open");
        let e = AuditLog::open_with_key(&p, None).expect_err("held by the first");
        assert!(e.to_string().contains("another process is writing"), "{e}");
        drop(first);
        AuditLog::open_with_key(&p, None).expect("free again");
    }

    #[test]
    fn a_cut_last_record_and_a_duplicate_key_are_reported_as_such() {
        let p = temp("cut");
        write(&p, 3, None);
        let text = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, &text[..text.len() - 20]).expect("cut");
        let b = verify(&p, None).expect("read").expect_err("cut");
        assert_eq!(b.line, 3);
        assert!(b.reason.contains("cut short"), "{b:?}");
        let e = AuditLog::open_with_key(&p, None).expect_err("not continued");
        assert!(e.to_string().contains("cut short"), "{e}");

        let p = temp("dup");
        write(&p, 2, None);
        let mut all = lines(&p);
        // A second `tool` key: a lenient reader takes one value, the hash covered another.
        all[1] = all[1].replacen("{", "{\"tool\":\"restart_service\",", 1);
        rewrite(&p, &all);
        let b = verify(&p, None).expect("read").expect_err("duplicate key");
        assert_eq!(b.line, 2);
        assert!(b.reason.contains("duplicate key"), "{b:?}");
    }

    #[test]
    fn a_keyed_trail_is_not_continued_without_its_key() {
        let p = temp("keyed-continue");
        write(&p, 2, Some(b"secret".to_vec()));
        let e = AuditLog::open_with_key(&p, None).expect_err("no key");
        assert!(e.to_string().contains("BATON_AUDIT_KEY"), "{e}");
        let e = AuditLog::open_with_key(&p, Some(b"other".to_vec())).expect_err("wrong key");
        assert!(e.to_string().contains("under this key"), "{e}");
        write(&p, 1, Some(b"secret".to_vec()));
        assert_eq!(verify(&p, Some(b"secret")).expect("read"), Ok(3));
    }

    #[test]
    fn durable_appends_count_failures() {
        let p = temp("durable");
        let log = AuditLog::open_with_key(&p, None).expect("open");
        log.append_durable("policy", fields(json!({"tool": "restart"})))
            .expect("synced");
        assert_eq!(
            (log.failures(), verify(&p, None).expect("read")),
            (0, Ok(1))
        );
    }

    #[test]
    fn with_a_key_records_cut_from_the_end_are_caught_by_the_signed_head() {
        let p = temp("head");
        let _ = std::fs::remove_file(head_path(&p));
        write(&p, 5, Some(b"secret".to_vec()));
        assert!(
            head_path(&p).exists(),
            "the head is written when the log is dropped"
        );
        assert_eq!(verify(&p, Some(b"secret")).expect("read"), Ok(5));
        let all = lines(&p);
        rewrite(&p, &all[..3]);
        let b = verify(&p, Some(b"secret")).expect("read").expect_err("cut");
        assert!(b.reason.contains("records were cut from its end"), "{b:?}");
        assert_eq!(b.line, 4, "the line after the trail's last");
        std::fs::write(&p, "").expect("emptied");
        let b = verify(&p, Some(b"secret"))
            .expect("read")
            .expect_err("emptied");
        assert!(b.reason.contains("ends at seq 0"), "{b:?}");
        // A head edited to match the shortened trail no longer verifies.
        rewrite(&p, &all[..3]);
        let last: Value = serde_json::from_str(&all[2]).expect("json");
        std::fs::write(
            head_path(&p),
            json!({"seq": 3, "hash": last["hash"], "mac": "00"}).to_string(),
        )
        .expect("forged head");
        let e = verify(&p, Some(b"secret")).expect_err("forged head");
        assert!(e.to_string().contains("signature does not verify"), "{e}");
        // A head kept elsewhere (`--expect-head`) catches the same without the file.
        let _ = std::fs::remove_file(head_path(&p));
        let kept: Head = format!(
            "5:{}",
            serde_json::from_str::<Value>(&all[4]).expect("json")["hash"]
                .as_str()
                .expect("hash")
        )
        .parse()
        .expect("a head");
        let b = verify_against(&p, Some(b"secret"), Some(&kept))
            .expect("read")
            .expect_err("cut");
        assert!(b.reason.contains("reached seq 5"), "{b:?}");
    }

    #[test]
    fn records_are_numbered_timed_and_chained() {
        let p = temp("shape");
        write(&p, 3, None);
        let before = jiff::Timestamp::now();
        let records: Vec<Value> = lines(&p)
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let mut prev = GENESIS.to_string();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r["seq"], json!(i + 1));
            assert_eq!(
                (r["kind"].as_str(), r["i"].as_u64()),
                (Some("tool_call"), Some(i as u64))
            );
            let ts = r["ts"].as_str().expect("ts");
            assert_eq!(ts.len(), "2026-12-05T23:59:01.123Z".len(), "{ts}");
            let at: jiff::Timestamp = ts.parse().expect("RFC 3339");
            let age = before.as_millisecond() - at.as_millisecond();
            assert!((0..60_000).contains(&age), "{ts} is now");
            assert_eq!(r["prev"].as_str(), Some(prev.as_str()), "chained");
            prev = r["hash"].as_str().expect("hash").to_string();
            assert_eq!(prev.len(), 64, "SHA-256 in hex");
        }
    }

    #[test]
    fn a_directory_is_refused_and_a_cut_record_names_its_line() {
        let dir = std::env::temp_dir();
        let e = AuditLog::open_with_key(&dir, None).expect_err("a directory");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let p = temp("cut-line");
        write(&p, 4, None);
        let text = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, &text[..text.len() - 20]).expect("cut");
        let e = AuditLog::open_with_key(&p, None).expect_err("cut");
        assert!(e.to_string().contains("line 4: "), "{e}");
    }

    #[test]
    fn failed_appends_are_counted() {
        let p = temp("failing");
        let log = AuditLog::open_with_key(&p, Some(b"k".to_vec())).expect("open");
        log.append("a", Map::new()).expect("written");
        // The file handle turns read-only: every write fails from here on.
        log.state.lock().expect("lock").0 = File::open(&p).expect("read-only");
        assert!(log.append("b", Map::new()).is_err());
        assert!(log.append_durable("c", Map::new()).is_err());
        assert_eq!(log.failures(), 2);
        let shown = format!("{log:?}");
        assert!(shown.contains("keyed: true"), "{shown}");
        assert!(
            !shown.contains("107"),
            "the key's bytes are not shown: {shown}"
        );
    }

    #[test]
    fn a_head_signed_with_another_key_or_unreadable_is_refused() {
        let p = temp("head-key");
        write(&p, 2, Some(b"secret".to_vec()));
        let genuine = read_head(&p, Some(b"secret"))
            .expect("reads")
            .expect("a head");
        assert_eq!(genuine.seq, 2);
        let forged = json!({
            "seq": genuine.seq,
            "hash": genuine.hash,
            "mac": head_mac(b"another key", &genuine),
        });
        std::fs::write(head_path(&p), forged.to_string()).expect("forged head");
        let e = read_head(&p, Some(b"secret")).expect_err("another key");
        assert!(e.to_string().contains("signature does not verify"), "{e}");
        // A head that cannot be read is an error, not "no head".
        std::fs::remove_file(head_path(&p)).expect("removed");
        std::fs::create_dir(head_path(&p)).expect("a directory in its place");
        let e = read_head(&p, Some(b"secret")).expect_err("unreadable");
        std::fs::remove_dir(head_path(&p)).expect("cleaned");
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn heads_are_written_read_and_bound_to_their_figures() {
        let hash = "ab".repeat(32);
        let head = Head {
            seq: 5,
            hash: hash.clone(),
        };
        assert_eq!(head.to_string(), format!("5:{hash}"));
        assert_eq!(
            format!("5:{}", hash.to_uppercase()).parse::<Head>(),
            Ok(head)
        );
        for bad in [
            format!("5{hash}"),
            format!("x:{hash}"),
            format!("5:{}", &hash[1..]),
            format!("5:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<Head>().is_err(), "{bad}");
        }
        // A signed head edited to another seq, its signature kept, no longer verifies.
        let p = temp("head-bound");
        write(&p, 3, Some(b"secret".to_vec()));
        let signed: Value =
            serde_json::from_str(&std::fs::read_to_string(head_path(&p)).expect("head"))
                .expect("json");
        let mut edited = signed.clone();
        edited["seq"] = json!(2);
        std::fs::write(head_path(&p), edited.to_string()).expect("edited head");
        let e = read_head(&p, Some(b"secret")).expect_err("edited seq");
        assert!(e.to_string().contains("signature does not verify"), "{e}");
    }
}
