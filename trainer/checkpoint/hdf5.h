// The few HDF5 pieces the checkpoint code needs: an owning handle, attributes, and TMT_H5_CHECK.
//
// HDF5 reports failure by returning a negative id or status; TMT_H5_CHECK(call, context...) turns
// that into a fatal error (kernels/base/check.h) with the innermost message of HDF5's error stack.
// HDF5's own printing of that stack is off (quiet_hdf5), so bad input can be reported as one
// `error:` line instead. Calls that write a file go through TMT_H5_WRITE(call, path, context...)
// instead: a failure there is most often the storage's (no space, an I/O error, a read-only file
// system), so it throws StorageError (kernels/base/check.h) naming the path and the system's
// reason (errno, else HDF5's message) for the caller to handle.
#pragma once

#include <hdf5.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/base/check.h"
#include "kernels/base/tensor.h"

namespace tmt::h5 {

// The innermost description on HDF5's default error stack ("" when it is empty).
std::string last_error();

}  // namespace tmt::h5

#define TMT_H5_CHECK(call, ...)                                                              \
  do {                                                                                       \
    if ((call) < 0) [[unlikely]] {                                                           \
      ::tmt::fatal(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__), ::tmt::h5::last_error()); \
    }                                                                                        \
  } while (0)

#define TMT_H5_WRITE(call, path, ...)                                   \
  do {                                                                  \
    errno = 0;                                                          \
    if ((call) < 0) [[unlikely]] {                                      \
      ::tmt::h5::write_failed(path, ::fmt::format(__VA_ARGS__), errno); \
    }                                                                   \
  } while (0)

namespace tmt::h5 {

// Throws StorageError "<path>: <what>: <strerror(err)>", or HDF5's message when err is 0.
[[noreturn]] void write_failed(std::string_view path, std::string_view what, int err);

// Owns one hid_t and closes it with its own close function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
  }
  hid_t id() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Creates the HDF5 file `path` (truncating one that is there), reserves `reserved` bytes for it,
// calls write(file id), flushes and closes it, and frees what of the reservation it did not use.
// Every failure is a StorageError naming the path and the system's reason:
// - The reservation (fallocate with FALLOC_FL_KEEP_SIZE; a file system without fallocate is left
//   as it is) makes a full disk fail here, before HDF5 has anything to flush: HDF5 handles a write
//   that fails half way badly (its cache can be left so that the file cannot be closed, and it
//   crashes closing it at exit).
// - The file is opened with H5F_CLOSE_STRONG (closing it closes every object still open in it),
//   and a write that fails is truncated before the close, so that the close's metadata flush
//   finds room on a full disk; its contents are discarded.
void write_file(const std::string& path, uint64_t reserved,
                const std::function<void(hid_t)>& write);

// Turns off HDF5's printing of its error stack (once per process).
void quiet_hdf5();

std::vector<hsize_t> dims_of(const Shape& s);
std::vector<hsize_t> dataset_dims(hid_t dataset);
std::string shape_str(const std::vector<hsize_t>& dims);  // "[8, 2, 64, 128]"

// Link creation properties that create missing intermediate groups ("param/layers.0.attn.wq").
Handle link_props();

// StorageError (naming obj's file) when they cannot be written.
void write_string_attr(hid_t obj, const char* name, const std::string& value);
void write_int_attr(hid_t obj, const char* name, int64_t value);
// The name of the file that holds obj.
std::string file_name(hid_t obj);
// nullopt when the attribute is missing, not of that type or not one value.
std::optional<std::string> read_string_attr(hid_t obj, const char* name);
std::optional<int64_t> read_int_attr(hid_t obj, const char* name);

}  // namespace tmt::h5
