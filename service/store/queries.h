#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace floodgate::store {

/// The SQL dialects of the stores; they differ in how a query names its parameters.
enum class SqlDialect { kSqlite, kPostgres };

/// The queries both stores run (their texts are in queries.cpp, written once).
///
/// Queries only one store runs (SQLite's per-row item writes, PostgreSQL's COPY, unnest update
/// and ON CONFLICT clause) stay in that store. The columns of the batch and item reads are in
/// the order each store's read_batch / read_item expects.
enum class Query {
  kInsertBatch,         // $1..$10: id, spec, state, total, created/updated/finished, version,
                        // idempotency key, submitted_by, $11 sealed (0/1)
  kBatchByKey,          // $1 idempotency key -> id
  kUpdateBatch,         // $1 id; $2 state, $3 updated_at, $4 finished_at, $5 version, $6 spec
                        // (NULL keeps it)
  kGetBatch,            // $1 id
  kListBatches,         // $1 after seq, $2 limit (SQLite: negative, PostgreSQL: NULL is none)
  kListBatchesInState,  // the same, $3 state
  kUnfinishedBatches,   // the batches in a state that is not final
  kLoadItems,           // $1 batch id
  kLoadItemsWithSpec,   // $1 batch id; spec is the 8th column
  kListItems,           // $1 batch id, $2 after index, $3 limit
  kListItemsInState,    // the same, $4 state
  kChunkByKey,          // $1 batch seq, $2 chunk key -> first_index, count, body_hash
  kGrowTotal,           // $1 batch seq, $2 runs appended
  kSeal,                // $1 batch id
  kCountItems,          // $1 batch id -> (state, count) rows
  kSkipPendingFrom,     // $1 batch id, $2 first index: its PENDING items from there SKIPPED
  kPendingPage,         // $1 batch id, $2 after index, $3 before index, $4 limit; spec 8th
};
inline constexpr size_t kQueryCount = static_cast<size_t>(Query::kPendingPage) + 1;

/// The text of a query in a dialect. Written with PostgreSQL's `$n`; SQLite's copy, made once
/// on first use, has `?n` (SQLite would take `$1` for a named parameter and number it by first
/// appearance, not by its digits).
std::string_view query_text(SqlDialect dialect, Query query);

/// `text` with each `$n` placeholder written as SQLite's `?n` (the texts hold no other `$`).
std::string with_sqlite_placeholders(std::string_view text);

}  // namespace floodgate::store
