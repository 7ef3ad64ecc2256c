#include "engine/batch_view.h"

#include <algorithm>

#include "core/time_format.h"
#include "engine/batch.h"
#include "engine/batch_progress.h"

namespace floodgate::engine {

using nlohmann::json;

json batch_view(const Batch& b) {
  json counts = json::object();
  for (int i = 0; i < core::kItemStateCount; ++i) {
    counts[std::string(core::kItemStateNames[i])] = b.counts[i];
  }
  json j = to_json(b.spec);
  j["id"] = b.rec.id;
  j["state"] = std::string(core::to_string(b.rec.state));
  j["total"] = b.rec.total;
  j["sealed"] = b.rec.sealed;
  j["counts"] = std::move(counts);
  j["created_at"] = core::format_time_ms(b.rec.created_at_ms);
  j["updated_at"] = core::format_time_ms(b.rec.updated_at_ms);
  j["finished_at"] =
      b.rec.finished_at_ms ? json(core::format_time_ms(b.rec.finished_at_ms)) : json();
  j["version"] = b.rec.version;
  j["idempotency_key"] = b.rec.idempotency_key ? json(*b.rec.idempotency_key) : json();
  j["failures"] = b.failures;
  j["tolerated_failures"] = failure_allowance(b.spec, b.rec.total);
  // The start pace while children crash as they start (null when it never cut).
  j["start_pace"] = b.pace.active ? json{{"launches_per_second", b.pace.rate},
                                         {"max_running", b.pace.running_cap},
                                         {"cuts", b.pace.cuts},
                                         {"early_crashes", b.pace.early_crashes}}
                                  : json(nullptr);
  j["progress"] = progress_json(b);
  return j;
}

RunView run_view(const Item& item, int64_t index, core::TimePoint now) {
  RunView v;
  v.index = index;
  v.state = item.state;
  v.flow_run_id = item.flow_run_id;
  v.flow_run_state = item.flow_run_state;
  v.attempts = item.attempts;
  v.last_error = item.last_error;
  v.transient_attempts = item.unavailable;
  if (item.settled > item.first_attempt) {
    v.waited_s = core::to_seconds(item.settled - item.first_attempt);
  } else if (item.attempts > 0 && (item.state == core::ItemState::kLaunching ||
                                   item.state == core::ItemState::kRetryWait ||
                                   item.state == core::ItemState::kPending)) {
    v.waited_s = std::max(0.0, core::to_seconds(now - item.first_attempt));
  }
  if (item.earlier_runs.is_array() || !item.parent_task_run_id.empty()) {
    json d = json::object();
    if (item.earlier_runs.is_array()) d["earlier_runs"] = item.earlier_runs;
    if (!item.parent_task_run_id.empty()) d["parent_task_run_id"] = item.parent_task_run_id;
    v.detail_json = d.dump();
  }
  return v;
}

RunView run_view(const store::ItemRecord& r) {
  RunView v;
  v.index = r.index;
  v.state = r.state;
  v.flow_run_id = r.flow_run_id;
  v.flow_run_state = r.flow_run_state;
  v.attempts = r.attempts;
  v.last_error = r.last_error;
  v.detail_json = r.detail_json;
  if (!r.detail_json.empty()) {
    json d = json::parse(r.detail_json, nullptr, false);
    if (d.is_object()) {
      v.transient_attempts = d.value("transient_attempts", 0);
      v.waited_s = d.value("waited_s", 0.0);
    }
  }
  return v;
}

}  // namespace floodgate::engine
