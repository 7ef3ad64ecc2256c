// Validation of chunked appends: "sealed" in a submission and the body of
// POST /v1/batches/{id}/runs.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "api/batch_request.h"

namespace floodgate::api {
namespace {

using nlohmann::json;

std::optional<BatchRequest> submission(const std::string& text, std::vector<FieldError>& errors) {
  return parse_batch_request(std::string_view(text), RequestLimits{}, errors);
}

std::optional<std::vector<std::string>> chunk(const std::string& text,
                                              std::vector<FieldError>& errors,
                                              RequestLimits limits = {}) {
  return parse_runs_chunk(std::string_view(text), limits, errors);
}

TEST(RunsChunkTest, ASubmissionIsSealedUnlessItSaysOtherwise) {
  std::vector<FieldError> errors;
  auto sealed = submission(R"({"deployment": "f/d", "runs": [{}]})", errors);
  ASSERT_TRUE(sealed) << errors.front().message;
  EXPECT_TRUE(sealed->sealed);
  auto open = submission(R"({"deployment": "f/d", "runs": [{}], "sealed": false})", errors);
  ASSERT_TRUE(open);
  EXPECT_FALSE(open->sealed);
  EXPECT_FALSE(submission(R"({"deployment": "f/d", "runs": [{}], "sealed": "no"})", errors));
  EXPECT_EQ(errors.front().field, "sealed");
}

TEST(RunsChunkTest, OnlyAnUnsealedBatchWithADeploymentMayStartEmpty) {
  std::vector<FieldError> errors;
  auto empty = submission(R"({"deployment": "f/d", "runs": [], "sealed": false})", errors);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->run_specs.empty());
  EXPECT_EQ(empty->spec.deployment, "f/d");

  errors.clear();
  EXPECT_FALSE(submission(R"({"deployment": "f/d", "runs": []})", errors));
  EXPECT_EQ(errors.front().field, "runs");
  errors.clear();
  EXPECT_FALSE(submission(R"({"runs": [], "sealed": false})", errors));
  EXPECT_EQ(errors.front().field, "deployment");
  errors.clear();
  EXPECT_FALSE(submission(R"({"deployment": "f/d", "sealed": false})", errors));
  EXPECT_EQ(errors.front().field, "runs");
}

TEST(RunsChunkTest, AChunkIsValidatedAsTheRunsOfASubmission) {
  std::vector<FieldError> errors;
  auto runs = chunk(R"({"runs": [{"parameters": {"b": 2, "a": 1}}, {"name": "x"}]})", errors);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ(json::parse((*runs)[0]), json::parse(R"({"parameters": {"a": 1, "b": 2}})"));
  EXPECT_EQ((*runs)[1], R"({"name":"x"})");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"runs": []})", "runs"},
      {R"({})", "runs"},
      {R"({"runs": {}})", "runs"},
      {R"({"runs": [{}], "deployment": "f/d"})", "deployment"},
      {R"({"runs": [{"bogus": 1}]})", "runs[0].bogus"},
      {R"({"runs": [{"idempotency_key": "k"}, {"idempotency_key": "k"}]})",
       "runs[1].idempotency_key"},
      {R"([1])", "body"},
  };
  for (const auto& [body, field] : bad) {
    errors.clear();
    EXPECT_FALSE(chunk(body, errors)) << body;
    ASSERT_FALSE(errors.empty()) << body;
    EXPECT_EQ(errors.front().field, field) << body;
  }
  errors.clear();
  EXPECT_FALSE(chunk(R"({"runs": [{}, )", errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_TRUE(errors.front().malformed);
}

TEST(RunsChunkTest, AChunkHasTheLimitsOfOneRequest) {
  RequestLimits limits;
  limits.max_runs = 2;
  std::vector<FieldError> errors;
  EXPECT_TRUE(chunk(R"({"runs": [{}, {}]})", errors, limits));
  EXPECT_FALSE(chunk(R"({"runs": [{}, {}, {}]})", errors, limits));
  EXPECT_EQ(errors.front().field, "runs");
}

}  // namespace
}  // namespace floodgate::api
