#include "store/append_rules.h"

namespace floodgate::store {

core::BatchState stored_batch_state(const std::string& text, const std::string& whose) {
  const auto parsed = core::parse_batch_state(text);
  if (!parsed) throw StoreError(whose + " has unknown state '" + text + "' stored");
  return *parsed;
}

std::optional<AppendResult> settle_append(const AppendRequest& request, const AppendFound& found) {
  AppendResult result;
  result.total = found.total;
  if (found.chunk_found) {
    // A key answers as the first time, even once the batch has ended or was sealed.
    result.first_index = found.chunk_first;
    result.count = found.chunk_count;
    result.outcome = found.chunk_hash == request.body_hash ? AppendOutcome::kRepeated
                                                           : AppendOutcome::kKeyReused;
    return result;
  }
  if (core::is_final(found.state)) {
    result.outcome = AppendOutcome::kFinal;
  } else if (found.sealed) {
    result.outcome = AppendOutcome::kSealed;
  } else if (!request.allowed) {
    result.outcome = AppendOutcome::kRefused;
  } else {
    return std::nullopt;
  }
  return result;
}

}  // namespace floodgate::store
