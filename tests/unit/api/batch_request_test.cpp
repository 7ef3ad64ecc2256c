#include "api/batch_request.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "engine/batch_spec.h"

namespace floodgate::api {
namespace {

using nlohmann::json;

constexpr const char* kDeploymentId = "0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6";
constexpr const char* kParentId = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";

// A minimal valid body: one deployment, one run.
json minimal() {
  return json::parse(R"({"deployment": "etl/nightly", "runs": [{"parameters": {}}]})");
}

struct Parsed {
  std::optional<BatchRequest> request;
  std::vector<FieldError> errors;
};

Parsed parse(const json& body, RequestLimits limits = {}) {
  Parsed p;
  p.request = parse_batch_request(body, limits, p.errors);
  return p;
}

bool has_error(const std::vector<FieldError>& errors, const std::string& field) {
  for (const auto& e : errors) {
    if (e.field == field) return true;
  }
  return false;
}

std::string describe(const std::vector<FieldError>& errors) {
  std::string out;
  for (const auto& e : errors) out += "[" + e.field + ": " + e.message + "] ";
  return out;
}

// Parses `body`, expects it rejected with `field` as the first error.
FieldError expect_rejected(const json& body, const std::string& field) {
  Parsed p = parse(body);
  EXPECT_FALSE(p.request.has_value()) << body.dump();
  if (p.errors.empty()) {
    ADD_FAILURE() << "no errors for " << body.dump();
    return {};
  }
  EXPECT_EQ(p.errors.front().field, field) << body.dump() << " -> " << describe(p.errors);
  EXPECT_FALSE(p.errors.front().message.empty());
  return p.errors.front();
}

json with(json body, const std::string& key, json value) {
  body[key] = std::move(value);
  return body;
}

json with_limits(json limits) { return with(minimal(), "limits", std::move(limits)); }
json with_retry(json retry) { return with(minimal(), "retry", std::move(retry)); }

// ---------------------------------------------------------------------------------------------
// Accepted bodies

TEST(BatchRequestTest, MinimalBodyIsAccepted) {
  Parsed p = parse(minimal());
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_TRUE(p.errors.empty());
  EXPECT_EQ(p.request->spec.deployment, "etl/nightly");
  ASSERT_EQ(p.request->run_specs.size(), 1u);
  EXPECT_EQ(p.request->run_specs[0], R"({"parameters":{}})");
  // Everything else keeps the defaults.
  engine::BatchSpec expected;
  expected.deployment = "etl/nightly";
  EXPECT_EQ(engine::to_json(p.request->spec), engine::to_json(expected));
}

TEST(BatchRequestTest, FullRequestRoundTripsIntoBatchSpec) {
  json body = json::parse(R"({
      "deployment_id": "0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6",
      "runs": [
        {"parameters": {"x": 1, "nested": {"y": [1, 2]}}, "name": "child-0", "tags": ["a", "b"],
         "job_variables": {"image": "python:3.11"}, "work_queue_name": "high",
         "idempotency_key": "user-0", "deployment": "other-flow/other"},
        {"parameters": {"x": 2}, "name": null, "idempotency_key": "user-1"}],
      "tags": ["team-a", "nightly"],
      "parent_flow_run_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
      "limits": {"max_in_flight": 10, "max_running": 50, "launches_per_second": 5, "burst": 10,
                 "max_backlog": 25},
      "retry": {"max_attempts": 6, "initial_delay_s": 0.5, "max_delay_s": 60,
                "max_elapsed_s": 3600},
      "track": false, "relaunch_crashed": 2,
      "tolerated_failure_percentage": 12.5, "tolerated_failure_count": 7,
      "on_cancel": "cancel_children", "priority": -3,
      "labels": {"team": "data", "env": "prod"}})");
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  const engine::BatchSpec& s = p.request->spec;
  EXPECT_EQ(s.deployment, kDeploymentId);
  EXPECT_EQ(s.tags, (std::vector<std::string>{"team-a", "nightly"}));
  EXPECT_EQ(s.parent_flow_run_id, kParentId);
  EXPECT_EQ(s.limits.max_in_flight, 10);
  EXPECT_EQ(s.limits.max_running, 50);
  EXPECT_EQ(s.limits.launches_per_second, 5.0);
  EXPECT_EQ(s.limits.burst, 10.0);
  EXPECT_EQ(s.limits.max_backlog, 25);
  EXPECT_EQ(s.retry.max_attempts, 6);
  EXPECT_DOUBLE_EQ(s.retry.initial_delay_s, 0.5);
  EXPECT_DOUBLE_EQ(s.retry.max_delay_s, 60);
  EXPECT_DOUBLE_EQ(s.retry.max_elapsed_s, 3600);
  EXPECT_FALSE(s.track);
  EXPECT_EQ(s.relaunch_crashed, 2);
  EXPECT_DOUBLE_EQ(s.tolerated_failure_percentage, 12.5);
  EXPECT_EQ(s.tolerated_failure_count, 7);
  EXPECT_EQ(s.on_cancel, engine::OnCancel::kCancelChildren);
  EXPECT_EQ(s.priority, -3);
  EXPECT_EQ(s.labels, json::parse(R"({"team": "data", "env": "prod"})"));

  ASSERT_EQ(p.request->run_specs.size(), 2u);
  EXPECT_EQ(json::parse(p.request->run_specs[0]), body["runs"][0]);
  // Nulls are dropped from the stored run.
  EXPECT_EQ(p.request->run_specs[1], R"({"idempotency_key":"user-1","parameters":{"x":2}})");
  // Compact JSON.
  EXPECT_EQ(p.request->run_specs[1], json::parse(p.request->run_specs[1]).dump());

  // The spec survives its own persistence.
  EXPECT_EQ(engine::to_json(engine::spec_from_json(engine::to_json(s))), engine::to_json(s));
}

TEST(BatchRequestTest, EmptyRunObjectIsAccepted) {
  Parsed p = parse(json::parse(R"({"deployment": "f/d", "runs": [{}, {}]})"));
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->run_specs, (std::vector<std::string>{"{}", "{}"}));
}

TEST(BatchRequestTest, NullOptionalFieldsAreIgnored) {
  json body = minimal();
  body["deployment_id"] = nullptr;
  body["parent_flow_run_id"] = nullptr;
  body["limits"] = nullptr;
  body["retry"] = nullptr;
  body["tolerated_failure_count"] = nullptr;
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.deployment, "etl/nightly");
  EXPECT_TRUE(p.request->spec.parent_flow_run_id.empty());
  EXPECT_FALSE(p.request->spec.tolerated_failure_count.has_value());
}

TEST(BatchRequestTest, WholeFloatsCountAsIntegers) {
  Parsed p = parse(with_limits({{"max_in_flight", 4.0}}));
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.limits.max_in_flight, 4);
}

TEST(BatchRequestTest, BoundaryValuesAreAccepted) {
  json body = minimal();
  body["limits"] = {
      {"max_in_flight", 1}, {"max_running", 1}, {"launches_per_second", 0.001}, {"burst", 1}};
  body["retry"] = {{"max_attempts", 1}, {"initial_delay_s", 0}, {"max_delay_s", 0}};
  body["relaunch_crashed"] = 0;
  body["tolerated_failure_percentage"] = 100;
  body["tolerated_failure_count"] = 0;
  body["priority"] = -1000;
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.tolerated_failure_count, 0);
  EXPECT_DOUBLE_EQ(p.request->spec.retry.max_delay_s, 0);
}

// ---------------------------------------------------------------------------------------------
// Deployment

TEST(BatchRequestTest, DeploymentByUuid) {
  Parsed p =
      parse(json::parse(R"({"deployment": "0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6", "runs": [{}]})"));
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.deployment, kDeploymentId);
}

TEST(BatchRequestTest, DeploymentAndDeploymentIdTogetherAreRejected) {
  json body = with(minimal(), "deployment_id", kDeploymentId);
  FieldError e = expect_rejected(body, "deployment_id");
  EXPECT_NE(e.message.find("deployment"), std::string::npos);
}

TEST(BatchRequestTest, BadDeploymentText) {
  for (const json& bad : {json("a/b/c"), json("/x"), json("x/"), json("no-slash"), json(""),
                          json(42), json::array()}) {
    expect_rejected(with(minimal(), "deployment", bad), "deployment");
  }
}

TEST(BatchRequestTest, BadDeploymentId) {
  json body = json::parse(R"({"deployment_id": "etl/nightly", "runs": [{}]})");
  FieldError e = expect_rejected(body, "deployment_id");
  EXPECT_NE(e.message.find("UUID"), std::string::npos);
  expect_rejected(json::parse(R"({"deployment_id": 5, "runs": [{}]})"), "deployment_id");
}

TEST(BatchRequestTest, MissingDeploymentNamesTheRunWithout) {
  FieldError e = expect_rejected(json::parse(R"({"runs": [{}]})"), "deployment");
  EXPECT_NE(e.message.find("runs[0]"), std::string::npos) << e.message;

  json body = json::parse(
      R"({"runs": [{"deployment": "f/a"}, {"deployment": "f/b"}, {"parameters": {}}]})");
  e = expect_rejected(body, "deployment");
  EXPECT_NE(e.message.find("runs[2]"), std::string::npos) << e.message;
}

TEST(BatchRequestTest, PerRunDeploymentsWithoutBatchDeployment) {
  json body = json::parse(R"({"runs": [{"deployment": "f/a"},
                                       {"deployment": "0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6"}]})");
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.deployment, "f/a");  // the first run's
  EXPECT_EQ(json::parse(p.request->run_specs[1])["deployment"], kDeploymentId);
}

TEST(BatchRequestTest, PerRunDeploymentOverridesBatchDeployment) {
  json body =
      json::parse(R"({"deployment": "f/default", "runs": [{"deployment": "f/other"}, {}]})");
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->spec.deployment, "f/default");
  EXPECT_EQ(json::parse(p.request->run_specs[0])["deployment"], "f/other");
  EXPECT_FALSE(json::parse(p.request->run_specs[1]).contains("deployment"));
}

TEST(BatchRequestTest, BadPerRunDeployment) {
  json body = json::parse(R"({"deployment": "f/d", "runs": [{}, {"deployment": "a/b/c"}]})");
  expect_rejected(body, "runs[1].deployment");
}

// ---------------------------------------------------------------------------------------------
// Top level

TEST(BatchRequestTest, BodyMustBeAnObject) {
  for (const json& bad : {json::array(), json("x"), json(1), json(nullptr)}) {
    expect_rejected(bad, "body");
  }
}

TEST(BatchRequestTest, UnknownTopLevelField) {
  FieldError e = expect_rejected(with(minimal(), "deployment_name", "x"), "deployment_name");
  EXPECT_EQ(e.message, "unknown field");
}

TEST(BatchRequestTest, RunsRequiredListNonEmpty) {
  expect_rejected(json{{"deployment", "f/d"}}, "runs");
  expect_rejected(json{{"deployment", "f/d"}, {"runs", json::object()}}, "runs");
  expect_rejected(json{{"deployment", "f/d"}, {"runs", json::array()}}, "runs");
  expect_rejected(json{{"deployment", "f/d"}, {"runs", nullptr}}, "runs");
}

TEST(BatchRequestTest, MaxRunsLimit) {
  json body = {{"deployment", "f/d"}, {"runs", json::array()}};
  for (int i = 0; i < 4; ++i) body["runs"].push_back(json::object());
  RequestLimits limits;
  limits.max_runs = 4;
  Parsed ok = parse(body, limits);
  EXPECT_TRUE(ok.request.has_value()) << describe(ok.errors);

  body["runs"].push_back(json::object());
  Parsed p = parse(body, limits);
  EXPECT_FALSE(p.request.has_value());
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "runs");
  EXPECT_NE(p.errors.front().message.find("5"), std::string::npos) << p.errors.front().message;
  EXPECT_NE(p.errors.front().message.find("4"), std::string::npos) << p.errors.front().message;
}

TEST(BatchRequestTest, Tags) {
  expect_rejected(with(minimal(), "tags", "a"), "tags");
  expect_rejected(with(minimal(), "tags", json({"a", 1})), "tags[1]");
  expect_rejected(with(minimal(), "tags", json({"a", ""})), "tags[1]");
}

TEST(BatchRequestTest, ParentFlowRunId) {
  expect_rejected(with(minimal(), "parent_flow_run_id", "parent"), "parent_flow_run_id");
  expect_rejected(with(minimal(), "parent_flow_run_id", 7), "parent_flow_run_id");
}

TEST(BatchRequestTest, TrackMustBeBoolean) {
  expect_rejected(with(minimal(), "track", "yes"), "track");
  expect_rejected(with(minimal(), "track", 1), "track");
}

TEST(BatchRequestTest, RelaunchCrashed) {
  expect_rejected(with(minimal(), "relaunch_crashed", -1), "relaunch_crashed");
  expect_rejected(with(minimal(), "relaunch_crashed", 101), "relaunch_crashed");
  expect_rejected(with(minimal(), "relaunch_crashed", 1.5), "relaunch_crashed");
  expect_rejected(with(minimal(), "relaunch_crashed", true), "relaunch_crashed");
}

TEST(BatchRequestTest, ToleratedFailures) {
  expect_rejected(with(minimal(), "tolerated_failure_percentage", -1),
                  "tolerated_failure_percentage");
  expect_rejected(with(minimal(), "tolerated_failure_percentage", 100.5),
                  "tolerated_failure_percentage");
  expect_rejected(with(minimal(), "tolerated_failure_percentage", "5"),
                  "tolerated_failure_percentage");
  expect_rejected(with(minimal(), "tolerated_failure_count", -1), "tolerated_failure_count");
  expect_rejected(with(minimal(), "tolerated_failure_count", 2.5), "tolerated_failure_count");
  expect_rejected(with(minimal(), "tolerated_failure_count", "3"), "tolerated_failure_count");
}

TEST(BatchRequestTest, OnCancel) {
  Parsed p = parse(with(minimal(), "on_cancel", "abandon"));
  ASSERT_TRUE(p.request.has_value());
  EXPECT_EQ(p.request->spec.on_cancel, engine::OnCancel::kAbandon);
  expect_rejected(with(minimal(), "on_cancel", "kill"), "on_cancel");
  expect_rejected(with(minimal(), "on_cancel", 1), "on_cancel");
}

TEST(BatchRequestTest, Deadlines) {
  json body = minimal();
  body["start_deadline_s"] = 600;
  body["run_deadline_s"] = 0.5;
  body["on_deadline"] = "relaunch";
  Parsed p = parse(body);
  ASSERT_TRUE(p.request.has_value());
  EXPECT_EQ(p.request->spec.deadlines.start_s, 600.0);
  EXPECT_EQ(p.request->spec.deadlines.run_s, 0.5);
  EXPECT_EQ(p.request->spec.deadlines.on_deadline, engine::OnDeadline::kRelaunch);
  Parsed unset = parse(minimal());  // the server's defaults fill these in later
  ASSERT_TRUE(unset.request.has_value());
  EXPECT_FALSE(unset.request->spec.deadlines.start_s.has_value());
  EXPECT_FALSE(unset.request->spec.deadlines.on_deadline.has_value());
  expect_rejected(with(minimal(), "start_deadline_s", -1), "start_deadline_s");
  expect_rejected(with(minimal(), "run_deadline_s", 31.0 * 24 * 3600), "run_deadline_s");
  expect_rejected(with(minimal(), "start_deadline_s", "60"), "start_deadline_s");
  expect_rejected(with(minimal(), "on_deadline", "retry"), "on_deadline");
  expect_rejected(with(minimal(), "on_deadline", 1), "on_deadline");
}

TEST(BatchRequestTest, Priority) {
  expect_rejected(with(minimal(), "priority", 1001), "priority");
  expect_rejected(with(minimal(), "priority", -1001), "priority");
  expect_rejected(with(minimal(), "priority", 2.5), "priority");
  expect_rejected(with(minimal(), "priority", "high"), "priority");
}

TEST(BatchRequestTest, Labels) {
  expect_rejected(with(minimal(), "labels", json::array()), "labels");
  expect_rejected(with(minimal(), "labels", json({{"team", "a"}, {"cost", 5}})), "labels.cost");
}

// ---------------------------------------------------------------------------------------------
// limits

TEST(BatchRequestTest, LimitsMustBeAnObject) {
  expect_rejected(with(minimal(), "limits", 5), "limits");
}

TEST(BatchRequestTest, UnknownFieldInLimits) {
  FieldError e = expect_rejected(with_limits({{"max_inflight", 5}}), "limits.max_inflight");
  EXPECT_EQ(e.message, "unknown field");
}

TEST(BatchRequestTest, LimitsMaxInFlight) {
  expect_rejected(with_limits({{"max_in_flight", 0}}), "limits.max_in_flight");
  expect_rejected(with_limits({{"max_in_flight", 100001}}), "limits.max_in_flight");
  expect_rejected(with_limits({{"max_in_flight", 1.5}}), "limits.max_in_flight");
  expect_rejected(with_limits({{"max_in_flight", "5"}}), "limits.max_in_flight");
}

TEST(BatchRequestTest, LimitsMaxBacklog) {
  expect_rejected(with_limits({{"max_backlog", -1}}), "limits.max_backlog");
  expect_rejected(with_limits({{"max_backlog", 1.5}}), "limits.max_backlog");
  expect_rejected(with_limits({{"max_backlog", "auto"}}), "limits.max_backlog");
}

TEST(BatchRequestTest, LimitsMaxRunning) {
  expect_rejected(with_limits({{"max_running", 0}}), "limits.max_running");
  expect_rejected(with_limits({{"max_running", -5}}), "limits.max_running");
  expect_rejected(with_limits({{"max_running", true}}), "limits.max_running");
}

TEST(BatchRequestTest, LimitsLaunchesPerSecond) {
  expect_rejected(with_limits({{"launches_per_second", 0}}), "limits.launches_per_second");
  expect_rejected(with_limits({{"launches_per_second", -1}}), "limits.launches_per_second");
  expect_rejected(with_limits({{"launches_per_second", 2e6}}), "limits.launches_per_second");
  expect_rejected(with_limits({{"launches_per_second", "5/s"}}), "limits.launches_per_second");
}

TEST(BatchRequestTest, LimitsBurst) {
  expect_rejected(with_limits({{"burst", 0.5}}), "limits.burst");
  expect_rejected(with_limits({{"burst", 2e6}}), "limits.burst");
}

TEST(BatchRequestTest, NullLimitsLeaveThemUnset) {
  Parsed p = parse(with_limits({{"max_in_flight", nullptr}, {"burst", nullptr}}));
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_FALSE(p.request->spec.limits.max_in_flight.has_value());
  EXPECT_FALSE(p.request->spec.limits.burst.has_value());
}

// ---------------------------------------------------------------------------------------------
// retry

TEST(BatchRequestTest, RetryMustBeAnObject) {
  expect_rejected(with(minimal(), "retry", json::array()), "retry");
}

TEST(BatchRequestTest, UnknownFieldInRetry) {
  expect_rejected(with_retry({{"attempts", 3}}), "retry.attempts");
}

TEST(BatchRequestTest, RetryRanges) {
  expect_rejected(with_retry({{"max_attempts", 0}}), "retry.max_attempts");
  expect_rejected(with_retry({{"max_attempts", 1001}}), "retry.max_attempts");
  expect_rejected(with_retry({{"initial_delay_s", -1}}), "retry.initial_delay_s");
  expect_rejected(with_retry({{"initial_delay_s", 3601}}), "retry.initial_delay_s");
  expect_rejected(with_retry({{"max_delay_s", 86401}}), "retry.max_delay_s");
  expect_rejected(with_retry({{"max_delay_s", "60"}}), "retry.max_delay_s");
  expect_rejected(with_retry({{"max_elapsed_s", 0}}), "retry.max_elapsed_s");
  expect_rejected(with_retry({{"max_elapsed_s", 31.0 * 24 * 3600}}), "retry.max_elapsed_s");
}

TEST(BatchRequestTest, RetryMaxDelayBelowInitialDelay) {
  FieldError e = expect_rejected(with_retry({{"initial_delay_s", 10}, {"max_delay_s", 5}}),
                                 "retry.max_delay_s");
  EXPECT_NE(e.message.find("initial_delay_s"), std::string::npos) << e.message;
  // Also against the default initial delay (1 s).
  expect_rejected(with_retry({{"max_delay_s", 0.5}}), "retry.max_delay_s");
  // Equal is fine.
  Parsed p = parse(with_retry({{"initial_delay_s", 5}, {"max_delay_s", 5}}));
  EXPECT_TRUE(p.request.has_value()) << describe(p.errors);
}

// ---------------------------------------------------------------------------------------------
// runs[i]

json runs_body(json runs) {
  json body = {{"deployment", "f/d"}};
  body["runs"] = std::move(runs);
  return body;
}

// A body with one run whose `key` is `value`.
json single_run(const std::string& key, json value) {
  json run = json::object();
  run[key] = std::move(value);
  return runs_body(json::array({run}));
}

TEST(BatchRequestTest, RunMustBeAnObject) {
  expect_rejected(runs_body(json::parse(R"([{}, "x"])")), "runs[1]");
}

TEST(BatchRequestTest, UnknownFieldInRun) {
  FieldError e =
      expect_rejected(runs_body(json::parse(R"([{}, {"params": {}}])")), "runs[1].params");
  EXPECT_EQ(e.message, "unknown field");
}

TEST(BatchRequestTest, RunParametersMustBeAnObject) {
  expect_rejected(runs_body(json::parse(R"([{}, {}, {"parameters": []}])")), "runs[2].parameters");
  expect_rejected(single_run("parameters", "x=1"), "runs[0].parameters");
}

TEST(BatchRequestTest, RunJobVariablesMustBeAnObject) {
  expect_rejected(single_run("job_variables", 5), "runs[0].job_variables");
}

TEST(BatchRequestTest, RunStrings) {
  expect_rejected(single_run("name", 5), "runs[0].name");
  expect_rejected(single_run("name", ""), "runs[0].name");
  expect_rejected(single_run("name", std::string(1001, 'n')), "runs[0].name");
  expect_rejected(single_run("work_queue_name", false), "runs[0].work_queue_name");
}

TEST(BatchRequestTest, RunTags) {
  expect_rejected(single_run("tags", "a"), "runs[0].tags");
  expect_rejected(single_run("tags", json::array({"a", "b", 3})), "runs[0].tags[2]");
}

TEST(BatchRequestTest, RunIdempotencyKey) {
  expect_rejected(single_run("idempotency_key", ""), "runs[0].idempotency_key");
  expect_rejected(single_run("idempotency_key", 12), "runs[0].idempotency_key");
  expect_rejected(single_run("idempotency_key", std::string(501, 'k')), "runs[0].idempotency_key");
}

TEST(BatchRequestTest, DuplicateRunIdempotencyKeys) {
  json runs = json::parse(
      R"([{"idempotency_key": "a"}, {"idempotency_key": "b"}, {"idempotency_key": "a"}])");
  FieldError e = expect_rejected(runs_body(runs), "runs[2].idempotency_key");
  EXPECT_NE(e.message.find("earlier"), std::string::npos) << e.message;
}

TEST(BatchRequestTest, DistinctRunIdempotencyKeysAreFine) {
  json runs = json::parse(R"([{"idempotency_key": "a"}, {"idempotency_key": "b"}, {}])");
  Parsed p = parse(runs_body(runs));
  EXPECT_TRUE(p.request.has_value()) << describe(p.errors);
}

TEST(BatchRequestTest, EveryErrorIsReportedUpToACap) {
  json runs = json::array();
  for (int i = 0; i < 200; ++i) runs.push_back(json::parse(R"({"parameters": 1})"));
  Parsed p = parse(runs_body(runs));
  EXPECT_FALSE(p.request.has_value());
  EXPECT_GT(p.errors.size(), 1u);
  EXPECT_LE(p.errors.size(), 50u);
  EXPECT_EQ(p.errors[0].field, "runs[0].parameters");
  EXPECT_EQ(p.errors[1].field, "runs[1].parameters");
}

TEST(BatchRequestTest, SeveralProblemsAreAllListed) {
  json body = minimal();
  body["priority"] = "x";
  body["limits"] = {{"burst", 0}};
  Parsed p = parse(body);
  EXPECT_FALSE(p.request.has_value());
  EXPECT_TRUE(has_error(p.errors, "priority")) << describe(p.errors);
  EXPECT_TRUE(has_error(p.errors, "limits.burst")) << describe(p.errors);
}

// ---------------------------------------------------------------------------------------------
// apply_batch_patch

engine::BatchSpec running_spec() {
  engine::BatchSpec s;
  s.deployment = "f/d";
  s.limits.max_in_flight = 5;
  s.limits.launches_per_second = 2;
  s.retry.initial_delay_s = 1;
  s.retry.max_delay_s = 60;
  s.priority = 1;
  return s;
}

TEST(BatchPatchTest, MergesLimits) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  ASSERT_TRUE(apply_batch_patch(json{{"limits", {{"max_running", 20}}}}, s, errors))
      << describe(errors);
  EXPECT_EQ(s.limits.max_in_flight, 5);  // untouched
  EXPECT_EQ(s.limits.launches_per_second, 2.0);
  EXPECT_EQ(s.limits.max_running, 20);
  EXPECT_TRUE(errors.empty());
}

TEST(BatchPatchTest, NullClearsALimit) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  ASSERT_TRUE(apply_batch_patch(json{{"limits", {{"max_in_flight", nullptr}}}}, s, errors));
  EXPECT_FALSE(s.limits.max_in_flight.has_value());
  EXPECT_EQ(s.limits.launches_per_second, 2.0);
}

TEST(BatchPatchTest, SetsDeadlines) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  ASSERT_TRUE(apply_batch_patch(json{{"start_deadline_s", 30}, {"on_deadline", "fail"}}, s, errors))
      << describe(errors);
  EXPECT_EQ(s.deadlines.start_s, 30.0);
  EXPECT_FALSE(s.deadlines.run_s.has_value());
  EXPECT_EQ(s.deadlines.on_deadline, engine::OnDeadline::kFail);
  EXPECT_FALSE(apply_batch_patch(json{{"on_deadline", "never"}}, s, errors));
  EXPECT_EQ(s.deadlines.on_deadline, engine::OnDeadline::kFail);  // unchanged on error
}

TEST(BatchPatchTest, MergesEverythingPatchable) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  json patch = {{"retry", {{"max_attempts", 3}}},
                {"tolerated_failure_percentage", 10},
                {"tolerated_failure_count", 4},
                {"priority", 7},
                {"on_cancel", "cancel_children"}};
  ASSERT_TRUE(apply_batch_patch(patch, s, errors)) << describe(errors);
  EXPECT_EQ(s.retry.max_attempts, 3);
  EXPECT_DOUBLE_EQ(s.retry.max_delay_s, 60);  // untouched
  EXPECT_DOUBLE_EQ(s.tolerated_failure_percentage, 10);
  EXPECT_EQ(s.tolerated_failure_count, 4);
  EXPECT_EQ(s.priority, 7);
  EXPECT_EQ(s.on_cancel, engine::OnCancel::kCancelChildren);
  EXPECT_EQ(s.deployment, "f/d");

  ASSERT_TRUE(apply_batch_patch(json{{"tolerated_failure_count", nullptr}}, s, errors));
  EXPECT_FALSE(s.tolerated_failure_count.has_value());
}

TEST(BatchPatchTest, EmptyPatchChangesNothing) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  ASSERT_TRUE(apply_batch_patch(json::object(), s, errors));
  EXPECT_EQ(engine::to_json(s), engine::to_json(running_spec()));
}

TEST(BatchPatchTest, RejectsFieldsThatCannotChange) {
  for (const char* key : {"deployment", "runs", "track", "tags", "labels", "parent_flow_run_id"}) {
    engine::BatchSpec s = running_spec();
    std::vector<FieldError> errors;
    EXPECT_FALSE(apply_batch_patch(json{{key, "x"}}, s, errors)) << key;
    ASSERT_FALSE(errors.empty()) << key;
    EXPECT_EQ(errors.front().field, key);
    EXPECT_EQ(engine::to_json(s), engine::to_json(running_spec())) << key;
  }
}

TEST(BatchPatchTest, RejectsNonObjectBody) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  EXPECT_FALSE(apply_batch_patch(json::array(), s, errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.front().field, "body");
}

TEST(BatchPatchTest, BadValuesNameTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"limits", {{"max_in_flight", 0}}}}, "limits.max_in_flight"},
      {json{{"limits", {{"nope", 1}}}}, "limits.nope"},
      {json{{"limits", "fast"}}, "limits"},
      {json{{"retry", {{"max_attempts", 0}}}}, "retry.max_attempts"},
      {json{{"priority", 5000}}, "priority"},
      {json{{"on_cancel", "explode"}}, "on_cancel"},
      {json{{"tolerated_failure_percentage", 101}}, "tolerated_failure_percentage"},
  };
  for (const auto& [patch, field] : cases) {
    engine::BatchSpec s = running_spec();
    std::vector<FieldError> errors;
    EXPECT_FALSE(apply_batch_patch(patch, s, errors)) << patch.dump();
    ASSERT_FALSE(errors.empty()) << patch.dump();
    EXPECT_EQ(errors.front().field, field) << patch.dump();
  }
}

TEST(BatchPatchTest, RetryIsCheckedAgainstTheMergedValues) {
  engine::BatchSpec s = running_spec();  // max_delay_s 60
  std::vector<FieldError> errors;
  EXPECT_FALSE(apply_batch_patch(json{{"retry", {{"initial_delay_s", 120}}}}, s, errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.front().field, "retry.max_delay_s");
  EXPECT_DOUBLE_EQ(s.retry.initial_delay_s, 1);
}

TEST(BatchPatchTest, ARejectedPatchChangesNothing) {
  engine::BatchSpec s = running_spec();
  std::vector<FieldError> errors;
  json patch = {{"limits", {{"max_running", 10}}}, {"priority", 3}, {"on_cancel", "nope"}};
  EXPECT_FALSE(apply_batch_patch(patch, s, errors));
  EXPECT_EQ(engine::to_json(s), engine::to_json(running_spec()));
}

}  // namespace
}  // namespace floodgate::api

// ---------------------------------------------------------------------------------------------
// Hostile text (issue 11): checked before any tree is built

namespace floodgate::api {
namespace {

Parsed parse_text(const std::string& text, RequestLimits limits = {}) {
  Parsed p;
  p.request = parse_batch_request(std::string_view(text), limits, p.errors);
  return p;
}

TEST(BatchRequestTextTest, DeepNestingInsideEveryRunFieldIsRefusedByName) {
  for (const char* field : {"parameters", "job_variables"}) {
    std::string body = std::string(R"({"deployment": "f/d", "runs": [{}, {")") + field + R"(": )";
    body += std::string(100000, '[') + std::string(100000, ']') + "}]}";
    Parsed p = parse_text(body);
    ASSERT_FALSE(p.request.has_value());
    ASSERT_FALSE(p.errors.empty());
    EXPECT_EQ(p.errors.front().field.rfind(std::string("runs[1].") + field, 0), 0u)
        << p.errors.front().field;
    EXPECT_TRUE(p.errors.front().malformed);
  }
  std::string objects = R"({"deployment": "f/d", "runs": [{"parameters": )";
  for (int i = 0; i < 70000; ++i) objects += R"({"a":)";
  Parsed p = parse_text(objects);
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field.rfind("runs[0].parameters.a", 0), 0u) << p.errors.front().field;
}

TEST(BatchRequestTextTest, DepthLimitIsConfigurable) {
  const std::string body = R"({"deployment": "f/d", "runs": [{"parameters": {"a": [[1]]}}]})";
  RequestLimits limits;
  limits.max_depth = 6;
  EXPECT_TRUE(parse_text(body, limits).request.has_value());
  limits.max_depth = 5;
  Parsed p = parse_text(body, limits);
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "runs[0].parameters.a[0]");
}

TEST(BatchRequestTextTest, ParametersKeepTheirValuesExactly) {
  const std::string body =
      R"({"deployment": "f/d", "runs": [{"parameters": {"i": 9223372036854775807,
          "u": 18446744073709551615, "n": -9223372036854775808, "f": 0.1, "e": 1.5e300,
          "s": "\u00e9"}}]})";
  Parsed p = parse_text(body);
  ASSERT_TRUE(p.request.has_value()) << describe(p.errors);
  EXPECT_EQ(p.request->run_specs[0],
            R"({"parameters":{"e":1.5e+300,"f":0.1,"i":9223372036854775807,)"
            R"("n":-9223372036854775808,"s":"é","u":18446744073709551615}})");
}

TEST(BatchRequestTextTest, NumbersThatWouldChangeAreRefused) {
  for (const char* number : {"123456789012345678901234567890", "1e400", "-1e400", "1e-400",
                             "0.1000000000000000000000000001"}) {
    const std::string body =
        std::string(R"({"deployment": "f/d", "runs": [{"parameters": {"x": )") + number + "}}]}";
    Parsed p = parse_text(body);
    ASSERT_FALSE(p.request.has_value()) << number;
    ASSERT_FALSE(p.errors.empty());
    EXPECT_EQ(p.errors.front().field, "runs[0].parameters.x") << number;
    EXPECT_TRUE(p.errors.front().malformed) << number;
  }
  // Anywhere in the body, not only in runs.
  Parsed p = parse_text(R"({"deployment": "f/d", "priority": 1e400, "runs": [{}]})");
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "priority");
}

TEST(BatchRequestTextTest, ARunLargerThanTheLimitIsRefused) {
  RequestLimits limits;
  limits.max_run_bytes = 1024;
  const std::string big = R"({"deployment": "f/d", "runs": [{}, {"parameters": {"a": ")" +
                          std::string(2000, 'x') + R"("}}]})";
  Parsed p = parse_text(big, limits);
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "runs[1]");
  EXPECT_NE(p.errors.front().message.find("--max-run-bytes"), std::string::npos);
}

TEST(BatchRequestTextTest, TooManyRunsIsRefusedBeforeAnyRunIsParsed) {
  std::string body = R"({"deployment": "f/d", "runs": [)";
  for (int i = 0; i < 1000; ++i) body += i ? ",{}" : "{}";
  body += "]}";
  RequestLimits limits;
  limits.max_runs = 999;
  Parsed p = parse_text(body, limits);
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "runs");
  EXPECT_NE(p.errors.front().message.find("1000"), std::string::npos);
}

TEST(BatchRequestTextTest, LargeBatchFieldsAndUnknownFieldsAreRefused) {
  std::string tags = R"({"deployment": "f/d", "runs": [{}], "tags": [)";
  for (int i = 0; i < 20000; ++i) tags += i ? ",\"t\"" : "\"t\"";
  tags += "]}";
  Parsed p = parse_text(tags);
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "tags");
  p = parse_text(R"({"deployment": "f/d", "runs": [{}], "x": [1], "y": 2})");
  EXPECT_TRUE(has_error(p.errors, "x"));
  EXPECT_TRUE(has_error(p.errors, "y"));
}

TEST(BatchRequestTextTest, NonObjectsAreNamed) {
  Parsed p = parse_text("[1]");
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "body");
  EXPECT_NE(p.errors.front().message.find("array"), std::string::npos);
  p = parse_text(R"({"deployment": "f/d", "runs": "x"})");
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "runs");
  EXPECT_NE(p.errors.front().message.find("string"), std::string::npos);
  p = parse_text("{\"runs\": [}");
  ASSERT_FALSE(p.errors.empty());
  EXPECT_EQ(p.errors.front().field, "body");
  EXPECT_TRUE(p.errors.front().malformed);
}

}  // namespace
}  // namespace floodgate::api
