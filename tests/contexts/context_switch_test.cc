// ContextSwitch: RAII over MemoryContextSwitchTo, restoring the previous
// context on scope exit, also when an ERROR unwinds through the scope.
#include "grove/contexts/context_switch.h"
#include "test_support.h"

namespace grove::test {
namespace {

class ContextSwitchTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    a_ = AllocSetContextCreate(TopMemoryContext, "switch a", ALLOCSET_SMALL_SIZES);
    b_ = AllocSetContextCreate(TopMemoryContext, "switch b", ALLOCSET_SMALL_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(a_);
    MemoryContextDelete(b_);
    ContextTest::TearDown();
  }
  MemoryContext a_ = nullptr;
  MemoryContext b_ = nullptr;
};

// MemoryContextSwitchTo returns the previous context.
TEST_F(ContextSwitchTest, SwitchToReturnsPrevious) {
  MemoryContext start = CurrentMemoryContext;
  EXPECT_EQ(MemoryContextSwitchTo(a_), start);
  EXPECT_EQ(MemoryContextSwitchTo(b_), a_);
  EXPECT_EQ(MemoryContextSwitchTo(start), b_);
}

// The scope makes the context current and palloc allocates there.
TEST_F(ContextSwitchTest, ScopeSwitchesAndRestores) {
  MemoryContext start = CurrentMemoryContext;
  {
    ContextSwitch in(a_);
    EXPECT_EQ(CurrentMemoryContext, a_);
    EXPECT_EQ(in.previous(), start);
    void* p = palloc(10);
    EXPECT_EQ(GetMemoryChunkContext(p), a_);
  }
  EXPECT_EQ(CurrentMemoryContext, start);
}

// Nested scopes restore in order.
TEST_F(ContextSwitchTest, NestedScopes) {
  MemoryContext start = CurrentMemoryContext;
  {
    ContextSwitch outer(a_);
    {
      ContextSwitch inner(b_);
      EXPECT_EQ(CurrentMemoryContext, b_);
      EXPECT_EQ(inner.previous(), a_);
    }
    EXPECT_EQ(CurrentMemoryContext, a_);
  }
  EXPECT_EQ(CurrentMemoryContext, start);
}

// An ERROR raised inside the scope (here: an invalid allocation size)
// unwinds it and the previous context is current again.
TEST_F(ContextSwitchTest, RestoresOnError) {
  MemoryContext start = CurrentMemoryContext;
  auto e = CatchError([&] {
    ContextSwitch in(a_);
    ContextSwitch again(b_);
    palloc(MaxAllocSize + 1);
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(CurrentMemoryContext, start);
}

// Out of memory inside the scope unwinds it too.
TEST_F(ContextSwitchTest, RestoresOnOutOfMemory) {
  MemoryContext start = CurrentMemoryContext;
  ScopedRefuseBlocks refuse;
  auto e = CatchError([&] {
    ContextSwitch in(a_);
    palloc(1 << 20);
  });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->sqlstate() == ERRCODE_OUT_OF_MEMORY);
  EXPECT_EQ(CurrentMemoryContext, start);
}

// Any C++ exception unwinds the scope, not only grove::Error.
TEST_F(ContextSwitchTest, RestoresOnAnyException) {
  MemoryContext start = CurrentMemoryContext;
  try {
    ContextSwitch in(a_);
    throw std::runtime_error("not a grove error");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(CurrentMemoryContext, start);
}

}  // namespace
}  // namespace grove::test
