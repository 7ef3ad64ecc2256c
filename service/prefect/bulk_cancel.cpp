#include "prefect/bulk_cancel.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace floodgate::prefect {

using nlohmann::json;

std::string build_bulk_cancel_body(const std::vector<std::string>& flow_run_ids,
                                   const std::string& transition_id, const std::string& message) {
  json body = {
      {"flow_runs", {{"id", {{"any_", flow_run_ids}}}}},
      {"state",
       {{"type", "CANCELLING"},
        {"name", "Cancelling"},
        {"message", message},
        {"state_details", {{"transition_id", transition_id}}}}},
      {"force", false},
      {"limit", static_cast<int>(std::clamp<size_t>(flow_run_ids.size(), 1, kMaxBulkSetState))}};
  return body.dump();
}

namespace {
std::string string_at(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

std::optional<std::vector<BulkSetStateResult>> parse_bulk_set_state(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("results") || !j["results"].is_array()) return std::nullopt;
  std::vector<BulkSetStateResult> out;
  for (const auto& r : j["results"]) {
    if (!r.is_object()) return std::nullopt;
    BulkSetStateResult res;
    res.flow_run_id = string_at(r, "flow_run_id");
    res.status = string_at(r, "status");
    if (res.flow_run_id.empty() || res.status.empty()) return std::nullopt;
    if (auto st = r.find("state"); st != r.end() && st->is_object()) {
      res.state_type = string_at(*st, "type");
    }
    if (auto d = r.find("details"); d != r.end() && d->is_object()) {
      res.reason = string_at(*d, "reason");
    }
    out.push_back(std::move(res));
  }
  return out;
}

bool is_missing_bulk_set_state(const HttpResponse& response) {
  return response.status == 405 ||
         (response.status == 404 && response.body.find("Not Found") != std::string::npos);
}

}  // namespace floodgate::prefect
