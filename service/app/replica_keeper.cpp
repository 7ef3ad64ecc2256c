#include "app/replica_keeper.h"

#include <algorithm>
#include <future>
#include <memory>
#include <utility>

#include "metrics/log.h"

namespace floodgate::app {

ReplicaKeeper::ReplicaKeeper(store::Store& store, store::Leases& leases, engine::Engine& engine,
                             metrics::Metrics& metrics, Options options,
                             std::function<void(std::vector<std::string>)> on_lost)
    : store_(store),
      leases_(leases),
      engine_(engine),
      metrics_(metrics),
      options_(std::move(options)),
      on_lost_(std::move(on_lost)),
      last_ok_(std::chrono::steady_clock::now()) {}

ReplicaKeeper::~ReplicaKeeper() { stop(false); }

void ReplicaKeeper::start() {
  log::info("sharing the store with other replicas",
            {{"replica_id", leases_.replica_id()},
             {"url", options_.url},
             {"lease_ttl_s", static_cast<double>(leases_.ttl().count()) / 1000.0}});
  thread_ = std::thread([this] { run(); });
}

void ReplicaKeeper::stop(bool release) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!release) return;
  try {
    leases_.release_all();
    log::info("leases given up: the other replicas take this one's batches now");
  } catch (const std::exception& e) {
    log::warn("could not give the leases up; the other replicas take them when they expire",
              {{"error", e.what()}});
  }
}

void ReplicaKeeper::run() {
  while (true) {
    try {
      round();
    } catch (const std::exception& e) {
      good_rounds_ = 0;
      bool fence = false;
      {
        std::lock_guard lock(mutex_);
        if (last_error_.empty()) {
          log::warn("cannot reach the shared store; leases not renewed", {{"error", e.what()}});
        }
        last_error_ = e.what();
        // Half a TTL without a heartbeat: the others may soon count this replica as gone and
        // take its part of the budget, so it stops sending before they do.
        if (!fenced_ && std::chrono::steady_clock::now() - last_ok_ > leases_.ttl() / 2) {
          fenced_ = fence = true;
        }
      }
      if (fence) {
        log::error(
            "no heartbeat for half the lease TTL: sending nothing to Prefect until the "
            "store answers again");
        engine_.post([this] { engine_.set_budget_share(0, 1); });
      }
    }
    std::unique_lock lock(mutex_);
    // While shares move (a replica waits for the others to let go of budget), every replica
    // beats quickly, so the move takes a fraction of a second instead of a round or two.
    const auto wait = settled_ ? options_.interval
                               : std::min<std::chrono::milliseconds>(
                                     options_.interval, std::chrono::milliseconds(100));
    if (wake_.wait_for(lock, wait, [this] { return stopping_; })) return;
  }
}

void ReplicaKeeper::round() {
  // What the engine holds now, read on its thread (this thread is not the engine's nor the HTTP
  // pool's, so it may wait a little; a busy engine leaves last round's values).
  auto read = std::make_shared<std::promise<void>>();
  std::future<void> done = read->get_future();
  engine_.post([this, read] {
    demand_.store(engine_.demand());
    limit_ratio_.store(engine_.limit_ratio());
    auto ids = engine_.unfinished_ids();
    draining_.store(engine_.draining());
    std::lock_guard lock(mutex_);
    working_on_ = std::move(ids);
    read->set_value();
  });
  done.wait_for(std::chrono::milliseconds(200));
  const store::Heartbeat beat =
      leases_.heartbeat(options_.url, demand_.load(), limit_ratio_.load());
  // What this replica held at the last renewal and what its engine works on (a batch it just
  // accepted is held before any renewal names it).
  std::vector<std::string> previously;
  {
    std::lock_guard lock(mutex_);
    previously = held_;
    previously.insert(previously.end(), working_on_.begin(), working_on_.end());
  }
  std::vector<std::string> renewed = leases_.renew();
  if (auto lost = leases_.taken_from_us(previously); !lost.empty()) {
    log::error("another replica took batches whose lease this one held",
               {{"batches", nlohmann::json(lost)}, {"replica_id", leases_.replica_id()}});
    on_lost_(std::move(lost));
    return;
  }
  engine_.post([this, share = beat.share, ratio = beat.limit_ratio] {
    engine_.set_budget_share(share, ratio);
  });
  {
    std::lock_guard lock(mutex_);
    if (!last_error_.empty()) log::info("the shared store answers again");
    live_ = beat.live;
    settled_ = beat.settled;
    metrics_.replicas_live().Set(static_cast<double>(beat.live.size()));
    held_ = renewed;
    last_ok_ = std::chrono::steady_clock::now();
    last_error_.clear();
    fenced_ = false;
  }
  // After the store comes back, claims wait a round, so that owners still alive renew first.
  if (++good_rounds_ < 2) return;
  // A replica that is stopping takes nothing more: it would only give it up again.
  if (!draining_.load()) claim(beat.live.size(), renewed.size());
}

void ReplicaKeeper::claim(size_t live_replicas, size_t held) {
  const auto live = static_cast<int64_t>(std::max<size_t>(1, live_replicas));
  const int64_t fair = (leases_.unfinished_count() + live - 1) / live;
  const auto want =
      static_cast<int>(std::clamp<int64_t>(fair - static_cast<int64_t>(held), 1, 1000));
  for (store::BatchRecord& rec : leases_.claim(want)) {
    log::info("claimed a batch no live replica held",
              {{"batch_id", rec.id},
               {"state", std::string(core::to_string(rec.state))},
               {"total", rec.total}});
    {
      std::lock_guard lock(mutex_);
      held_.push_back(rec.id);
    }
    auto stored = std::make_shared<engine::StoredBatch>(engine::read_stored_batch(store_, rec));
    engine_.post([this, stored] { engine_.adopt(std::move(*stored)); });
  }
}

bool ReplicaKeeper::healthy(std::string* why) const {
  std::lock_guard lock(mutex_);
  if (last_error_.empty()) return true;
  if (why) *why = "cannot reach the shared store to renew leases: " + last_error_;
  return false;
}

nlohmann::json ReplicaKeeper::status_json() const {
  std::lock_guard lock(mutex_);
  nlohmann::json live = nlohmann::json::array();
  for (const auto& r : live_) {
    live.push_back({{"id", r.id}, {"url", r.url}, {"batches", r.demand}, {"share", r.share}});
  }
  return {{"id", leases_.replica_id()},
          {"url", options_.url},
          {"lease_ttl_s", static_cast<double>(leases_.ttl().count()) / 1000.0},
          {"batches_held", held_.size()},
          {"live", std::move(live)}};
}

}  // namespace floodgate::app
