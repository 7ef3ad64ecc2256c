#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/batch_spec.h"

namespace floodgate::api {

/// One thing wrong with a request, naming the field at fault ("runs[3].parameters").
struct FieldError {
  std::string field;
  std::string message;
};

/// Limits on what one request may hold.
struct RequestLimits {
  size_t max_runs = 100000;
};

/// A validated POST /v1/batches body.
struct BatchRequest {
  engine::BatchSpec spec;
  std::vector<std::string> run_specs;  // each run's spec as compact JSON
};

/// Validates a batch submission. On failure returns nullopt and fills `errors` (the first
/// error is the most important one).
std::optional<BatchRequest> parse_batch_request(const nlohmann::json& body,
                                                const RequestLimits& limits,
                                                std::vector<FieldError>& errors);

/// Validates a PATCH body and merges it into `spec`. False with `errors` on a bad body.
bool apply_batch_patch(const nlohmann::json& body, engine::BatchSpec& spec,
                       std::vector<FieldError>& errors);

}  // namespace floodgate::api
