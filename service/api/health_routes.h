#pragma once

#include "api/http_server.h"
#include "api/peers.h"
#include "engine/engine.h"
#include "metrics/metrics.h"

namespace floodgate::api {

/// GET /healthz: the process is up and answering.
ServerResponse health_answer();

/// GET /readyz: asks the engine, on its thread, whether it can take work (503 with the reason
/// when not) and shows its status.
void answer_readiness(engine::Engine& engine, Peers* peers, const Responder& respond);

/// GET /metrics: every metric in Prometheus' text format.
ServerResponse metrics_answer(metrics::Metrics& metrics);

}  // namespace floodgate::api
