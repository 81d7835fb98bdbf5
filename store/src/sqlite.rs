//! The SQLite database of a swing-store: streamStore's `streamItem` table, the
//! store's recorded design, and (in the `unified` design) kvStore's table.

use crate::config::{Design, JournalMode, Mutant, StoreConfig, Synchronous};
use crate::error::{Error, Result};
use rusqlite::types::{Type, ValueRef};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;

/// The SQLite file inside a store directory (one name for every design, so that
/// opening a store with another design is detected rather than creating a new one).
pub(crate) const SQLITE_FILE: &str = "swingstore.sqlite";

const SCHEMA: &str = "
    CREATE TABLE storeMeta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE streamItem (
        streamName TEXT NOT NULL,
        position INTEGER NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (streamName, position)
    );
    CREATE TABLE kvStore (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The smallest SQLite database file: one page of the smallest page size.
const MIN_DATABASE_BYTES: u64 = 512;

/// Open (or create) the SQLite database of the store at `path`.
pub(crate) fn open(path: &Path, config: &StoreConfig) -> Result<Connection> {
    let synchronous = match config.mutant {
        Some(Mutant::SqliteSyncOff) => Synchronous::Off,
        _ => config.synchronous,
    };
    let conn = open_connection(path, config.sqlite_vfs.as_deref(), config.journal_mode, synchronous)?;
    check_or_create_schema(&conn, path, config.design).map_err(|e| corrupt_or(path, e))?;
    if matches!(config.journal_mode, JournalMode::Delete | JournalMode::Truncate | JournalMode::Persist) {
        retire_journal(&conn)?;
    }
    Ok(conn)
}

/// With a rollback journal, what the connection reads must be durable before
/// the store builds on it, as with the WAL (see [`open_connection`]). After
/// an I/O error in COMMIT (the journal's truncation, zeroed header or
/// unlink not synced), the database holds the transaction and the journal
/// is empty or gone, but only for now: a power loss brings the journal back,
/// hot, and SQLite rolls back the transaction, and whatever a later block
/// built on it (a block run again writes the same rows, which SQLite does not
/// write again, so nothing retires the old journal). One write transaction
/// at open writes a new journal and retires it durably (docs/findings.md).
fn retire_journal(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT INTO storeMeta VALUES ('opens', '1')
             ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
         COMMIT;",
    )?;
    Ok(())
}

/// Open (or create) a SQLite database at `path` with these settings, its
/// WAL (in WAL mode) checkpointed: what the connection reads is durable.
pub(crate) fn open_connection(
    path: &Path,
    vfs: Option<&str>,
    journal_mode: JournalMode,
    synchronous: Synchronous,
) -> Result<Connection> {
    check_file_size(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => Connection::open_with_flags(path, flags)?,
    };
    apply_settings(&conn, journal_mode, synchronous).map_err(|e| corrupt_or(path, e))?;
    if journal_mode == JournalMode::Wal {
        // What this connection reads must be durable before the store builds
        // on it. After an I/O error in COMMIT, the WAL can hold the failed
        // transaction's commit frame, written but never synced; a new
        // connection reads it as committed, and a later transaction that
        // writes the same rows again changes nothing, so its COMMIT syncs
        // nothing. A power loss would then take back rows a later block's
        // acknowledged commit relies on (docs/findings.md).
        checkpoint(&conn)?;
    }
    Ok(conn)
}

/// Checkpoint the WAL in full: sync it, copy its frames into the database,
/// sync that. Every frame the connection sees is then durable.
pub(crate) fn checkpoint(conn: &Connection) -> Result<()> {
    let busy: i64 = pragma_value(conn, "PRAGMA wal_checkpoint(FULL)")?;
    if busy != 0 {
        return Err(Error::Invariant("the WAL checkpoint at open was blocked: another connection is open".into()));
    }
    Ok(())
}

/// SQLite takes a file shorter than its header for an empty database and would
/// overwrite it: a non-empty file too short to be a database is corrupt.
fn check_file_size(path: &Path) -> Result<()> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let len = metadata.len();
    if len > 0 && len < MIN_DATABASE_BYTES {
        let reason = format!("{len} bytes: too short to be a SQLite database");
        return Err(Error::Corrupt { path: path.to_path_buf(), reason });
    }
    Ok(())
}

/// A SQLite error that says "this is not a database" becomes `Corrupt`.
fn corrupt_or(path: &Path, error: Error) -> Error {
    match &error {
        Error::Sqlite(rusqlite::Error::SqliteFailure(code, _))
            if matches!(code.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
        {
            Error::Corrupt { path: path.to_path_buf(), reason: error.to_string() }
        }
        _ => error,
    }
}

fn apply_settings(conn: &Connection, journal_mode: JournalMode, synchronous: Synchronous) -> Result<()> {
    // Query planner stability: a statement is planned once. Without it, SQLite
    // (built with STAT4) re-prepares a range query at every new binding of its
    // bounds, which made transcript reads cost a full parse each. Results and
    // file contents are the same either way.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Only the store checkpoints ([`checkpoint`]), where a failure stops it.
    // SQLite's own checkpoints (automatic after a commit, and at close) ignore
    // or outlive an fsync error and run again later; a later one's sync then
    // "succeeds" and copies WAL frames whose unsynced bytes the failed sync
    // lost into the database (docs/findings.md).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint=0")?;
    conn.execute_batch(&format!("PRAGMA synchronous={}", synchronous.name()))?;
    let wanted = journal_mode.name();
    let answered: String = pragma_value(conn, &format!("PRAGMA journal_mode={wanted}"))?;
    // SQLite answers before the statement's own commit (changing to or from
    // WAL writes the database header): asked again, it says what it is in.
    let got: String = pragma_value(conn, "PRAGMA journal_mode")?;
    if !got.eq_ignore_ascii_case(wanted) {
        // E.g. a VFS without shared memory silently keeps a rollback journal.
        return Err(Error::Misuse(format!("journal_mode={wanted} requested, SQLite answered {answered}, is in {got}")));
    }
    Ok(())
}

/// The first column of the first row of a PRAGMA, after running the
/// statement to its end. A PRAGMA that writes (journal_mode into or out of
/// WAL) commits when its last step runs: reading only the first row (as
/// `query_row` does) returns before that, and loses the commit's error.
pub(crate) fn pragma_value<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Result<T> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let value = match rows.next()? {
        Some(row) => row.get(0)?,
        None => return Err(Error::Invariant(format!("`{sql}` returned no row"))),
    };
    while rows.next()?.is_some() {}
    Ok(value)
}

fn check_or_create_schema(conn: &Connection, path: &Path, design: Design) -> Result<()> {
    let tables: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if tables.is_empty() {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} INSERT INTO storeMeta VALUES ('design', '{}'); COMMIT;",
            design.name()
        ))?;
        return Ok(());
    }
    if !tables.iter().any(|t| t == "storeMeta") {
        let reason = format!("SQLite database without storeMeta (tables: {})", tables.join(", "));
        return Err(Error::Foreign { path: path.to_path_buf(), reason });
    }
    let found: Option<String> =
        conn.query_row("SELECT value FROM storeMeta WHERE key = 'design'", [], |row| row.get(0)).optional()?;
    let found =
        found.ok_or_else(|| Error::Foreign { path: path.to_path_buf(), reason: "no design recorded".into() })?;
    if found != design.name() {
        return Err(Error::DesignMismatch { path: path.to_path_buf(), found, expected: design.name().into() });
    }
    Ok(())
}

/// Record `height` as the block this transaction commits.
pub(crate) fn set_height(conn: &Connection, height: u64) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO storeMeta (key, value) VALUES ('height', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    stmt.execute(params![height.to_string()])?;
    Ok(())
}

/// The block height the last commit recorded.
pub(crate) fn height(conn: &Connection) -> Result<Option<u64>> {
    let value: Option<String> =
        conn.query_row("SELECT value FROM storeMeta WHERE key = 'height'", [], |row| row.get(0)).optional()?;
    match value {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| Error::Invariant(format!("storeMeta height `{text}`"))),
    }
}

pub(crate) fn write_item(conn: &Connection, stream: &str, position: u64, item: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO streamItem (streamName, position, item) VALUES (?1, ?2, ?3)
         ON CONFLICT (streamName, position) DO UPDATE SET item = excluded.item",
    )?;
    stmt.execute(params![stream, position as i64, item])?;
    Ok(())
}

/// Items of `stream` in `[start, end)`, in position order, with their positions.
pub(crate) fn read_items(conn: &Connection, stream: &str, start: u64, end: u64) -> Result<Vec<(u64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT position, item FROM streamItem
         WHERE streamName = ?1 AND position >= ?2 AND position < ?3 ORDER BY position",
    )?;
    let rows = stmt.query_map(params![stream, start as i64, end as i64], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// [`read_items`] without copying: `visit` sees each item in place. A row
/// that does not convert fails with the error `read_items` would return.
pub(crate) fn visit_items(
    conn: &Connection,
    stream: &str,
    start: u64,
    end: u64,
    mut visit: impl FnMut(u64, &str) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT position, item FROM streamItem
         WHERE streamName = ?1 AND position >= ?2 AND position < ?3 ORDER BY position",
    )?;
    let mut rows = stmt.query(params![stream, start as i64, end as i64])?;
    while let Some(row) = rows.next()? {
        let position = row.get::<_, i64>(0)? as u64;
        let item = match row.get_ref(1)? {
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?,
            _ => {
                // Not text: the conversion error of `read_items`, exactly.
                row.get::<_, String>(1)?;
                return Err(Error::Invariant("a non-text transcript item converted to text".into()));
            }
        };
        visit(position, item)?;
    }
    Ok(())
}

pub(crate) fn delete_stream(conn: &Connection, stream: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM streamItem WHERE streamName = ?1")?.execute(params![stream])?;
    Ok(())
}

pub(crate) fn kv_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT value FROM kvStore WHERE key = ?1")?;
    Ok(stmt.query_row(params![key], |row| row.get(0)).optional()?)
}

pub(crate) fn kv_scan_prefix(conn: &Connection, prefix: &str) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM kvStore WHERE substr(key, 1, ?2) = ?1 ORDER BY key")?;
    let rows = stmt.query_map(params![prefix, prefix.chars().count() as i64], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn kv_apply(conn: &Connection, writes: &BTreeMap<String, Option<String>>) -> Result<()> {
    let mut put = conn.prepare_cached(
        "INSERT INTO kvStore (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM kvStore WHERE key = ?1")?;
    for (key, value) in writes {
        match value {
            Some(value) => put.execute(params![key, value])?,
            None => delete.execute(params![key])?,
        };
    }
    Ok(())
}
