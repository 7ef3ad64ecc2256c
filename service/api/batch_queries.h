#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/http_server.h"
#include "api/peers.h"
#include "api/store_reader.h"
#include "core/states.h"
#include "engine/engine.h"
#include "store/store.h"

namespace floodgate::api {

/// The API's reads of batches: GET /v1/batches (by state or submitter), /v1/batches/{id}
/// (long-polls too) and /v1/batches/{id}/runs. What the engine holds is answered on its thread;
/// the rest comes from the store on the StoreReader's thread.
class BatchQueries {
 public:
  BatchQueries(engine::Engine& engine, store::Store& store, StoreReader& reads, double max_wait_s,
               Peers* peers = nullptr)
      : engine_(engine), store_(store), reads_(reads), max_wait_s_(max_wait_s), peers_(peers) {}

  void get_batch(const std::string& id, const ServerRequest& req, Responder respond);
  void list_runs(const std::string& id, const ServerRequest& req, Responder respond);
  void list_batches(const ServerRequest& req, Responder respond);

 private:
  void list_batches_by(const std::string& name, std::optional<core::BatchState> state, int limit,
                       int64_t after, Responder respond);

  engine::Engine& engine_;
  store::Store& store_;
  StoreReader& reads_;
  double max_wait_s_;       // cap on long-poll waits
  Peers* peers_ = nullptr;  // other replicas of a shared store, or null
};

}  // namespace floodgate::api
