//! What opening a store that is not the expected one, and misusing the kernel,
//! report.

mod common;

use common::*;
use std::path::Path;
use store::{Design, Error, Kernel, KernelConfig, StoreConfig, SwingStore};

fn open(dir: &Path, design: Design) -> store::Result<SwingStore> {
    SwingStore::open(dir, StoreConfig::new(design))
}

/// Bytes that are neither a SQLite nor an LMDB file (a fixed LCG stream).
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 4232;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

#[test]
fn opening_with_another_design_is_a_mismatch() {
    for created in Design::ALL {
        for opened in Design::ALL.into_iter().filter(|d| *d != created) {
            let dir = tempdir();
            let mut s = open(dir.path(), created).unwrap();
            s.kv_set("k", "v").unwrap();
            s.commit().unwrap();
            s.close();
            match open(dir.path(), opened) {
                Err(Error::DesignMismatch { path, found, expected }) => {
                    assert_eq!(path, Path::new("swingstore.sqlite"));
                    assert_eq!((found.as_str(), expected.as_str()), (created.name(), opened.name()));
                }
                Err(other) => panic!("{created} opened as {opened}: {other}"),
                Ok(_) => panic!("{created} opened as {opened}: no error"),
            }
            // The store is still intact for its own design.
            let s = open(dir.path(), created).unwrap();
            assert_eq!(s.kv_get("k").unwrap().as_deref(), Some("v"), "{created}");
        }
    }
}

#[test]
fn a_directory_with_a_foreign_file_is_foreign() {
    for design in Design::ALL {
        let dir = tempdir();
        std::fs::write(dir.path().join("notes.txt"), "not a store").unwrap();
        match open(dir.path(), design) {
            Err(Error::Foreign { path, reason }) => {
                assert_eq!(path, Path::new("."));
                assert!(reason.contains("notes.txt"), "{design}: {reason}");
            }
            Err(other) => panic!("{design}: {other}"),
            Ok(_) => panic!("{design}: no error"),
        }
        // Nothing was created next to the foreign file.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["notes.txt"], "{design}");
    }
}

#[test]
fn a_sqlite_database_of_someone_else_is_foreign() {
    for design in Design::ALL {
        let dir = tempdir();
        let conn = rusqlite::Connection::open(dir.path().join("swingstore.sqlite")).unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)").unwrap();
        drop(conn);
        match open(dir.path(), design) {
            Err(Error::Foreign { reason, .. }) => {
                assert!(reason.contains("accounts"), "{design}: {reason}")
            }
            Err(other) => panic!("{design}: {other}"),
            Ok(_) => panic!("{design}: no error"),
        }
    }
}

#[test]
fn a_store_without_a_recorded_design_is_foreign() {
    for design in Design::ALL {
        let dir = tempdir();
        open(dir.path(), design).unwrap().close();
        let conn = rusqlite::Connection::open(dir.path().join("swingstore.sqlite")).unwrap();
        conn.execute_batch("DELETE FROM storeMeta").unwrap();
        drop(conn);
        match open(dir.path(), design) {
            Err(Error::Foreign { reason, .. }) => {
                assert_eq!(reason, "no design recorded", "{design}")
            }
            Err(other) => panic!("{design}: {other}"),
            Ok(_) => panic!("{design}: no error"),
        }
    }
}

#[test]
fn a_garbage_sqlite_file_is_corrupt() {
    for design in Design::ALL {
        // 1 byte included: SQLite's unix VFS reports a 1-byte file as empty
        // (ticket #3260); the store checks the size itself.
        for len in [1, 2, 99, 100, 4096, 100_000] {
            let dir = tempdir();
            let path = dir.path().join("swingstore.sqlite");
            std::fs::write(&path, garbage(len)).unwrap();
            match open(dir.path(), design) {
                Err(Error::Corrupt { path, .. }) => assert_eq!(path, Path::new("swingstore.sqlite"), "{design}"),
                Err(other) => panic!("{design}, {len} bytes: expected Corrupt, got {other}"),
                Ok(_) => panic!("{design}, {len} bytes: no error"),
            }
            // The garbage is left as it was.
            assert_eq!(std::fs::read(&path).unwrap(), garbage(len), "{design}");
        }
    }
}

#[test]
fn a_sqlite_file_with_a_valid_header_and_garbage_is_corrupt() {
    for design in Design::ALL {
        let dir = tempdir();
        open(dir.path(), design).unwrap().close();
        // The store checkpoints its WAL at open: the database file holds
        // everything, and without the WAL it is all SQLite has.
        let _ = std::fs::remove_file(dir.path().join("swingstore.sqlite-wal"));
        let _ = std::fs::remove_file(dir.path().join("swingstore.sqlite-shm"));
        let path = dir.path().join("swingstore.sqlite");
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() >= 4096, "{design}: {} bytes", bytes.len());
        // Keep the 100-byte header, overwrite the schema page's b-tree.
        let noise = garbage(bytes.len() - 100);
        bytes[100..].copy_from_slice(&noise);
        std::fs::write(&path, &bytes).unwrap();
        match open(dir.path(), design) {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, Path::new("swingstore.sqlite"), "{design}"),
            Err(other) => panic!("{design}: expected Corrupt, got {other}"),
            Ok(_) => panic!("{design}: no error"),
        }
    }
}

#[test]
fn a_garbage_lmdb_file_is_an_error() {
    for design in Design::ALL.into_iter().filter(|d| d.uses_lmdb()) {
        for with_sqlite in [false, true] {
            let dir = tempdir();
            if with_sqlite {
                open(dir.path(), design).unwrap().close();
            }
            std::fs::create_dir_all(dir.path().join("kv")).unwrap();
            let data = dir.path().join("kv").join("data.mdb");
            std::fs::write(&data, garbage(if with_sqlite { 16384 } else { 100 })).unwrap();
            let result = std::panic::catch_unwind(|| open(dir.path(), design).map(|_| ()));
            match result {
                Ok(Err(Error::Corrupt { path, .. })) => assert_eq!(path, Path::new("kv/data.mdb"), "{design}"),
                Ok(Err(other)) => panic!("{design}: expected Corrupt, got {other}"),
                Ok(Ok(())) => panic!("{design}: a garbage data.mdb opened"),
                Err(_) => panic!("{design}: opening a garbage data.mdb panicked"),
            }
            // The kernel reports it too.
            let config = KernelConfig::default();
            assert!(Kernel::open(dir.path(), StoreConfig::new(design), config).is_err(), "{design}");
        }
    }
}

/// The store creates LMDB's environment whole (in `kv.new`, synced, renamed
/// into place): a data file of zeros is not one a crash of the store leaves,
/// and it is corrupt like any other foreign bytes; a staging directory left by
/// a crash during creation is discarded and the environment made afresh.
#[test]
fn an_lmdb_environment_is_created_whole() {
    for design in Design::ALL.into_iter().filter(|d| d.uses_lmdb()) {
        let dir = tempdir();
        std::fs::create_dir_all(dir.path().join("kv")).unwrap();
        std::fs::write(data_path(dir.path()), vec![0u8; 16384]).unwrap();
        assert!(matches!(open(dir.path(), design), Err(Error::Corrupt { .. })), "{design}: zeros");

        let dir = tempdir();
        std::fs::create_dir_all(dir.path().join("kv.new")).unwrap();
        std::fs::write(dir.path().join("kv.new").join("data.mdb"), garbage(8192)).unwrap();
        let mut store = open(dir.path(), design).unwrap_or_else(|e| panic!("{design}: {e}"));
        store.begin_crank().unwrap();
        store.kv_set("k", "v").unwrap();
        store.commit_crank().unwrap();
        store.commit().unwrap();
        store.close();
        assert!(!dir.path().join("kv.new").exists(), "{design}: the staging directory is gone");
        assert_eq!(open(dir.path(), design).unwrap().kv_get("k").unwrap().as_deref(), Some("v"), "{design}");
    }
}

fn data_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("kv").join("data.mdb")
}

#[test]
fn run_block_with_the_wrong_height_is_misuse() {
    for design in Design::ALL {
        let dir = tempdir();
        let mut k = kernel(dir.path(), design, 2);
        for height in [0, 2] {
            match k.run_block(height, &[create("v1", "counter-v1", 2)]) {
                Err(Error::Misuse(m)) => assert!(m.contains("next block is 1"), "{design}: {m}"),
                other => panic!("{design}: expected Misuse, got {other:?}"),
            }
        }
        // Misuse changes nothing and does not poison the kernel.
        assert!(k.vat_ids().unwrap().is_empty(), "{design}");
        k.run_block(1, &[create("v1", "counter-v1", 2)]).unwrap();
        for height in [1, 3] {
            match k.run_block(height, &[bump("v1", 1)]) {
                Err(Error::Misuse(m)) => assert!(m.contains("next block is 2"), "{design}: {m}"),
                other => panic!("{design}: expected Misuse, got {other:?}"),
            }
        }
        let report = k.run_block(2, &[bump("v1", 1)]).unwrap();
        assert_eq!(report.height, 2);
        assert_eq!(count(&status(&mut k, "v1")), 3, "{design}: the refused blocks ran");
        // Also after a reopen: a committed block is not run again.
        k.close();
        let mut k = kernel(dir.path(), design, 2);
        assert!(matches!(k.run_block(2, &[bump("v1", 1)]), Err(Error::Misuse(_))), "{design}");
        assert_eq!(count(&status(&mut k, "v1")), 3, "{design}");
    }
}

#[test]
fn vat_status_of_an_unknown_vat_is_misuse() {
    let dir = tempdir();
    let mut k = kernel(dir.path(), Design::StartPosition, 2);
    assert!(matches!(k.vat_status("nobody"), Err(Error::Misuse(_))));
    // A message to an unknown vat aborts its crank; the block commits.
    let report = run(&mut k, &[bump("nobody", 1)]);
    assert_eq!((report.cranks, report.aborted_cranks), (1, 1));
}
