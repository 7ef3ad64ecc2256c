// The store contract (store_contract_test.cpp) on SQLite: ":memory:" (one connection) and a
// file (a writer and a separate read connection).

#include <memory>
#include <string>

#include "store/sqlite_store.h"
#include "store_contract.h"
#include "store_test_support.h"

namespace floodgate::store::testing {
namespace {

class SqliteFixture final : public StoreFixture {
 public:
  explicit SqliteFixture(bool in_memory) : in_memory_(in_memory) {}
  std::unique_ptr<Store> open() override {
    return std::make_unique<SqliteStore>(in_memory_ ? ":memory:" : dir_.file("f.db"));
  }
  int64_t skipped_updates(Store& store) override {
    return dynamic_cast<SqliteStore&>(store).skipped_updates();
  }

 private:
  bool in_memory_;
  TempDir dir_;
};

StoreFixtureOrReason make_memory() { return {std::make_unique<SqliteFixture>(true), "", false}; }
StoreFixtureOrReason make_file() { return {std::make_unique<SqliteFixture>(false), "", false}; }

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContractTest,
                         ::testing::Values(StoreBackend{"Memory", &make_memory},
                                           StoreBackend{"File", &make_file}),
                         backend_name);

}  // namespace
}  // namespace floodgate::store::testing
