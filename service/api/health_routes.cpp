#include "api/health_routes.h"

#include "api/problem.h"

namespace floodgate::api {

using nlohmann::json;

ServerResponse health_answer() { return json_response(200, {{"status", "ok"}}); }

void answer_readiness(engine::Engine& engine, Peers* peers, const Responder& respond) {
  engine.post([&engine, peers, respond] {
    std::string why;
    bool ok = engine.ready(&why) && (peers == nullptr || peers->healthy(&why));
    json body = {{"status", ok ? "ready" : "not ready"}, {"engine", engine.status_json()}};
    if (peers != nullptr) body["engine"]["replica"] = peers->status_json();
    if (!ok) body["reason"] = why;
    respond(json_response(ok ? 200 : 503, body));
  });
}

ServerResponse metrics_answer(metrics::Metrics& metrics) {
  ServerResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metrics.serialize();
  return r;
}

}  // namespace floodgate::api
