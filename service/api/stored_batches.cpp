#include "api/stored_batches.h"

#include "api/problem.h"
#include "engine/engine.h"

namespace floodgate::api {

nlohmann::json stored_batch_view(store::Store& store, const store::BatchRecord& record) {
  return engine::Engine::stored_batch_json(record, store.count_items(record.id));
}

ServerResponse refuse_change_of_stored(store::Store& store, const std::string& id) {
  auto rec = store.get_batch(id);
  if (!rec) return no_such_batch(id);
  return problem(409, "batch " + id + " is already " + std::string(core::to_string(rec->state)));
}

}  // namespace floodgate::api
