#pragma once

#include <cstdint>
#include <optional>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "engine/deployment_resolver.h"
#include "engine/launch_retries.h"
#include "engine/request.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// Links children to a parent flow run as run_deployment(as_subflow=True) does: a placeholder
/// task run in the parent stands for each child, created before the child, which then names it
/// as its parent_task_run_id.
class SubflowLinker final : public RequestOwner {
 public:
  SubflowLinker(core::Clock& clock, BatchBook& book, DeploymentResolver& resolver,
                LaunchRetries& retries, core::LaunchScheduler& scheduler, prefect::PrefectApi& api);

  /// The placeholder create of item `index` (LAUNCHING until its answer).
  Launch placeholder(Batch& b, int64_t index);

  std::optional<prefect::HttpRequest> build(Request& request) override;
  bool resend_stale(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

 private:
  void linked(Batch& b, int64_t index, const std::string& task_run_id);

  core::Clock& clock_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  LaunchRetries& retries_;
  core::LaunchScheduler& scheduler_;
  prefect::PrefectApi& api_;
};

}  // namespace floodgate::engine
