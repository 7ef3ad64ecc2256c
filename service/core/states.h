#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace floodgate::core {

/// Where one item (one child run) of a batch stands.
enum class ItemState : uint8_t {
  kPending,
  kLaunching,
  kRetryWait,
  kLaunched,
  kCompleted,
  kFailed,
  kCrashed,
  kCancelled,
  kLaunchFailed,
  kSkipped,
  kStuck,  // past its start or run deadline (or deleted in Prefect), left to the parent
};
inline constexpr int kItemStateCount = 11;

/// Where a batch stands.
enum class BatchState : uint8_t { kQueued, kRunning, kPaused, kCompleted, kFailed, kCancelled };
inline constexpr int kBatchStateCount = 6;

inline constexpr std::array<std::string_view, kItemStateCount> kItemStateNames = {
    "PENDING", "LAUNCHING", "RETRY_WAIT",    "LAUNCHED", "COMPLETED", "FAILED",
    "CRASHED", "CANCELLED", "LAUNCH_FAILED", "SKIPPED",  "STUCK"};
inline constexpr std::array<std::string_view, kBatchStateCount> kBatchStateNames = {
    "QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"};

constexpr std::string_view to_string(ItemState s) { return kItemStateNames[static_cast<int>(s)]; }
constexpr std::string_view to_string(BatchState s) { return kBatchStateNames[static_cast<int>(s)]; }

constexpr std::optional<ItemState> parse_item_state(std::string_view s) {
  for (int i = 0; i < kItemStateCount; ++i) {
    if (kItemStateNames[i] == s) return static_cast<ItemState>(i);
  }
  return std::nullopt;
}
constexpr std::optional<BatchState> parse_batch_state(std::string_view s) {
  for (int i = 0; i < kBatchStateCount; ++i) {
    if (kBatchStateNames[i] == s) return static_cast<BatchState>(i);
  }
  return std::nullopt;
}

/// An item its batch no longer waits for: it will not change again on its own (a redrive may
/// still restart it), except STUCK, whose child is still followed and takes its final state
/// when it ends.
constexpr bool is_final(ItemState s) {
  switch (s) {
    case ItemState::kCompleted:
    case ItemState::kFailed:
    case ItemState::kCrashed:
    case ItemState::kCancelled:
    case ItemState::kLaunchFailed:
    case ItemState::kSkipped:
    case ItemState::kStuck:
      return true;
    default:
      return false;
  }
}
constexpr bool is_final(BatchState s) {
  return s == BatchState::kCompleted || s == BatchState::kFailed || s == BatchState::kCancelled;
}
/// Final states that count against the batch's failure tolerance.
constexpr bool is_failure(ItemState s) {
  return s == ItemState::kFailed || s == ItemState::kCrashed || s == ItemState::kLaunchFailed ||
         s == ItemState::kStuck;
}

}  // namespace floodgate::core
