// libFuzzer target: a POST /v1/batches or PATCH body, parsed as the router parses it, then
// validated (parse_batch_request) and merged into a spec (apply_batch_patch).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "api/batch_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  floodgate::api::RequestLimits limits;
  limits.max_runs = 64;  // small, so the fuzzer also reaches the "too many runs" branch
  std::vector<floodgate::api::FieldError> errors;
  auto request = floodgate::api::parse_batch_request(body, limits, errors);
  if (request) {
    // A valid batch: every run spec must be JSON again, and a PATCH of the same body applies
    // to its spec without throwing.
    for (const auto& spec : request->run_specs) {
      if (nlohmann::json::parse(spec, nullptr, false).is_discarded()) __builtin_trap();
    }
    std::vector<floodgate::api::FieldError> patch_errors;
    floodgate::api::apply_batch_patch(body, request->spec, patch_errors);
  } else if (errors.empty()) {
    __builtin_trap();  // a refusal must say why
  }
  return 0;
}
