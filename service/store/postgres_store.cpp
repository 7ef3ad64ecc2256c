#include "store/postgres_store.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "store/append_rules.h"
#include "store/database_url.h"
#include "store/pg_connection.h"
#include "store/postgres_leases.h"
#include "store/postgres_schema.h"
#include "store/queries.h"

namespace floodgate::store {
namespace {

// The queries the SQLite store runs too are in queries.cpp; these are PostgreSQL's own.
std::string_view sql(Query query) { return query_text(SqlDialect::kPostgres, query); }

// The shared insert, made safe against a concurrent insert of the same key (see insert_batch).
const std::string& insert_batch_or_nothing() {
  static const std::string text = std::string(sql(Query::kInsertBatch)) +
                                  " ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq";
  return text;
}
constexpr std::string_view kCopyItems =
    "COPY items (batch_seq, idx, state, attempts, flow_run_id, flow_run_state, last_error, "
    "detail, spec) FROM STDIN";
// All item updates of one apply() in one statement: one round trip instead of one per item.
constexpr std::string_view kUpdateItems =
    "UPDATE items AS i SET state = u.state, attempts = u.attempts, flow_run_id = u.flow_run_id, "
    "flow_run_state = u.flow_run_state, last_error = u.last_error, detail = u.detail "
    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[], $5::text[], $6::text[], "
    "$7::text[], $8::text[]) AS u (batch_id, idx, state, attempts, flow_run_id, flow_run_state, "
    "last_error, detail) JOIN batches AS b ON b.id = u.batch_id "
    "WHERE i.batch_seq = b.seq AND i.idx = u.idx";
// Under work sharing, a replica writes only the batches it holds: one whose lease another
// replica took has moved on there, and this replica's late writes must not overwrite it.
const std::string& fenced_item_updates() {
  static const std::string text = std::string(kUpdateItems) + " AND b.owner_id = $9";
  return text;
}
const std::string& fenced_batch_update() {
  static const std::string text = std::string(sql(Query::kUpdateBatch)) + " AND owner_id = $7";
  return text;
}
// Only where it changes, so that the row is not rewritten at every flush.
constexpr std::string_view kSetFollowed =
    "UPDATE batches SET followed = ($2::int <> 0) WHERE id = $1 AND followed <> ($2::int <> 0)";
constexpr std::string_view kOwnInserted =
    "UPDATE batches SET owner_id = $2, lease_expires_at = "
    "(extract(epoch from clock_timestamp()) * 1000)::bigint + $3 WHERE seq = $1";
constexpr std::string_view kItemSpecs =
    "SELECT idx, spec FROM items WHERE batch_seq = (SELECT seq FROM batches WHERE id = $1) "
    "AND idx = ANY ($2::bigint[])";

}  // namespace

BatchRecord read_pg_batch(const PgResult& r, int row) {
  BatchRecord b;
  b.seq = r.int64(row, 0);
  b.id = r.text(row, 1);
  b.spec_json = r.text(row, 2);
  const std::string state = r.text(row, 3);
  const auto parsed = core::parse_batch_state(state);
  if (!parsed) throw StoreError("batch " + b.id + " has unknown state '" + state + "' stored");
  b.state = *parsed;
  b.total = r.int64(row, 4);
  b.created_at_ms = r.int64(row, 5);
  b.updated_at_ms = r.int64(row, 6);
  b.finished_at_ms = r.int64(row, 7);
  b.version = r.int64(row, 8);
  b.idempotency_key = r.optional_text(row, 9);
  b.submitted_by = r.text(row, 10);
  b.sealed = r.int64(row, 11) != 0;
  return b;
}

std::vector<BatchRecord> read_pg_batches(const PgResult& r) {
  std::vector<BatchRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int row = 0; row < r.rows(); ++row) out.push_back(read_pg_batch(r, row));
  return out;
}

namespace {

std::vector<ItemRecord> read_items(const PgResult& r, const std::string& batch_id, bool with_spec) {
  std::vector<ItemRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int row = 0; row < r.rows(); ++row) {
    ItemRecord item;
    item.index = r.int64(row, 0);
    const std::string state = r.text(row, 1);
    const auto parsed = core::parse_item_state(state);
    if (!parsed) {
      throw StoreError("item " + std::to_string(item.index) + " of batch " + batch_id +
                       " has unknown state '" + state + "' stored");
    }
    item.state = *parsed;
    item.attempts = static_cast<int32_t>(r.int64(row, 2));
    item.flow_run_id = r.text(row, 3);
    item.flow_run_state = r.text(row, 4);
    item.last_error = r.text(row, 5);
    item.detail_json = r.text(row, 6);
    if (with_spec) item.spec_json = r.text(row, 7);
    out.push_back(std::move(item));
  }
  return out;
}

// "No limit" (negative) is SQL NULL.
PgParams& add_limit(PgParams& params, int limit) {
  return limit < 0 ? params.add_null() : params.add(int64_t{limit});
}

// Array literals for the parameters of kUpdateItems, one per column.
class ItemColumns {
 public:
  void add(const ItemUpdate& u) {
    const bool first = batch_ids_.empty();
    for (std::string* column : {&batch_ids_, &indexes_, &states_, &attempts_, &run_ids_,
                                &run_states_, &errors_, &details_}) {
      *column += first ? '{' : ',';
    }
    append_array_element(batch_ids_, u.batch_id);
    indexes_ += std::to_string(u.index);
    append_array_element(states_, core::to_string(u.state));
    attempts_ += std::to_string(u.attempts);
    append_array_element(run_ids_, u.flow_run_id);
    append_array_element(run_states_, u.flow_run_state);
    append_array_element(errors_, u.last_error);
    append_array_element(details_, u.detail_json);
  }
  PgParams params() {
    PgParams p;
    for (std::string* column : {&batch_ids_, &indexes_, &states_, &attempts_, &run_ids_,
                                &run_states_, &errors_, &details_}) {
      *column += '}';
      p.add(*column);
    }
    return p;
  }

 private:
  std::string batch_ids_, indexes_, states_, attempts_, run_ids_, run_states_, errors_, details_;
};

}  // namespace

PostgresStore::PostgresStore(const std::string& url, Options options) : url_(url) {
  try {
    pool_ = std::make_unique<PgPool>(url, std::max<size_t>(options.connections, 1));
    auto conn = pool_->acquire();
    const PgResult encoding = conn->exec("SHOW server_encoding", "reading the encoding");
    if (encoding.text(0, 0) != "UTF8") {
      throw StoreError("the database's encoding is " + encoding.text(0, 0) +
                       "; floodgate needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')");
    }
    migrate_postgres(*conn);
    if (!options.replica_id.empty()) {
      leases_ = std::make_unique<PgLeases>(*pool_, options.replica_id, options.lease_ttl);
    }
  } catch (const StoreError& e) {
    throw StoreError("cannot open PostgreSQL database at " + redact_database_url(url) + ": " +
                     e.what());
  }
}

PostgresStore::~PostgresStore() = default;

Leases* PostgresStore::leases() { return leases_.get(); }

namespace {

// COPYs runs `run_specs` in as PENDING items numbered from `first_index`, a few MiB of rows at a
// time, so that a batch of millions never needs its rows as one string.
void copy_pending(PgConnection& conn, int64_t seq, int64_t first_index,
                  const std::vector<std::string>& run_specs, std::string_view what) {
  constexpr size_t kCopyBytes = 8 << 20;
  const std::string seq_text = std::to_string(seq);
  const std::string pending(core::to_string(core::ItemState::kPending));
  std::string rows;
  for (size_t i = 0; i < run_specs.size(); ++i) {
    rows += seq_text;
    rows += '\t';
    rows += std::to_string(first_index + static_cast<int64_t>(i));
    rows += '\t';
    rows += pending;
    rows += "\t0\t\t\t\t\t";  // attempts 0; no run id, run state, error or detail yet
    append_copy_field(rows, run_specs[i]);
    rows += '\n';
    if (rows.size() >= kCopyBytes || i + 1 == run_specs.size()) {
      conn.copy_in(kCopyItems, rows, what);
      rows.clear();
    }
  }
}

}  // namespace

InsertResult PostgresStore::insert_batch(const BatchRecord& batch,
                                         const std::vector<ItemRecord>& items) {
  return insert_rows(batch, &items, nullptr);
}

InsertResult PostgresStore::insert_pending_batch(const BatchRecord& batch,
                                                 const std::vector<std::string>& run_specs) {
  return insert_rows(batch, nullptr, &run_specs);
}

InsertResult PostgresStore::insert_rows(const BatchRecord& batch,
                                        const std::vector<ItemRecord>* items,
                                        const std::vector<std::string>* run_specs) {
  const std::string what = "inserting batch " + batch.id;
  std::lock_guard lock(write_mutex_);
  auto conn = pool_->acquire();
  PgTransaction tx(*conn, what);
  PgParams params;
  params.add(batch.id)
      .add(batch.spec_json)
      .add(core::to_string(batch.state))
      .add(batch.total)
      .add(batch.created_at_ms)
      .add(batch.updated_at_ms)
      .add(batch.finished_at_ms)
      .add(batch.version)
      .add(batch.idempotency_key)
      .add(batch.submitted_by)
      .add(int64_t{batch.sealed ? 1 : 0});
  // ON CONFLICT waits for a concurrent insert of the same key to commit or roll back, so
  // exactly one insert of a key wins, also across processes.
  const PgResult inserted = conn->run(insert_batch_or_nothing(), params, what);
  if (inserted.rows() == 0) {
    const PgResult existing =
        conn->run(sql(Query::kBatchByKey), PgParams().add(batch.idempotency_key), what);
    if (existing.rows() == 0) throw StoreError(what + ": idempotency key taken but not found");
    return InsertResult{false, existing.text(0, 0)};
  }
  if (run_specs != nullptr) copy_pending(*conn, inserted.int64(0, 0), 0, *run_specs, what);
  if (items != nullptr && !items->empty()) {
    const std::string seq = std::to_string(inserted.int64(0, 0));
    std::string rows;
    for (const ItemRecord& item : *items) {
      rows += seq;
      rows += '\t';
      rows += std::to_string(item.index);
      rows += '\t';
      rows += core::to_string(item.state);
      rows += '\t';
      rows += std::to_string(item.attempts);
      for (const std::string* field : {&item.flow_run_id, &item.flow_run_state, &item.last_error,
                                       &item.detail_json, &item.spec_json}) {
        rows += '\t';
        append_copy_field(rows, *field);
      }
      rows += '\n';
    }
    conn->copy_in(kCopyItems, rows, what);
  }
  if (leases_) {
    // The replica that accepts a batch holds it from the start.
    conn->run(kOwnInserted,
              PgParams()
                  .add(inserted.int64(0, 0))
                  .add(leases_->replica_id())
                  .add(int64_t{leases_->ttl().count()}),
              what);
  }
  tx.commit();
  return InsertResult{true, batch.id};
}

void PostgresStore::apply(const std::vector<ItemUpdate>& items,
                          const std::vector<BatchUpdate>& batches) {
  if (items.empty() && batches.empty()) return;
  // One statement updates each row once, so of several updates to one item the last one is
  // kept, as if they ran in order.
  std::vector<const ItemUpdate*> latest;
  latest.reserve(items.size());
  {
    std::unordered_map<std::string_view, std::unordered_map<int64_t, size_t>> slot;
    for (const ItemUpdate& u : items) {
      auto [it, fresh] = slot[u.batch_id].try_emplace(u.index, latest.size());
      if (fresh) {
        latest.push_back(&u);
      } else {
        latest[it->second] = &u;
      }
    }
  }
  ItemColumns columns;
  for (const ItemUpdate* u : latest) columns.add(*u);

  std::lock_guard lock(write_mutex_);
  auto conn = pool_->acquire();
  const std::string_view what = "applying updates";
  // Item progress may be lost on a server crash (not on a floodgated crash): relaunches reuse
  // the deterministic idempotency keys and tracking re-reads the children's states, as with
  // SQLite's synchronous=NORMAL. Accepted batches (insert_batch) keep synchronous commits.
  PgTransaction tx(*conn, what, "BEGIN; SET LOCAL synchronous_commit = off");
  int64_t skipped = 0;
  if (!latest.empty()) {
    PgParams params = columns.params();
    if (leases_) params.add(leases_->replica_id());
    const PgResult r =
        conn->run(leases_ ? std::string_view(fenced_item_updates()) : kUpdateItems, params, what);
    skipped += static_cast<int64_t>(latest.size()) - r.changed();
  }
  for (const BatchUpdate& u : batches) skipped += apply_batch_update(*conn, u) ? 0 : 1;
  tx.commit();
  if (skipped > 0) skipped_updates_.fetch_add(skipped, std::memory_order_relaxed);
}

bool PostgresStore::apply_batch_update(PgConnection& conn, const BatchUpdate& u) {
  const std::string_view what = "applying updates";
  PgParams p;
  p.add(u.id)
      .add(core::to_string(u.state))
      .add(u.updated_at_ms)
      .add(u.finished_at_ms)
      .add(u.version)
      .add(u.spec_json);
  if (leases_) p.add(leases_->replica_id());
  const std::string_view update =
      leases_ ? std::string_view(fenced_batch_update()) : sql(Query::kUpdateBatch);
  if (conn.run(update, p, what).changed() == 0) return false;
  if (u.skip_pending_from) {
    conn.run(sql(Query::kSkipPendingFrom), PgParams().add(u.id).add(*u.skip_pending_from), what);
  }
  if (leases_) {
    conn.run(kSetFollowed, PgParams().add(u.id).add(int64_t{u.followed ? 1 : 0}), what);
  }
  return true;
}

std::optional<BatchRecord> PostgresStore::get_batch(const std::string& id) {
  auto conn = pool_->acquire();
  const PgResult r = conn->run(sql(Query::kGetBatch), PgParams().add(id), "reading a batch");
  if (r.rows() == 0) return std::nullopt;
  return read_pg_batch(r, 0);
}

std::vector<BatchRecord> PostgresStore::list_batches(std::optional<core::BatchState> state,
                                                     int64_t after_seq, int limit) {
  PgParams p;
  p.add(after_seq);
  add_limit(p, limit);
  if (state) p.add(core::to_string(*state));
  auto conn = pool_->acquire();
  return read_pg_batches(conn->run(sql(state ? Query::kListBatchesInState : Query::kListBatches), p,
                                   "listing batches"));
}

std::vector<BatchRecord> PostgresStore::load_unfinished_batches() {
  auto conn = pool_->acquire();
  return read_pg_batches(
      conn->run(sql(Query::kUnfinishedBatches), PgParams(), "loading unfinished batches"));
}

std::vector<ItemRecord> PostgresStore::load_items(const std::string& batch_id, bool with_spec) {
  auto conn = pool_->acquire();
  return read_items(conn->run(sql(with_spec ? Query::kLoadItemsWithSpec : Query::kLoadItems),
                              PgParams().add(batch_id), "loading items"),
                    batch_id, with_spec);
}

std::vector<ItemRecord> PostgresStore::list_items(const std::string& batch_id,
                                                  std::optional<core::ItemState> state,
                                                  int64_t after_index, int limit) {
  PgParams p;
  p.add(batch_id).add(after_index);
  add_limit(p, limit);
  if (state) p.add(core::to_string(*state));
  auto conn = pool_->acquire();
  return read_items(
      conn->run(sql(state ? Query::kListItemsInState : Query::kListItems), p, "listing items"),
      batch_id, false);
}

std::vector<ItemRecord> PostgresStore::pending_page(const std::string& batch_id, int64_t after,
                                                    int64_t before, int limit) {
  auto conn = pool_->acquire();
  PgParams p;
  p.add(batch_id).add(after).add(before).add(int64_t{limit});
  return read_items(conn->run(sql(Query::kPendingPage), p, "reading items to launch"), batch_id,
                    true);
}

std::array<int64_t, core::kItemStateCount> PostgresStore::count_items(const std::string& batch_id) {
  std::array<int64_t, core::kItemStateCount> counts{};
  auto conn = pool_->acquire();
  const PgResult r = conn->run(sql(Query::kCountItems), PgParams().add(batch_id), "counting items");
  for (int row = 0; row < r.rows(); ++row) {
    const std::string state = r.text(row, 0);
    const auto parsed = core::parse_item_state(state);
    if (!parsed) {
      throw StoreError("batch " + batch_id + " has items in unknown state '" + state + "'");
    }
    counts[static_cast<size_t>(*parsed)] = r.int64(row, 1);
  }
  return counts;
}

std::vector<std::pair<int64_t, std::string>> PostgresStore::load_item_specs(
    const std::string& batch_id, const std::vector<int64_t>& indexes) {
  std::vector<std::pair<int64_t, std::string>> result;
  if (indexes.empty()) return result;
  std::string array = "{";
  for (const int64_t index : indexes) {
    if (array.size() > 1) array += ',';
    array += std::to_string(index);
  }
  array += '}';
  std::unordered_map<int64_t, std::string> specs;
  {
    auto conn = pool_->acquire();
    const PgResult r =
        conn->run(kItemSpecs, PgParams().add(batch_id).add(array), "loading item specs");
    specs.reserve(static_cast<size_t>(r.rows()));
    for (int row = 0; row < r.rows(); ++row) specs.emplace(r.int64(row, 0), r.text(row, 1));
  }
  result.reserve(indexes.size());
  for (const int64_t index : indexes) {
    if (auto it = specs.find(index); it != specs.end()) result.emplace_back(index, it->second);
  }
  return result;
}

int PostgresStore::schema_version() {
  auto conn = pool_->acquire();
  return postgres_schema_version(*conn);
}

// ---------------------------------------------------------------------------------------------
// Chunked appends

namespace {

// FOR UPDATE: appends to one batch (and a seal) take turns, also across processes, so the key
// check, the new indexes and the total agree.
constexpr std::string_view kBatchForAppend =
    "SELECT seq, state, total, sealed FROM batches WHERE id = $1 FOR UPDATE";
constexpr std::string_view kRecordChunk =
    "INSERT INTO batch_chunks (batch_seq, idempotency_key, first_index, count, body_hash, "
    "created_at) VALUES ($1, $2, $3, $4, $5, (extract(epoch FROM now()) * 1000)::bigint)";
constexpr std::string_view kSealedOf = "SELECT sealed FROM batches WHERE id = $1 FOR UPDATE";

}  // namespace

AppendResult PostgresStore::append_items(const AppendRequest& request,
                                         const std::vector<std::string>& run_specs) {
  const std::string what = "appending runs to batch " + request.batch_id;
  std::lock_guard lock(write_mutex_);
  auto conn = pool_->acquire();
  PgTransaction tx(*conn, what);
  const PgResult batch = conn->run(kBatchForAppend, PgParams().add(request.batch_id), what);
  if (batch.rows() == 0) return AppendResult{};  // kNotFound
  const int64_t seq = batch.int64(0, 0);
  AppendFound found(stored_batch_state(batch.text(0, 1), what), batch.int64(0, 3) != 0,
                    batch.int64(0, 2));
  if (request.idempotency_key) {
    const PgResult chunk =
        conn->run(sql(Query::kChunkByKey), PgParams().add(seq).add(*request.idempotency_key), what);
    if (chunk.rows() > 0) {
      found.chunk_found = true;
      found.chunk_first = chunk.int64(0, 0);
      found.chunk_count = chunk.int64(0, 1);
      found.chunk_hash = chunk.text(0, 2);
    }
  }
  if (auto settled = settle_append(request, found)) return *settled;
  AppendResult result;
  result.total = found.total;
  result.first_index = result.total;
  result.count = static_cast<int64_t>(run_specs.size());
  copy_pending(*conn, seq, result.first_index, run_specs, what);
  conn->run(sql(Query::kGrowTotal), PgParams().add(seq).add(result.count), what);
  if (request.idempotency_key) {
    conn->run(kRecordChunk,
              PgParams()
                  .add(seq)
                  .add(*request.idempotency_key)
                  .add(result.first_index)
                  .add(result.count)
                  .add(request.body_hash),
              what);
  }
  tx.commit();
  result.total += result.count;
  result.outcome = AppendOutcome::kAppended;
  return result;
}

SealResult PostgresStore::seal_batch(const std::string& batch_id) {
  const std::string what = "sealing batch " + batch_id;
  std::lock_guard lock(write_mutex_);
  auto conn = pool_->acquire();
  PgTransaction tx(*conn, what);
  const PgResult sealed = conn->run(kSealedOf, PgParams().add(batch_id), what);
  if (sealed.rows() == 0) return SealResult::kNotFound;
  if (sealed.int64(0, 0) != 0) return SealResult::kAlreadySealed;
  conn->run(sql(Query::kSeal), PgParams().add(batch_id), what);
  tx.commit();
  return SealResult::kSealed;
}

}  // namespace floodgate::store
