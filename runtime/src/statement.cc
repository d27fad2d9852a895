// Error recovery for a statement loop: the role of PostgresMain's error
// block. A statement that fails — with an ERROR, out of memory, or any C++
// exception — aborts its transaction, which releases everything it held;
// the error is reported and the loop goes on with a clean slate.
#include <new>

#include "grove/runtime/xact.h"

namespace grove {

namespace {

ErrorData FromException(SqlState code, const char* message) {
  ErrorData data;
  data.elevel = ERROR;
  data.sqlstate = code;
  data.message = message;
  return data;
}

}  // namespace

bool RunStatement(const std::function<void()>& statement, const std::function<void(const ErrorData&)>& on_error) {
  const bool own_transaction = !IsTransactionState();
  ErrorData failure;
  try {
    StartTransactionCommand();
    statement();
    if (own_transaction) CommitTransactionCommand();
    return true;
  } catch (const Error& e) {
    failure = e.data();
  } catch (const std::bad_alloc&) {
    failure = FromException(ERRCODE_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    failure = FromException(ERRCODE_INTERNAL_ERROR, e.what());
  } catch (...) {
    failure = FromException(ERRCODE_INTERNAL_ERROR, "an exception of unknown type");
  }
  AbortCurrentTransaction();
  failure.elevel = ERROR;
  if (on_error)
    on_error(failure);
  else
    EmitErrorReport(failure);
  return false;
}

}  // namespace grove
