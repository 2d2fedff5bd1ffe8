#include "trainer/data_sources.h"

#include <filesystem>

#include "data/synthetic.h"
#include "data/token_dataset.h"
#include "kernels/base/check.h"
#include "kernels/base/rng.h"

namespace tmt {

DataSources open_data(const Recipe& r) {
  DataSources d;
  const int64_t seq = r.data.seq_len;
  if (r.data.source == DataSourceKind::kSynthetic) {
    const SyntheticConfig& s = r.data.synthetic;
    auto chain = std::make_shared<const MarkovChain>(r.model.vocab_size, s.branching,
                                                     s.concentration, s.seed);
    d.train = std::make_unique<SyntheticSource>(chain, seq, r.train.seed);
    d.val = std::make_unique<SyntheticSource>(chain, seq,
                                              mix64(r.train.seed ^ hash_name("validation")));
    return d;
  }
  d.train = std::make_unique<TokenDataset>(r.data.paths, r.model.vocab_size, seq, r.train.seed,
                                           TokenDataset::Order::kShuffled);
  std::vector<std::string> val = r.data.val_paths;
  if (val.empty()) {
    namespace fs = std::filesystem;
    for (const auto& p : r.data.paths) {
      const fs::path path(p);
      const fs::path dir = path.filename().empty() ? path.parent_path() : path;
      if (fs::is_directory(dir) && dir.filename() == "train" &&
          fs::is_directory(dir.parent_path() / "val")) {
        val.push_back((dir.parent_path() / "val").string());
      }
    }
  }
  if (!val.empty()) {
    d.val = std::make_unique<TokenDataset>(val, r.model.vocab_size, seq, 0,
                                           TokenDataset::Order::kInOrder);
  } else if (r.log.eval_every > 0) {
    input_error(
        "{}: log.eval_every: validation is on but there is no validation data (give "
        "data.val_paths, "
        "or point data.paths at the train/ directory that `tramontane prepare` writes)",
        r.origin_of("log.eval_every"));
  }
  return d;
}

}  // namespace tmt
