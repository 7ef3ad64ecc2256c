#include "api/stored_batches.h"

#include <unordered_map>
#include <utility>

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

engine::RedriveReads read_for_redrive(store::Store& store, const std::string& id,
                                      const engine::RedriveNeeds& needs) {
  engine::RedriveReads got;
  got.evictions = needs.evictions;
  if (needs.items) {
    got.items = store.items_in_states(id, engine::kRedrivableStates, true);
  }
  if (needs.specs.empty()) return got;
  std::unordered_map<int64_t, std::string> found;
  for (auto& [index, text] : store.load_item_specs(id, needs.specs)) found[index] = std::move(text);
  got.specs.reserve(needs.specs.size());
  for (int64_t index : needs.specs) got.specs.emplace_back(index, std::move(found[index]));
  return got;
}

}  // namespace floodgate::api
