#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/problem.h"
#include "api/request_target.h"

namespace floodgate::api {
namespace {

using nlohmann::json;
using Query = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------------------------
// parse_query

TEST(ParseQueryTest, EmptyQuery) { EXPECT_TRUE(parse_query("").empty()); }

TEST(ParseQueryTest, KeyValuePairs) {
  EXPECT_EQ(parse_query("state=RUNNING&limit=10&after=42"),
            (Query{{"state", "RUNNING"}, {"limit", "10"}, {"after", "42"}}));
}

TEST(ParseQueryTest, KeyWithoutValue) {
  EXPECT_EQ(parse_query("verbose"), (Query{{"verbose", ""}}));
  EXPECT_EQ(parse_query("a=&b"), (Query{{"a", ""}, {"b", ""}}));
}

TEST(ParseQueryTest, EmptyPartsAreSkipped) {
  EXPECT_EQ(parse_query("&&a=1&&b=2&"), (Query{{"a", "1"}, {"b", "2"}}));
  EXPECT_TRUE(parse_query("&").empty());
}

TEST(ParseQueryTest, LaterRepeatWins) { EXPECT_EQ(parse_query("a=1&a=2"), (Query{{"a", "2"}})); }

TEST(ParseQueryTest, OnlyTheFirstEqualsSplits) {
  EXPECT_EQ(parse_query("after=abc==&x=a=b"), (Query{{"after", "abc=="}, {"x", "a=b"}}));
}

TEST(ParseQueryTest, PercentDecoding) {
  EXPECT_EQ(parse_query("after=abc%3D%3D"), (Query{{"after", "abc=="}}));
  EXPECT_EQ(parse_query("q=a%26b"), (Query{{"q", "a&b"}}));  // an encoded & does not split
  EXPECT_EQ(parse_query("k%20ey=v%2fw"), (Query{{"k ey", "v/w"}}));
  EXPECT_EQ(parse_query("name=caf%C3%A9"), (Query{{"name", "caf\xc3\xa9"}}));
}

TEST(ParseQueryTest, PlusIsSpace) { EXPECT_EQ(parse_query("q=a+b+c"), (Query{{"q", "a b c"}})); }

TEST(ParseQueryTest, BrokenEscapesStayLiteral) {
  EXPECT_EQ(parse_query("q=100%"), (Query{{"q", "100%"}}));
  EXPECT_EQ(parse_query("q=%2"), (Query{{"q", "%2"}}));
  EXPECT_EQ(parse_query("q=%zz1"), (Query{{"q", "%zz1"}}));
  EXPECT_EQ(parse_query("q=%4g"), (Query{{"q", "%4g"}}));
}

TEST(ParseQueryTest, EscapeAtTheVeryEnd) {
  EXPECT_EQ(parse_query("q=%41"), (Query{{"q", "A"}}));
  EXPECT_EQ(parse_query("q=x%41"), (Query{{"q", "xA"}}));
}

TEST(ParseQueryTest, LongPollParameters) {
  Query q = parse_query("wait_s=30&after_version=17");
  EXPECT_EQ(q["wait_s"], "30");
  EXPECT_EQ(q["after_version"], "17");
}

// ---------------------------------------------------------------------------------------------
// problem()

TEST(ProblemTest, ProblemJsonWithFieldAndErrors) {
  std::vector<FieldError> errors = {{"runs[2].parameters", "must be an object, not array"},
                                    {"limits.burst", "must be at least 1"}};
  ServerResponse r = problem(422, "runs[2].parameters: must be an object, not array",
                             "runs[2].parameters", errors);
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.content_type, "application/problem+json");
  json body = json::parse(r.body);
  EXPECT_EQ(body["type"], "about:blank");
  EXPECT_EQ(body["title"], "Unprocessable Content");
  EXPECT_EQ(body["status"], 422);
  EXPECT_EQ(body["detail"], "runs[2].parameters: must be an object, not array");
  EXPECT_EQ(body["field"], "runs[2].parameters");
  ASSERT_TRUE(body["errors"].is_array());
  ASSERT_EQ(body["errors"].size(), 2u);
  EXPECT_EQ(body["errors"][0]["field"], "runs[2].parameters");
  EXPECT_EQ(body["errors"][0]["message"], "must be an object, not array");
  EXPECT_EQ(body["errors"][1]["field"], "limits.burst");
  EXPECT_EQ(body["errors"][1]["message"], "must be at least 1");
}

TEST(ProblemTest, AnEmptyFieldNameIsStillNamed) {
  // A body member named "" is a real field: the 422 must still carry `field` (found by
  // schemathesis; the spec requires `field` on every 422).
  json body = json::parse(problem(422, ": unknown field", "").body);
  ASSERT_TRUE(body.contains("field"));
  EXPECT_EQ(body["field"], "");
}

TEST(ProblemTest, NoFieldNoErrorsLeavesThemOut) {
  ServerResponse r = problem(404, "no such endpoint: GET /v2");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/problem+json");
  json body = json::parse(r.body);
  EXPECT_EQ(body["title"], "Not Found");
  EXPECT_EQ(body["detail"], "no such endpoint: GET /v2");
  EXPECT_FALSE(body.contains("field"));
  EXPECT_FALSE(body.contains("errors"));
}

TEST(ProblemTest, TitlesFollowTheStatus) {
  const std::map<int, std::string> titles = {
      {400, "Bad Request"},           {404, "Not Found"},
      {405, "Method Not Allowed"},    {409, "Conflict"},
      {413, "Payload Too Large"},     {415, "Unsupported Media Type"},
      {422, "Unprocessable Content"}, {500, "Internal Server Error"},
      {503, "Service Unavailable"}};
  for (const auto& [status, title] : titles) {
    json body = json::parse(problem(status, "x").body);
    EXPECT_EQ(body["title"], title) << status;
    EXPECT_EQ(body["status"], status);
  }
}

TEST(ProblemTest, UnlistedStatusGetsAGenericTitle) {
  json body = json::parse(problem(418, "teapot").body);
  EXPECT_EQ(body["title"], "Error");
  EXPECT_EQ(body["status"], 418);
}

TEST(ProblemTest, InvalidUtf8InDetailStillGivesValidJson) {
  ServerResponse r = problem(400, "body is not valid JSON: \xff\xfe at byte 3", "body");
  json body = json::parse(r.body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << r.body;
  EXPECT_EQ(body["field"], "body");
  EXPECT_NE(body["detail"].get<std::string>().find("at byte 3"), std::string::npos);
}

TEST(ProblemTest, SpecialCharactersAreEscaped) {
  ServerResponse r = problem(400, "quote \" backslash \\ newline \n", "runs[0].name");
  json body = json::parse(r.body);
  EXPECT_EQ(body["detail"], "quote \" backslash \\ newline \n");
}

}  // namespace
}  // namespace floodgate::api
