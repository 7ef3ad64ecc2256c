#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "engine/deployment_resolver.h"
#include "engine/request.h"
#include "store/store.h"

namespace floodgate::engine {

/// The result of a control operation. kReadFirst (redrive only): the engine thread lacks
/// something only the store holds; read what the answer's `needs` names, then redrive again.
enum class ControlResult { kOk, kNotFound, kConflict, kReadFirst };

/// What a redrive must have read from the store (off the engine thread) before it can be applied.
struct RedriveNeeds {
  bool items = false;          // the items in a state a redrive launches again, with their specs
  std::vector<int64_t> specs;  // run specs of these items (released once their run existed)
  uint64_t evictions = 0;      // the batch's Batch::redrivable_evictions when this was asked
};

/// What was read from the store for a redrive, on the store reader's thread.
struct RedriveReads {
  std::optional<std::vector<store::ItemRecord>> items;  // redrivable items, with their specs
  uint64_t evictions = 0;                               // as in the RedriveNeeds answered
  std::vector<std::pair<int64_t, std::string>> specs;   // (index, spec); "" when the store has none
};

struct ControlAnswer {
  ControlAnswer() = default;
  ControlAnswer(ControlResult r, std::string m) : result(r), message(std::move(m)) {}

  ControlResult result = ControlResult::kOk;
  std::string message;
  RedriveNeeds needs;  // kReadFirst only
};

/// The API's changes to a running batch: cancel, pause, resume, redrive and new limits; and
/// bringing a batch that ended before this process started back into memory for a redrive.
/// Never reads the store: what a redrive needs from it is read by the caller, off this thread.
class BatchControl {
 public:
  BatchControl(core::Clock& clock, BatchBook& book, DeploymentResolver& resolver,
               core::LaunchScheduler& scheduler, Outbox& outbox);

  ControlAnswer cancel(const std::string& id, std::optional<OnCancel> on_cancel);
  ControlAnswer pause(const std::string& id);
  ControlAnswer resume(const std::string& id);
  /// Launches the failed and skipped items of a batch again (new keys for runs that existed).
  /// When the batch's items are not in memory, or runs that ended FAILED or CRASHED no longer
  /// hold their spec, and `reads` does not supply them (read for the batch as it is now),
  /// changes nothing and answers kReadFirst with what to read.
  ControlAnswer redrive(const std::string& id, const RedriveReads& reads = {});
  /// Applies new limits/tolerance (already validated, merged into a full spec).
  ControlAnswer update_spec(const std::string& id, const BatchSpec& spec);
  /// Brings a batch that ended before this process started back into memory (for redrive),
  /// from its record and item counts read from the store off the engine thread.
  void hold(store::BatchRecord record, const std::array<int64_t, core::kItemStateCount>& counts);

 private:
  /// The batch when it is known and has not ended; otherwise the answer says why not.
  Batch* active(const std::string& id, ControlAnswer& answer);
  /// The items to redrive into `again`, each with its run spec (taken from `reads` where not
  /// in memory); kReadFirst (for every spec not in memory) when one of them was not read,
  /// kConflict when the store has none. Changes nothing unless it answers kOk.
  ControlAnswer take_specs(Batch& b, const RedriveReads& reads, std::vector<int64_t>& again);
  void relaunch(Batch& b, int64_t index);
  /// Puts the redriven items `again` (all with their spec) back to work.
  void restart(Batch& b, const std::vector<int64_t>& again);

  core::Clock& clock_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  core::LaunchScheduler& scheduler_;
  Outbox& outbox_;
};

}  // namespace floodgate::engine
