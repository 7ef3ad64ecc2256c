#include "prefect/bulk_packing.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace floodgate::prefect {
namespace {

std::vector<size_t> sizes_of(const std::vector<std::string>& bodies) {
  std::vector<size_t> out;
  for (const auto& b : bodies) out.push_back(b.size());
  return out;
}

TEST(BulkPackingTest, SmallBodiesAreCutByCount) {
  std::vector<size_t> sizes(250, 100);
  auto groups = pack_bulk(sizes, {});
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (BulkGroup{0, 100, bulk_bytes(100 * 100, 100), false}));
  EXPECT_EQ(groups[1], (BulkGroup{100, 100, bulk_bytes(100 * 100, 100), false}));
  EXPECT_EQ(groups[2], (BulkGroup{200, 50, bulk_bytes(50 * 100, 50), false}));
}

TEST(BulkPackingTest, LargeBodiesAreCutByBytes) {
  // 100 runs of 100 KiB parameters: 10 MiB by count alone, twice Prefect Cloud's 5 MiB.
  std::vector<size_t> sizes(100, 100 * 1024);
  auto groups = pack_bulk(sizes, {});
  size_t total = 0;
  for (const auto& g : groups) {
    EXPECT_LE(g.bytes, kDefaultMaxPrefectBodyBytes);
    EXPECT_FALSE(g.oversize);
    total += g.count;
  }
  EXPECT_EQ(total, 100u);
  // 4 MiB holds 40 bodies of 100 KiB with their commas: greedy fills each request.
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].count, 40u);
  EXPECT_EQ(groups[1].count, 40u);
  EXPECT_EQ(groups[2].count, 20u);
}

TEST(BulkPackingTest, TheByteLimitCountsBracketsAndCommas) {
  // Three bodies of 10 bytes encode to 2 + 30 + 2 = 34 bytes.
  EXPECT_EQ(bulk_bytes(30, 3), 34u);
  EXPECT_EQ(bulk_bytes(0, 0), 2u);
  auto fits = pack_bulk({10, 10, 10}, {100, 34});
  ASSERT_EQ(fits.size(), 1u);
  EXPECT_EQ(fits[0].bytes, 34u);
  auto split = pack_bulk({10, 10, 10}, {100, 33});
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0], (BulkGroup{0, 2, 23, false}));
  EXPECT_EQ(split[1], (BulkGroup{2, 1, 12, false}));
}

TEST(BulkPackingTest, AnOversizeBodyGoesAloneAndIsMarked) {
  auto groups = pack_bulk({10, 500, 10, 10}, {100, 100});
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (BulkGroup{0, 1, 12, false}));
  EXPECT_EQ(groups[1], (BulkGroup{1, 1, 502, true}));
  EXPECT_EQ(groups[2], (BulkGroup{2, 2, 23, false}));
}

TEST(BulkPackingTest, EmptyInputAndZeroLimits) {
  EXPECT_TRUE(pack_bulk({}, {}).empty());
  auto one_each = pack_bulk({5, 5}, {0, 0});
  ASSERT_EQ(one_each.size(), 2u);
  EXPECT_TRUE(one_each[0].oversize);
}

TEST(BulkPackingTest, EncodedGroupsAreJsonArraysOfExactlyTheirBytes) {
  std::mt19937 rng(17);
  std::vector<std::string> bodies;
  for (int i = 0; i < 500; ++i) {
    nlohmann::json body = {{"idempotency_key", "floodgate:b:" + std::to_string(i)},
                           {"parameters", {{"blob", std::string(rng() % 5000, 'x')}}}};
    bodies.push_back(body.dump());
  }
  const BulkLimits limits{100, 64 * 1024};
  auto groups = pack_bulk(sizes_of(bodies), limits);
  size_t next = 0;
  for (const auto& g : groups) {
    EXPECT_EQ(g.first, next);  // in order, none skipped or repeated
    next += g.count;
    EXPECT_LE(g.count, limits.max_items);
    EXPECT_LE(g.bytes, limits.max_bytes);
    const std::string encoded = encode_bulk(bodies, g);
    EXPECT_EQ(encoded.size(), g.bytes);
    auto j = nlohmann::json::parse(encoded);
    ASSERT_TRUE(j.is_array());
    EXPECT_EQ(j.size(), g.count);
    EXPECT_EQ(j.front()["idempotency_key"], "floodgate:b:" + std::to_string(g.first));
  }
  EXPECT_EQ(next, bodies.size());
  // Greedy: no group could have taken the next body.
  for (size_t k = 0; k + 1 < groups.size(); ++k) {
    const auto& g = groups[k];
    const size_t next_body = bodies[g.first + g.count].size();
    EXPECT_TRUE(g.count == limits.max_items || g.bytes + 1 + next_body > limits.max_bytes) << k;
  }
}

}  // namespace
}  // namespace floodgate::prefect
