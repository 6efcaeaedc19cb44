//! Tests of the audit trail: writing, continuing, verifying, the signed head.

use super::*;
use serde_json::json;

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("baton-audit-{}-{name}.jsonl", std::process::id()));
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
        serde_json::from_str(&std::fs::read_to_string(head_path(&p)).expect("head")).expect("json");
    let mut edited = signed.clone();
    edited["seq"] = json!(2);
    std::fs::write(head_path(&p), edited.to_string()).expect("edited head");
    let e = read_head(&p, Some(b"secret")).expect_err("edited seq");
    assert!(e.to_string().contains("signature does not verify"), "{e}");
}
