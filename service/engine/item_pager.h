#pragma once

#include <cstdint>

#include "core/timer_queue.h"
#include "engine/batch_book.h"
#include "engine/deployment_resolver.h"
#include "engine/request.h"
#include "store/store.h"

namespace floodgate::engine {

/// Keeps a batch's items in the store until their turn comes: reads the next page of PENDING
/// items (with their specs) whenever fewer than a page of the batch's held items wait to launch,
/// so that memory follows what is in flight, not the batch's size.
///
/// Reads run on the engine's thread: a page is a short indexed read (the items_by_state index),
/// as a flush is a short write. A read that fails is tried again at the next want() or tick.
class ItemPager final : public BatchObserver {
 public:
  ItemPager(core::TimerQueue& timers, store::Store& store, BatchBook& book,
            DeploymentResolver& resolver, Outbox& outbox, int page_size);

  /// Reads a page for `b` soon (once, from the timer queue) when it needs one.
  void want(Batch& b);
  /// Reads pages for `b` now while it needs them; false when the store could not be read.
  bool refill(Batch& b);
  /// Whether `b` waits on the store for items to launch.
  bool needs_page(const Batch& b) const;

  void on_item_state(Batch& b, int64_t index, core::ItemState from, core::ItemState to) override;

 private:
  core::TimerQueue& timers_;
  store::Store& store_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  Outbox& outbox_;
  int page_size_;
};

}  // namespace floodgate::engine
