#include "core/uuid.h"

#include <cmath>
#include <cstdint>

namespace floodgate::core {

std::string new_uuid(Random& random) {
  static constexpr char kHex[] = "0123456789abcdef";
  // A double in [0, 1) carries 53 random bits: take 52 of them, 13 hex digits, per draw.
  constexpr int kDigitsPerDraw = 13;
  std::string text(36, '-');
  uint64_t bits = 0;
  int digits_left = 0;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    if (digits_left == 0) {
      bits = static_cast<uint64_t>(std::ldexp(random.uniform01(), 52));
      digits_left = kDigitsPerDraw;
    }
    int v = static_cast<int>(bits & 15);
    bits >>= 4;
    --digits_left;
    if (i == 14) v = 4;            // version 4: random
    if (i == 19) v = 8 | (v & 3);  // variant 10xx
    text[i] = kHex[v];
  }
  return text;
}

}  // namespace floodgate::core
