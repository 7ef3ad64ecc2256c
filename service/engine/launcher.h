#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "engine/batch_book.h"
#include "engine/child_tracker.h"
#include "engine/deployment_resolver.h"
#include "engine/launch_retries.h"
#include "engine/request.h"
#include "engine/subflow_linker.h"
#include "prefect/bulk_packing.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// Turns the launch scheduler's grants into creates, single or bulk (placeholders first under
/// a parent), and takes their outcomes: launched, failed, or retried.
class Launcher final : public LaunchSource, public RequestOwner {
 public:
  Launcher(core::Clock& clock, bool use_bulk, prefect::BulkLimits bulk, BatchBook& book,
           DeploymentResolver& resolver, LaunchRetries& retries, SubflowLinker& linker,
           ChildTracker& tracker, core::LaunchScheduler& scheduler, prefect::PrefectApi& api);

  /// False once Prefect was found to have no bulk create endpoint (or bulk is off).
  bool bulk_supported() const { return bulk_supported_; }

  int max_items() const override;
  bool retry_wanted(uint64_t batch, int64_t index) const override;
  void retry_ready(uint64_t batch, int64_t index) override;
  std::optional<Launch> launch(const core::LaunchScheduler::Grant& grant) override;

  std::optional<prefect::HttpRequest> build(Request& request) override;
  bool resend_stale(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

 private:
  /// Under a parent, with a grant for several items: the first item still without its
  /// placeholder, when fewer than the grant's items have one.
  std::optional<size_t> unplaced_in_grant(const Batch& b, int items) const;
  /// The encoded create body of each of `indexes`.
  std::vector<std::string> create_bodies(const Batch& b, const std::vector<int64_t>& indexes) const;
  Launch create(Batch& b, std::vector<int64_t> indexes);
  void on_create(Batch& b, int64_t index, const prefect::HttpResponse& r,
                 const prefect::Classification& c);
  void on_bulk(Batch& b, const CreateRuns& request, const prefect::HttpResponse& r,
               const prefect::Classification& c);
  /// A bulk create refused as too large (413): packs later bulks into half its bytes and sends
  /// its runs again, at no attempt's cost.
  void on_bulk_too_large(Batch& b, const CreateRuns& request);
  void on_bulk_results(Batch& b, const std::vector<int64_t>& indexes,
                       const prefect::HttpResponse& r);

  core::Clock& clock_;
  prefect::BulkLimits bulk_;  // max_bytes shrinks after a 413, until restart
  bool bulk_supported_;
  BatchBook& book_;
  DeploymentResolver& resolver_;
  LaunchRetries& retries_;
  SubflowLinker& linker_;
  ChildTracker& tracker_;
  core::LaunchScheduler& scheduler_;
  prefect::PrefectApi& api_;
};

/// A ready-line entry whose item has moved on since it was queued (in a request, launched or
/// final): skipped and dropped, not sent.
bool stale_in_ready(const Item& item);

}  // namespace floodgate::engine
