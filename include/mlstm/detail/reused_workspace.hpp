// A workspace that a const method keeps from one call to the next: the buffers of an inference
// call, so that the next call at the same shapes writes into memory the system has already
// mapped (fresh memory is mapped page by page on first touch, and freed memory goes back to the
// system). One call at a time holds it; a call made while another holds it (two threads on one
// model) gets an empty workspace of its own, so concurrent calls stay correct.
#pragma once

#include <mutex>
#include <optional>
#include <utility>

namespace mlstm::detail {

template <typename Workspace>
class ReusedWorkspace {
 public:
  ReusedWorkspace() = default;
  // Moving moves the buffers, copying starts empty; neither may happen during a call.
  ReusedWorkspace(ReusedWorkspace&& other) : kept_(std::move(other.kept_)) {}
  ReusedWorkspace(const ReusedWorkspace&) {}
  ReusedWorkspace& operator=(ReusedWorkspace&& other) {
    kept_ = std::move(other.kept_);
    return *this;
  }
  ReusedWorkspace& operator=(const ReusedWorkspace&) { return *this; }

  // The kept workspace while this lease lives, or a call's own when another lease holds it or
  // the call asks not to reuse it.
  class Lease {
   public:
    Lease(const ReusedWorkspace& owner, bool reuse) {
      if (reuse) lock_ = std::unique_lock<std::mutex>(owner.mutex_, std::try_to_lock);
      if (lock_.owns_lock()) {
        workspace_ = &owner.kept_;
      } else {
        workspace_ = &own_.emplace();
      }
    }
    Workspace& operator*() const { return *workspace_; }
    Workspace* operator->() const { return workspace_; }

   private:
    std::unique_lock<std::mutex> lock_;
    std::optional<Workspace> own_;
    Workspace* workspace_;
  };

  // reuse = false gives a workspace of the call's own, leaving the kept one as it is (a call of
  // another kind, such as a model's one-token step, that would otherwise resize it).
  Lease lease(bool reuse = true) const { return Lease(*this, reuse); }

  // Frees the kept buffers (the next call sizes them again).
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    kept_ = Workspace();
  }

 private:
  mutable std::mutex mutex_;
  mutable Workspace kept_;
};

}  // namespace mlstm::detail
