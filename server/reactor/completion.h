// Completion: the per-operation record an io_uring SQE's user_data points at.
//
// A Completion is embedded in the object that owns the operation's buffers (a connection, a
// listener, a streamer), so starting an operation allocates nothing. It carries a plain
// function pointer and the owner, bound once with Bind<&Owner::Method>(owner). At most one
// operation per Completion is in flight at a time; the in-flight flag is asserted on submit
// and on completion. A multishot operation stays in flight until its CQE without
// IORING_CQE_F_MORE (for SEND_ZC that is the notification CQE).
//
// Threading: a Completion belongs to one Ring and is only touched on that ring's thread.
// Ownership: the owner must outlive the operation; destroying an in-flight Completion is a
// bug and aborts (the kernel would later write a CQE naming freed memory).
#ifndef POSTHASTE_SERVER_REACTOR_COMPLETION_H_
#define POSTHASTE_SERVER_REACTOR_COMPLETION_H_

#include <cstdint>

#include "base/check.h"

namespace posthaste::reactor {

class Ring;

class Completion {
 public:
  // res is the CQE's result (bytes or -errno); flags its IORING_CQE_F_* bits.
  using Fn = void (*)(void* owner, int32_t res, uint32_t flags);

  Completion() = default;
  ~Completion() { PH_CHECK(!in_flight_); }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // Binds the handler: Method is `void Owner::M(int32_t res, uint32_t flags)`.
  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    owner_ = owner;
    fn_ = [](void* o, int32_t res, uint32_t flags) {
      (static_cast<Owner*>(o)->*Method)(res, flags);
    };
  }

  bool in_flight() const { return in_flight_; }

 private:
  friend class Ring;

  void* owner_ = nullptr;
  Fn fn_ = nullptr;
  bool in_flight_ = false;
  // Ring-internal completions (wake-ups, the timer timeout) do not hold a shard open.
  bool internal_ = false;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_COMPLETION_H_
