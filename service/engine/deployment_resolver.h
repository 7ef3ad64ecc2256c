#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "engine/batch_book.h"
#include "engine/request.h"
#include "metrics/metrics.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// Resolves each deployment of a batch once, releases the items waiting for it into the batch's
/// ready line, and keeps the launch scheduler's count of ready items true.
class DeploymentResolver final : public RequestOwner, public BatchObserver {
 public:
  DeploymentResolver(core::Clock& clock, core::Random& random, BatchBook& book,
                     core::LaunchScheduler& scheduler, Outbox& outbox, prefect::PrefectApi& api,
                     metrics::Metrics& metrics);

  /// Puts item `index` in line: ready when its deployment is resolved, waiting for the
  /// resolution otherwise (asked for once), failed when it cannot be resolved.
  void make_ready(Batch& b, int64_t index);
  /// Tells the scheduler how many items of `b` may go now (none while a read of the parent is
  /// outstanding, at most max_running minus the children not yet final).
  void sync_ready(Batch& b);

  std::optional<prefect::HttpRequest> build(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;
  void on_batch_ending(Batch& b, const std::vector<int64_t>& in_doubt) override;

 private:
  void fail(Batch& b, BatchDeployment& d, const std::string& message);
  void release(Batch& b, BatchDeployment& d);

  core::Clock& clock_;
  core::Random& random_;
  BatchBook& book_;
  core::LaunchScheduler& scheduler_;
  Outbox& outbox_;
  prefect::PrefectApi& api_;
  metrics::Metrics& metrics_;
};

/// The retry policy of launches (and deployment reads) of a batch.
core::RetryPolicy retry_policy(const BatchSpec& spec);

}  // namespace floodgate::engine
