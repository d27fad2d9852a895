// The context tree and the allocation entry points (palloc & co.).
// Allocator-specific work is behind MemoryContextMethods; this file only
// knows the common node.
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <unistd.h>

#include "alloc_set_impl.h"
#include "bump_impl.h"
#include "generation_impl.h"
#include "grove/contexts/testing.h"
#include "memory_context_internal.h"
#include "slab_impl.h"

namespace grove {

thread_local constinit MemoryContext CurrentMemoryContext = nullptr;
thread_local constinit MemoryContext TopMemoryContext = nullptr;
thread_local constinit MemoryContext ErrorContext = nullptr;

namespace mcxt {
extern thread_local MemoryContext last_refusing_limit;
void AllocSetFreeRecycledContexts();  // alloc_set.cc
}  // namespace mcxt

using namespace mcxt;

namespace {

std::atomic<bool> dump_stats_on_oom{true};

// ErrorContext is where report text is formatted (see base/error.h). It
// allocates with NO_OOM from its reserved keeper block; a reset after each
// report gives the space back. Neither may throw: a request too large to
// format is refused (the text is then truncated by the caller).
void* ErrorMemoryAlloc(std::size_t size) noexcept {
  if (ErrorContext == nullptr || size > MaxAllocSize) return nullptr;
  try {
    return MemoryContextAllocExtended(ErrorContext, size, MCXT_ALLOC_NO_OOM);
  } catch (...) {
    return nullptr;
  }
}
void ErrorMemoryReset() noexcept {
  if (ErrorContext == nullptr) return;
  try {
    MemoryContextResetOnly(ErrorContext);
  } catch (...) {
  }
}

void DeleteTree(MemoryContext root);

// Set while a thread's tree is being freed at thread exit: reports then go
// straight to stderr, as the thread's message sink may be gone already.
thread_local bool tearing_down = false;

// Frees the thread's tree when a thread other than the main one exits. It
// runs as a pthread key destructor, which glibc calls after every C++
// thread_local destructor of the thread, so thread_local objects that hold
// contexts can still delete them. A reset callback that allocates again
// re-creates a tree and re-arms the key; glibc repeats key destructors
// (PTHREAD_DESTRUCTOR_ITERATIONS times), which frees that one too. The main
// thread's tree is left to process exit: objects with static storage may
// still hold memory in it while they are destroyed.
void TeardownThread(void*) {
  if (TopMemoryContext == nullptr) return;
  tearing_down = true;
  SetErrorMemoryHooks(ErrorMemoryHooks{nullptr, nullptr});
  MemoryContext top = TopMemoryContext;
  ErrorContext = nullptr;
  CurrentMemoryContext = nullptr;
  TopMemoryContext = nullptr;
  DeleteTree(top);
  AllocSetFreeRecycledContexts();
  tearing_down = false;
}

pthread_key_t teardown_key;
pthread_once_t teardown_once = PTHREAD_ONCE_INIT;
void CreateTeardownKey() {
  if (pthread_key_create(&teardown_key, &TeardownThread) != 0) std::abort();
}

// Every allocation enters here. The four allocators' fast paths are inlined
// behind a switch on the context's method id: a direct, well-predicted
// branch instead of an indirect call into each allocator.
inline void* AllocDispatch(MemoryContext context, std::size_t size, int flags) {
  context->isReset = false;
  switch (context->method_id) {
    case kAllocSetId:
      return aset::Alloc(context, size, flags);
    case kGenerationId:
      return generation::Alloc(context, size, flags);
    case kSlabId:
      return slab::Alloc(context, size, flags);
    case kBumpId:
      return bump::Alloc(context, size, flags);
    default:
      return context->methods->alloc(context, size, flags);
  }
}

MemoryContext CurrentOrInit() {
  MemoryContextInit();
  return CurrentMemoryContext;
}

// The first palloc of a thread: out of line, so that palloc itself needs no
// stack frame (the fast path then has no prologue at all).
[[gnu::noinline, gnu::cold]] void* PallocFirstOnThread(std::size_t size) {
  return AllocDispatch(CurrentOrInit(), size, 0);
}

void CallResetCallbacks(MemoryContext context) {
  // Each callback is unlinked before it runs, so one that resets the context
  // again (or registers another) cannot run twice.
  MemoryContextCallback* cb;
  while ((cb = context->reset_cbs) != nullptr) {
    context->reset_cbs = cb->next;
    cb->func(cb->arg);
  }
}

void Unlink(MemoryContext context) {
  MemoryContext parent = context->parent;
  if (parent == nullptr) return;
  if (context->prevchild != nullptr)
    context->prevchild->nextchild = context->nextchild;
  else
    parent->firstchild = context->nextchild;
  if (context->nextchild != nullptr) context->nextchild->prevchild = context->prevchild;
  context->parent = context->prevchild = context->nextchild = nullptr;
}

void Link(MemoryContext context, MemoryContext parent) {
  context->parent = parent;
  context->prevchild = nullptr;
  context->nextchild = nullptr;
  if (parent != nullptr) {
    context->nextchild = parent->firstchild;
    if (parent->firstchild != nullptr) parent->firstchild->prevchild = context;
    parent->firstchild = context;
  }
}

// Deletes one context that has no children: callbacks, then memory.
void DeleteOne(MemoryContext context) {
  Assert(context->firstchild == nullptr);
  CallResetCallbacks(context);
  Unlink(context);
  PoolDestroy(context);
  context->methods->delete_context(context);
}

// Deletes `root` and its subtree without recursion: always delete a leaf,
// then continue from its parent.
void DeleteTree(MemoryContext root) {
  MemoryContext cur = root;
  for (;;) {
    while (cur->firstchild != nullptr) cur = cur->firstchild;
    MemoryContext parent = cur->parent;
    const bool done = cur == root;
    DeleteOne(cur);
    if (done) break;
    cur = parent;
  }
}

// Pre-order walk over the strict descendants of `root`, replacing references
// to the limited context `from` by `to`. A limited descendant only needs its
// limit_parent fixed; below it, holders point at it and stay.
void RetargetLimits(MemoryContext root, MemoryContext from, MemoryContext to) {
  ForEachDescendant(root, [&](MemoryContext n) {
    if (n->limit != 0) {
      if (n->limit_parent == from) n->limit_parent = to;
      return false;
    }
    if (n->limit_holder == from) n->limit_holder = to;
    return true;
  });
}

void CheckContextArg(MemoryContext context, const char* caller) {
  if (context == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s called with a null memory context", caller));
}

}  // namespace

// --- initialization ---------------------------------------------------------------

void MemoryContextInit() {
  if (TopMemoryContext != nullptr) return;
  pthread_once(&teardown_once, &CreateTeardownKey);
  if (gettid() != getpid()) pthread_setspecific(teardown_key, reinterpret_cast<void*>(1));
  TopMemoryContext = AllocSetContextCreate(nullptr, "TopMemoryContext", ALLOCSET_DEFAULT_SIZES);
  CurrentMemoryContext = TopMemoryContext;
  // 8 KiB that are never given back: enough to format any ordinary report
  // even when no further memory can be had.
  ErrorContext = AllocSetContextCreate(TopMemoryContext, "ErrorContext", 8 * 1024, 8 * 1024, 8 * 1024);
  MemoryContextSetRetention(ErrorContext, 0);
  SetErrorMemoryHooks(ErrorMemoryHooks{&ErrorMemoryAlloc, &ErrorMemoryReset});
}

namespace mcxt {

void MemoryContextCreate(MemoryContext node, const MemoryContextMethods* methods, unsigned method_id,
                         MemoryContext parent, const char* name) {
  node->methods = methods;
  node->method_id = method_id;
  node->isReset = true;
  node->firstchild = nullptr;
  node->name = name;
  node->ident = nullptr;
  node->reset_cbs = nullptr;
  node->limit_holder = parent != nullptr ? parent->limit_holder : nullptr;
  node->limit_parent = nullptr;
  node->limit = 0;
  node->subtree_bytes = 0;
  node->retain_bytes = GROVE_DEFAULT_RETAIN_BYTES;
  Link(node, parent);
  PoolCreate(node);
}

void* AllocationFailure(MemoryContext context, std::size_t size, int flags) {
  if (flags & MCXT_ALLOC_NO_OOM) return nullptr;
  MemoryContext limited = last_refusing_limit;
  if (limited == nullptr && dump_stats_on_oom.load(std::memory_order_relaxed) && TopMemoryContext != nullptr)
    MemoryContextStatsDetail(TopMemoryContext, 100, 100, stderr);
  if (limited != nullptr)
    ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
            errdetail("Failed on request of size %zu in memory context \"%s\": the limit of %zu bytes "
                      "of memory context \"%s\" would be exceeded (%zu bytes held).",
                      size, context->name, limited->limit, limited->name, limited->subtree_bytes));
  ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
          errdetail("Failed on request of size %zu in memory context \"%s\".", size, context->name));
  return nullptr;
}

void* CreationFailure(MemoryContext parent, const char* name, std::size_t size) {
  MemoryContext limited = last_refusing_limit;
  if (limited != nullptr)
    ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
            errdetail("Failed while creating memory context \"%s\" (%zu bytes): the limit of %zu bytes of "
                      "memory context \"%s\" would be exceeded.",
                      name, size, limited->limit, limited->name));
  (void)parent;
  ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
          errdetail("Failed while creating memory context \"%s\" (%zu bytes).", name, size));
  return nullptr;
}

void ValidateBlockSizes(const char* name, std::size_t minContextSize, std::size_t initBlockSize,
                        std::size_t maxBlockSize) {
  const char* why = nullptr;
  if (initBlockSize < 1024 || initBlockSize % kMaxAlign != 0)
    why = "initBlockSize must be a multiple of 8 and at least 1024.";
  else if (maxBlockSize < initBlockSize || maxBlockSize % kMaxAlign != 0 || maxBlockSize > (std::size_t{1} << 30))
    why = "maxBlockSize must be a multiple of 8, at least initBlockSize and at most 1 GiB.";
  else if (minContextSize != 0 &&
           (minContextSize % kMaxAlign != 0 || minContextSize < 1024 || minContextSize > maxBlockSize))
    why = "minContextSize must be 0, or a multiple of 8 between 1024 and maxBlockSize.";
  if (why != nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("invalid block sizes for memory context \"%s\"", name),
            errdetail("%s Given: minContextSize %zu, initBlockSize %zu, maxBlockSize %zu.", why, minContextSize,
                      initBlockSize, maxBlockSize));
}

void InvalidAllocSize(std::size_t size) {
  ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("invalid memory alloc request size %zu", size));
}

bool SetDumpStatsOnOutOfMemory(bool on) noexcept { return dump_stats_on_oom.exchange(on); }

}  // namespace mcxt

// --- allocation --------------------------------------------------------------------

void* MemoryContextAlloc(MemoryContext context, std::size_t size) { return AllocDispatch(context, size, 0); }

void* MemoryContextAllocZero(MemoryContext context, std::size_t size) {
  void* p = AllocDispatch(context, size, 0);
  std::memset(p, 0, size);
  return p;
}

void* MemoryContextAllocExtended(MemoryContext context, std::size_t size, int flags) {
  void* p = AllocDispatch(context, size, flags);
  if (p == nullptr) return nullptr;
  if (flags & MCXT_ALLOC_ZERO) std::memset(p, 0, size);
  return p;
}

void* MemoryContextAllocHuge(MemoryContext context, std::size_t size) {
  return MemoryContextAllocExtended(context, size, MCXT_ALLOC_HUGE);
}

void* palloc(std::size_t size) {
  MemoryContext context = CurrentMemoryContext;
  if (GROVE_UNLIKELY(context == nullptr)) return PallocFirstOnThread(size);
  return AllocDispatch(context, size, 0);
}

void* palloc0(std::size_t size) {
  MemoryContext context = CurrentMemoryContext;
  if (GROVE_UNLIKELY(context == nullptr)) context = CurrentOrInit();
  return MemoryContextAllocZero(context, size);
}

void* palloc_extended(std::size_t size, int flags) {
  MemoryContext context = CurrentMemoryContext;
  if (GROVE_UNLIKELY(context == nullptr)) context = CurrentOrInit();
  return MemoryContextAllocExtended(context, size, flags);
}

void* palloc_aligned(std::size_t size, std::size_t alignto, int flags) {
  MemoryContext context = CurrentMemoryContext;
  if (GROVE_UNLIKELY(context == nullptr)) context = CurrentOrInit();
  return MemoryContextAllocAligned(context, size, alignto, flags);
}

char* MemoryContextStrdup(MemoryContext context, const char* string) {
  const std::size_t len = std::strlen(string) + 1;
  char* copy = static_cast<char*>(MemoryContextAlloc(context, len));
  std::memcpy(copy, string, len);
  return copy;
}

char* pstrdup(const char* in) {
  MemoryContext context = CurrentMemoryContext;
  if (GROVE_UNLIKELY(context == nullptr)) context = CurrentOrInit();
  return MemoryContextStrdup(context, in);
}

char* pnstrdup(const char* in, std::size_t len) {
  len = strnlen(in, len);
  char* out = static_cast<char*>(palloc(len + 1));
  std::memcpy(out, in, len);
  out[len] = '\0';
  return out;
}

char* psprintf(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  const int needed = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (needed < 0) {
    va_end(args);
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("could not format string \"%s\"", fmt));
  }
  char* out = static_cast<char*>(palloc(static_cast<std::size_t>(needed) + 1));
  std::vsnprintf(out, static_cast<std::size_t>(needed) + 1, fmt, args);
  va_end(args);
  return out;
}

// --- callbacks ----------------------------------------------------------------------

void MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback* cb) {
  CheckContextArg(context, "MemoryContextRegisterResetCallback");
  cb->next = context->reset_cbs;
  context->reset_cbs = cb;
  // The callback must run at the next reset even if nothing is allocated.
  context->isReset = false;
}

bool MemoryContextUnregisterResetCallback(MemoryContext context, MemoryContextCallback* cb) {
  for (MemoryContextCallback** link = &context->reset_cbs; *link != nullptr; link = &(*link)->next) {
    if (*link == cb) {
      *link = cb->next;
      return true;
    }
  }
  return false;
}

// --- reset and delete -------------------------------------------------------------------

void MemoryContextResetOnly(MemoryContext context) {
  CheckContextArg(context, "MemoryContextResetOnly");
  if (!context->isReset) {
    CallResetCallbacks(context);
    context->methods->reset(context);
    PoolReset(context);
    context->isReset = true;
  }
}

void MemoryContextReset(MemoryContext context) {
  CheckContextArg(context, "MemoryContextReset");
  if (context->firstchild != nullptr) MemoryContextDeleteChildren(context);
  MemoryContextResetOnly(context);
}

void MemoryContextResetChildren(MemoryContext context) {
  CheckContextArg(context, "MemoryContextResetChildren");
  // Children are reset, not deleted.
  ForEachDescendant(context, [](MemoryContext n) {
    MemoryContextResetOnly(n);
    return true;
  });
}

void MemoryContextDeleteChildren(MemoryContext context) {
  CheckContextArg(context, "MemoryContextDeleteChildren");
  if (context->firstchild == nullptr) return;
  if (CurrentMemoryContext != context && MemoryContextIsDescendant(CurrentMemoryContext, context))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot delete the children of memory context \"%s\": the current memory context \"%s\" "
                   "is one of them",
                   context->name, CurrentMemoryContext->name));
  // ErrorContext lives as long as its thread: deleting TopMemoryContext's
  // children leaves it (it has no children of its own to delete).
  for (MemoryContext child = context->firstchild; child != nullptr;) {
    MemoryContext next = child->nextchild;
    if (child != ErrorContext) DeleteTree(child);
    child = next;
  }
}

void MemoryContextDelete(MemoryContext context) {
  CheckContextArg(context, "MemoryContextDelete");
  if (context == TopMemoryContext || context == ErrorContext)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot delete memory context \"%s\"", context->name),
            errdetail("TopMemoryContext and ErrorContext live as long as their thread."));
  if (MemoryContextIsDescendant(CurrentMemoryContext, context))
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot delete memory context \"%s\" while it or one of its descendants is current",
                   context->name),
            errhint("Switch to another memory context first."));
  DeleteTree(context);
}

// --- the tree -------------------------------------------------------------------------

bool MemoryContextIsDescendant(MemoryContext context, MemoryContext ancestor) {
  for (MemoryContext c = context; c != nullptr; c = c->parent)
    if (c == ancestor) return true;
  return false;
}

void MemoryContextSetParent(MemoryContext context, MemoryContext new_parent) {
  CheckContextArg(context, "MemoryContextSetParent");
  if (context->parent == new_parent) return;
  if (context == TopMemoryContext || context == ErrorContext)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot move memory context \"%s\"", context->name),
            errdetail("TopMemoryContext and ErrorContext keep their place in the tree."));
  if (new_parent != nullptr && MemoryContextIsDescendant(new_parent, context))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("cannot make memory context \"%s\" a child of \"%s\"", context->name, new_parent->name),
            errdetail("\"%s\" is \"%s\" or one of its descendants; the tree would have a cycle.", new_parent->name,
                      context->name));

  MemoryContext old_above = context->limit != 0 ? context->limit_parent : context->limit_holder;
  MemoryContext new_above = new_parent != nullptr ? new_parent->limit_holder : nullptr;
  if (old_above != new_above) {
    const std::size_t bytes = MemoryContextMemAllocated(context, true);
    LimitUncharge(old_above, bytes);
    if (!LimitCharge(new_above, bytes)) {
      MemoryContext refused = last_refusing_limit;
      const bool restored = LimitCharge(old_above, bytes);
      Assert(restored);
      (void)restored;
      ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY),
              errmsg("cannot move memory context \"%s\" under \"%s\"", context->name, new_parent->name),
              errdetail("Its %zu bytes would exceed the limit of %zu bytes of memory context \"%s\".", bytes,
                        refused->limit, refused->name));
    }
    if (context->limit != 0) {
      context->limit_parent = new_above;
    } else {
      context->limit_holder = new_above;
      RetargetLimits(context, old_above, new_above);
    }
  }
  Unlink(context);
  Link(context, new_parent);
}

void MemoryContextSetIdentifier(MemoryContext context, const char* id) { context->ident = id; }
MemoryContext MemoryContextGetParent(MemoryContext context) { return context->parent; }
const char* MemoryContextGetName(MemoryContext context) { return context->name; }
const char* MemoryContextGetTypeName(MemoryContext context) { return context->methods->name; }

bool MemoryContextIsEmpty(MemoryContext context) {
  if (context->firstchild != nullptr) return false;
  return context->methods->is_empty(context);
}

std::size_t MemoryContextMemAllocated(MemoryContext context, bool recurse) {
  if (!recurse) return context->mem_allocated;
  if (context->limit != 0) return context->subtree_bytes;  // maintained exactly
  std::size_t total = context->mem_allocated;
  ForEachDescendant(context, [&](MemoryContext n) {
    // A limited descendant keeps its subtree's total exactly.
    total += n->limit != 0 ? n->subtree_bytes : n->mem_allocated;
    return n->limit == 0;
  });
  return total;
}

// --- limits and retention ------------------------------------------------------------

void MemoryContextSetLimit(MemoryContext context, std::size_t limit_bytes) {
  CheckContextArg(context, "MemoryContextSetLimit");
  if (limit_bytes == 0) {
    if (context->limit == 0) return;
    MemoryContext above = context->limit_parent;
    RetargetLimits(context, context, above);
    context->limit = 0;
    context->subtree_bytes = 0;
    context->limit_parent = nullptr;
    context->limit_holder = above;
    return;
  }
  const std::size_t held = MemoryContextMemAllocated(context, true);
  if (held > limit_bytes)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("memory limit of %zu bytes for memory context \"%s\" is below what it holds", limit_bytes,
                   context->name),
            errdetail("The context and its descendants hold %zu bytes.", held),
            errhint("Reset the context first, or choose a limit of at least %zu bytes.", held));
  if (context->limit != 0) {
    context->limit = limit_bytes;
    return;
  }
  MemoryContext above = context->limit_holder;
  RetargetLimits(context, above, context);
  context->subtree_bytes = held;
  context->limit = limit_bytes;
  context->limit_parent = above;
  context->limit_holder = context;
}

std::size_t MemoryContextGetLimit(MemoryContext context) { return context->limit; }

void MemoryContextSetRetention(MemoryContext context, std::size_t retain_bytes) {
  CheckContextArg(context, "MemoryContextSetRetention");
  const bool lowered = retain_bytes < context->retain_bytes;
  context->retain_bytes = retain_bytes;
  // What a reset already kept goes now, not at the next reset.
  if (lowered) context->methods->trim(context);
}

namespace mcxt {

bool TrimSubtree(MemoryContext root) {
  const std::size_t before = MemoryContextMemAllocated(root, true);
  root->methods->trim(root);
  ForEachDescendant(root, [](MemoryContext n) {
    n->methods->trim(n);
    return true;
  });
  return MemoryContextMemAllocated(root, true) < before;
}

bool TearingDown() { return tearing_down; }

void CheckWarning(MemoryContext context, const char* fmt, ...) {
  char text[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  // Reporting would format into ErrorContext, the context being checked,
  // or reach a message sink that is gone at thread exit.
  if (context == ErrorContext || tearing_down) {
    std::fprintf(stderr, "WARNING:  %s\n", text);
    return;
  }
  ereport(WARNING, errmsg("%s", text));
}

}  // namespace mcxt

}  // namespace grove
