// The shared query table: both dialects get the same texts, differing only in placeholders.

#include "store/queries.h"

#include <gtest/gtest.h>

#include <string>

namespace floodgate::store {
namespace {

TEST(QueriesTest, SqlitePlaceholdersReplaceEveryDollarNumber) {
  EXPECT_EQ(with_sqlite_placeholders("a = $1 AND b = $10 AND c = '$x'"),
            "a = ?1 AND b = ?10 AND c = '$x'");
  EXPECT_EQ(with_sqlite_placeholders("ends in $"), "ends in $");
}

TEST(QueriesTest, DialectsDifferOnlyInPlaceholders) {
  for (size_t i = 0; i < kQueryCount; ++i) {
    const auto q = static_cast<Query>(i);
    const std::string pg(query_text(SqlDialect::kPostgres, q));
    const std::string lite(query_text(SqlDialect::kSqlite, q));
    SCOPED_TRACE(pg);
    ASSERT_FALSE(pg.empty());
    EXPECT_EQ(lite.find('$'), std::string::npos);
    ASSERT_EQ(pg.size(), lite.size());
    for (size_t c = 0; c < pg.size(); ++c) {
      if (pg[c] != lite[c]) {
        EXPECT_TRUE(pg[c] == '$' && lite[c] == '?') << "at " << c;
      }
    }
  }
}

}  // namespace
}  // namespace floodgate::store
