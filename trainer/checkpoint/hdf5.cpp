#include "trainer/checkpoint/hdf5.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tmt::h5 {

std::string last_error() {
  std::string message;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        auto* m = static_cast<std::string*>(out);
        if (m->empty() && e->desc != nullptr) *m = e->desc;
        return 0;
      },
      &message);
  return message.empty() ? "HDF5 reported an error" : message;
}

void write_failed(std::string_view path, std::string_view what, int err) {
  // HDF5's file driver records the system's errno in its message ("..., errno = 28, ..."): that
  // one is the reason, whatever errno says by now.
  int recorded = 0;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        auto* n = static_cast<int*>(out);
        const char* at = e->desc != nullptr ? std::strstr(e->desc, "errno = ") : nullptr;
        if (*n == 0 && at != nullptr) *n = std::atoi(at + 8);
        return 0;
      },
      &recorded);
  if (recorded == 0) recorded = err;
  throw StorageError(recorded != 0 ? fmt::format("{}: {}: {}", path, what, std::strerror(recorded))
                                   : fmt::format("{}: {}: {}", path, what, last_error()));
}

namespace {

void reserve_space(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) storage_error(path, errno);
  if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes)) != 0 &&
      errno != EOPNOTSUPP && errno != ENOSYS) {
    const int err = errno;
    ::close(fd);
    throw StorageError(fmt::format("{}: {} (reserving {:.1f} MB to write it)", path,
                                   std::strerror(err), static_cast<double>(bytes) / 1e6));
  }
  ::close(fd);
}

// Frees what a reservation of `bytes` allocated past the end of the closed file at `path`.
void release_unused(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) < bytes) {
    ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size,
                static_cast<off_t>(bytes) - st.st_size);
  }
  ::close(fd);
}

}  // namespace

void write_file(const std::string& path, uint64_t reserved,
                const std::function<void(hid_t)>& write) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG);
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()), H5Fclose);
  TMT_H5_WRITE(file.id(), path, "create");
  try {
    TMT_H5_WRITE(H5Fflush(file.id(), H5F_SCOPE_GLOBAL), path, "flush");
    reserve_space(path, reserved);
    write(file.id());
    TMT_H5_WRITE(H5Fflush(file.id(), H5F_SCOPE_GLOBAL), path, "flush");
  } catch (const StorageError&) {
    ::truncate(path.c_str(), 0);
    file = Handle();  // the swapped-out handle closes the file
    throw;
  }
  file = Handle();  // closed before its size and checksum are taken
  release_unused(path, reserved);
}

void quiet_hdf5() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

std::vector<hsize_t> dims_of(const Shape& s) {
  std::vector<hsize_t> d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(static_cast<hsize_t>(s[i]));
  return d;
}

std::vector<hsize_t> dataset_dims(hid_t dataset) {
  Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  return dims;
}

std::string shape_str(const std::vector<hsize_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

Handle link_props() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  return lcpl;
}

std::string file_name(hid_t obj) {
  const ssize_t n = H5Fget_name(obj, nullptr, 0);
  if (n <= 0) return "an HDF5 file";
  std::string name(static_cast<size_t>(n) + 1, '\0');
  H5Fget_name(obj, name.data(), name.size());
  name.resize(static_cast<size_t>(n));
  return name;
}

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), std::max<size_t>(value.size(), 1));
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  TMT_H5_WRITE(attr.id(), file_name(obj), "create attribute {}", name);
  TMT_H5_WRITE(H5Awrite(attr.id(), type.id(), value.data()), file_name(obj), "write attribute {}",
               name);
}

void write_int_attr(hid_t obj, const char* name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  TMT_H5_WRITE(attr.id(), file_name(obj), "create attribute {}", name);
  TMT_H5_WRITE(H5Awrite(attr.id(), H5T_NATIVE_INT64, &value), file_name(obj), "write attribute {}",
               name);
}

namespace {
// An attribute of one value: H5Aread writes every element, and the readers below hold one.
bool holds_one_value(hid_t attr) {
  Handle space(H5Aget_space(attr), H5Sclose);
  return space.ok() && H5Sget_simple_extent_npoints(space.id()) == 1;
}
}  // namespace

std::optional<std::string> read_string_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || !holds_one_value(attr.id())) return std::nullopt;
  Handle type(H5Aget_type(attr.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING || H5Tis_variable_str(type.id()) > 0)
    return std::nullopt;
  std::string value(H5Tget_size(type.id()), '\0');
  if (H5Aread(attr.id(), type.id(), value.data()) < 0) return std::nullopt;
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

std::optional<int64_t> read_int_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || !holds_one_value(attr.id())) return std::nullopt;
  int64_t v = 0;
  if (H5Aread(attr.id(), H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
  return v;
}

}  // namespace tmt::h5
