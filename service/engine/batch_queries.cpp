#include "engine/batch_queries.h"

#include <algorithm>
#include <utility>

namespace floodgate::engine {

using core::ItemState;
using nlohmann::json;

BatchQueries::BatchQueries(core::Clock& clock, core::TimerQueue& timers, BatchBook& book)
    : clock_(clock), timers_(timers), book_(book) {}

BatchQueries::~BatchQueries() {
  for (auto& [key, ws] : waiters_) {
    for (auto& w : ws) timers_.cancel(w->timer);
  }
}

int64_t BatchQueries::batch_version(const std::string& id) const {
  const Batch* b = book_.find(id);
  return b ? b->rec.version : -1;
}

const BatchSpec* BatchQueries::spec_of(const std::string& id) const {
  const Batch* b = book_.find(id);
  return b ? &b->spec : nullptr;
}

json BatchQueries::batch_json(const std::string& id) const {
  const Batch* b = book_.find(id);
  return b ? batch_view(*b) : json();
}

json BatchQueries::stored_batch_json(const store::BatchRecord& record,
                                     const std::array<int64_t, core::kItemStateCount>& counts) {
  Batch b;
  b.rec = record;
  b.spec = spec_from_json(json::parse(record.spec_json, nullptr, false));
  for (int i = 0; i < core::kItemStateCount; ++i) {
    b.counts[i] = counts[i];
    if (core::is_failure(static_cast<ItemState>(i))) b.failures += counts[i];
  }
  return batch_view(b);
}

void BatchQueries::wait_for_change(const std::string& id, int64_t after_version,
                                   std::chrono::milliseconds wait, std::function<void(json)> fn) {
  Batch* b = book_.find(id);
  if (b == nullptr) {
    fn(json());
    return;
  }
  if (b->rec.version > after_version || wait.count() <= 0 || answer_at_once_) {
    fn(batch_view(*b));
    return;
  }
  auto w = std::make_shared<Waiter>();
  w->after = after_version;
  w->fn = std::move(fn);
  waiters_[b->key].push_back(w);
  b->waiters += 1;
  const uint64_t key = b->key;
  w->timer = timers_.schedule(clock_.now() + wait, [this, w, key] { expire(key, w); });
}

void BatchQueries::expire(uint64_t key, const std::shared_ptr<Waiter>& w) {
  if (!w->fn) return;
  auto callback = std::move(w->fn);
  w->fn = nullptr;
  Batch* b = book_.get(key);
  if (b == nullptr) {
    callback(json());
    return;
  }
  auto& ws = waiters_[key];
  ws.erase(std::remove(ws.begin(), ws.end(), w), ws.end());
  b->waiters = static_cast<int>(ws.size());
  callback(batch_view(*b));
}

void BatchQueries::on_batch_changed(Batch& b) {
  auto it = waiters_.find(b.key);
  if (it == waiters_.end() || it->second.empty()) return;
  std::vector<std::shared_ptr<Waiter>> keep;
  std::vector<std::shared_ptr<Waiter>> due;
  for (auto& w : it->second) (b.rec.version > w->after ? due : keep).push_back(w);
  it->second = std::move(keep);
  b.waiters = static_cast<int>(it->second.size());
  if (due.empty()) return;
  const json view = batch_view(b);
  for (auto& w : due) {
    timers_.cancel(w->timer);
    auto fn = std::move(w->fn);
    w->fn = nullptr;
    if (fn) fn(view);
  }
}

void BatchQueries::answer_all() {
  answer_at_once_ = true;
  auto all = std::move(waiters_);
  waiters_.clear();
  for (auto& [key, ws] : all) {
    Batch* b = book_.get(key);
    if (b == nullptr) continue;
    b->waiters = 0;
    const json view = batch_view(*b);
    for (auto& w : ws) {
      timers_.cancel(w->timer);
      auto fn = std::move(w->fn);
      w->fn = nullptr;
      if (fn) fn(view);
    }
  }
}

std::optional<std::vector<RunView>> BatchQueries::list_runs(const std::string& id,
                                                            std::optional<ItemState> state,
                                                            int64_t after, int limit) const {
  const Batch* b = book_.find(id);
  if (b == nullptr || !b->items_loaded) return std::nullopt;
  std::vector<RunView> out;
  const auto now = clock_.now();
  for (int64_t i = std::max<int64_t>(0, after + 1);
       i < static_cast<int64_t>(b->items.size()) && static_cast<int>(out.size()) < limit; ++i) {
    const Item& item = b->items[i];
    if (state && item.state != *state) continue;
    out.push_back(run_view(item, i, now));
  }
  return out;
}

std::vector<std::pair<int64_t, json>> BatchQueries::held_batches(
    std::optional<core::BatchState> state, int64_t after_seq) const {
  std::vector<std::pair<int64_t, json>> out;
  for (const auto& [key, b] : book_.batches()) {
    if (b->rec.seq <= after_seq || (state && b->rec.state != *state)) continue;
    out.emplace_back(b->rec.seq, batch_view(*b));
  }
  std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  return out;
}

}  // namespace floodgate::engine
