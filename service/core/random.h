#pragma once

#include <cstdint>
#include <random>

namespace floodgate::core {

/// Source of randomness for jitter, passed in so tests can make it deterministic.
class Random {
 public:
  virtual ~Random() = default;
  /// A uniformly distributed value in [0, 1).
  virtual double uniform01() = 0;
};

/// A seeded Mersenne Twister; seed it from std::random_device in production.
class MtRandom final : public Random {
 public:
  explicit MtRandom(uint64_t seed) : gen_(seed) {}
  double uniform01() override { return dist_(gen_); }

 private:
  std::mt19937_64 gen_;
  std::uniform_real_distribution<double> dist_{0.0, 1.0};
};

/// Always returns the same value; for tests that want exact sequences.
class FixedRandom final : public Random {
 public:
  explicit FixedRandom(double value) : value_(value) {}
  double uniform01() override { return value_; }

 private:
  double value_;
};

}  // namespace floodgate::core
