#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "prefect/api_url.h"
#include "prefect/prefect_api.h"

namespace floodgate::prefect {
namespace {

// Prefect Cloud's API root: every call must keep /api/accounts/{a}/workspaces/{w} in front.
constexpr const char* kCloudRoot =
    "https://api.prefect.cloud/api/accounts/0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6/workspaces/"
    "1c8d2a5f-3e4b-4d6c-9fa0-b2c3d4e5f6a7";
constexpr const char* kRun = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
constexpr const char* kDeployment = "7b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";

// Every request PrefectApi builds, with the path it must reach below the root.
std::vector<std::pair<HttpRequest, std::string>> every_request(PrefectApi& api) {
  DeploymentRef by_name{"my flow", "nightly/eu", ""};
  DeploymentRef by_id{"", "", kDeployment};
  return {
      {api.read_deployment(by_name), "/deployments/name/my%20flow/nightly%2Feu"},
      {api.read_deployment(by_id), std::string("/deployments/") + kDeployment},
      {api.create_flow_run(kDeployment, "{}"),
       std::string("/deployments/") + kDeployment + "/create_flow_run"},
      {api.create_flow_run_bulk(kDeployment, "[]"),
       std::string("/deployments/") + kDeployment + "/create_flow_run/bulk"},
      {api.filter_flow_runs({kRun}), "/flow_runs/filter"},
      {api.filter_flow_runs_by_keys({"k"}, {kDeployment}), "/flow_runs/filter"},
      {api.cancel_flow_run(kRun, "t", "m"), std::string("/flow_runs/") + kRun + "/set_state"},
      {api.cancel_flow_runs_bulk({kRun}, "t", "m"), "/flow_runs/bulk_set_state"},
      {api.create_task_run(nlohmann::json::object()), "/task_runs/"},
      {api.read_flow_run(kRun), std::string("/flow_runs/") + kRun},
      {api.health(), "/health"},
      {api.csrf_token(), "/csrf-token?client=floodgate-1"},
  };
}

TEST(CloudUrlTest, EveryRequestKeepsTheAccountAndWorkspace) {
  PrefectApi api({"pnu_key", ""}, "floodgate-1");
  for (const auto& [request, path] : every_request(api)) {
    EXPECT_EQ(request.path, path);
    // Relative to the root: never the root's own "/api", never a URL of its own.
    EXPECT_NE(request.path.rfind("/api/", 0), 0u) << request.path;
    EXPECT_EQ(request.path.find("://"), std::string::npos) << request.path;
    EXPECT_EQ(join_api_url(kCloudRoot, request.path), std::string(kCloudRoot) + path);
    // A root given with a trailing slash reaches the same URL.
    EXPECT_EQ(join_api_url(std::string(kCloudRoot) + "/", request.path),
              std::string(kCloudRoot) + path);
  }
}

TEST(CloudUrlTest, CsrfHeadersAndAuthGoWithEveryWrite) {
  PrefectApi api({"pnu_key", ""}, "floodgate-1");
  HttpResponse token;
  token.status = 200;
  token.body = R"({"token":"tok","client":"floodgate-1","expiration":"2030-01-01T00:00:00Z"})";
  ASSERT_TRUE(api.on_csrf_response(token));
  for (const auto& [request, path] : every_request(api)) {
    bool auth = false, csrf = false;
    for (const auto& [k, v] : request.headers) {
      auth = auth || (k == "Authorization" && v == "Bearer pnu_key");
      csrf = csrf || (k == "Prefect-Csrf-Token" && v == "tok");
    }
    EXPECT_TRUE(auth) << path;
    EXPECT_EQ(csrf, request.method != "GET") << path;
  }
}

TEST(CloudUrlTest, JoinRefusesPathsThatAreNotRelative) {
  EXPECT_EQ(join_api_url(kCloudRoot, ""), "");
  EXPECT_EQ(join_api_url(kCloudRoot, "flow_runs/filter"), "");
  EXPECT_EQ(join_api_url(kCloudRoot, "//evil.example/api"), "");
  EXPECT_EQ(join_api_url("http://127.0.0.1:4200/api", "/health"),
            "http://127.0.0.1:4200/api/health");
}

}  // namespace
}  // namespace floodgate::prefect
