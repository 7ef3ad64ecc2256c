#pragma once

#include <optional>
#include <string>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "engine/deployment_resolver.h"
#include "engine/request.h"
#include "store/store.h"

namespace floodgate::engine {

/// The result of a control operation.
enum class ControlResult { kOk, kNotFound, kConflict };
struct ControlAnswer {
  ControlResult result = ControlResult::kOk;
  std::string message;
};

/// The per-batch quota the launch scheduler applies.
core::BatchQuota quota_of(const BatchSpec& spec);

/// The API's changes to a running batch: cancel, pause, resume, redrive and new limits; and
/// bringing a batch that ended before this process started back into memory for a redrive.
class BatchControl {
 public:
  BatchControl(core::Clock& clock, BatchBook& book, DeploymentResolver& resolver,
               core::LaunchScheduler& scheduler, Outbox& outbox, store::Store& store);

  ControlAnswer cancel(const std::string& id, std::optional<OnCancel> on_cancel);
  ControlAnswer pause(const std::string& id);
  ControlAnswer resume(const std::string& id);
  /// Launches the failed and skipped items of a batch again (new keys for runs that existed).
  ControlAnswer redrive(const std::string& id);
  /// Applies new limits/tolerance (already validated, merged into a full spec).
  ControlAnswer update_spec(const std::string& id, const BatchSpec& spec);
  /// Brings a batch that ended before this process started back into memory (for redrive),
  /// from its record and item counts read from the store off the engine thread.
  void hold(store::BatchRecord record, const std::array<int64_t, core::kItemStateCount>& counts);

 private:
  /// The batch when it is known and has not ended; otherwise the answer says why not.
  Batch* active(const std::string& id, ControlAnswer& answer);
  void reload_items(Batch& b);
  /// Items to redrive, with their run specs (read back from the store where not in memory).
  std::vector<int64_t> redrivable(Batch& b);
  void relaunch(Batch& b, int64_t index);

  core::Clock& clock_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  core::LaunchScheduler& scheduler_;
  Outbox& outbox_;
  store::Store& store_;
};

}  // namespace floodgate::engine
