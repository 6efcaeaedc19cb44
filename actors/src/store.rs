//! Durable state of standing loops, in one redb file: per loop the current day's and hour's spend,
//! the run counter and the breaker; per run its recorded outcome. A run is written as `running`
//! when it starts and rewritten with its outcome when it ends, in the same transaction as the
//! loop's spend, so a process killed at any point loses neither a recorded outcome nor the
//! period's spend: at the next start, runs still `running` are recorded `interrupted` and charged
//! their per-run cost limit (the most they could have spent), and the loop continues its period.
//! The same file keeps approval requests ([`ApprovalRecord`]), so that none is forgotten in a crash.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRecord;
use crate::breaker::BreakerState;

const LOOPS: TableDefinition<&str, &[u8]> = TableDefinition::new("loops");
const RUNS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("runs");
const APPROVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("approvals");
/// Tasks submitted to `baton serve`, by id (JSON records the service defines).
const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
/// Named records of the service (its budget's periods), as JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A failure of the state store, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// What a loop keeps across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopState {
    /// When the current 24-hour period began (Unix milliseconds).
    pub day_started_ms: u64,
    /// Spent in it, in nano-dollars.
    pub day_spent: u64,
    /// When the current hour began (Unix milliseconds).
    pub hour_started_ms: u64,
    /// Spent in it, in nano-dollars.
    pub hour_spent: u64,
    /// Runs started so far (the last run's number).
    pub runs: u64,
    /// The breaker, when it is not closed: its state and when it opened (Unix milliseconds).
    pub breaker: Option<(BreakerState, u64)>,
}

/// One run's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `running` until it ends; then its outcome, or `interrupted` when the process died first.
    pub outcome: String,
    /// What it spent (for an interrupted run: what it is charged, its cost limit), nano-dollars.
    pub cost_nanousd: u64,
    /// Its per-run cost limit, if any.
    pub limit_nanousd: Option<u64>,
    /// When it started (Unix milliseconds).
    pub started_ms: u64,
    /// The interrupted run this one takes up again (`on_interrupted: resume`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes: Option<u64>,
    /// Its root task's id (the `root` of its audit records and of the approvals it asked for);
    /// 0 in records written before it was kept.
    #[serde(default)]
    pub task: u64,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The state file of standing loops.
#[derive(Debug)]
pub struct LoopStore {
    db: Database,
    path: PathBuf,
}

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

thread_local! {
    /// Set while opening a state file: a panic inside redb is then reported as damage, quietly.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics marked [`QUIET`], and otherwise
/// does what the previous hook did.
fn quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

impl StoreError {
    fn damaged(path: &Path, what: impl Into<String>) -> StoreError {
        StoreError {
            path: path.to_path_buf(),
            source: what.into().into(),
        }
    }
}

impl LoopStore {
    /// Opens (or creates) the state file. A file that exists must be a whole state file: an
    /// empty one is damage, never a fresh start (that would silently forget the period's spend),
    /// and a truncated or overwritten one is a clear error naming the file, never a panic.
    ///
    /// # Errors
    /// When the file is damaged, is not a state file, is open in another process, or cannot be
    /// read or created.
    pub fn open(path: impl AsRef<Path>) -> Result<LoopStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        const ASIDE: &str = "move it aside to start afresh (the loops' spend, runs and approvals it held are then forgotten), or restore it from a backup";
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() => {
                return Err(StoreError::damaged(&path, "is not a regular file"));
            }
            Ok(m) if m.len() == 0 => {
                return Err(StoreError::damaged(
                    &path,
                    format!(
                        "is empty (0 bytes): a state file is never empty, so it was truncated or damaged; {ASIDE}"
                    ),
                ));
            }
            Ok(_) => {
                let mut head = [0u8; REDB_MAGIC.len()];
                let read = std::fs::File::open(&path)
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                    .is_ok();
                if !read || head != REDB_MAGIC {
                    return Err(StoreError::damaged(
                        &path,
                        format!("is not a Baton state file (or its header is damaged); {ASIDE}"),
                    ));
                }
            }
            Err(_) => {}
        }
        quiet_hook();
        QUIET.with(|q| q.set(true));
        let opened = std::panic::catch_unwind(|| Database::create(&path));
        QUIET.with(|q| q.set(false));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StoreError::damaged(
                    &path,
                    "is open in another process (a running `baton run --state`): one process at a time uses a state file",
                ));
            }
            Ok(Err(e)) => {
                return Err(StoreError {
                    path: path.clone(),
                    source: Box::new(e),
                });
            }
            Err(_) => {
                return Err(StoreError::damaged(
                    &path,
                    format!(
                        "is damaged (truncated or overwritten: its database cannot be read); {ASIDE}"
                    ),
                ));
            }
        };
        Ok(LoopStore { db, path })
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn json_err(&self, e: serde_json::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source: Box::new(e),
        }
    }

    /// The loop's saved state, if any.
    pub fn load(&self, schedule: &str) -> Result<Option<LoopState>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(LOOPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get(schedule).map_err(|e| self.err(e))? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| self.json_err(e)),
            None => Ok(None),
        }
    }

    /// The loops the file holds state for.
    pub fn schedules(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(LOOPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Every recorded run of the loop, by number.
    pub fn runs(&self, schedule: &str) -> Result<Vec<(u64, RunRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(RUNS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in table
            .range((schedule, 0)..=(schedule, u64::MAX))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let rec: RunRecord = serde_json::from_slice(v.value()).map_err(|e| self.json_err(e))?;
            out.push((k.value().1, rec));
        }
        Ok(out)
    }

    /// Every approval request recorded, by id.
    pub fn approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(APPROVALS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.json_err(e))?);
        }
        Ok(out)
    }

    /// Writes one approval request's record (committed before the request is shown to anyone).
    pub fn save_approval(&self, record: &ApprovalRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(APPROVALS).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(record).map_err(|e| self.json_err(e))?;
            t.insert(record.id, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Writes one served task's record (any serde type; `baton serve` defines it).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save_task<T: serde::Serialize>(&self, id: u64, record: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.json_err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(TASKS).map_err(|e| self.err(e))?;
            t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// One served task's record, if written.
    ///
    /// # Errors
    /// When the file cannot be read, or the record is not a `T`.
    pub fn task<T: serde::de::DeserializeOwned>(&self, id: u64) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(TASKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get(id).map_err(|e| self.err(e))? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| self.json_err(e)),
            None => Ok(None),
        }
    }

    /// Every served task's record, by id.
    ///
    /// # Errors
    /// When the file cannot be read, or a record is not a `T`.
    pub fn tasks<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(TASKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((
                k.value(),
                serde_json::from_slice(v.value()).map_err(|e| self.json_err(e))?,
            ));
        }
        Ok(out)
    }

    /// Writes a named record (any serde type).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save_meta<T: serde::Serialize>(&self, key: &str, record: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.json_err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(META).map_err(|e| self.err(e))?;
            t.insert(key, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// A named record, if written.
    ///
    /// # Errors
    /// When the file cannot be read, or the record is not a `T`.
    pub fn load_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match table.get(key).map_err(|e| self.err(e))? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| self.json_err(e)),
            None => Ok(None),
        }
    }

    /// Writes the loop's state and, if given, one run's record, in one transaction.
    pub fn save(
        &self,
        schedule: &str,
        state: &LoopState,
        run: Option<(u64, &RunRecord)>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut loops = tx.open_table(LOOPS).map_err(|e| self.err(e))?;
            let bytes = serde_json::to_vec(state).map_err(|e| self.json_err(e))?;
            loops
                .insert(schedule, bytes.as_slice())
                .map_err(|e| self.err(e))?;
            if let Some((n, rec)) = run {
                let mut runs = tx.open_table(RUNS).map_err(|e| self.err(e))?;
                let bytes = serde_json::to_vec(rec).map_err(|e| self.json_err(e))?;
                runs.insert((schedule, n), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_runs_survive_reopening() {
        let path = std::env::temp_dir().join(format!("baton-store-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let state = LoopState {
            day_started_ms: 1,
            day_spent: 42,
            runs: 2,
            breaker: Some((BreakerState::Open, 7)),
            ..LoopState::default()
        };
        let rec = RunRecord {
            task: 0,
            outcome: "completed".into(),
            cost_nanousd: 21,
            limit_nanousd: None,
            started_ms: 5,
            resumes: Some(1),
        };
        {
            let store = LoopStore::open(&path).expect("opens");
            assert_eq!(store.load("a").expect("reads"), None);
            store.save("a", &state, Some((2, &rec))).expect("writes");
        }
        let store = LoopStore::open(&path).expect("reopens");
        assert_eq!(store.load("a").expect("reads"), Some(state));
        assert_eq!(store.runs("a").expect("reads"), [(2, rec)]);
        assert!(store.runs("b").expect("reads").is_empty());
        let _ = std::fs::remove_file(&path);
    }

    /// The attack: a state file truncated, emptied or overwritten. Each is a clear error naming
    /// the file (never a panic, never a silent reset of the period's spend).
    #[test]
    fn a_damaged_state_file_is_an_error_never_a_panic_or_a_reset() {
        let path =
            std::env::temp_dir().join(format!("baton-store-damage-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = LoopStore::open(&path).expect("created");
        let state = LoopState {
            day_spent: 990_000_000,
            ..LoopState::default()
        };
        store.save("triage", &state, None).expect("saved");
        drop(store);
        let whole = std::fs::read(&path).expect("read");
        let broken = |bytes: &[u8]| {
            std::fs::write(&path, bytes).expect("write");
            LoopStore::open(&path).map(|s| s.load("triage").map(|l| l.map(|l| l.day_spent)))
        };
        // Emptied: not a new file.
        let e = broken(&[]).expect_err("empty");
        assert!(e.to_string().contains("is empty (0 bytes)"), "{e}");
        // Random bytes.
        let e = broken(&[0x5a; 4096]).expect_err("not redb");
        assert!(e.to_string().contains("is not a Baton state file"), "{e}");
        // Truncated at many lengths: an error each time, or (when redb can still read it) the
        // spend as saved — never a panic, never a silent zero.
        for cut in [16, 100, 512, 1024, 4096, whole.len() / 2, whole.len() - 1] {
            match broken(&whole[..cut.min(whole.len())]) {
                Err(e) => assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
                Ok(Err(e)) => assert!(!e.to_string().is_empty()),
                Ok(Ok(spent)) => assert_ne!(spent, Some(0), "cut at {cut}: silently reset"),
            }
        }
        // Magic bytes, then garbage.
        let mut forged = whole[..9].to_vec();
        forged.extend_from_slice(&[0xff; 8192]);
        assert!(broken(&forged).is_err());
        std::fs::write(&path, &whole).expect("restore");
        assert_eq!(
            LoopStore::open(&path)
                .expect("whole")
                .load("triage")
                .expect("read")
                .map(|l| l.day_spent),
            Some(990_000_000)
        );
        let _ = std::fs::remove_file(&path);
    }
}
