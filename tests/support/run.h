// Runs a program (usually the tramontane binary) and captures what it prints, for CLI tests.
#pragma once

#include <string>
#include <vector>

namespace tmt::test {

struct RunResult {
  int exit_code = -1;  // the exit status, or 128 + signal if it was killed
  std::string out;
  std::string err;
  bool timed_out = false;
};

// argv[0] is the program; after timeout_s seconds the child and every process it started (its
// process group) get `timeout_signal` (then SIGKILL a minute later if that was not SIGKILL itself;
// timed_out is set either way). `cwd` empty = this one.
RunResult run_command(const std::vector<std::string>& argv, double timeout_s = 60.0,
                      const std::string& cwd = "", int timeout_signal = 9);

// The tramontane binary with `args`, under mpirun with `ranks` ranks (oversubscribed, one thread
// each) when ranks > 1.
RunResult run_tramontane(const std::vector<std::string>& args, int ranks = 1,
                         double timeout_s = 120.0);

// The last line of `out` that starts with '{' (what `tramontane eval` prints), "" when none.
std::string last_json_line(const std::string& out);

// The lines of a program's stderr that start with "error: ".
std::vector<std::string> error_lines(const std::string& err);

// The tramontane binary this build produced, and the source tree (for recipes and fixtures).
std::string tramontane_binary();
std::string source_path(const std::string& relative);

}  // namespace tmt::test
