#include "prefect/bulk_cancel.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "prefect/prefect_api.h"

namespace floodgate::prefect {
namespace {

using nlohmann::json;

TEST(BulkCancelTest, BodySelectsTheRunsByIdWithOneTransitionId) {
  PrefectApi api({}, "c");
  HttpRequest r = api.cancel_flow_runs_bulk({"a", "b"}, "tid-1", "batch cancelled");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/flow_runs/bulk_set_state");
  json j = json::parse(r.body);
  // Exactly the Body() parameters of bulk_set_flow_run_state (server/api/flow_runs.py).
  EXPECT_EQ(j.size(), 4u);
  EXPECT_EQ(j["flow_runs"], json({{"id", {{"any_", {"a", "b"}}}}}));
  EXPECT_EQ(j["state"]["type"], "CANCELLING");
  EXPECT_EQ(j["state"]["name"], "Cancelling");
  EXPECT_EQ(j["state"]["message"], "batch cancelled");
  EXPECT_EQ(j["state"]["state_details"]["transition_id"], "tid-1");
  EXPECT_EQ(j["force"], false);
  EXPECT_EQ(j["limit"], 2);
}

TEST(BulkCancelTest, LimitStaysWithinPrefectsBounds) {
  std::vector<std::string> many(80, "x");
  EXPECT_EQ(json::parse(build_bulk_cancel_body(many, "t", "m"))["limit"], 50);
  EXPECT_EQ(json::parse(build_bulk_cancel_body({}, "t", "m"))["limit"], 1);  // ge=1
}

TEST(BulkCancelTest, ParsesEachRunsOrchestrationResult) {
  // Shapes of FlowRunBulkSetStateResponse (server/schemas/responses.py, 3.9.1).
  const std::string body = R"({"results": [
    {"flow_run_id": "a", "status": "ACCEPT", "state": {"type": "CANCELLING", "name": "Cancelling"},
     "details": {"type": "accept_details"}},
    {"flow_run_id": "b", "status": "REJECT", "state": {"type": "CANCELLED", "name": "Cancelled"},
     "details": {"type": "reject_details", "reason": "Run is not running"}},
    {"flow_run_id": "c", "status": "ABORT", "state": null,
     "details": {"type": "abort_details", "reason": "Run is already in terminal state COMPLETED."}}
  ]})";
  auto results = parse_bulk_set_state(body);
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].status, "ACCEPT");
  EXPECT_EQ((*results)[0].state_type, "CANCELLING");
  EXPECT_EQ((*results)[1].state_type, "CANCELLED");
  EXPECT_EQ((*results)[2].status, "ABORT");
  EXPECT_EQ((*results)[2].state_type, "");
  EXPECT_EQ((*results)[2].reason, "Run is already in terminal state COMPLETED.");
  EXPECT_TRUE(parse_bulk_set_state(R"({"results": []})"));
  EXPECT_FALSE(parse_bulk_set_state(R"({"results": [{"status": "ACCEPT"}]})"));
  EXPECT_FALSE(parse_bulk_set_state("[]"));
}

TEST(BulkCancelTest, AnOlderServerHasNoSuchEndpoint) {
  HttpResponse r;
  r.status = 405;  // Prefect 3.2.15: the path matches GET/PATCH/DELETE /flow_runs/{id}
  r.body = R"({"detail":"Method Not Allowed"})";
  EXPECT_TRUE(is_missing_bulk_set_state(r));
  r.status = 404;
  r.body = R"({"detail":"Not Found"})";
  EXPECT_TRUE(is_missing_bulk_set_state(r));
  r.status = 422;
  r.body = R"({"exception_message":"Invalid request received."})";
  EXPECT_FALSE(is_missing_bulk_set_state(r));
}

}  // namespace
}  // namespace floodgate::prefect
