// LatencyHistogram: HDR-style log-linear buckets for nanosecond latencies. Values below 64 get
// one bucket each; above, every power of two is split into 32 buckets, so a reported
// percentile is within 1/32 (about 3%) of the true value. Recording is O(1) with no
// allocation; histograms from several threads are merged after the run.
//
// Threading: not synchronised; one histogram per thread, merged by the owner afterwards.
#ifndef POSTHASTE_TOOLS_BENCH_LATENCY_HISTOGRAM_H_
#define POSTHASTE_TOOLS_BENCH_LATENCY_HISTOGRAM_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace posthaste::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 5;
  static constexpr uint64_t kLinearMax = uint64_t{2} << kSubBucketBits;  // 64
  static constexpr size_t kBuckets = kLinearMax + (64 - kSubBucketBits - 1) * 32;

  static size_t BucketOf(uint64_t value) {
    if (value < kLinearMax) return static_cast<size_t>(value);
    const int msb = 63 - std::countl_zero(value);  // >= 6
    const int shift = msb - kSubBucketBits;        // >= 1
    const uint64_t top = value >> shift;           // in [32, 64)
    return static_cast<size_t>(kLinearMax + (shift - 1) * 32 + (top - 32));
  }
  // The highest value that falls in `bucket`.
  static uint64_t BucketUpperBound(size_t bucket) {
    if (bucket < kLinearMax) return bucket;
    const size_t shift = (bucket - kLinearMax) / 32 + 1;
    const uint64_t top = (bucket - kLinearMax) % 32 + 32;
    return ((top + 1) << shift) - 1;
  }

  void Record(uint64_t value) {
    ++counts_[BucketOf(value)];
    ++count_;
    if (value > max_) max_ = value;
  }
  void Merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    if (other.max_ > max_) max_ = other.max_;
  }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }

  // The value at quantile q in [0, 1] (the upper bound of its bucket, never above the largest
  // value recorded); 0 when empty.
  uint64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > count_) rank = count_;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const uint64_t bound = BucketUpperBound(i);
        return bound < max_ ? bound : max_;
      }
    }
    return max_;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace posthaste::bench

#endif  // POSTHASTE_TOOLS_BENCH_LATENCY_HISTOGRAM_H_
