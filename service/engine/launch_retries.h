#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/random.h"
#include "engine/batch_book.h"
#include "engine/deployment_resolver.h"
#include "engine/request.h"
#include "metrics/metrics.h"
#include "prefect/prefect_api.h"
#include "prefect/transient.h"

namespace floodgate::engine {

/// Decides what happens to a launch that failed: a retry after back-off, or the end of the
/// item; and looks up by idempotency key the runs whose create may have succeeded unseen
/// before such an item is given up or skipped.
class LaunchRetries final : public RequestOwner, public BatchObserver {
 public:
  LaunchRetries(core::Clock& clock, core::Random& random, BatchBook& book,
                DeploymentResolver& resolver, Outbox& outbox, prefect::PrefectApi& api,
                metrics::Metrics& metrics);

  /// Retries item `index` after back-off, or fails it when its retry policy is spent.
  /// `charge`: the retry takes a retry-budget token (false for the other runs of a failed bulk
  /// request, which the first one pays for).
  void retry_or_fail(Batch& b, int64_t index, const prefect::Classification& c, bool charge = true);
  /// Like retry_or_fail for the runs of one create request that may have made them (it timed
  /// out or lost its answer): when their retry is due, one lookup by key goes first; the runs
  /// found are followed as launched, the others are created again.
  void retry_in_doubt(Batch& b, const std::vector<int64_t>& indexes,
                      const prefect::Classification& c);
  /// Sends item `index` again after `delay` without counting the try as an attempt.
  void requeue_without_attempt(Batch& b, int64_t index, core::Duration delay);
  /// Looks the runs of `indexes` up by idempotency key; those that exist are followed as
  /// launched, the others get `failure` (LAUNCH_FAILED) or, when empty, are retried (or
  /// skipped when the batch has ended). The lookup goes after `delay`.
  void queue_lookup(Batch& b, const std::vector<int64_t>& indexes, const std::string& failure,
                    core::Duration delay = core::Duration(0));
  /// True the first time an error text floodgate does not know is seen: it is then logged.
  bool first_unclassified(std::string_view text) { return unclassified_seen_.first(text); }

  std::optional<prefect::HttpRequest> build(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;
  void on_batch_ending(Batch& b, const std::vector<int64_t>& in_doubt) override;

 private:
  /// Counts a failed try of item `index`: the delay of its retry, or nullopt when it is not
  /// retried (failed, looked up before failing, or its batch has ended).
  std::optional<core::Duration> plan_retry(Batch& b, int64_t index,
                                           const prefect::Classification& c);
  /// An item whose batch has ended: skipped, or looked up first when its run may exist.
  void end_unlaunched(Batch& b, int64_t index);
  void settle_lookup(Batch& b, const LookUpRuns& lookup,
                     const std::vector<prefect::FlowRunInfo>& runs);

  core::Clock& clock_;
  core::Random& random_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  Outbox& outbox_;
  prefect::PrefectApi& api_;
  metrics::Metrics& metrics_;
  prefect::OnceFilter unclassified_seen_;
};

}  // namespace floodgate::engine
