// Blocks from the system: accounting (mem_allocated), subtree limits, test
// hooks, and in checking builds the registry of live blocks.
#include <cstdlib>
#include <map>
#include <mutex>

#include "grove/contexts/testing.h"
#include "memory_context_internal.h"

namespace grove::mcxt {

namespace {
thread_local BlockHooks block_hooks;
}  // namespace

/// Which limited context refused the last block request on this thread
/// (nullptr: the system refused). Read by AllocationFailure.
thread_local MemoryContext last_refusing_limit = nullptr;

BlockHooks SetBlockHooks(const BlockHooks& hooks) noexcept {
  BlockHooks old = block_hooks;
  block_hooks = hooks;
  return old;
}

BlockHooks CurrentBlockHooks() noexcept { return block_hooks; }

bool LimitCharge(MemoryContext start, std::size_t bytes) {
  for (MemoryContext l = start; l != nullptr; l = l->limit_parent) {
    if (bytes > l->limit - l->subtree_bytes) {
      last_refusing_limit = l;
      return false;
    }
  }
  for (MemoryContext l = start; l != nullptr; l = l->limit_parent) l->subtree_bytes += bytes;
  return true;
}

void LimitUncharge(MemoryContext start, std::size_t bytes) {
  for (MemoryContext l = start; l != nullptr; l = l->limit_parent) {
    Assert(l->subtree_bytes >= bytes);
    l->subtree_bytes -= bytes;
  }
}

namespace {

void* SystemAlloc(MemoryContext limit_start, std::size_t size) {
  last_refusing_limit = nullptr;
  if (limit_start != nullptr && !LimitCharge(limit_start, size)) return nullptr;
  if (block_hooks.on_acquire != nullptr && !block_hooks.on_acquire(size, block_hooks.arg)) {
    LimitUncharge(limit_start, size);
    return nullptr;
  }
  void* p = std::malloc(size);
  if (p == nullptr) {
    if (block_hooks.on_release != nullptr) block_hooks.on_release(size, block_hooks.arg);
    LimitUncharge(limit_start, size);
    return nullptr;
  }
  return p;
}

void SystemFree(MemoryContext limit_start, void* p, std::size_t size) {
  // Uncharge before freeing: the chain may start at the context whose own
  // node lives in the block being freed.
  LimitUncharge(limit_start, size);
  std::free(p);
  if (block_hooks.on_release != nullptr) block_hooks.on_release(size, block_hooks.arg);
}

}  // namespace

void* AcquireBlock(MemoryContext context, std::size_t size) {
  void* p = SystemAlloc(context->limit_holder, size);
  if (p == nullptr && last_refusing_limit != nullptr && TrimSubtree(last_refusing_limit)) {
    // The limit counted blocks held only for reuse; they are gone now.
    p = SystemAlloc(context->limit_holder, size);
  }
  if (p == nullptr) return nullptr;
  if (!RegisterBlock(p, size, context)) {
    SystemFree(context->limit_holder, p, size);
    return nullptr;
  }
  context->mem_allocated += size;
  return p;
}

void ReleaseBlock(MemoryContext context, void* block, std::size_t size) {
  UnregisterBlock(block);
  Assert(context->mem_allocated >= size);
  context->mem_allocated -= size;
  SystemFree(context->limit_holder, block, size);
}

void* AcquireFirstBlock(MemoryContext parent, std::size_t size) {
  return SystemAlloc(parent != nullptr ? parent->limit_holder : nullptr, size);
}

void AdoptFirstBlock(MemoryContext context, void* block, std::size_t size) {
  context->mem_allocated = size;
  // Checking builds only; the registry has no room for one more entry only
  // when the C++ heap is exhausted too, and pointer checks then fail loudly.
  (void)RegisterBlock(block, size, context);
}

void ReleaseFirstBlock(MemoryContext parent, void* block, std::size_t size) {
  SystemFree(parent != nullptr ? parent->limit_holder : nullptr, block, size);
}

// --- the registry of live blocks (checking builds) ----------------------------
#ifdef GROVE_MEMORY_CHECKING
namespace {
struct Registry {
  std::mutex mutex;
  std::map<const char*, BlockEntry> blocks;  // keyed by start
};
Registry& TheRegistry() {
  // Never destroyed: blocks may be released during static destruction.
  static Registry* registry = new Registry;
  return *registry;
}
}  // namespace

bool RegisterBlock(const void* start, std::size_t size, MemoryContext owner) {
  Registry& r = TheRegistry();
  const char* s = static_cast<const char*>(start);
  std::lock_guard<std::mutex> lock(r.mutex);
  try {
    r.blocks[s] = BlockEntry{s, s + size, owner};
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

void UnregisterBlock(const void* start) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.blocks.erase(static_cast<const char*>(start));
}

void ReassignBlock(const void* start, MemoryContext owner) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.blocks.find(static_cast<const char*>(start));
  if (it != r.blocks.end()) it->second.owner = owner;
}

bool LookupBlock(const void* p, BlockEntry* entry) {
  Registry& r = TheRegistry();
  const char* c = static_cast<const char*>(p);
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.blocks.upper_bound(c);
  if (it == r.blocks.begin()) return false;
  --it;
  if (c >= it->second.end) return false;
  *entry = it->second;
  return true;
}
#else
bool RegisterBlock(const void*, std::size_t, MemoryContext) { return true; }
void UnregisterBlock(const void*) {}
void ReassignBlock(const void*, MemoryContext) {}
bool LookupBlock(const void*, BlockEntry*) { return true; }
#endif

}  // namespace grove::mcxt
