#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/states.h"
#include "store/store.h"

namespace floodgate::store {

/// What a store read for an append before writing anything: the batch, and the chunk already
/// recorded under the request's key (if any).
struct AppendFound {
  AppendFound() = default;
  AppendFound(core::BatchState s, bool is_sealed, int64_t runs)
      : state(s), sealed(is_sealed), total(runs) {}

  core::BatchState state = core::BatchState::kQueued;
  bool sealed = true;
  int64_t total = 0;
  bool chunk_found = false;
  int64_t chunk_first = 0;
  int64_t chunk_count = 0;
  std::string chunk_hash;
};

/// A batch state read from a store; StoreError naming `whose` ("batch X") for an unknown one.
core::BatchState stored_batch_state(const std::string& text, const std::string& whose);

/// The answer an append gets without writing (a repeated or reused key, an ended or sealed
/// batch, a refusal), or nullopt when the runs are to be appended at `found.total`. The rules
/// both stores follow, in this order.
std::optional<AppendResult> settle_append(const AppendRequest& request, const AppendFound& found);

}  // namespace floodgate::store
