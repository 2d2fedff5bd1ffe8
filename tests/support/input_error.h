// What an input error says: the message of the InputError `f` throws, or "(no error)" when it
// throws none (any other exception goes on, failing the test).
#pragma once

#include <functional>
#include <string>

#include "kernels/base/check.h"

namespace tmt::test {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tmt::test
