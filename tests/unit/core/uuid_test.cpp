#include "core/uuid.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <set>
#include <vector>

#include "core/random.h"

namespace floodgate::core {
namespace {

/// Returns the given values in turn, then starts over.
class ScriptedRandom final : public Random {
 public:
  explicit ScriptedRandom(std::vector<double> values) : values_(std::move(values)) {}
  double uniform01() override {
    ++draws;
    return values_[next_++ % values_.size()];
  }
  int draws = 0;

 private:
  std::vector<double> values_;
  size_t next_ = 0;
};

// The draw whose 52 bits are `bits` (new_uuid reads them four at a time, lowest first).
double draw_of(uint64_t bits) { return std::ldexp(static_cast<double>(bits), -52); }

TEST(UuidTest, HasTheVersion4TextForm) {
  MtRandom random(42);
  const std::regex form("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_uuid(random);
    EXPECT_TRUE(std::regex_match(id, form)) << id;
  }
}

TEST(UuidTest, DigitsComeFromTheRandomSourceInOrder) {
  // 13 digits a draw; the version and variant positions use up a digit too.
  ScriptedRandom random({draw_of(0x0fedcba987654), draw_of(0x0123456789abc), draw_of(0xfffffff)});
  EXPECT_EQ(new_uuid(random), "456789ab-cdef-4cba-9876-543210ffffff");
  EXPECT_EQ(random.draws, 3);
}

TEST(UuidTest, VersionAndVariantDigitsAreForced) {
  ScriptedRandom zeros({0.0});
  EXPECT_EQ(new_uuid(zeros), "00000000-0000-4000-8000-000000000000");
  ScriptedRandom ones({draw_of((uint64_t{1} << 52) - 1)});
  EXPECT_EQ(new_uuid(ones), "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

TEST(UuidTest, SeededSourceGivesDistinctIdsAndRepeatsWithTheSameSeed) {
  MtRandom a(7);
  MtRandom b(7);
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = new_uuid(a);
    EXPECT_EQ(id, new_uuid(b));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(UuidTest, EveryRandomDigitTakesEveryValue) {
  MtRandom random(1);
  std::vector<std::set<char>> values(36);
  for (int i = 0; i < 2000; ++i) {
    const std::string id = new_uuid(random);
    for (size_t k = 0; k < id.size(); ++k) values[k].insert(id[k]);
  }
  for (size_t k = 0; k < values.size(); ++k) {
    size_t expected = 16;
    if (k == 8 || k == 13 || k == 18 || k == 23) expected = 1;  // '-'
    if (k == 14) expected = 1;                                  // '4'
    if (k == 19) expected = 4;                                  // 8, 9, a, b
    EXPECT_EQ(values[k].size(), expected) << "digit " << k;
  }
}

}  // namespace
}  // namespace floodgate::core
