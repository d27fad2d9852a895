// std::pmr::memory_resource over a memory context.
#include "grove/contexts/memory_resource.h"

#include <cstring>

#include "memory_context_internal.h"

namespace grove {

bool MemoryContextFreesChunks(MemoryContext context) {
  if (context == nullptr)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("memory context is null"),
            errhint("Call MemoryContextInit() (or palloc once) on this thread before using CurrentMemoryContext "
                    "or TopMemoryContext."));
  return context->method_id != mcxt::kBumpId;
}

ContextMemoryResource::ContextMemoryResource(MemoryContext context)
    : context_(context), frees_(MemoryContextFreesChunks(context)) {}

void* ContextMemoryResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment <= mcxt::kMaxAlign) return MemoryContextAllocExtended(context_, bytes, MCXT_ALLOC_HUGE);
  return MemoryContextAllocAligned(context_, bytes, alignment, MCXT_ALLOC_HUGE);
}

void ContextMemoryResource::do_deallocate(void* p, std::size_t, std::size_t) {
  if (frees_) pfree(p);
}

bool ContextMemoryResource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
  const auto* o = dynamic_cast<const ContextMemoryResource*>(&other);
  return o != nullptr && o->context_ == context_;
}

}  // namespace grove
