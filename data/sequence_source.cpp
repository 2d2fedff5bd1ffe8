#include "data/sequence_source.h"

#include <vector>

#include "kernels/base/check.h"

namespace tmt {

void fill_batch(const SequenceSource& source, int64_t first_index, const Tensor& inputs,
                const Tensor& targets) {
  const int64_t s = source.seq_len();
  TMT_CHECK(inputs.rank() == 2 && inputs.size(1) == s && targets.shape == inputs.shape &&
                inputs.device == Device::kCpu,
            "fill_batch: inputs {} / targets {} for sequences of {}", inputs.str(), targets.str(),
            s);
  std::vector<int32_t> buf(static_cast<size_t>(s + 1));
  int32_t* in = inputs.ptr<int32_t>();
  int32_t* tg = targets.ptr<int32_t>();
  for (int64_t b = 0; b < inputs.size(0); ++b) {
    source.sequence(first_index + b, buf);
    for (int64_t i = 0; i < s; ++i) {
      in[b * s + i] = buf[static_cast<size_t>(i)];
      tg[b * s + i] = buf[static_cast<size_t>(i + 1)];
    }
  }
}

}  // namespace tmt
