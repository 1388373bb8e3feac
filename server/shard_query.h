// AskShards: a question run on some reactor shards, each on its own thread, with the answers
// brought back to a thread that waits for them up to a deadline. Shards talk by message: the
// question is a closure posted to each shard's inbox, so it reads that shard's state without a
// lock. A shard that does not answer in time, refuses the post (full inbox) or drops the closure
// unrun (a stopping shard destroys its inbox) gives no answer; the last two end the wait for it
// at once. The closures may outlive the call (a late shard): they share what they write.
//
// Threading: from any thread but a shard's (it blocks up to `wait`). `ask` runs on the shards,
// concurrently, and must only read or change the shard it is given.
#ifndef POSTHASTE_SERVER_SHARD_QUERY_H_
#define POSTHASTE_SERVER_SHARD_QUERY_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "server/reactor/shard.h"

namespace posthaste::server {

template <typename Answer>
struct ShardAnswers {
  std::vector<std::optional<Answer>> answers;  // one per shard asked, in the order given
  bool all_settled = false;  // every shard answered, refused or dropped the question in time
};

template <typename Answer>
ShardAnswers<Answer> AskShards(reactor::Reactor& reactor, const std::vector<uint32_t>& shards,
                               std::function<Answer(uint32_t shard)> ask,
                               std::chrono::milliseconds wait) {
  struct Gather {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<Answer>> answers;  // by mu
    size_t settled = 0;                          // by mu
  };
  // Settles its shard's question when the last closure holding it goes: after it ran, when the
  // post was refused, or when a closing inbox destroyed it unrun.
  struct Question {
    explicit Question(std::shared_ptr<Gather> g) : gather(std::move(g)) {}
    ~Question() {
      std::lock_guard<std::mutex> lock(gather->mu);
      ++gather->settled;
      gather->cv.notify_all();
    }
    const std::shared_ptr<Gather> gather;
  };
  auto gather = std::make_shared<Gather>();
  gather->answers.resize(shards.size());
  auto shared_ask = std::make_shared<const std::function<Answer(uint32_t)>>(std::move(ask));
  for (size_t slot = 0; slot < shards.size(); ++slot) {
    auto question = std::make_shared<Question>(gather);
    const uint32_t shard = shards[slot];
    reactor.shard(shard).inbox().Post([slot, shard, question, shared_ask] {
      Answer answer = (*shared_ask)(shard);
      std::lock_guard<std::mutex> lock(question->gather->mu);
      question->gather->answers[slot] = std::move(answer);
    });
  }
  ShardAnswers<Answer> out;
  std::unique_lock<std::mutex> lock(gather->mu);
  out.all_settled =
      gather->cv.wait_for(lock, wait, [&] { return gather->settled == shards.size(); });
  out.answers = std::move(gather->answers);
  // Late answers land in the moved-from vector's place: give it its size back for them.
  gather->answers.assign(shards.size(), std::nullopt);
  return out;
}

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SHARD_QUERY_H_
