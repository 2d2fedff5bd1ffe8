// Two kinds of failure, handled two ways (DESIGN.md §7):
//
//  * Bad input found while setting up (a recipe, a flag, a data file, a checkpoint) throws
//    InputError. main() catches it; rank 0 prints one `error: <message>` line and every rank
//    exits 2. All ranks read the same input, so all fail alike and none is left in a collective.
//  * A broken invariant or a failed library call at run time goes through TMT_CHECK or one of its
//    family, all built on fatal(): it prints `[rank R/W host] file:line: what -> message` and
//    ends the job through the fatal hook, which the MPI layer sets to MPI_Abort so that no other
//    rank hangs. The family, each next to the library it checks, with that library's message:
//      TMT_CHECK(cond, fmt...), TMT_ASSERT(cond)        here
//      TMT_CUDA_CHECK(call), TMT_CUDA_CHECK_LAUNCH(),
//      TMT_CUBLAS_CHECK(call)                           kernels/cuda/check.cuh
//      TMT_NCCL_CHECK(call)                             parallel/nccl_comm.cpp
//      TMT_MPI_CHECK(call)                              parallel/mpi_comm.cpp
//      TMT_H5_CHECK(call, fmt...)                       trainer/checkpoint/hdf5.h
//  * Bad input found at run time by one rank alone (a data shard that changed under the job) goes
//    through input_fatal(): that rank prints one `error: <message>` line and the job ends with
//    status 2 through the same hook, since the other ranks may be waiting in a collective.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace tmt {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that could not be written: no space left, an I/O error, a read-only file system. Reported
// like bad input (one `error:` line naming the path and the system's reason, exit 2) by whoever
// catches it; the checkpoint writer catches it to agree on the failure over the ranks first.
class StorageError : public InputError {
 public:
  using InputError::InputError;
};

// Throws StorageError "<path>: <strerror(err)>" (err: an errno value).
[[noreturn]] void storage_error(std::string_view path, int err);

// Throws InputError with a formatted message.
template <class... Args>
[[noreturn]] void input_error(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

// Who this process is, for the prefix of fatal and log messages.
void set_process_identity(int rank, int world);
int process_rank();
int process_world();
const std::string& host_name();

// Called by fatal() (status 1) and input_fatal() (status 2) after printing; must not return. The
// default exits with the status.
using FatalHook = void (*)(int status);
void set_fatal_hook(FatalHook hook);

[[noreturn]] void fatal(const char* file, int line, std::string_view what,
                        std::string_view message);
// Prints `error: <message>` from this rank and ends the job with status 2.
[[noreturn]] void input_fatal(std::string_view message);

}  // namespace tmt

#define TMT_CHECK(cond, ...)                                               \
  do {                                                                     \
    if (!(cond)) [[unlikely]] {                                            \
      ::tmt::fatal(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
    }                                                                      \
  } while (0)

// For invariants that have nothing more to say than the condition itself.
#define TMT_ASSERT(cond) TMT_CHECK(cond, "invariant violated")
