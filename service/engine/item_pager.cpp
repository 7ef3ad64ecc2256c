#include "engine/item_pager.h"

#include <algorithm>
#include <string>

#include "metrics/log.h"

namespace floodgate::engine {

using core::ItemState;

ItemPager::ItemPager(core::TimerQueue& timers, store::Store& store, BatchBook& book,
                     DeploymentResolver& resolver, Outbox& outbox, int page_size)
    : timers_(timers),
      store_(store),
      book_(book),
      resolver_(resolver),
      outbox_(outbox),
      page_size_(std::max(1, page_size)) {}

bool ItemPager::needs_page(const Batch& b) const {
  return b.unpaged > 0 && !core::is_final(b.rec.state) && b.held_unlaunched() < page_size_;
}

void ItemPager::want(Batch& b) {
  if (b.page_wanted || !needs_page(b)) return;
  b.page_wanted = true;
  timers_.post([this, key = b.key] {
    if (Batch* batch = book_.get(key)) {
      batch->page_wanted = false;
      refill(*batch);
    }
  });
}

bool ItemPager::refill(Batch& b) {
  bool read_any = false;
  while (needs_page(b)) {
    std::vector<store::ItemRecord> page;
    try {
      page = store_.pending_page(b.rec.id, b.page_cursor - 1, b.rec.total, page_size_);
    } catch (const std::exception& e) {
      log::warn("could not read the next items to launch; trying again shortly",
                {{"batch_id", b.rec.id}, {"error", e.what()}});
      return false;
    }
    const bool last = static_cast<int>(page.size()) < page_size_;
    int64_t fresh = 0;
    for (const auto& rec : page) fresh += b.items.find(rec.index) == nullptr ? 1 : 0;
    const auto to_launch = book_.hold_items(b, page);
    b.unpaged = std::max<int64_t>(0, b.unpaged - fresh);
    b.page_cursor = page.empty() ? b.rec.total : page.back().index + 1;
    if (last) {
      // Every PENDING item below the total is held now.
      b.page_cursor = b.rec.total;
      b.unpaged = 0;
    }
    for (int64_t idx : to_launch) resolver_.make_ready(b, idx);
    read_any = read_any || !page.empty();
    if (page.empty()) break;
  }
  if (read_any) {
    resolver_.sync_ready(b);
    outbox_.dispatch_now();
  }
  return true;
}

void ItemPager::on_item_state(Batch& b, int64_t /*index*/, ItemState from, ItemState /*to*/) {
  if (from == ItemState::kPending) want(b);
}

}  // namespace floodgate::engine
