// The blocks a reset keeps for reuse (internal to contexts/), shared by the
// allocators whose blocks vary in size: AllocSet, Generation, Bump.
//
// PostgreSQL's reset returns every block but the keeper to malloc, which
// then page-faults them back in on the next cycle of the same work. Up to
// the context's retain_bytes are kept here instead, largest first, so that
// the next cycle refills its biggest blocks first. Retained blocks stay
// counted in mem_allocated and against limits: they are still held.
#pragma once

#include <cstddef>

#include "memory_context_internal.h"

namespace grove::mcxt {

/// `Block` must have a `next` pointer (free while the block is retained).
/// `SizeOf` maps a block to its size in bytes, as charged when acquired.
template <typename Block, typename SizeOf>
class RetainedBlocks {
 public:
  /// Keeps `block` if the context's retention allows; false: the caller
  /// releases it.
  bool Offer(MemoryContext context, Block* block) {
    const std::size_t size = SizeOf{}(block);
    if (!MayRetain(context, bytes_, size)) return false;
    Block** link = &head_;
    while (*link != nullptr && SizeOf{}(*link) > size) link = &(*link)->next;
    block->next = *link;
    *link = block;
    bytes_ += size;
    return true;
  }

  /// The largest retained block if it has at least `min_size` bytes.
  Block* TakeIfAtLeast(std::size_t min_size) {
    Block* block = head_;
    if (block == nullptr || SizeOf{}(block) < min_size) return nullptr;
    head_ = block->next;
    bytes_ -= SizeOf{}(block);
    return block;
  }

  /// Gives every retained block back to the system.
  void ReleaseAll(MemoryContext context) {
    while (head_ != nullptr) {
      Block* block = head_;
      head_ = block->next;
      ReleaseBlock(context, block, SizeOf{}(block));
    }
    bytes_ = 0;
  }

  template <typename F>
  void ForEach(F f) const {
    for (Block* block = head_; block != nullptr; block = block->next) f(block, SizeOf{}(block));
  }

  void Init() {
    head_ = nullptr;
    bytes_ = 0;
  }

 private:
  Block* head_;
  std::size_t bytes_;
};

}  // namespace grove::mcxt
