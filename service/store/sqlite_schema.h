#pragma once

// The SQLite store's schema: its migrations, in order (see SqliteStore).

#include <array>

namespace floodgate::store {

/// Schema version this build writes (kept in PRAGMA user_version, which decides; each migration
/// also leaves a row in the schema_migrations table, for people and tools).
inline constexpr int kSqliteSchemaVersion = 4;

// kSqliteMigrations[i] takes the schema from version i to version i + 1, inside one transaction
// together with the user_version bump. Append new versions; never edit one that has shipped.
// States are stored by name so the database reads well in the sqlite3 shell. In items, spec
// comes last so that reads without it stop before the row's overflow pages.
inline constexpr std::array<const char*, kSqliteSchemaVersion> kSqliteMigrations = {
    R"sql(
CREATE TABLE batches (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  id              TEXT    NOT NULL UNIQUE,
  spec            TEXT    NOT NULL,
  state           TEXT    NOT NULL,
  total           INTEGER NOT NULL,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  finished_at     INTEGER NOT NULL DEFAULT 0,
  version         INTEGER NOT NULL DEFAULT 0,
  idempotency_key TEXT    UNIQUE
);
CREATE INDEX batches_by_state ON batches (state, seq);
CREATE TABLE items (
  batch_seq       INTEGER NOT NULL REFERENCES batches (seq),
  idx             INTEGER NOT NULL,
  state           TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  flow_run_id     TEXT    NOT NULL DEFAULT '',
  flow_run_state  TEXT    NOT NULL DEFAULT '',
  last_error      TEXT    NOT NULL DEFAULT '',
  detail          TEXT    NOT NULL DEFAULT '',
  spec            TEXT    NOT NULL,
  PRIMARY KEY (batch_seq, idx)
) WITHOUT ROWID;
CREATE INDEX items_by_state ON items (batch_seq, state, idx);
)sql",
    // 2: the name of the API token that submitted each batch ('' for older batches).
    R"sql(
ALTER TABLE batches ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
)sql",
    // 3: a ledger of migrations, as the PostgreSQL store keeps; versions 1 and 2 predate it
    // (applied_at 0: unknown).
    R"sql(
CREATE TABLE schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at INTEGER NOT NULL
);
INSERT INTO schema_migrations (version, name, applied_at) VALUES
  (1, 'batches and items', 0), (2, 'batches.submitted_by', 0);
)sql",
    // 4: chunked appends. batches.sealed: 0 while runs may still be appended (older batches are
    // sealed); batch_chunks: the Idempotency-Key of each appended chunk, so that a chunk sent
    // again appends nothing, with the hash of its runs to tell a repeat from another chunk.
    R"sql(
ALTER TABLE batches ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1 CHECK (sealed IN (0, 1));
CREATE TABLE batch_chunks (
  batch_seq       INTEGER NOT NULL REFERENCES batches (seq),
  idempotency_key TEXT    NOT NULL,
  first_index     INTEGER NOT NULL,
  count           INTEGER NOT NULL,
  body_hash       TEXT    NOT NULL,
  created_at      INTEGER NOT NULL,
  PRIMARY KEY (batch_seq, idempotency_key)
) WITHOUT ROWID;
)sql",
};

// Names of the migrations from version 3 on, recorded in schema_migrations as they run.
inline constexpr std::array<const char*, kSqliteSchemaVersion - 2> kSqliteMigrationNames = {
    "schema_migrations",
    "chunked appends: batches.sealed, batch_chunks",
};

}  // namespace floodgate::store
