#include "kernels/base/check.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tmt {
namespace {

int g_rank = 0;
int g_world = 1;
FatalHook g_fatal_hook = nullptr;

}  // namespace

void set_process_identity(int rank, int world) {
  g_rank = rank;
  g_world = world;
}

int process_rank() { return g_rank; }
int process_world() { return g_world; }

const std::string& host_name() {
  static const std::string name = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return name;
}

void storage_error(std::string_view path, int err) {
  throw StorageError(fmt::format("{}: {}", path, std::strerror(err)));
}

void set_fatal_hook(FatalHook hook) { g_fatal_hook = hook; }

void fatal(const char* file, int line, std::string_view what, std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "[rank {}/{} {}] {}:{}: {} -> {}\n", g_rank, g_world, host_name(), file, line,
             what, message);
  std::fflush(stderr);
  if (g_fatal_hook != nullptr) g_fatal_hook(1);
  std::_Exit(1);
}

void input_fatal(std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "error: {}\n", message);
  std::fflush(stderr);
  if (g_fatal_hook != nullptr) g_fatal_hook(2);
  std::_Exit(2);
}

}  // namespace tmt
