// The checkpoint index read from mutated HDF5 bytes, through `tramontane inspect` (print_checkpoint)
// as checkpoint_fuzz.cpp does: the input is index.h5, then, after kShardMark if it is there,
// rank-00000.h5 (so that an index that still lists its shard gets past its checksum to the
// tensors). Most of what a mutation reaches is HDF5's own parser, which has its own bugs (docs/
// FUZZING.md: Debian's 1.10.8 overflows a buffer in H5S_select_deserialize opening a damaged
// virtual dataset), so scripts/fuzz.sh runs this target only when TMT_FUZZ_TARGETS names it.
// stdout (what inspect prints) is best closed with libFuzzer's -close_fd_mask=1.
#include "fuzz/fuzz_support.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/hdf5.h"

using namespace tmt;
namespace fs = std::filesystem;

constexpr std::string_view kShardMark = "\n--tmt-fuzz rank-00000.h5--\n";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  h5::quiet_hdf5();
  const fs::path dir = fuzz::scratch_dir() / "step-0000003";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const std::string_view input = fuzz::text_of(data, size);
  const size_t mark = input.find(kShardMark);
  fuzz::write_file("step-0000003/index.h5", input.substr(0, mark));
  if (mark != std::string_view::npos)
    fuzz::write_file("step-0000003/rank-00000.h5", input.substr(mark + kShardMark.size()));
  fuzz::expect_input_error([&] { print_checkpoint(dir.string(), false); });
  return 0;
}
