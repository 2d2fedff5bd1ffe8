#include "tests/support/run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "kernels/base/check.h"

namespace tmt::test {

RunResult run_command(const std::vector<std::string>& argv, double timeout_s,
                      const std::string& cwd, int timeout_signal) {
  int out_pipe[2], err_pipe[2];
  TMT_CHECK(pipe(out_pipe) == 0 && pipe(err_pipe) == 0, "pipe: {}", std::strerror(errno));
  const pid_t pid = fork();
  TMT_CHECK(pid >= 0, "fork: {}", std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // its own process group: a timeout kills everything it started (mpirun's ranks)
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(timeout_s));
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (timeout_signal != SIGKILL && !r.timed_out) {
        // A gentle signal first; SIGKILL if the program has not ended a minute later.
        r.timed_out = true;
        kill(-pid, timeout_signal);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        continue;
      }
      r.timed_out = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::vector<std::string> error_lines(const std::string& err) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin < err.size()) {
    size_t end = err.find('\n', begin);
    if (end == std::string::npos) end = err.size();
    if (err.compare(begin, 7, "error: ") == 0) out.push_back(err.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

std::string tramontane_binary() { return TMT_BINARY; }
std::string source_path(const std::string& relative) {
  return std::string(TMT_SOURCE_DIR) + "/" + relative;
}

RunResult run_tramontane(const std::vector<std::string>& args, int ranks, double timeout_s) {
  std::vector<std::string> argv;
  if (ranks > 1) {
    argv = {TMT_MPIEXEC,
            "-n",
            std::to_string(ranks),
            "--oversubscribe",
            "--bind-to",
            "none",
            "-x",
            "OMP_NUM_THREADS=1",
            "-x",
            "OPENBLAS_NUM_THREADS=1"};
  }
  argv.push_back(tramontane_binary());
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout_s);
}

std::string last_json_line(const std::string& out) {
  std::string last;
  size_t begin = 0;
  while (begin < out.size()) {
    size_t end = out.find('\n', begin);
    if (end == std::string::npos) end = out.size();
    if (end > begin && out[begin] == '{') last = out.substr(begin, end - begin);
    begin = end + 1;
  }
  return last;
}

}  // namespace tmt::test
