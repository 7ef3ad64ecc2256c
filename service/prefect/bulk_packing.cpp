#include "prefect/bulk_packing.h"

#include <algorithm>

namespace floodgate::prefect {

size_t bulk_bytes(size_t body_bytes_sum, size_t count) {
  // "[]" plus a comma between each two bodies.
  return 2 + body_bytes_sum + (count > 0 ? count - 1 : 0);
}

std::vector<BulkGroup> pack_bulk(const std::vector<size_t>& body_bytes, BulkLimits limits) {
  limits.max_items = std::max<size_t>(limits.max_items, 1);
  limits.max_bytes = std::max<size_t>(limits.max_bytes, 1);
  std::vector<BulkGroup> groups;
  BulkGroup current;
  size_t sum = 0;  // body bytes of `current`
  auto close = [&] {
    if (current.count == 0) return;
    current.bytes = bulk_bytes(sum, current.count);
    current.oversize = current.count == 1 && current.bytes > limits.max_bytes;
    groups.push_back(current);
    current = BulkGroup{current.first + current.count, 0, 0, false};
    sum = 0;
  };
  for (size_t i = 0; i < body_bytes.size(); ++i) {
    const size_t b = body_bytes[i];
    if (current.count > 0 && (current.count >= limits.max_items ||
                              bulk_bytes(sum + b, current.count + 1) > limits.max_bytes)) {
      close();
    }
    current.count += 1;
    sum += b;
  }
  close();
  return groups;
}

std::string encode_bulk(const std::vector<std::string>& bodies, const BulkGroup& group) {
  size_t sum = 0;
  for (size_t i = group.first; i < group.first + group.count; ++i) sum += bodies[i].size();
  std::string out;
  out.reserve(bulk_bytes(sum, group.count));
  out += '[';
  for (size_t i = group.first; i < group.first + group.count; ++i) {
    if (i > group.first) out += ',';
    out += bodies[i];
  }
  out += ']';
  return out;
}

}  // namespace floodgate::prefect
