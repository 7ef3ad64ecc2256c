#include "api/json_scan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace floodgate::api {
namespace {

std::optional<JsonProblem> check(const std::string& text, int depth = 64) {
  return check_json(text, depth);
}

TEST(JsonScanTest, AcceptsOrdinaryJson) {
  for (const char* ok : {R"({})", R"([])", R"({"a": [1, -2, 3.5, "x\n\u00e9\ud83d\ude00", true,
                         false, null, {"b": {}}]})",
                         "  \"s\"  ", "0", "-0", "1e2", "0.5", "\"\xc3\xa9\xf0\x9f\x98\x80\""}) {
    EXPECT_FALSE(check(ok).has_value()) << ok << ": " << check(ok)->message;
  }
}

TEST(JsonScanTest, RefusesBrokenSyntax) {
  for (const char* bad :
       {"",       "{",        "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01",        "1.",
        "-",      ".5",       "tru",  "\"abc",     "\"\\x\"",    "\"\\u12\"", "[1] 2",
        "{1: 2}", "\"\x01\"", "NaN",  "Infinity",  "0x10",       "'a'"}) {
    auto p = check(bad);
    ASSERT_TRUE(p.has_value()) << bad;
    EXPECT_EQ(p->field, "body") << bad;
    EXPECT_NE(p->message.find("not valid JSON"), std::string::npos) << p->message;
  }
}

TEST(JsonScanTest, RefusesInvalidUtf8AndLoneSurrogates) {
  for (const char* bad :
       {"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\xf5\x80\x80\x80\"",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\""}) {
    EXPECT_TRUE(check(bad).has_value()) << bad;
  }
}

TEST(JsonScanTest, DepthLimitNamesTheField) {
  EXPECT_FALSE(check("[[[]]]", 3).has_value());
  auto p = check("[[[[]]]]", 3);
  ASSERT_TRUE(p.has_value());
  EXPECT_NE(p->message.find("deeper than 3"), std::string::npos) << p->message;

  std::string body = R"({"runs": [{"parameters": {"a": )";
  body += std::string(200000, '[');
  p = check(body, 64);  // never read far enough to see that it is unterminated
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field.rfind("runs[0].parameters.a", 0), 0u) << p->field;
  EXPECT_NE(p->message.find("--max-json-depth"), std::string::npos);
}

TEST(JsonScanTest, HugeNestingIsCheckedWithoutRecursion) {
  // A million levels: a recursive checker would overflow the stack long before this.
  std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_FALSE(check(deep, 2000000).has_value());
  EXPECT_TRUE(check(deep, 64).has_value());
}

TEST(JsonScanTest, IntegersBeyond64BitsAreRefused) {
  EXPECT_FALSE(check("9223372036854775807").has_value());
  EXPECT_FALSE(check("-9223372036854775808").has_value());
  EXPECT_FALSE(check("18446744073709551615").has_value());
  auto p = check(R"({"p": {"big": 123456789012345678901234567890}})");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field, "p.big");
  EXPECT_NE(p->message.find("64 bits"), std::string::npos) << p->message;
  EXPECT_TRUE(check("18446744073709551616").has_value());
  EXPECT_TRUE(check("-9223372036854775809").has_value());
}

TEST(JsonScanTest, OutOfRangeFloatsAreRefused) {
  for (const char* bad : {"1e400", "-1e400", "1e-400", "[1E+999]"}) {
    auto p = check(bad);
    ASSERT_TRUE(p.has_value()) << bad;
    EXPECT_NE(p->message.find("out of range"), std::string::npos) << p->message;
  }
}

TEST(JsonScanTest, FloatsMustSurviveUnchanged) {
  for (const char* ok :
       {"0.1", "1.5e3", "1.50", "100.0", "2.5E-3", "0.30000000000000004", "1.7976931348623157e308",
        "0e99999", "-0.0",
        // Shortest text of a double nlohmann writes longer (found by schemathesis).
        "2.552812738932589e+16"}) {
    EXPECT_FALSE(check(ok).has_value()) << ok << ": " << check(ok)->message;
  }
  auto p = check("[3.14159265358979323846264338]");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->field, "[0]");
  EXPECT_NE(p->message.find("precision"), std::string::npos) << p->message;
}

TEST(JsonScanTest, MembersAndElementsAreVisitedAsText) {
  std::vector<std::string> seen;
  const std::string text = R"( { "a" : [1, {"x": "]"}] , "b\u0041":"}" , "c": -1.5e3 } )";
  ASSERT_FALSE(check(text).has_value());
  EXPECT_TRUE(for_each_member(text, [&](const std::string& k, std::string_view v) {
    seen.push_back(k + "=" + std::string(v));
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{R"(a=[1, {"x": "]"}])", R"(bA="}")", "c=-1.5e3"}));

  seen.clear();
  EXPECT_TRUE(for_each_element(R"([ {"a":"\""}, [], "s", 2 ,true])", [&](std::string_view v) {
    seen.push_back(std::string(v));
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{R"({"a":"\""})", "[]", "\"s\"", "2", "true"}));
  EXPECT_FALSE(for_each_element("{}", [](std::string_view) { return true; }));
  EXPECT_FALSE(for_each_member("[]", [](const std::string&, std::string_view) { return true; }));
}

}  // namespace
}  // namespace floodgate::api
