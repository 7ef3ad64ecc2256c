#include "engine/change_flusher.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace floodgate::engine {

using core::ItemState;
using nlohmann::json;

namespace {

store::ItemUpdate item_update(const Batch& b, int64_t index) {
  const Item& item = b.items[index];
  store::ItemUpdate u;
  u.batch_id = b.rec.id;
  u.index = index;
  u.state = item.state == ItemState::kLaunching ? ItemState::kPending : item.state;
  u.attempts = item.attempts;
  u.flow_run_id = item.flow_run_id;
  u.flow_run_state = item.flow_run_state;
  u.last_error = item.last_error;
  if (item.relaunches > 0 || item.earlier_runs.is_array() || !item.parent_task_run_id.empty() ||
      item.unavailable > 0 || item.settled > item.first_attempt) {
    json d = {{"relaunches", item.relaunches}, {"earlier_runs", item.earlier_runs}};
    if (!item.parent_task_run_id.empty()) d["parent_task_run_id"] = item.parent_task_run_id;
    if (item.unavailable > 0) d["transient_attempts"] = item.unavailable;
    if (item.settled > item.first_attempt) {
      d["waited_s"] = core::to_seconds(item.settled - item.first_attempt);
    }
    u.detail_json = d.dump();
  }
  return u;
}

store::BatchUpdate batch_update(Batch& b) {
  store::BatchUpdate u;
  u.id = b.rec.id;
  u.state = b.rec.state;
  u.updated_at_ms = b.rec.updated_at_ms;
  u.finished_at_ms = b.rec.finished_at_ms;
  u.version = b.rec.version;
  u.spec_json = engine::to_json(b.spec).dump();
  u.skip_pending_from = b.skip_unpaged_from;
  u.followed = core::is_final(b.rec.state) && b.follows_children();
  b.skip_unpaged_from.reset();
  return u;
}

}  // namespace

ChangeFlusher::ChangeFlusher(core::Clock& clock, core::TimerQueue& timers, FlushOptions options,
                             BatchBook& book, StoreWriter& writer)
    : clock_(clock), timers_(timers), options_(options), book_(book), writer_(writer) {}

ChangeFlusher::~ChangeFlusher() { stop(); }

void ChangeFlusher::on_item_changed(Batch& b, int64_t index) {
  Item& item = b.items[index];
  if (!item.dirty) {
    item.dirty = true;
    dirty_items_.emplace_back(b.key, index);
    if (dirty_items_.size() >= options_.max_items) flush();
  }
  arm();
}

void ChangeFlusher::on_batch_changed(Batch& b) {
  if (!b.dirty) {
    b.dirty = true;
    dirty_batches_.push_back(b.key);
  }
  arm();
}

void ChangeFlusher::arm() {
  if (timer_ || stopped_) return;
  timer_ = timers_.schedule(clock_.now() + options_.interval, [this] {
    timer_.reset();
    flush();
  });
}

void ChangeFlusher::stop() {
  stopped_ = true;
  if (timer_) timers_.cancel(*timer_);
  timer_.reset();
}

void ChangeFlusher::flush() {
  if (dirty_items_.empty() && dirty_batches_.empty()) return;
  std::vector<store::ItemUpdate> items;
  items.reserve(dirty_items_.size());
  std::vector<std::pair<uint64_t, int64_t>> done;
  for (auto [key, index] : dirty_items_) {
    Batch* b = book_.get(key);
    Item* item = b == nullptr ? nullptr : b->items.find(index);
    if (item == nullptr) continue;
    item->dirty = false;
    items.push_back(item_update(*b, index));
    if (BatchBook::evictable(*b, *item)) done.emplace_back(key, index);
  }
  dirty_items_.clear();
  std::vector<store::BatchUpdate> batches;
  std::vector<Batch*> finals;
  for (uint64_t key : dirty_batches_) {
    Batch* b = book_.get(key);
    if (b == nullptr) continue;
    b->dirty = false;
    batches.push_back(batch_update(*b));
    if (core::is_final(b->rec.state)) finals.push_back(b);
  }
  dirty_batches_.clear();
  const uint64_t seq = writer_.submit(std::move(items), std::move(batches));
  for (Batch* b : finals) b->final_flush_seq = seq;
  if (!done.empty()) written_done_.emplace_back(seq, std::move(done));
  evict_written();
}

void ChangeFlusher::evict_written() {
  const uint64_t applied = writer_.applied();
  while (!written_done_.empty() && written_done_.front().first <= applied) {
    for (auto [key, index] : written_done_.front().second) {
      if (Batch* b = book_.get(key)) book_.evict(*b, index);
    }
    written_done_.pop_front();
  }
}

void ChangeFlusher::evict() {
  evict_written();
  const uint64_t applied = writer_.applied();
  // Items of an ended batch that became evictable without a change of their own (children no
  // longer to be cancelled, followed or awaited).
  for (const auto& [key, bp] : book_.batches()) {
    Batch& b = *bp;
    if (b.items.empty() || !core::is_final(b.rec.state) || b.dirty) continue;
    if (b.final_flush_seq == 0 || applied < b.final_flush_seq) continue;
    std::vector<int64_t> idle;
    for (const auto& [index, item] : b.items) {
      if (BatchBook::evictable(b, item)) idle.push_back(index);
    }
    for (int64_t index : idle) book_.evict(b, index);
  }
}

}  // namespace floodgate::engine
