#include "prefect/prefect_api.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "prefect/http_client.h"

namespace floodgate::prefect {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr const char* kUuid = "0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6";

// 2015-10-21 07:28:00 UTC, the date of RFC 9110's Retry-After example.
std::chrono::system_clock::time_point example_wall_time() {
  return std::chrono::system_clock::time_point(seconds(1445412480));
}

HttpResponse response(int status, std::string body = "", Headers headers = {}) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

Classification classify_now(const HttpResponse& r) { return classify(r, example_wall_time()); }

std::optional<std::string> header(const HttpRequest& r, const std::string& name) {
  for (const auto& [key, value] : r.headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::set<std::string> keys_of(const json& j) {
  std::set<std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) out.insert(it.key());
  return out;
}

// ---------------------------------------------------------------------------------------------
// base64, Authorization

TEST(Base64Test, Rfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, HighBytesAndNul) {
  EXPECT_EQ(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
  EXPECT_EQ(base64_encode("Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

TEST(AuthorizationHeaderTest, NoCredentialsNoHeader) {
  EXPECT_EQ(authorization_header(Credentials{}), "");
}

TEST(AuthorizationHeaderTest, ApiKeyIsBearer) {
  Credentials c;
  c.api_key = "pnu_abc123";
  EXPECT_EQ(authorization_header(c), "Bearer pnu_abc123");
}

TEST(AuthorizationHeaderTest, AuthStringIsBasic) {
  Credentials c;
  c.auth_string = "user:pass";
  EXPECT_EQ(authorization_header(c), "Basic dXNlcjpwYXNz");
}

TEST(AuthorizationHeaderTest, AuthStringWinsOverKey) {
  Credentials c;
  c.api_key = "pnu_abc123";
  c.auth_string = "user:pass";
  EXPECT_EQ(authorization_header(c), "Basic dXNlcjpwYXNz");
}

// ---------------------------------------------------------------------------------------------
// percent_encode_segment, is_uuid

TEST(PercentEncodeTest, UnreservedCharactersStay) {
  EXPECT_EQ(percent_encode_segment("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode_segment(""), "");
}

TEST(PercentEncodeTest, EverythingElseIsEncodedWithUpperHex) {
  EXPECT_EQ(percent_encode_segment("my flow"), "my%20flow");
  EXPECT_EQ(percent_encode_segment("a/b"), "a%2Fb");
  EXPECT_EQ(percent_encode_segment("a?b#c&d=e"), "a%3Fb%23c%26d%3De");
  EXPECT_EQ(percent_encode_segment("100%"), "100%25");
  EXPECT_EQ(percent_encode_segment("a+b"), "a%2Bb");
  EXPECT_EQ(percent_encode_segment("caf\xc3\xa9"), "caf%C3%A9");
}

TEST(IsUuidTest, AcceptsCanonicalForm) {
  EXPECT_TRUE(is_uuid(kUuid));
  EXPECT_TRUE(is_uuid("0B7C1F4E-2D3A-4C5B-8E9F-A1B2C3D4E5F6"));
  EXPECT_TRUE(is_uuid("00000000-0000-0000-0000-000000000000"));
}

TEST(IsUuidTest, RejectsEverythingElse) {
  EXPECT_FALSE(is_uuid(""));
  EXPECT_FALSE(is_uuid("0b7c1f4e2d3a4c5b8e9fa1b2c3d4e5f6"));        // no dashes
  EXPECT_FALSE(is_uuid("0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f"));     // short
  EXPECT_FALSE(is_uuid("0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6a"));   // long
  EXPECT_FALSE(is_uuid("0b7c1f4e2-d3a-4c5b-8e9f-a1b2c3d4e5f6"));    // dash moved
  EXPECT_FALSE(is_uuid("0b7c1f4g-2d3a-4c5b-8e9f-a1b2c3d4e5f6"));    // not hex
  EXPECT_FALSE(is_uuid("{b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6"));    // brace
  EXPECT_FALSE(is_uuid("my-flow/my-deployment-with-36-chars-xx"));  // a name
}

// ---------------------------------------------------------------------------------------------
// classify

TEST(ClassifyTest, ConnectionFailureIsRetryable) {
  HttpResponse r;
  r.error = "connection refused";
  auto c = classify_now(r);
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_EQ(c.reason, "connection");
  EXPECT_EQ(c.message, "connection refused");
  EXPECT_FALSE(c.retry_after.has_value());
}

TEST(ClassifyTest, StatusZeroWithoutErrorStillSaysSomething) {
  auto c = classify_now(HttpResponse{});
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_EQ(c.reason, "connection");
  EXPECT_FALSE(c.message.empty());
}

TEST(ClassifyTest, TimeoutIsRetryable) {
  HttpResponse r;
  r.timed_out = true;
  r.error = "request timed out after 30 s";
  auto c = classify_now(r);
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_EQ(c.reason, "timeout");
  EXPECT_EQ(c.message, "request timed out after 30 s");
}

TEST(ClassifyTest, SuccessIsOk) {
  for (int status : {200, 201, 204}) {
    auto c = classify_now(response(status, R"({"id": "x"})"));
    EXPECT_EQ(c.verdict, Verdict::kOk) << status;
    EXPECT_TRUE(c.reason.empty()) << status;
    EXPECT_FALSE(c.retry_after.has_value()) << status;
  }
}

TEST(ClassifyTest, ClientErrorsArePermanentWithPrefectsMessage) {
  for (int status : {400, 401, 404, 409, 413, 422}) {
    auto c = classify_now(response(status, R"({"detail": "nope"})"));
    EXPECT_EQ(c.verdict, Verdict::kPermanent) << status;
    EXPECT_EQ(c.reason, "http_" + std::to_string(status));
    EXPECT_EQ(c.message, "Prefect answered " + std::to_string(status) + ": nope");
  }
}

TEST(ClassifyTest, NotFoundDeployment) {
  auto c = classify_now(response(404, R"({"detail": "Deployment not found"})"));
  EXPECT_EQ(c.verdict, Verdict::kPermanent);
  EXPECT_EQ(c.reason, "http_404");
  EXPECT_EQ(c.message, "Prefect answered 404: Deployment not found");
}

TEST(ClassifyTest, RequestTimeoutIsRetryable) {
  auto c = classify_now(response(408, ""));
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_EQ(c.reason, "http_408");
}

TEST(ClassifyTest, TooManyRequestsWithRetryAfterSeconds) {
  auto c = classify_now(response(429, "", {{"Retry-After", "7"}}));
  EXPECT_EQ(c.verdict, Verdict::kRateLimited);
  EXPECT_EQ(c.reason, "http_429");
  ASSERT_TRUE(c.retry_after.has_value());
  EXPECT_EQ(*c.retry_after, seconds(7));
}

TEST(ClassifyTest, RetryAfterHeaderNameIsCaseInsensitive) {
  auto c = classify_now(response(429, "", {{"retry-after", "3"}}));
  ASSERT_TRUE(c.retry_after.has_value());
  EXPECT_EQ(*c.retry_after, seconds(3));
}

TEST(ClassifyTest, TooManyRequestsWithRetryAfterDate) {
  HttpResponse r = response(429, "", {{"Retry-After", "Wed, 21 Oct 2015 07:28:30 GMT"}});
  auto c = classify(r, example_wall_time());
  EXPECT_EQ(c.verdict, Verdict::kRateLimited);
  ASSERT_TRUE(c.retry_after.has_value());
  EXPECT_EQ(*c.retry_after, seconds(30));
}

TEST(ClassifyTest, RetryAfterDateInThePastIsZero) {
  HttpResponse r = response(429, "", {{"Retry-After", "Wed, 21 Oct 2015 07:00:00 GMT"}});
  auto c = classify(r, example_wall_time());
  EXPECT_EQ(c.verdict, Verdict::kRateLimited);
  ASSERT_TRUE(c.retry_after.has_value());
  EXPECT_EQ(*c.retry_after, core::Duration::zero());
}

TEST(ClassifyTest, TooManyRequestsWithoutOrWithJunkRetryAfter) {
  auto bare = classify_now(response(429, ""));
  EXPECT_EQ(bare.verdict, Verdict::kRateLimited);
  EXPECT_FALSE(bare.retry_after.has_value());
  auto junk = classify_now(response(429, "", {{"Retry-After", "soon"}}));
  EXPECT_EQ(junk.verdict, Verdict::kRateLimited);
  EXPECT_FALSE(junk.retry_after.has_value());
}

TEST(ClassifyTest, ServerErrorsAreRetryable) {
  for (int status : {500, 502, 503, 504}) {
    auto c = classify_now(response(status, "upstream trouble"));
    EXPECT_EQ(c.verdict, Verdict::kRetryable) << status;
    EXPECT_EQ(c.reason, "http_" + std::to_string(status));
    EXPECT_FALSE(c.retry_after.has_value()) << status;
  }
}

TEST(ClassifyTest, ServiceUnavailableWithRetryAfterIsRateLimited) {
  auto c = classify_now(response(503, "", {{"Retry-After", "12"}}));
  EXPECT_EQ(c.verdict, Verdict::kRateLimited);
  EXPECT_EQ(c.reason, "http_503");
  ASSERT_TRUE(c.retry_after.has_value());
  EXPECT_EQ(*c.retry_after, seconds(12));
}

TEST(ClassifyTest, ServiceUnavailableWithJunkRetryAfterIsRetryable) {
  auto c = classify_now(response(503, "", {{"Retry-After", "later"}}));
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_FALSE(c.retry_after.has_value());
}

TEST(ClassifyTest, OtherServerErrorsKeepTheirVerdictButCarryRetryAfter) {
  for (int status : {500, 502, 504}) {
    auto c = classify_now(response(status, "", {{"Retry-After", "5"}}));
    EXPECT_EQ(c.verdict, Verdict::kRetryable) << status;
    ASSERT_TRUE(c.retry_after.has_value()) << status;
    EXPECT_EQ(*c.retry_after, seconds(5));
  }
}

TEST(ClassifyTest, ForbiddenAboutCsrfAsksForANewToken) {
  auto c = classify_now(response(403, R"({"detail": "Invalid CSRF token or client identifier."})"));
  EXPECT_EQ(c.verdict, Verdict::kCsrfInvalid);
  EXPECT_EQ(c.reason, "http_403");
}

TEST(ClassifyTest, OtherForbiddenIsPermanent) {
  auto c = classify_now(response(403, R"({"detail": "Forbidden"})"));
  EXPECT_EQ(c.verdict, Verdict::kPermanent);
  EXPECT_EQ(c.message, "Prefect answered 403: Forbidden");
}

// ---------------------------------------------------------------------------------------------
// error_message

TEST(ErrorMessageTest, StringDetail) {
  EXPECT_EQ(error_message(404, R"({"detail": "Deployment not found"})"),
            "Prefect answered 404: Deployment not found");
}

TEST(ErrorMessageTest, FastApiValidationList) {
  const std::string body = R"({"detail": [
      {"loc": ["body", "parameters", "x"], "msg": "field required", "type": "missing"},
      {"loc": ["body", 0], "msg": "bad item", "type": "value_error"}]})";
  EXPECT_EQ(error_message(422, body),
            "Prefect answered 422: body.parameters.x: field required; body.0: bad item");
}

TEST(ErrorMessageTest, ValidationEntryWithoutLocIsJustTheMessage) {
  EXPECT_EQ(error_message(422, R"({"detail": [{"msg": "bad"}, "plain"]})"),
            "Prefect answered 422: bad; \"plain\"");
}

TEST(ErrorMessageTest, PrefectExceptionDetail) {
  const std::string body = R"({"exception_message": "Invalid request received.",
      "exception_detail": [{"loc": ["body", "foo"], "msg": "extra fields not permitted",
                            "type": "value_error.extra"}],
      "request_body": {"foo": 1}})";
  EXPECT_EQ(error_message(422, body), "Prefect answered 422: body.foo: extra fields not permitted");
}

TEST(ErrorMessageTest, ObjectDetailIsDumped) {
  EXPECT_EQ(error_message(409, R"({"detail": {"reason": "schema"}})"),
            R"(Prefect answered 409: {"reason":"schema"})");
}

TEST(ErrorMessageTest, NonJsonBodyIsQuotedAndCapped) {
  EXPECT_EQ(error_message(502, "Bad Gateway"), "Prefect answered 502: Bad Gateway");
  EXPECT_EQ(error_message(500, ""), "Prefect answered 500");
  std::string long_body(2000, 'x');
  std::string msg = error_message(500, long_body);
  EXPECT_EQ(msg, "Prefect answered 500: " + std::string(500, 'x'));
}

// ---------------------------------------------------------------------------------------------
// parse_deployment_ref, parse_deployment

TEST(DeploymentRefTest, FlowSlashDeployment) {
  auto ref = parse_deployment_ref("my-flow/prod");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->flow_name, "my-flow");
  EXPECT_EQ(ref->name, "prod");
  EXPECT_TRUE(ref->id.empty());
  EXPECT_EQ(ref->display(), "my-flow/prod");
}

TEST(DeploymentRefTest, NamesMayHoldSpaces) {
  auto ref = parse_deployment_ref("my flow/nightly run");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->flow_name, "my flow");
  EXPECT_EQ(ref->name, "nightly run");
}

TEST(DeploymentRefTest, Uuid) {
  auto ref = parse_deployment_ref(kUuid);
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->id, kUuid);
  EXPECT_TRUE(ref->flow_name.empty());
  EXPECT_TRUE(ref->name.empty());
  EXPECT_EQ(ref->display(), kUuid);
}

TEST(DeploymentRefTest, RejectsAnythingButExactlyOneInnerSlash) {
  for (const char* text : {"a/b/c", "/x", "x/", "x", "", "/", "//", "a//b"}) {
    EXPECT_FALSE(parse_deployment_ref(text).has_value()) << "'" << text << "'";
  }
}

TEST(ParseDeploymentTest, ReadsIdFlowIdAndName) {
  auto d = parse_deployment(R"({"id": "d1", "flow_id": "f1", "name": "prod", "tags": []})");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->id, "d1");
  EXPECT_EQ(d->flow_id, "f1");
  EXPECT_EQ(d->name, "prod");
}

TEST(ParseDeploymentTest, RejectsMalformed) {
  EXPECT_FALSE(parse_deployment("").has_value());
  EXPECT_FALSE(parse_deployment("{").has_value());
  EXPECT_FALSE(parse_deployment("[]").has_value());
  EXPECT_FALSE(parse_deployment(R"({"name": "prod"})").has_value());
  EXPECT_FALSE(parse_deployment(R"({"id": 5})").has_value());
}

// ---------------------------------------------------------------------------------------------
// parse_flow_run, parse_flow_run_list, parse_bulk_results

TEST(ParseFlowRunTest, CreateAnswerWithStateObject) {
  auto run = parse_flow_run(std::string(R"({
      "id": "r1", "name": "gentle-fox", "idempotency_key": "floodgate:b:0",
      "state": {"type": "SCHEDULED", "name": "Scheduled", "message": "queued"}})"));
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->id, "r1");
  EXPECT_EQ(run->idempotency_key, "floodgate:b:0");
  EXPECT_EQ(run->state_type, "SCHEDULED");
  EXPECT_EQ(run->state_name, "Scheduled");
  EXPECT_EQ(run->state_message, "queued");
}

TEST(ParseFlowRunTest, TopLevelStateFieldsWin) {
  auto run = parse_flow_run(std::string(R"({
      "id": "r1", "state_type": "SCHEDULED", "state_name": "Late",
      "state": {"type": "PENDING", "name": "Pending", "message": null}})"));
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->state_type, "SCHEDULED");
  EXPECT_EQ(run->state_name, "Late");
  EXPECT_EQ(run->state_message, "");
}

TEST(ParseFlowRunTest, NullStateIsTolerated) {
  auto run = parse_flow_run(std::string(R"({"id": "r1", "state": null})"));
  ASSERT_TRUE(run.has_value());
  EXPECT_TRUE(run->state_type.empty());
}

TEST(ParseFlowRunTest, CreatedAndStartTimeAreRead) {
  // As Prefect answers a read: start_time null until the run first enters RUNNING.
  auto scheduled = parse_flow_run(std::string(R"({"id": "r1", "state_type": "SCHEDULED",
      "created": "2027-01-15T08:00:00.250000Z", "start_time": null})"));
  ASSERT_TRUE(scheduled.has_value());
  ASSERT_TRUE(scheduled->created.has_value());
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(scheduled->created->time_since_epoch())
          .count(),
      1'800'000'000'250);
  EXPECT_FALSE(scheduled->start_time.has_value());
  auto running = parse_flow_run(std::string(R"({"id": "r1", "state_type": "RUNNING",
      "created": "2027-01-15T08:00:00+00:00", "start_time": "2027-01-15T08:01:00.5+00:00"})"));
  ASSERT_TRUE(running.has_value() && running->start_time.has_value());
  EXPECT_EQ(*running->start_time - *running->created, std::chrono::milliseconds(60'500));
  // Missing or not a time: none, and the run is still read.
  auto odd = parse_flow_run(std::string(R"({"id": "r1", "created": "yesterday"})"));
  ASSERT_TRUE(odd.has_value());
  EXPECT_FALSE(odd->created.has_value());
}

TEST(ParseFlowRunTest, RejectsMalformed) {
  EXPECT_FALSE(parse_flow_run(std::string("")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string("{\"id\": ")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string("[]")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string("\"r1\"")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string(R"({"state": {"type": "RUNNING"}})")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string(R"({"id": 42})")).has_value());
  EXPECT_FALSE(parse_flow_run(std::string(R"({"id": ""})")).has_value());
  EXPECT_FALSE(parse_flow_run(json(nullptr)).has_value());
}

TEST(ParseFlowRunListTest, FilterAnswer) {
  auto runs = parse_flow_run_list(R"([
      {"id": "r1", "state_type": "COMPLETED", "state_name": "Completed",
       "state": {"type": "COMPLETED", "name": "Completed", "message": "All good"}},
      {"id": "r2", "state": {"type": "CRASHED", "name": "Crashed", "message": "exit 1"}}])");
  ASSERT_TRUE(runs.has_value());
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].id, "r1");
  EXPECT_EQ((*runs)[0].state_type, "COMPLETED");
  EXPECT_EQ((*runs)[0].state_message, "All good");
  EXPECT_EQ((*runs)[1].id, "r2");
  EXPECT_EQ((*runs)[1].state_type, "CRASHED");
  EXPECT_EQ((*runs)[1].state_message, "exit 1");
}

TEST(ParseFlowRunListTest, EmptyList) {
  auto runs = parse_flow_run_list("[]");
  ASSERT_TRUE(runs.has_value());
  EXPECT_TRUE(runs->empty());
}

TEST(ParseFlowRunListTest, RejectsMalformed) {
  EXPECT_FALSE(parse_flow_run_list("").has_value());
  EXPECT_FALSE(parse_flow_run_list("[{\"id\": \"r1\"}").has_value());
  EXPECT_FALSE(parse_flow_run_list(R"({"id": "r1"})").has_value());
  EXPECT_FALSE(parse_flow_run_list(R"([{"id": "r1"}, {"name": "no id"}])").has_value());
  EXPECT_FALSE(parse_flow_run_list(R"([{"id": "r1"}, 3])").has_value());
}

TEST(ParseBulkResultsTest, CreatedAndFailed) {
  auto results = parse_bulk_results(R"({"results": [
      {"flow_run_id": "r1", "status": "CREATED", "error": null},
      {"flow_run_id": null, "status": "FAILED", "error": "parameters rejected"},
      {"status": "FAILED", "error": {"code": 409}}]})");
  ASSERT_TRUE(results.has_value());
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].flow_run_id, "r1");
  EXPECT_TRUE((*results)[0].created);
  EXPECT_EQ((*results)[0].error, "");
  EXPECT_FALSE((*results)[1].created);
  EXPECT_EQ((*results)[1].flow_run_id, "");
  EXPECT_EQ((*results)[1].error, "parameters rejected");
  EXPECT_FALSE((*results)[2].created);
  EXPECT_EQ((*results)[2].error, R"({"code":409})");
}

TEST(ParseBulkResultsTest, EmptyResults) {
  auto results = parse_bulk_results(R"({"results": []})");
  ASSERT_TRUE(results.has_value());
  EXPECT_TRUE(results->empty());
}

TEST(ParseBulkResultsTest, RejectsMalformed) {
  EXPECT_FALSE(parse_bulk_results("").has_value());
  EXPECT_FALSE(parse_bulk_results("{\"results\": [").has_value());
  EXPECT_FALSE(parse_bulk_results("[]").has_value());
  EXPECT_FALSE(parse_bulk_results("{}").has_value());
  EXPECT_FALSE(parse_bulk_results(R"({"results": {}})").has_value());
  EXPECT_FALSE(parse_bulk_results(R"({"results": ["r1"]})").has_value());
  // CREATED without the run's id cannot be tracked.
  EXPECT_FALSE(parse_bulk_results(R"({"results": [{"status": "CREATED"}]})").has_value());
}

// ---------------------------------------------------------------------------------------------
// build_create_body

// The top-level keys POST /deployments/{id}/create_flow_run accepts (PREFECT_API.md).
const std::set<std::string>& allowed_create_keys() {
  static const std::set<std::string> kKeys = {"state",
                                              "name",
                                              "parameters",
                                              "enforce_parameter_schema",
                                              "context",
                                              "tags",
                                              "idempotency_key",
                                              "labels",
                                              "parent_task_run_id",
                                              "work_queue_name",
                                              "job_variables",
                                              "empirical_policy",
                                              "infrastructure_document_id"};
  return kKeys;
}

TEST(BuildCreateBodyTest, MinimalSpec) {
  CreateContext ctx;
  ctx.idempotency_key = "floodgate:b1:0";
  json body = build_create_body(json::object(), ctx);
  EXPECT_EQ(body["parameters"], json::object());
  EXPECT_EQ(body["tags"], json::array());
  EXPECT_EQ(body["idempotency_key"], "floodgate:b1:0");
  EXPECT_FALSE(body.contains("parent_task_run_id"));
  EXPECT_FALSE(body.contains("name"));
  EXPECT_FALSE(body.contains("work_queue_name"));
  EXPECT_FALSE(body.contains("job_variables"));
}

TEST(BuildCreateBodyTest, CopiesRunFields) {
  json spec = {{"parameters", {{"x", 1}, {"nested", {{"y", "z"}}}}},
               {"name", "child-7"},
               {"work_queue_name", "high"},
               {"job_variables", {{"image", "python:3.11"}}}};
  CreateContext ctx;
  ctx.idempotency_key = "floodgate:b1:7";
  json body = build_create_body(spec, ctx);
  EXPECT_EQ(body["parameters"], spec["parameters"]);
  EXPECT_EQ(body["name"], "child-7");
  EXPECT_EQ(body["work_queue_name"], "high");
  EXPECT_EQ(body["job_variables"], spec["job_variables"]);
}

TEST(BuildCreateBodyTest, NullFieldsAreLeftOut) {
  json spec = {{"name", nullptr}, {"work_queue_name", nullptr}, {"job_variables", nullptr}};
  CreateContext ctx;
  ctx.idempotency_key = "k";
  json body = build_create_body(spec, ctx);
  EXPECT_FALSE(body.contains("name"));
  EXPECT_FALSE(body.contains("work_queue_name"));
  EXPECT_FALSE(body.contains("job_variables"));
}

TEST(BuildCreateBodyTest, TagsAreTheUnionInOrderWithoutDuplicates) {
  const std::vector<std::string> batch_tags = {"team-a", "nightly", "team-a"};
  json spec = {{"tags", {"nightly", "shard-3", "floodgate-batch:b1", "shard-3"}}};
  CreateContext ctx;
  ctx.batch_tags = &batch_tags;
  ctx.batch_tag = "floodgate-batch:b1";
  ctx.idempotency_key = "k";
  json body = build_create_body(spec, ctx);
  EXPECT_EQ(body["tags"], json({"team-a", "nightly", "shard-3", "floodgate-batch:b1"}));
}

TEST(BuildCreateBodyTest, BatchTagIsAddedLast) {
  const std::vector<std::string> batch_tags = {"team-a"};
  CreateContext ctx;
  ctx.batch_tags = &batch_tags;
  ctx.batch_tag = "floodgate-batch:b1";
  ctx.idempotency_key = "k";
  json body = build_create_body(json{{"tags", {"x"}}}, ctx);
  EXPECT_EQ(body["tags"], json({"team-a", "x", "floodgate-batch:b1"}));
}

TEST(BuildCreateBodyTest, ParentTaskRunIdWhenGiven) {
  CreateContext ctx;
  ctx.idempotency_key = "k";
  ctx.parent_task_run_id = kUuid;
  json body = build_create_body(json::object(), ctx);
  EXPECT_EQ(body["parent_task_run_id"], kUuid);
}

TEST(BuildCreateBodyTest, ContextIdempotencyKeyIsTheOneSent) {
  CreateContext ctx;
  ctx.idempotency_key = "floodgate:b1:3:r1";
  json body = build_create_body(json{{"idempotency_key", "user-key"}}, ctx);
  EXPECT_EQ(body["idempotency_key"], "floodgate:b1:3:r1");
}

TEST(BuildCreateBodyTest, OnlyKeysPrefectAccepts) {
  // A run spec as validation stores it, per-run deployment included.
  json spec = {{"parameters", {{"x", 1}}},
               {"name", "n"},
               {"tags", {"t"}},
               {"job_variables", {{"a", 1}}},
               {"work_queue_name", "q"},
               {"idempotency_key", "user-key"},
               {"deployment", "other-flow/other"}};
  const std::vector<std::string> batch_tags = {"b"};
  CreateContext ctx;
  ctx.batch_tags = &batch_tags;
  ctx.batch_tag = "floodgate-batch:b1";
  ctx.idempotency_key = "k";
  ctx.parent_task_run_id = kUuid;
  json body = build_create_body(spec, ctx);
  ASSERT_TRUE(body.is_object());
  for (const auto& key : keys_of(body)) {
    EXPECT_TRUE(allowed_create_keys().count(key) != 0) << "create_flow_run rejects key " << key;
  }
  EXPECT_FALSE(body.contains("deployment"));
}

// ---------------------------------------------------------------------------------------------
// PrefectApi request building

PrefectApi api_with_key(std::string key = "pnu_key") {
  Credentials c;
  c.api_key = std::move(key);
  return PrefectApi(c, "floodgate-client-1");
}

PrefectApi api_with_csrf_token(const std::string& token) {
  PrefectApi api = api_with_key();
  HttpResponse r =
      response(200, json{{"token", token}, {"expiration", "2030-01-01T00:00:00Z"}}.dump());
  EXPECT_TRUE(api.on_csrf_response(r));
  return api;
}

TEST(PrefectApiTest, ReadDeploymentByName) {
  PrefectApi api = api_with_key();
  auto ref = parse_deployment_ref("my flow/nightly run");
  ASSERT_TRUE(ref.has_value());
  HttpRequest r = api.read_deployment(*ref);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/deployments/name/my%20flow/nightly%20run");
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(header(r, "Authorization"), "Bearer pnu_key");
  EXPECT_FALSE(header(r, "Content-Type").has_value());
}

TEST(PrefectApiTest, ReadDeploymentEncodesReservedCharacters) {
  PrefectApi api = api_with_key();
  DeploymentRef ref;
  ref.flow_name = "etl?v=2";
  ref.name = "a#b%c";
  EXPECT_EQ(api.read_deployment(ref).path, "/deployments/name/etl%3Fv%3D2/a%23b%25c");
}

TEST(PrefectApiTest, ReadDeploymentById) {
  PrefectApi api = api_with_key();
  auto ref = parse_deployment_ref(kUuid);
  ASSERT_TRUE(ref.has_value());
  HttpRequest r = api.read_deployment(*ref);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, std::string("/deployments/") + kUuid);
}

TEST(PrefectApiTest, CreateFlowRun) {
  PrefectApi api = api_with_key();
  HttpRequest r = api.create_flow_run(kUuid, R"({"parameters":{}})");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, std::string("/deployments/") + kUuid + "/create_flow_run");
  EXPECT_EQ(r.body, R"({"parameters":{}})");
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  EXPECT_EQ(header(r, "Authorization"), "Bearer pnu_key");
}

TEST(PrefectApiTest, CreateFlowRunBulk) {
  PrefectApi api = api_with_key();
  HttpRequest r = api.create_flow_run_bulk(kUuid, "[]");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, std::string("/deployments/") + kUuid + "/create_flow_run/bulk");
  EXPECT_EQ(r.body, "[]");
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
}

TEST(PrefectApiTest, FilterFlowRunsBodyShape) {
  PrefectApi api = api_with_key();
  const std::vector<std::string> ids = {"r1", "r2", "r3"};
  HttpRequest r = api.filter_flow_runs(ids);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/flow_runs/filter");
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  json body = json::parse(r.body);
  EXPECT_EQ(keys_of(body), (std::set<std::string>{"flow_runs", "limit", "offset", "sort"}));
  // Filter objects reject unknown keys: only flow_runs.id.any_.
  EXPECT_EQ(keys_of(body["flow_runs"]), std::set<std::string>{"id"});
  EXPECT_EQ(keys_of(body["flow_runs"]["id"]), std::set<std::string>{"any_"});
  EXPECT_EQ(body["flow_runs"]["id"]["any_"], json(ids));
  EXPECT_EQ(body["offset"], 0);
  EXPECT_EQ(body["sort"], "ID_DESC");
  EXPECT_GE(body["limit"].get<int>(), 3);
  EXPECT_LE(body["limit"].get<int>(), 200);
}

TEST(PrefectApiTest, FilterLimitNeverExceeds200) {
  PrefectApi api = api_with_key();
  for (size_t n : {1u, 199u, 200u, 201u, 500u}) {
    std::vector<std::string> ids;
    for (size_t i = 0; i < n; ++i) ids.push_back("r" + std::to_string(i));
    json body = json::parse(api.filter_flow_runs(ids).body);
    EXPECT_LE(body["limit"].get<int>(), 200) << n;
    EXPECT_GE(body["limit"].get<size_t>(), std::min<size_t>(n, 200)) << n;
  }
}

TEST(PrefectApiTest, CancelFlowRun) {
  PrefectApi api = api_with_key();
  HttpRequest r = api.cancel_flow_run("r1", kUuid, "batch cancelled");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/flow_runs/r1/set_state");
  json body = json::parse(r.body);
  EXPECT_EQ(body["state"]["type"], "CANCELLING");
  EXPECT_EQ(body["state"]["name"], "Cancelling");
  EXPECT_EQ(body["state"]["message"], "batch cancelled");
  EXPECT_EQ(body["state"]["state_details"]["transition_id"], kUuid);
  EXPECT_EQ(body["force"], false);
}

TEST(PrefectApiTest, CreateTaskRun) {
  PrefectApi api = api_with_key();
  json task = {{"flow_run_id", kUuid}, {"task_key", "k"}, {"dynamic_key", "0"}};
  HttpRequest r = api.create_task_run(task);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/task_runs/");
  EXPECT_EQ(json::parse(r.body), task);
}

TEST(PrefectApiTest, ReadFlowRunAndHealth) {
  PrefectApi api = api_with_key();
  HttpRequest read = api.read_flow_run("r1");
  EXPECT_EQ(read.method, "GET");
  EXPECT_EQ(read.path, "/flow_runs/r1");
  HttpRequest health = api.health();
  EXPECT_EQ(health.method, "GET");
  EXPECT_EQ(health.path, "/health");
  EXPECT_LE(health.timeout, std::chrono::milliseconds(10000));
}

TEST(PrefectApiTest, TimeoutApplies) {
  PrefectApi api = api_with_key();
  EXPECT_EQ(api.read_flow_run("r1").timeout, std::chrono::seconds(30));
  api.set_timeout(std::chrono::milliseconds(2500));
  EXPECT_EQ(api.read_flow_run("r1").timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(api.create_flow_run(kUuid, "{}").timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(api.health().timeout, std::chrono::milliseconds(2500));
}

TEST(PrefectApiTest, NoCredentialsNoAuthorizationHeader) {
  PrefectApi api(Credentials{}, "c");
  EXPECT_FALSE(header(api.read_flow_run("r1"), "Authorization").has_value());
  EXPECT_FALSE(header(api.create_flow_run(kUuid, "{}"), "Authorization").has_value());
}

TEST(PrefectApiTest, BasicAuthWhenAuthStringGiven) {
  Credentials c;
  c.api_key = "ignored";
  c.auth_string = "user:pass";
  PrefectApi api(c, "c");
  EXPECT_EQ(header(api.read_flow_run("r1"), "Authorization"), "Basic dXNlcjpwYXNz");
}

TEST(PrefectApiTest, CsrfTokenRequest) {
  PrefectApi api(Credentials{}, "floodgate host/1");
  HttpRequest r = api.csrf_token();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/csrf-token?client=floodgate%20host%2F1");
}

// ---------------------------------------------------------------------------------------------
// CSRF

TEST(PrefectApiCsrfTest, UnknownUntilAnswered) {
  PrefectApi api = api_with_key();
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kUnknown);
  HttpRequest r = api.create_flow_run(kUuid, "{}");
  EXPECT_FALSE(header(r, "Prefect-Csrf-Token").has_value());
  EXPECT_FALSE(header(r, "Prefect-Csrf-Client").has_value());
}

TEST(PrefectApiCsrfTest, TokenGoesOnMutatingRequestsOnly) {
  PrefectApi api = api_with_csrf_token("tok-123");
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kEnabled);
  for (const HttpRequest& r :
       {api.create_flow_run(kUuid, "{}"), api.create_flow_run_bulk(kUuid, "[]"),
        api.filter_flow_runs({"r1"}), api.cancel_flow_run("r1", kUuid, "m"),
        api.create_task_run(json::object())}) {
    EXPECT_EQ(header(r, "Prefect-Csrf-Token"), "tok-123") << r.path;
    EXPECT_EQ(header(r, "Prefect-Csrf-Client"), "floodgate-client-1") << r.path;
    EXPECT_EQ(header(r, "Authorization"), "Bearer pnu_key") << r.path;
  }
  auto ref = parse_deployment_ref("f/d");
  ASSERT_TRUE(ref.has_value());
  for (const HttpRequest& r :
       {api.read_deployment(*ref), api.read_flow_run("r1"), api.health(), api.csrf_token()}) {
    EXPECT_FALSE(header(r, "Prefect-Csrf-Token").has_value()) << r.path;
    EXPECT_FALSE(header(r, "Prefect-Csrf-Client").has_value()) << r.path;
  }
}

TEST(PrefectApiCsrfTest, UnprocessableMeansDisabled) {
  PrefectApi api = api_with_key();
  EXPECT_TRUE(api.on_csrf_response(response(422, R"({"detail": "CSRF protection is disabled."})")));
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kDisabled);
  EXPECT_FALSE(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token").has_value());
}

TEST(PrefectApiCsrfTest, DisabledAfterEnabledDropsTheHeaders) {
  PrefectApi api = api_with_csrf_token("tok");
  EXPECT_TRUE(api.on_csrf_response(response(422, "")));
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kDisabled);
  EXPECT_FALSE(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token").has_value());
}

TEST(PrefectApiCsrfTest, JunkAnswersAreNotUnderstood) {
  for (const HttpResponse& r :
       {response(200, "not json"), response(200, "{}"), response(200, R"({"token": 5})"),
        response(200, R"(["tok"])"), response(500, R"({"token": "tok"})"), HttpResponse{}}) {
    PrefectApi api = api_with_key();
    EXPECT_FALSE(api.on_csrf_response(r)) << r.status << " " << r.body;
    EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kUnknown) << r.status << " " << r.body;
    EXPECT_FALSE(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token").has_value());
  }
}

TEST(PrefectApiCsrfTest, JunkAfterATokenKeepsTheToken) {
  PrefectApi api = api_with_csrf_token("tok-1");
  EXPECT_FALSE(api.on_csrf_response(response(200, "garbage")));
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kEnabled);
  EXPECT_EQ(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token"), "tok-1");
}

TEST(PrefectApiCsrfTest, NewTokenReplacesOld) {
  PrefectApi api = api_with_csrf_token("tok-1");
  ASSERT_TRUE(api.on_csrf_response(response(200, R"({"token": "tok-2"})")));
  EXPECT_EQ(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token"), "tok-2");
}

TEST(PrefectApiCsrfTest, InvalidateStopsSendingTheToken) {
  PrefectApi api = api_with_csrf_token("tok-1");
  api.invalidate_csrf_token();
  EXPECT_EQ(api.csrf(), PrefectApi::Csrf::kUnknown);
  EXPECT_FALSE(header(api.create_flow_run(kUuid, "{}"), "Prefect-Csrf-Token").has_value());
}

TEST(PlaceholderBodyTest, StandsForTheChildAsRunDeploymentDoes) {
  std::vector<std::string> tags{"team-a"};
  PlaceholderContext ctx;
  ctx.parent_flow_run_id = "parent-1";
  ctx.deployment_name = "My Flow/nightly_etl";
  ctx.dynamic_key = "floodgate:b1:7";
  ctx.index = 7;
  ctx.tags = &tags;
  nlohmann::json j = build_placeholder_body(ctx);
  EXPECT_EQ(j["flow_run_id"], "parent-1");
  EXPECT_EQ(j["task_key"], "prefect.deployments.flow_runs.run_deployment.my-flow-nightly-etl");
  EXPECT_EQ(j["dynamic_key"], "floodgate:b1:7");
  EXPECT_EQ(j["name"], "My Flow/nightly_etl-7");
  EXPECT_EQ(j["state"]["type"], "PENDING");
  EXPECT_EQ(j["tags"], nlohmann::json::array({"team-a"}));
  EXPECT_EQ(j["empirical_policy"]["retries"], 0);
}

TEST(MissingBulkEndpointTest, OnlyARouteNotFoundOrAMethodNotAllowed) {
  HttpResponse r;
  r.status = 404;
  r.body = R"({"detail":"Not Found"})";
  EXPECT_TRUE(is_missing_bulk_endpoint(r));
  r.body = R"({"detail":"Deployment not found"})";
  EXPECT_FALSE(is_missing_bulk_endpoint(r));
  r.status = 405;
  EXPECT_TRUE(is_missing_bulk_endpoint(r));
  r.status = 503;
  EXPECT_FALSE(is_missing_bulk_endpoint(r));
}

}  // namespace
}  // namespace floodgate::prefect
