#pragma once

// The contract every Store implementation keeps, written once as value-parameterized tests
// (store_contract_test.cpp) and instantiated for each store: SQLite in test_store
// (sqlite_backends_test.cpp), PostgreSQL in test_store_postgres (postgres/).

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "store/store.h"

namespace floodgate::store::testing {

/// The database one test runs against: a temporary file, a PostgreSQL schema, ...
class StoreFixture {
 public:
  virtual ~StoreFixture() = default;
  /// Opens a store on this fixture's database (each call another store on the same data).
  virtual std::unique_ptr<Store> open() = 0;
  /// How many updates the store's apply() skipped (a counter each implementation keeps).
  virtual int64_t skipped_updates(Store& store) = 0;
};

/// A fixture, or why there is none (a server that is not configured).
struct StoreFixtureOrReason {
  std::unique_ptr<StoreFixture> fixture;
  std::string unavailable;  // set when fixture is null
  bool must_fail = false;   // true: the missing server fails the test (CI) instead of skipping
};

/// One store implementation, as a test parameter.
struct StoreBackend {
  std::string name;  // the parameter's name in test names ("Memory", "Postgres", ...)
  StoreFixtureOrReason (*make)();
};

inline void PrintTo(const StoreBackend& backend, std::ostream* os) { *os << backend.name; }

inline std::string backend_name(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param.name;
}

class StoreContractTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override {
    StoreFixtureOrReason made = GetParam().make();
    if (!made.fixture) {
      if (made.must_fail) FAIL() << made.unavailable;
      GTEST_SKIP() << made.unavailable;
    }
    fixture_ = std::move(made.fixture);
    store_ = fixture_->open();
  }
  void TearDown() override {
    store_.reset();
    fixture_.reset();
  }

  std::unique_ptr<Store> open() { return fixture_->open(); }
  int64_t skipped_updates() { return fixture_->skipped_updates(*store_); }

  std::unique_ptr<StoreFixture> fixture_;
  std::unique_ptr<Store> store_;
};

}  // namespace floodgate::store::testing
