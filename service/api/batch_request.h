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
  bool malformed = false;  // the JSON itself is refused (400), not a value in it (422)
};

/// Limits on what one request may hold.
struct RequestLimits {
  size_t max_runs = 100000;
  int max_depth = 64;                  // nested objects and lists, the body's own included
  size_t max_run_bytes = 1024 * 1024;  // one run's JSON text
  size_t max_field_bytes = 64 * 1024;  // any batch field other than "runs"
};

/// A validated POST /v1/batches body.
struct BatchRequest {
  engine::BatchSpec spec;
  std::vector<std::string> run_specs;  // each run's spec as compact JSON
  bool sealed = true;  // false: more runs will be appended (POST /v1/batches/{id}/runs)
};

/// Validates a batch submission given as JSON text. On failure returns nullopt and fills
/// `errors` (the first error is the most important one). Never recurses with the input's depth
/// and holds at most one run as a tree at a time.
std::optional<BatchRequest> parse_batch_request(std::string_view body, const RequestLimits& limits,
                                                std::vector<FieldError>& errors);

/// The same for a body that is already a tree (tests and tools).
std::optional<BatchRequest> parse_batch_request(const nlohmann::json& body,
                                                const RequestLimits& limits,
                                                std::vector<FieldError>& errors);

/// Validates the body of POST /v1/batches/{id}/runs ({"runs": [...]}, each run as in a batch
/// submission, under the same limits); returns each run's spec as compact JSON, or nullopt
/// with `errors`. A run need not name a deployment: the batch has one.
std::optional<std::vector<std::string>> parse_runs_chunk(std::string_view body,
                                                         const RequestLimits& limits,
                                                         std::vector<FieldError>& errors);

/// Validates a PATCH body and merges it into `spec`. False with `errors` on a bad body.
bool apply_batch_patch(const nlohmann::json& body, engine::BatchSpec& spec,
                       std::vector<FieldError>& errors);

}  // namespace floodgate::api
