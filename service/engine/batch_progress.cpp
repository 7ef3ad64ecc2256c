#include "engine/batch_progress.h"

#include "engine/backlog_gate.h"

namespace floodgate::engine {

using core::ItemState;
using nlohmann::json;

namespace {

bool resolving(const Batch& b) {
  for (const auto& d : b.deployments) {
    if (d.state == BatchDeployment::State::kResolving && !d.waiting.empty()) return true;
  }
  return false;
}

// At a running cap with items ready: the start pace's own when it is below max_running.
void add_cap_reason(const Batch& b, std::vector<Wait>& out) {
  if (!b.capped || b.backlog.held) return;
  const bool pace_binds = b.pace.active && (!b.spec.limits.max_running ||
                                            b.pace.running_cap < *b.spec.limits.max_running);
  out.push_back(pace_binds ? Wait::kStartPacing : Wait::kRunningCap);
}

}  // namespace

std::vector<Wait> waiting_on(const Batch& b, const Dispatcher::Gates& gates, bool own_limits) {
  std::vector<Wait> out;
  if (core::is_final(b.rec.state)) return out;
  if (b.rec.state == core::BatchState::kPaused) {
    out.push_back(Wait::kPaused);
    return out;
  }
  if (resolving(b)) out.push_back(Wait::kDeployment);
  if (b.parent_read_outstanding) out.push_back(Wait::kParent);
  const bool ready = !b.ready.empty();
  if ((ready && gates.prefect_errors) || b.count(ItemState::kRetryWait) > 0) {
    out.push_back(Wait::kPrefectErrors);
  }
  if (ready) {
    add_cap_reason(b, out);
    if (b.backlog.held) out.push_back(Wait::kBacklog);
    if (own_limits) {
      // The batch's rate tokens: its start pace's when that set them below its own rate.
      const auto& own = b.spec.limits.launches_per_second;
      out.push_back(b.pace.active && (!own || b.pace.rate < *own) ? Wait::kStartPacing
                                                                  : Wait::kBatchRate);
    }
    if (gates.token_bucket) out.push_back(Wait::kTokenBucket);
    if (gates.in_flight_limit) out.push_back(Wait::kInFlightLimit);
  }
  const int64_t to_launch = b.count(ItemState::kPending) + b.count(ItemState::kLaunching) +
                            b.count(ItemState::kRetryWait);
  if (to_launch == 0 && b.count(ItemState::kLaunched) > 0) out.push_back(Wait::kChildren);
  return out;
}

json progress_json(const Batch& b) {
  if (core::is_final(b.rec.state)) return json(nullptr);
  const auto& p = b.progress;
  json reasons = json::array();
  for (Wait w : p.waiting_on) reasons.push_back(kWaitNames[static_cast<size_t>(w)]);
  const auto eta = p.rate.eta_s();
  return json{{"launch_rate", p.rate.launch_rate()},
              {"completion_rate", p.rate.completion_rate()},
              {"eta_s", eta ? json(*eta) : json(nullptr)},
              {"waiting_on", std::move(reasons)},
              {"backlog", backlog(b)},
              {"max_backlog", b.backlog.limit ? json(*b.backlog.limit) : json(nullptr)}};
}

}  // namespace floodgate::engine
