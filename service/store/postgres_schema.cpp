#include "store/postgres_schema.h"

#include <array>
#include <string>

#include "store/pg_connection.h"
#include "store/store.h"

namespace floodgate::store {
namespace {

// Append new versions; never edit one that has shipped. The tables mirror the SQLite store's
// (states stored by name, times in Unix milliseconds, items keyed by their batch's seq), except
// that items.batch_seq has no foreign key: its per-row check doubled the time of inserting a
// 100k-item batch (7.8 s against 3.7 s for INSERT ... SELECT of 100k rows, measured side by
// side), and items are only ever written in the transaction that inserts their batch.
constexpr std::array<PgMigration, kPostgresSchemaVersion> kMigrations = {{
    {1, "batches and items", R"sql(
CREATE TABLE batches (
  seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id               TEXT   NOT NULL UNIQUE,
  spec             TEXT   NOT NULL,
  state            TEXT   NOT NULL,
  total            BIGINT NOT NULL,
  created_at       BIGINT NOT NULL,
  updated_at       BIGINT NOT NULL,
  finished_at      BIGINT NOT NULL DEFAULT 0,
  version          BIGINT NOT NULL DEFAULT 0,
  idempotency_key  TEXT   UNIQUE,
  submitted_by     TEXT   NOT NULL DEFAULT '',
  owner_id         TEXT,
  lease_expires_at BIGINT
);
COMMENT ON COLUMN batches.owner_id IS
  'Reserved for work sharing between replicas (issue 16): the replica holding the batch. Not used yet.';
COMMENT ON COLUMN batches.lease_expires_at IS
  'Reserved for work sharing between replicas (issue 16): Unix ms when the owner''s lease ends. Not used yet.';
CREATE INDEX batches_by_state ON batches (state, seq);
CREATE TABLE items (
  batch_seq       BIGINT  NOT NULL,
  idx             BIGINT  NOT NULL,
  state           TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  flow_run_id     TEXT    NOT NULL DEFAULT '',
  flow_run_state  TEXT    NOT NULL DEFAULT '',
  last_error      TEXT    NOT NULL DEFAULT '',
  detail          TEXT    NOT NULL DEFAULT '',
  spec            TEXT    NOT NULL,
  PRIMARY KEY (batch_seq, idx)
);
CREATE INDEX items_by_state ON items (batch_seq, state, idx);
)sql"},
    // Chunked appends, as SQLite's version 4: batches.sealed (0 while runs may still be
    // appended) and the Idempotency-Key of each appended chunk.
    {2, "chunked appends: batches.sealed, batch_chunks", R"sql(
ALTER TABLE batches ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1 CHECK (sealed IN (0, 1));
CREATE TABLE batch_chunks (
  batch_seq       BIGINT NOT NULL REFERENCES batches (seq),
  idempotency_key TEXT   NOT NULL,
  first_index     BIGINT NOT NULL,
  count           BIGINT NOT NULL,
  body_hash       TEXT   NOT NULL,
  created_at      BIGINT NOT NULL,
  PRIMARY KEY (batch_seq, idempotency_key)
);
)sql"},
    {3, "replicas and leases", R"sql(
CREATE TABLE replicas (
  id            TEXT   PRIMARY KEY,
  url           TEXT   NOT NULL DEFAULT '',
  started_at    BIGINT NOT NULL,
  heartbeat_at  BIGINT NOT NULL,
  demand        BIGINT NOT NULL DEFAULT 0,
  share         DOUBLE PRECISION NOT NULL DEFAULT 0,
  limit_ratio   DOUBLE PRECISION NOT NULL DEFAULT 1
);
COMMENT ON TABLE replicas IS
  'Live floodgated replicas: each upserts its row every heartbeat (times are the server''s clock, Unix ms).';
COMMENT ON COLUMN replicas.demand IS 'Unfinished batches the replica holds: its claim on the budget.';
COMMENT ON COLUMN replicas.share IS
  'Fraction of the global rate and in-flight ceiling the replica uses; the shares of live replicas sum to at most 1.';
COMMENT ON COLUMN replicas.limit_ratio IS
  'The replica''s adaptive limit over its maximum; every replica applies the smallest live one.';
COMMENT ON COLUMN batches.owner_id IS 'The replica holding the batch (replicas.id), NULL when none.';
COMMENT ON COLUMN batches.lease_expires_at IS
  'Server clock (Unix ms) when the owner''s lease ends unless renewed; another replica may then claim it.';
CREATE INDEX batches_unfinished_by_owner ON batches (owner_id, lease_expires_at)
  WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED');
)sql"},
    {4, "followed children of ended batches", R"sql(
ALTER TABLE batches ADD COLUMN followed BOOLEAN NOT NULL DEFAULT false;
COMMENT ON COLUMN batches.followed IS
  'The batch ended with children still running that it follows: it keeps needing an owner.';
CREATE INDEX batches_followed_by_owner ON batches (owner_id, lease_expires_at) WHERE followed;
)sql"},
}};

constexpr bool versions_are_consecutive() {
  for (size_t i = 0; i < kMigrations.size(); ++i) {
    if (kMigrations[i].version != static_cast<int>(i) + 1) return false;
  }
  return true;
}
static_assert(versions_are_consecutive(), "migration i must have version i + 1");

// The lock is keyed by the schema the tables live in, so two installations in two schemas
// of one database do not wait for each other.
constexpr std::string_view kMigrationLock =
    "SELECT pg_advisory_xact_lock(hashtextextended('floodgate.migrate:' || "
    "coalesce(current_schema(), ''), 0))";

constexpr std::string_view kCreateLedger =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version    INTEGER     PRIMARY KEY,"
    " name       TEXT        NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";
constexpr std::string_view kRecord =
    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";

int current_version(PgConnection& conn) {
  const PgResult r = conn.exec("SELECT coalesce(max(version), 0) FROM schema_migrations",
                               "reading the schema version");
  return static_cast<int>(r.int64(0, 0));
}

}  // namespace

void migrate_postgres(PgConnection& conn) {
  const std::string_view what = "migrating the schema";
  PgTransaction tx(conn, what);
  conn.exec(kMigrationLock, what);
  const PgResult schema =
      conn.exec("SELECT current_schema() IS NOT NULL, coalesce(current_schema(), '')", what);
  if (schema.text(0, 0) != "t") {
    throw StoreError(
        "no schema to create tables in (does the search_path name an existing "
        "schema?)");
  }
  // What of ours is already there, in the schema the tables go to.
  const PgResult tables = conn.exec(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
      "AND table_name IN ('schema_migrations', 'batches', 'items')",
      what);
  bool has_ledger = false;
  for (int row = 0; row < tables.rows(); ++row) {
    if (tables.text(row, 0) == "schema_migrations") has_ledger = true;
  }
  if (!has_ledger && tables.rows() > 0) {
    throw StoreError("schema '" + schema.text(0, 1) +
                     "' already holds a table named batches or items that floodgate did not "
                     "create; give floodgate its own database or schema");
  }
  if (has_ledger) {
    const PgResult columns = conn.exec(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'schema_migrations' AND column_name IN ('version', 'name', "
        "'applied_at')",
        what);
    if (columns.int64(0, 0) != 3) {
      throw StoreError("schema '" + schema.text(0, 1) +
                       "' holds another program's schema_migrations table; give floodgate its "
                       "own database or schema");
    }
  } else {
    conn.exec(kCreateLedger, what);
  }

  const int version = current_version(conn);
  if (version > kPostgresSchemaVersion) {
    throw StoreError("its schema version " + std::to_string(version) +
                     " is newer than this floodgate supports (" +
                     std::to_string(kPostgresSchemaVersion) + "); run a newer floodgate");
  }
  for (const PgMigration& m : kMigrations) {
    if (m.version <= version) continue;
    const std::string step = "upgrading the schema to version " + std::to_string(m.version);
    conn.exec(m.sql, step);
    conn.run(kRecord, PgParams().add(int64_t{m.version}).add(m.name), step);
  }
  tx.commit();
}

int postgres_schema_version(PgConnection& conn) { return current_version(conn); }

}  // namespace floodgate::store
