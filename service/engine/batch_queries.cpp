#include "engine/batch_queries.h"

#include <algorithm>
#include <limits>
#include <map>
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

std::vector<RunView> BatchQueries::overlay_runs(const std::string& id,
                                                std::optional<ItemState> state, int64_t after,
                                                int limit, std::vector<RunView> stored) const {
  const Batch* b = book_.find(id);
  if (b == nullptr || b->items.empty()) return stored;
  // The page covers the indexes up to its last row when it is full, else all after `after`.
  const bool full = static_cast<int>(stored.size()) > limit;
  const int64_t bound = full ? stored.back().index : std::numeric_limits<int64_t>::max();
  const auto now = clock_.now();
  std::map<int64_t, RunView> merged;
  for (auto& row : stored) {
    if (b->items.find(row.index) == nullptr) merged.emplace(row.index, std::move(row));
  }
  for (auto it = b->items.after(after); it != b->items.end() && it->first <= bound; ++it) {
    if (state && it->second.state != *state) continue;
    merged.insert_or_assign(it->first, run_view(it->second, it->first, now));
  }
  std::vector<RunView> out;
  out.reserve(std::min<size_t>(merged.size(), static_cast<size_t>(limit) + 1));
  for (auto& [index, view] : merged) {
    if (static_cast<int>(out.size()) > limit) break;
    out.push_back(std::move(view));
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
