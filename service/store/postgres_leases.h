#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "store/leases.h"

namespace floodgate::store {

class PgPool;
class PgResult;

/// The batches of a PostgreSQL result whose columns are FLOODGATE_BATCH_COLUMNS' (queries.cpp).
BatchRecord read_pg_batch(const PgResult& r, int row);
std::vector<BatchRecord> read_pg_batches(const PgResult& r);

/// Leases, heartbeats and budget shares in PostgreSQL (the `replicas` table and the batches'
/// owner_id and lease_expires_at columns). Every time is the database server's clock.
class PgLeases final : public Leases {
 public:
  PgLeases(PgPool& pool, std::string replica_id, std::chrono::milliseconds ttl);

  Heartbeat heartbeat(const std::string& url, int64_t demand, double limit_ratio) override;
  std::vector<std::string> renew() override;
  std::vector<std::string> taken_from_us(const std::vector<std::string>& ids) override;
  std::vector<BatchRecord> claim(int max) override;
  int64_t unfinished_count() override;
  bool take_over(const std::string& batch_id) override;
  std::optional<BatchOwner> owner_of(const std::string& batch_id) override;
  void release_all() override;

 private:
  PgPool& pool_;
};

}  // namespace floodgate::store
