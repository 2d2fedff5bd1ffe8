// tramontane: train Mixture-of-Experts transformers from a YAML recipe.
//
//   tramontane train [RECIPE] [--set key.path=value]...
//   tramontane check [RECIPE] [--world N] [--set key.path=value]... [--print-world] [--memory]
//   tramontane plan [RECIPE] --gpus N --hw h100|h200|h800|b200|gb200 [--nvlink-domain K]
//                   [--precision bf16|fp8] [--overlap] [--search [--top K]] [--json]
//   tramontane prepare [--tokenizer bytes|FILE] [--format text|jsonl] [--json-key K] INPUT...
//                      --out DIR [--val-fraction F] [--threads N]
//   tramontane eval [RECIPE] [--resume CKPT] [--set key.path=value]...
//   tramontane import SRC --out RUN_DIR [--set key.path=value]...
//   tramontane export CKPT --out HF_DIR [--dtype bf16|fp16|fp32|fp8]
//   tramontane inspect CKPT [--tensors]
//   tramontane runs DIR [--json]
//
// Exit status: 0 success; 2 bad input (one `error:` line on stderr, from one rank); 1 internal
// failure.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>

#include "kernels/base/check.h"
#include "kernels/cpu/threads.h"
#include "parallel/mpi_env.h"
#include "trainer/commands/commands.h"

namespace {

constexpr const char* kRecipeHelp =
    "YAML recipe (default: the embedded recipes/tiny.yaml). Sections: model, parallel, data, "
    "optimizer, "
    "schedule, train, checkpoint, log, run; see README.md";
constexpr const char* kSetHelp =
    "override one recipe key, e.g. --set train.steps=50 or --set data.paths=[a.bin,b.bin]; "
    "repeatable, "
    "applied in order, checked like the file";

void print_error(const std::string& message) {
  if (tmt::launcher_rank() == 0) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  tmt::cpu::init_threads();
  CLI::App app{
      "tramontane: train Mixture-of-Experts transformers (Mixtral-class) with tensor, pipeline, "
      "expert "
      "and data parallelism, from one YAML recipe.\nExit status: 0 success, 2 bad input (one "
      "`error:` "
      "line), 1 internal failure."};
  app.set_version_flag("--version", std::string("tramontane ") + TMT_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  tmt::TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand(
      "train",
      "Train the recipe on the ranks this process was launched with (mpirun -n N or srun; a plain "
      "start is one rank). Writes recipe.resolved.yaml and metrics.jsonl to run.dir.");
  train_cmd->add_option("recipe", train.recipe, kRecipeHelp);
  train_cmd->add_option("--set", train.overrides, kSetHelp)
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  train_cmd->add_option("--resume", train.resume,
                        "start from this checkpoint directory (default: the one "
                        "run.dir/checkpoints/latest names, when there is one)");
  train_cmd->add_flag("--no-resume", train.no_resume,
                      "start from step 0 even when run.dir has checkpoints");
  train_cmd->add_option(
      "--init-from", train.init_from,
      "start a new run (step 0, fresh optimizer) from this checkpoint's weights, "
      "e.g. one `tramontane import` wrote (fine-tuning); ignored once run.dir has "
      "checkpoints of its own, which resume");

  tmt::EvalOptions eval;
  CLI::App* eval_cmd = app.add_subcommand(
      "eval",
      "Forward passes over every window of the validation split at the recipe's layout; prints "
      "one JSON line {\"step\", \"val_loss\", \"tokens\", \"perplexity\"}.");
  eval_cmd->add_option("recipe", eval.recipe, kRecipeHelp);
  eval_cmd->add_option("--set", eval.overrides, kSetHelp)
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  eval_cmd->add_option("--resume", eval.checkpoint,
                       "the checkpoint whose weights to evaluate (default: the one "
                       "run.dir/checkpoints/latest names; none: the initial weights)");

  tmt::ImportOptions import;
  CLI::App* import_cmd = app.add_subcommand(
      "import",
      "Import published weights: a Hugging Face directory (config.json + safetensors) of "
      "MixtralForCausalLM or MistralForCausalLM, or Mistral's format (params.json + "
      "consolidated*.safetensors). Writes RUN_DIR/recipe.yaml and the checkpoint "
      "RUN_DIR/checkpoints/step-0000000 that `train RUN_DIR/recipe.yaml` starts from.");
  import_cmd->add_option("source", import.source, "the published model's directory")->required();
  import_cmd->add_option("--out", import.out_dir, "the run directory to create")->required();
  import_cmd
      ->add_option("--set", import.overrides, kSetHelp + std::string(" (not the model's shape)"))
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);

  tmt::ExportOptions export_;
  std::string export_dtype = "bf16";
  CLI::App* export_cmd = app.add_subcommand(
      "export",
      "Export a checkpoint's weights as a Hugging Face model directory (config.json, "
      "safetensors shards and their index) that transformers' from_pretrained loads.");
  export_cmd->add_option("checkpoint", export_.checkpoint, "checkpoint directory (step-NNNNNNN)")
      ->required();
  export_cmd->add_option("--out", export_.out_dir, "the directory to create")->required();
  export_cmd
      ->add_option("--dtype", export_dtype,
                   "bf16 (default), fp16, fp32, or fp8: the linears' and experts' weights in e4m3 "
                   "with a weight_scale_inv per 128x128 block, the rest bf16")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32", "fp8"}));
  export_cmd
      ->add_option("--max-shard-size", export_.max_shard_bytes,
                   "bytes per safetensors file at most (default 5e9, as transformers)")
      ->check(CLI::PositiveNumber);

  tmt::CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand("check",
                                           "Validate a recipe for a number of ranks without "
                                           "training; print the resolved recipe, parameter "
                                           "counts (total and active per token), training FLOPs "
                                           "per token and every rank's coordinates.");
  check_cmd->add_option("recipe", check.recipe, kRecipeHelp);
  check_cmd
      ->add_option("--world", check.world,
                   "number of ranks to check the layout for (default: what the recipe fixes, "
                   "tp x dp x pp, with dp = 1 when the recipe leaves it to the world size)")
      ->check(CLI::PositiveNumber);
  check_cmd->add_option("--set", check.overrides, kSetHelp)
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  check_cmd->add_flag(
      "--print-world", check.print_world,
      "only print the number of ranks the recipe's layout needs (for launch scripts)");
  check_cmd->add_flag(
      "--json", check.json,
      "print a JSON summary (parameters, FLOPs per token, tokens per step, layout) instead");
  check_cmd->add_flag("--memory", check.memory,
                      "also print each pipeline stage's memory per rank by kind (weights, "
                      "gradients, optimizer state, activations, MoE expert rows, ...), sized by "
                      "the code that allocates it, without allocating");
  check_cmd
      ->add_option("--hw", check.hw,
                   "refuse the layout when a rank's memory (as --memory sizes it, plus the "
                   "reserve `plan` assumes) does not fit this GPU: h100, h200, h800, b200 or "
                   "gb200")
      ->type_name("GPU");
  check_cmd->add_flag("--schema", check.schema,
                      "print every recipe key (dotted path, type, default, range, meaning), one a "
                      "line, instead of checking a recipe");
  check_cmd->add_flag("--markdown", check.markdown,
                      "with --schema: as a markdown table (the README's recipe table)");

  tmt::PlanOptions plan;
  CLI::App* plan_cmd = app.add_subcommand(
      "plan",
      "Estimate a recipe's run on N GPUs before launching it: memory per rank by kind (the "
      "trainer's own sizing), bytes per step of each parallel group and whether it stays inside "
      "an NVLink domain, step time, tokens/s, TFLOP/s per GPU and MFU.");
  plan_cmd->add_option("recipe", plan.recipe, kRecipeHelp);
  plan_cmd->add_option("--gpus", plan.gpus, "GPUs (ranks) the run would use")
      ->required()
      ->check(CLI::PositiveNumber);
  plan_cmd
      ->add_option("--hw", plan.hw,
                   "the accelerator: h100, h200, h800, b200 or gb200 (rates: docs/PLANNING.md)")
      ->required();
  plan_cmd
      ->add_option("--nvlink-domain", plan.nvlink_domain,
                   "GPUs per NVLink domain (default: the accelerator's, 8 for HGX, 72 for NVL72)")
      ->check(CLI::PositiveNumber);
  plan_cmd->add_option("--set", plan.overrides, kSetHelp)
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  plan_cmd->add_flag("--json", plan.json, "print the estimate as JSON instead of tables");
  plan_cmd
      ->add_option("--precision", plan.precision,
                   "the GEMMs' number format: bf16 (default) or fp8 (the linears' and experts' "
                   "GEMMs at the FP8 peak, the attention core at bf16's)")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  plan_cmd->add_flag("--overlap", plan.overlap,
                     "assume communication hidden behind compute (as Megatron-Core overlaps "
                     "it; tramontane does not yet): a step takes the longer of the two");
  plan_cmd->add_flag("--search", plan.search,
                     "enumerate the layouts (tp, pp, ep, etp, zero1, micro_batch) the recipe's "
                     "rules accept for the GPUs and rank those that fit by predicted tokens/s");
  plan_cmd->add_option("--top", plan.top, "with --search: how many fitting layouts to show")
      ->check(CLI::PositiveNumber);

  tmt::PrepareOptions prepare;
  std::string prepare_format = "text";
  CLI::App* prepare_cmd = app.add_subcommand(
      "prepare",
      "Turn UTF-8 text or JSONL files into token shards: DIR/train/shard-*.bin and "
      "DIR/val/shard-*.bin.");
  prepare_cmd->add_option("inputs", prepare.inputs, "text or JSONL files to tokenize")->required();
  prepare_cmd->add_option("--out", prepare.out_dir, "output directory")->required();
  prepare_cmd
      ->add_option("--tokenizer", prepare.tokenizer,
                   "bytes (one token per byte, vocab 256, documents joined by '\\n'), or the path "
                   "of a tekken JSON or a SentencePiece model (each document BOS + tokens + EOS)")
      ->default_val("bytes");
  prepare_cmd
      ->add_option("--format", prepare_format,
                   "text: each file is one document; jsonl: each non-empty line is a JSON object "
                   "whose --json-key string is one document")
      ->check(CLI::IsMember({"text", "jsonl"}))
      ->default_val("text");
  prepare_cmd->add_option("--json-key", prepare.json_key, "with --format jsonl: the text's key")
      ->default_val("text");
  prepare_cmd
      ->add_option("--threads", prepare.threads,
                   "tokenizing threads (0: every core this process may use); the output does not "
                   "depend on it")
      ->default_val(0);
  prepare_cmd
      ->add_option("--val-fraction", prepare.val_fraction,
                   "share of the tokens (taken from the end) kept for validation, in (0, 1)")
      ->default_val(0.05);

  tmt::InspectOptions inspect;
  CLI::App* inspect_cmd = app.add_subcommand(
      "inspect",
      "Show a checkpoint: its step, the layout it was written at, every tensor (name, global "
      "shape, dtype, checksum) and the recipe; verifies every shard's checksum.");
  inspect_cmd->add_option("checkpoint", inspect.checkpoint, "checkpoint directory (step-NNNNNNN)")
      ->required();
  inspect_cmd->add_flag("--tensors", inspect.tensors_only, "print only the tensor lines");

  tmt::RunsOptions runs;
  CLI::App* runs_cmd = app.add_subcommand(
      "runs",
      "List the runs under a directory (each a run.dir of `train`), one line each: the last step "
      "of train.steps, its loss, the last validation loss, tokens/s, the newest complete "
      "checkpoint and its age, and whether the run finished, is running or stopped.");
  runs_cmd->add_option("dir", runs.dir, "a run directory or a directory of them")->required();
  runs_cmd->add_flag("--json", runs.json,
                     "print {\"dir\", \"runs\": [one object per run]} instead");

  std::string names;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || (argc > 1 && sub->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !known) {
    // CLI11 would only say that a subcommand is required.
    print_error(
        fmt::format("unknown command '{}' (commands: {}; see tramontane --help)", argv[1], names));
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    print_error(e.what());
    return 2;
  }

  try {
    if (check_cmd->parsed()) return tmt::run_check(check);
    if (plan_cmd->parsed()) return tmt::run_plan(plan);
    if (prepare_cmd->parsed()) {
      prepare.format =
          prepare_format == "jsonl" ? tmt::InputFormat::kJsonl : tmt::InputFormat::kText;
      return tmt::run_prepare(prepare);
    }
    if (inspect_cmd->parsed()) return tmt::run_inspect(inspect);
    if (runs_cmd->parsed()) return tmt::run_runs(runs);
    if (import_cmd->parsed()) return tmt::run_import(import);
    if (export_cmd->parsed()) {
      export_.dtype = export_dtype == "fp32"   ? tmt::DType::kF32
                      : export_dtype == "fp16" ? tmt::DType::kF16
                      : export_dtype == "fp8"  ? tmt::DType::kF8E4M3
                                               : tmt::DType::kBF16;
      return tmt::run_export(export_);
    }
    if (train_cmd->parsed() || eval_cmd->parsed()) {
      tmt::MpiEnvironment mpi(&argc, &argv);
      try {
        return train_cmd->parsed() ? tmt::run_train(train) : tmt::run_eval(eval);
      } catch (const tmt::InputError& e) {
        // Bad input found after the ranks agreed on setup: every rank reads the same input, so
        // every rank gets here; rank 0 speaks for them.
        if (tmt::process_rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
      }
    }
  } catch (const tmt::InputError& e) {
    print_error(e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] internal error: %s\n", tmt::process_rank(), e.what());
    return 1;
  }
  return 1;
}
