//! Reading a trail back: `verify` checks its chain (and, with a signed or kept head, that no
//! record was cut from its end); `Head` is a point of a trail kept apart from it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{GENESIS, digest, io};
use crate::Error;

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

pub(super) fn head_mac(key: &[u8], head: &Head) -> String {
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
