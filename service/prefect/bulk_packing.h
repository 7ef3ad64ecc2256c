#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace floodgate::prefect {

// A bulk create is one JSON array of create bodies: "[" body "," body ... "]". Prefect caps it
// at 100 bodies (BULK_CREATE_LIMIT, 400 beyond), and whatever stands in front of Prefect caps
// its bytes: Prefect Cloud answers 413 above 5 MiB, an ingress often at 1 MiB. A 413 fails every
// run of the request, so bulks are packed by count AND by encoded bytes.

/// The most bodies Prefect takes in one bulk create.
inline constexpr size_t kMaxBulkItems = 100;
/// The default byte budget of one request body to Prefect: 4 MiB, below Prefect Cloud's 5 MiB.
inline constexpr size_t kDefaultMaxPrefectBodyBytes = 4 * 1024 * 1024;

/// Limits of one bulk create request.
struct BulkLimits {
  size_t max_items = kMaxBulkItems;
  size_t max_bytes = kDefaultMaxPrefectBodyBytes;
};

/// One bulk create request: `count` consecutive bodies from `first`, `bytes` long encoded.
struct BulkGroup {
  size_t first = 0;
  size_t count = 0;
  size_t bytes = 0;
  /// A single body larger than max_bytes alone: sent by itself, where the server may refuse it
  /// (413) — that run's own verdict, not its neighbours'.
  bool oversize = false;

  bool operator==(const BulkGroup&) const = default;
};

/// The encoded size of a bulk of bodies of these sizes: brackets and separating commas included.
size_t bulk_bytes(size_t body_bytes_sum, size_t count);

/// Packs bodies of the given encoded sizes, in order, into as few bulk requests as a greedy
/// pass makes, each within `limits` (count and bytes). Order is kept: items launch in index
/// order. Zero limits are treated as 1.
std::vector<BulkGroup> pack_bulk(const std::vector<size_t>& body_bytes, BulkLimits limits);

/// The body of one bulk create: the JSON array of `bodies[first, first + count)`.
std::string encode_bulk(const std::vector<std::string>& bodies, const BulkGroup& group);

}  // namespace floodgate::prefect
