#include "store/postgres_leases.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "store/pg_connection.h"

namespace floodgate::store {
namespace {

// The server's clock in Unix ms: one clock for every replica, whatever their machines say.
#define FLOODGATE_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
// A batch needs an owner while it has not ended, or ended with children it still follows.
#define FLOODGATE_NEEDS_OWNER "(state IN ('QUEUED', 'RUNNING', 'PAUSED') OR followed)"
// The owner of batch b is alive: its heartbeat is younger than the TTL ($2).
#define FLOODGATE_OWNER_ALIVE                                     \
  "EXISTS (SELECT 1 FROM replicas r WHERE r.id = b.owner_id AND " \
  "r.heartbeat_at > " FLOODGATE_NOW_MS " - $2)"

// Heartbeats run one at a time (per schema), so each sees the shares the others hold and the
// live shares never sum to more than 1. A transaction-scoped lock: a replica that dies
// mid-heartbeat holds nobody up.
constexpr std::string_view kHeartbeatLock =
    "SELECT pg_advisory_xact_lock(hashtextextended('floodgate.replicas:' || "
    "coalesce(current_schema(), ''), 0))";
constexpr std::string_view kUpsertReplica =
    "INSERT INTO replicas (id, url, started_at, heartbeat_at, demand, limit_ratio) "
    "VALUES ($1, $2, " FLOODGATE_NOW_MS ", " FLOODGATE_NOW_MS
    ", $3, $4::float8) "
    "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, heartbeat_at = EXCLUDED.heartbeat_at, "
    "demand = EXCLUDED.demand, limit_ratio = EXCLUDED.limit_ratio";
constexpr std::string_view kLiveReplicas =
    "SELECT id, url, heartbeat_at, demand, share, limit_ratio FROM replicas "
    "WHERE heartbeat_at > " FLOODGATE_NOW_MS " - $1 ORDER BY id";
constexpr std::string_view kSetShare = "UPDATE replicas SET share = $2::float8 WHERE id = $1";
// Rows of replicas gone for good (ten TTLs without a heartbeat) are removed.
constexpr std::string_view kForgetDead =
    "DELETE FROM replicas WHERE heartbeat_at < " FLOODGATE_NOW_MS " - 10 * $1::bigint";
constexpr std::string_view kRenew =
    "UPDATE batches SET lease_expires_at = " FLOODGATE_NOW_MS
    " + $2 WHERE owner_id = $1 AND " FLOODGATE_NEEDS_OWNER " RETURNING id";
constexpr std::string_view kTakenFromUs =
    "SELECT id FROM batches WHERE id = ANY ($1::text[]) AND owner_id IS DISTINCT FROM $2";
// A batch is free when nobody holds it, or its lease ran out and its owner stopped beating;
// SKIP LOCKED: replicas claiming at once each take other batches.
constexpr std::string_view kClaim =
    "UPDATE batches SET owner_id = $1, lease_expires_at = " FLOODGATE_NOW_MS
    " + $2 WHERE seq IN (SELECT b.seq FROM batches b WHERE (b.state IN ('QUEUED', 'RUNNING', "
    "'PAUSED') OR b.followed)"
    " AND (b.owner_id IS NULL OR (b.owner_id <> $1 AND b.lease_expires_at < " FLOODGATE_NOW_MS
    " AND NOT " FLOODGATE_OWNER_ALIVE
    ")) ORDER BY b.seq LIMIT $3 FOR UPDATE SKIP LOCKED) "
    "RETURNING seq, id, spec, state, total, created_at, updated_at, finished_at, version, "
    "idempotency_key, submitted_by, sealed";
constexpr std::string_view kUnfinishedCount =
    "SELECT count(*) FROM batches WHERE " FLOODGATE_NEEDS_OWNER;
constexpr std::string_view kTakeOver =
    "UPDATE batches AS b SET owner_id = $1, lease_expires_at = " FLOODGATE_NOW_MS
    " + $2 WHERE b.id = $3 AND (b.owner_id IS NULL OR b.owner_id = $1 OR NOT " FLOODGATE_OWNER_ALIVE
    ") RETURNING id";
constexpr std::string_view kOwnerOf =
    "SELECT coalesce(b.owner_id, ''), coalesce(r.url, ''), "
    "coalesce(r.heartbeat_at > " FLOODGATE_NOW_MS
    " - $2, false), "
    "b.state NOT IN ('QUEUED', 'RUNNING', 'PAUSED') FROM batches b "
    "LEFT JOIN replicas r ON r.id = b.owner_id WHERE b.id = $1";
constexpr std::string_view kReleaseBatches =
    "UPDATE batches SET owner_id = NULL, lease_expires_at = NULL WHERE owner_id = $1";
constexpr std::string_view kForgetMe = "DELETE FROM replicas WHERE id = $1";

std::string float_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

double float_of(const PgResult& r, int row, int col) { return std::stod(r.text(row, col)); }

std::vector<std::string> ids_of(const PgResult& r) {
  std::vector<std::string> ids;
  ids.reserve(static_cast<size_t>(r.rows()));
  for (int row = 0; row < r.rows(); ++row) ids.push_back(r.text(row, 0));
  return ids;
}

}  // namespace

PgLeases::PgLeases(PgPool& pool, std::string replica_id, std::chrono::milliseconds ttl)
    : Leases(std::move(replica_id), ttl), pool_(pool) {}

Heartbeat PgLeases::heartbeat(const std::string& url, int64_t demand, double limit_ratio) {
  const std::string_view what = "recording the heartbeat";
  const int64_t ttl_ms = ttl().count();
  auto conn = pool_.acquire();
  PgTransaction tx(*conn, what);
  conn->exec(kHeartbeatLock, what);
  conn->run(kUpsertReplica,
            PgParams().add(replica_id()).add(url).add(demand).add(float_text(limit_ratio)), what);
  const PgResult r = conn->run(kLiveReplicas, PgParams().add(ttl_ms), what);
  Heartbeat beat;
  int64_t total_demand = 0;
  double others = 0;
  for (int row = 0; row < r.rows(); ++row) {
    ReplicaRecord rec;
    rec.id = r.text(row, 0);
    rec.url = r.text(row, 1);
    rec.heartbeat_at_ms = r.int64(row, 2);
    rec.demand = r.int64(row, 3);
    rec.share = float_of(r, row, 4);
    rec.limit_ratio = float_of(r, row, 5);
    total_demand += std::max<int64_t>(0, rec.demand);
    if (rec.id != replica_id()) others += rec.share;
    beat.limit_ratio = std::min(beat.limit_ratio, rec.limit_ratio);
    beat.live.push_back(std::move(rec));
  }
  // This replica's fair part of the budget, but only what the others have let go of: a share
  // that grows waits until the replicas it grows against have shrunk theirs. While no replica
  // has work, each keeps an equal part, so the first batch to come starts at once.
  const double target = total_demand > 0
                            ? static_cast<double>(std::max<int64_t>(0, demand)) / total_demand
                            : 1.0 / static_cast<double>(std::max<size_t>(1, beat.live.size()));
  beat.share = std::clamp(std::min(target, 1.0 - others), 0.0, 1.0);
  conn->run(kSetShare, PgParams().add(replica_id()).add(float_text(beat.share)), what);
  const double idle_part = 1.0 / static_cast<double>(std::max<size_t>(1, beat.live.size()));
  for (auto& rec : beat.live) {
    if (rec.id == replica_id()) rec.share = beat.share;
    const double fair = total_demand > 0
                            ? static_cast<double>(std::max<int64_t>(0, rec.demand)) / total_demand
                            : idle_part;
    if (std::abs(rec.share - fair) > 1e-6) beat.settled = false;
  }
  conn->run(kForgetDead, PgParams().add(ttl_ms), what);
  tx.commit();
  return beat;
}

std::vector<std::string> PgLeases::renew() {
  auto conn = pool_.acquire();
  return ids_of(
      conn->run(kRenew, PgParams().add(replica_id()).add(ttl().count()), "renewing leases"));
}

std::vector<std::string> PgLeases::taken_from_us(const std::vector<std::string>& ids) {
  if (ids.empty()) return {};
  std::string array = "{";
  for (const auto& id : ids) {
    if (array.size() > 1) array += ',';
    append_array_element(array, id);
  }
  array += '}';
  auto conn = pool_.acquire();
  return ids_of(
      conn->run(kTakenFromUs, PgParams().add(array).add(replica_id()), "checking the leases held"));
}

std::vector<BatchRecord> PgLeases::claim(int max) {
  if (max <= 0) return {};
  auto conn = pool_.acquire();
  return read_pg_batches(
      conn->run(kClaim, PgParams().add(replica_id()).add(ttl().count()).add(int64_t{max}),
                "claiming batches"));
}

int64_t PgLeases::unfinished_count() {
  auto conn = pool_.acquire();
  return conn->exec(kUnfinishedCount, "counting unfinished batches").int64(0, 0);
}

bool PgLeases::take_over(const std::string& batch_id) {
  auto conn = pool_.acquire();
  return conn->run(kTakeOver, PgParams().add(replica_id()).add(ttl().count()).add(batch_id),
                   "taking a batch over")
             .rows() > 0;
}

std::optional<BatchOwner> PgLeases::owner_of(const std::string& batch_id) {
  auto conn = pool_.acquire();
  const PgResult r =
      conn->run(kOwnerOf, PgParams().add(batch_id).add(ttl().count()), "reading a batch's owner");
  if (r.rows() == 0) return std::nullopt;
  BatchOwner owner;
  owner.owner_id = r.text(0, 0);
  owner.alive = r.text(0, 2) == "t";
  owner.finished = r.text(0, 3) == "t";
  if (owner.alive) owner.url = r.text(0, 1);
  return owner;
}

void PgLeases::release_all() {
  const std::string_view what = "giving up the leases";
  auto conn = pool_.acquire();
  PgTransaction tx(*conn, what);
  conn->run(kReleaseBatches, PgParams().add(replica_id()), what);
  conn->run(kForgetMe, PgParams().add(replica_id()), what);
  tx.commit();
}

}  // namespace floodgate::store
