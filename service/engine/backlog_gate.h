#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "core/clock.h"
#include "engine/batch_book.h"

namespace floodgate::engine {

/// Backlog gating: a batch's children that Prefect holds without starting them (SCHEDULED, Late,
/// PENDING, AwaitingConcurrencySlot; created by a launch still in flight too) are its backlog.
/// Launches wait while the backlog is at the batch's max_backlog, so creates follow the rate at
/// which workers start runs instead of piling up Late runs. Counted from the tracking reads
/// floodgate already makes: no request of its own.
class BacklogGate final : public BatchObserver {
 public:
  explicit BacklogGate(core::Clock& clock);

  /// A read first found child `index` of `b` started (RUNNING or later).
  void on_started(Batch& b, int64_t index);
  /// Sets the batch's count of unstarted children from a scan of its items (each tracking
  /// round: the incremental count cannot drift for long).
  static void recount(Batch& b);

  void on_batch_held(Batch& b) override { recount(b); }
  void on_items_reloaded(Batch& b, const std::array<int64_t, core::kItemStateCount>&) override {
    recount(b);
  }
  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;

  /// The derived limit never goes below this many children waiting to start.
  static constexpr int64_t kMinBacklog = 10;
  /// The derived limit: this many seconds of the workers' recent start rate, plus two tracking
  /// intervals (the gate learns of starts only at reads). Workers poll for runs (Prefect's
  /// default every 10 s; often 15-30 s): each poll must find more than it took last time, or a
  /// limit fed by what the polls took would settle below what the workers can start. At 30 s
  /// the limit can triple per poll of a 10 s worker and still grows for one that polls every
  /// 30 s.
  static constexpr double kBacklogSeconds = 30;

 private:
  core::Clock& clock_;
};

/// Children of `b` created (or being created) and not yet seen started.
int64_t backlog(const Batch& b);
/// Children a second that workers started lately (over Backlog::kRateWindow).
double start_rate(const Batch& b, core::TimePoint now);
/// Whether launches of `b` are gated by its backlog (tracked, and max_backlog not 0); cheap.
bool backlog_gated(const Batch& b);
/// The batch's limit on its backlog: limits.max_backlog when set (0: none), else derived from
/// the workers' start rate; nullopt when the batch is not gated (not tracked, or 0).
std::optional<int64_t> max_backlog(const Batch& b, core::TimePoint now);

}  // namespace floodgate::engine
