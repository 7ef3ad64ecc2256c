#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/random.h"
#include "engine/backlog_gate.h"
#include "engine/batch_book.h"
#include "engine/child_canceller.h"
#include "engine/child_deadlines.h"
#include "engine/deployment_resolver.h"
#include "engine/request.h"
#include "engine/start_pacer.h"
#include "metrics/metrics.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// How often launched children are read.
struct TrackOptions {
  std::chrono::milliseconds interval_min{1000};
  std::chrono::milliseconds interval_max{15000};
};

/// Follows launched children with bulk reads at a cadence per batch (shorter while children
/// end, longer while none do), watches the parent flow run (launches wait for a fresh read of
/// it; its end cancels the batch), relaunches crashed children, applies the batch's deadlines
/// (and notices children deleted in Prefect), and cancels children when the batch's on_cancel
/// says so. Children a batch left running when it ended early are followed to their end.
class ChildTracker final : public RequestOwner, public BatchObserver {
 public:
  /// `new_id` makes the transition id of each cancel (a UUID).
  /// `wall` converts the runs' times in Prefect to the steady clock (deadlines after a restart).
  ChildTracker(core::Clock& clock, const core::WallClock& wall, core::Random& random,
               std::function<std::string()> new_id, TrackOptions options, BatchBook& book,
               DeploymentResolver& resolver, Outbox& outbox, prefect::PrefectApi& api,
               metrics::Metrics& metrics);

  /// Queues the reads due now, one round over every batch (the driver calls it each
  /// interval_min).
  void round();
  /// Whether a read at most kParentRecheck old found batch `b`'s parent not yet final.
  bool parent_seen_recently(const Batch& b) const;
  /// Queues one read of batch `b`'s parent; launches of `b` wait for its answer.
  void queue_parent_read(Batch& b);

  std::optional<prefect::HttpRequest> build(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;
  void on_batch_finished(Batch& b) override;

  /// Tells `pacer` of children that start, and of those that crash (crash-aware start pacing).
  void set_pacer(StartPacer* pacer) { pacer_ = pacer; }
  /// Tells `gate` of children seen starting (backlog gating).
  void set_backlog_gate(BacklogGate* gate) { gate_ = gate; }
  /// The longest tracking interval while launches wait on the batch's backlog: the gate opens
  /// only when a read shows children started.
  static constexpr std::chrono::seconds kHeldTrackMax{2};

  /// A batch under a parent launches only while a read of the parent at most this old found it
  /// not yet final.
  static constexpr std::chrono::seconds kParentRecheck{5};
  /// The longest tracking interval while a single read covers the batch's running children.
  static constexpr std::chrono::seconds kOnePageTrackMax{5};
  /// Flow run ids per read.
  static constexpr size_t kReadSize = 200;

 private:
  /// Queues the reads of batch `b`'s children (and parent); true when any was queued.
  bool queue_reads(Batch& b);
  void on_parent_only(Batch& b, const std::string& parent_id,
                      const std::optional<std::vector<prefect::FlowRunInfo>>& runs,
                      const prefect::Classification& c);
  /// A read of the parent: `run` null when it failed or the parent was not found.
  void parent_read(Batch& b, const prefect::FlowRunInfo* run);
  /// Takes one child's state from a read; true when the child has ended.
  bool follow(Batch& b, int64_t index, const prefect::FlowRunInfo& run);
  /// Counts a read that did not find child `index`'s run; true when it is now taken as deleted.
  bool missing(Batch& b, int64_t index, const std::string& flow_run_id);
  /// Applies the batch's on_deadline to a child past a deadline or deleted (`run` null):
  /// STUCK, or cancelled and FAILED, or cancelled and launched again.
  void give_up(Batch& b, int64_t index, Breach breach, const prefect::FlowRunInfo* run);
  /// Launches item `index` again with its next :rN key; `earlier` is what became of its run.
  void relaunch(Batch& b, int64_t index, std::string_view earlier, std::string reason);
  /// Sets the batch's next read time after a round of its reads.
  void round_done(Batch& b);

  core::Clock& clock_;
  const core::WallClock& wall_;
  core::Random& random_;
  TrackOptions options_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  Outbox& outbox_;
  prefect::PrefectApi& api_;
  metrics::Metrics& metrics_;
  ChildCanceller canceller_;
  StartPacer* pacer_ = nullptr;
  BacklogGate* gate_ = nullptr;
};

}  // namespace floodgate::engine
