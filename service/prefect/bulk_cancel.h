#pragma once

#include <optional>
#include <string>
#include <vector>

#include "prefect/http_client.h"

namespace floodgate::prefect {

// POST /flow_runs/bulk_set_state (server/api/flow_runs.py, bulk_set_flow_run_state; servers
// >= 3.6.16): one state for the runs a filter selects, at most 50 (BULK_OPERATION_LIMIT; 422
// beyond). Each run goes through the orchestration rules in its own transaction and answers like
// a single set_state: {"results": [{"flow_run_id", "status": "ACCEPT"|"REJECT"|"ABORT"|"WAIT",
// "state", "details": {"reason", ...}}]}; an exception becomes ABORT with str(exc) as reason.
// Runs the filter does not find (deleted) are simply absent from the results. An older server
// answers 405 (the path matches GET/PATCH/DELETE /flow_runs/{id}) or 404.

/// The most runs one bulk_set_state request may select.
inline constexpr size_t kMaxBulkSetState = 50;

/// The body asking Prefect to cancel these runs (at most kMaxBulkSetState ids): CANCELLING with
/// one transition id, so a retried request is rejected where it already applied.
std::string build_bulk_cancel_body(const std::vector<std::string>& flow_run_ids,
                                   const std::string& transition_id, const std::string& message);

/// One run's answer in a bulk_set_state result.
struct BulkSetStateResult {
  std::string flow_run_id;
  std::string status;      // ACCEPT, REJECT, ABORT or WAIT
  std::string state_type;  // the run's state after the proposal ("" when none came back)
  std::string reason;      // details.reason, when given
};

/// Parses a bulk_set_state answer; nullopt when it is not one.
std::optional<std::vector<BulkSetStateResult>> parse_bulk_set_state(const std::string& body);

/// Whether an answer to bulk_set_state says the server has no such endpoint (older Prefect).
bool is_missing_bulk_set_state(const HttpResponse& response);

}  // namespace floodgate::prefect
