// Published weights in and out: `tramontane import` and `tramontane export`.
//
// import: a Hugging Face or Mistral model directory (published.h) -> RUN_DIR/recipe.yaml (the model
// section from the config; data, layout and optimizer from the default recipe, for the user to
// edit; --set overrides applied and checked like train's) and RUN_DIR/checkpoints/step-0000000, a
// weights-only checkpoint (checkpoint/format.h) that `train RUN_DIR/recipe.yaml` starts from at
// any layout. The source is read tensor by tensor from memory-mapped files and each tensor is
// written as soon as it is converted, so the memory needed is that of the largest published tensor
// in f32, whatever the model's size. Everything is checked before anything is written: each
// tensor the config implies is present, of its shape, in bf16, f16 or f32 (or Mistral's FP8:
// e4m3 with its scale, published.h); no other tensor is there; the files are whole. A RUN_DIR that already holds a run is refused.
//
// export: a checkpoint -> HF_DIR with config.json, model.safetensors (or model-0000i-of-0000N
// shards of at most max_shard_bytes and model.safetensors.index.json), in bf16, f16 or f32, loadable
// by transformers' AutoModelForCausalLM.from_pretrained. bf16 weights imported and exported as bf16
// come back bit for bit (f32 master weights hold bf16 values exactly). An existing non-empty HF_DIR
// is refused; the files are written under HF_DIR.partial and renamed when complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/dtype.h"

namespace tmt {

struct ImportOptions {
  std::string source;
  std::string out_dir;
  std::vector<std::string> overrides;  // --set key=value, on top of the imported recipe
};

struct ExportOptions {
  std::string checkpoint;
  std::string out_dir;
  DType dtype = DType::kBF16;
  int64_t max_shard_bytes = 5'000'000'000;
};

// Both throw InputError with one line naming the file (and tensor, key) at fault, and return a line
// for people saying what was written.
std::string import_weights(const ImportOptions& options);
std::string export_weights(const ExportOptions& options);

}  // namespace tmt
