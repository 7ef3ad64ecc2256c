#include "store/queries.h"

#include <array>
#include <cctype>

#include "core/states.h"

namespace floodgate::store {
namespace {

using core::BatchState;

#define FLOODGATE_BATCH_COLUMNS                                                        \
  "SELECT seq, id, spec, state, total, created_at, updated_at, finished_at, version, " \
  "idempotency_key, submitted_by, sealed FROM batches "
#define FLOODGATE_ITEM_COLUMNS \
  "SELECT idx, state, attempts, flow_run_id, flow_run_state, last_error, detail"
#define FLOODGATE_ITEMS_OF_BATCH \
  " FROM items WHERE batch_seq = (SELECT seq FROM batches WHERE id = $1)"

// A switch, so that a query added to the enum without a text does not compile (-Wswitch).
constexpr std::string_view postgres_text(Query query) {
  switch (query) {
    case Query::kInsertBatch:
      return "INSERT INTO batches (id, spec, state, total, created_at, updated_at, finished_at, "
             "version, idempotency_key, submitted_by, sealed) "
             "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    case Query::kBatchByKey:
      return "SELECT id FROM batches WHERE idempotency_key = $1";
    case Query::kUpdateBatch:
      return "UPDATE batches SET state = $2, updated_at = $3, finished_at = $4, version = $5, "
             "spec = coalesce($6, spec) WHERE id = $1";
    case Query::kGetBatch:
      return FLOODGATE_BATCH_COLUMNS "WHERE id = $1";
    case Query::kListBatches:
      return FLOODGATE_BATCH_COLUMNS "WHERE seq > $1 ORDER BY seq LIMIT $2";
    case Query::kListBatchesInState:
      return FLOODGATE_BATCH_COLUMNS "WHERE state = $3 AND seq > $1 ORDER BY seq LIMIT $2";
    case Query::kUnfinishedBatches:
      return FLOODGATE_BATCH_COLUMNS "WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED') ORDER BY seq";
    case Query::kLoadItems:
      return FLOODGATE_ITEM_COLUMNS FLOODGATE_ITEMS_OF_BATCH " ORDER BY idx";
    case Query::kLoadItemsWithSpec:
      return FLOODGATE_ITEM_COLUMNS ", spec" FLOODGATE_ITEMS_OF_BATCH " ORDER BY idx";
    case Query::kListItems:
      return FLOODGATE_ITEM_COLUMNS FLOODGATE_ITEMS_OF_BATCH " AND idx > $2 ORDER BY idx LIMIT $3";
    case Query::kListItemsInState:
      return FLOODGATE_ITEM_COLUMNS FLOODGATE_ITEMS_OF_BATCH
          " AND state = $4 AND idx > $2 ORDER BY idx LIMIT $3";
    case Query::kChunkByKey:
      return "SELECT first_index, count, body_hash FROM batch_chunks WHERE batch_seq = $1 AND "
             "idempotency_key = $2";
    case Query::kGrowTotal:
      return "UPDATE batches SET total = total + $2 WHERE seq = $1";
    case Query::kSeal:
      return "UPDATE batches SET sealed = 1 WHERE id = $1";
    case Query::kCountItems:
      // Counted from the items_by_state index alone, without touching the rows.
      return "SELECT state, count(*)" FLOODGATE_ITEMS_OF_BATCH " GROUP BY state";
    case Query::kSkipPendingFrom:
      return "UPDATE items SET state = 'SKIPPED' WHERE batch_seq = (SELECT seq FROM batches "
             "WHERE id = $1) AND state = 'PENDING' AND idx >= $2";
    case Query::kPendingPage:
      // On the items_by_state index (batch_seq, state, idx).
      return FLOODGATE_ITEM_COLUMNS
          ", spec" FLOODGATE_ITEMS_OF_BATCH
          " AND state = 'PENDING' AND idx > $2 AND idx < $3 ORDER BY idx LIMIT $4";
  }
  return {};
}

#undef FLOODGATE_ITEMS_OF_BATCH
#undef FLOODGATE_ITEM_COLUMNS
#undef FLOODGATE_BATCH_COLUMNS

constexpr bool unfinished_states_match_core() {
  for (int i = 0; i < core::kBatchStateCount; ++i) {
    const auto s = static_cast<BatchState>(i);
    const bool listed =
        s == BatchState::kQueued || s == BatchState::kRunning || s == BatchState::kPaused;
    if (listed == core::is_final(s)) return false;
  }
  return true;
}
static_assert(unfinished_states_match_core(),
              "kUnfinishedBatches must list exactly the batch states that are not final");

std::array<std::string, kQueryCount> sqlite_texts() {
  std::array<std::string, kQueryCount> texts;
  for (size_t i = 0; i < kQueryCount; ++i) {
    texts[i] = with_sqlite_placeholders(postgres_text(static_cast<Query>(i)));
  }
  return texts;
}

}  // namespace

std::string with_sqlite_placeholders(std::string_view text) {
  std::string out(text);
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && std::isdigit(static_cast<unsigned char>(out[i + 1]))) out[i] = '?';
  }
  return out;
}

std::string_view query_text(SqlDialect dialect, Query query) {
  if (dialect == SqlDialect::kPostgres) return postgres_text(query);
  // Built once, on the first SQLite query; a function-local static is thread-safe.
  static const std::array<std::string, kQueryCount> sqlite = sqlite_texts();
  return sqlite[static_cast<size_t>(query)];
}

}  // namespace floodgate::store
