#include "data/sentencepiece.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "kernels/base/check.h"

namespace tmt {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string name,
                         std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : name_(std::move(name)), sp_(std::move(sp)) {}

  std::string name() const override { return name_; }
  uint32_t vocab_size() const override { return static_cast<uint32_t>(sp_->GetPieceSize()); }
  std::optional<uint32_t> bos() const override { return static_cast<uint32_t>(sp_->bos_id()); }
  std::optional<uint32_t> eos() const override { return static_cast<uint32_t>(sp_->eos_id()); }

  void encode(std::string_view text, std::vector<uint32_t>& out) const override {
    if (const size_t bad = invalid_utf8_offset(text); bad != std::string_view::npos) {
      input_error("invalid UTF-8 at byte offset {}", bad);
    }
    thread_local std::vector<int> ids;
    const auto status = sp_->Encode(text, &ids);
    if (!status.ok()) input_error("SentencePiece cannot encode: {}", status.ToString());
    for (int id : ids) out.push_back(static_cast<uint32_t>(id));
  }

  std::string decode(const std::vector<uint32_t>& tokens) const override {
    std::vector<int> ids(tokens.begin(), tokens.end());
    std::string s;
    TMT_CHECK(sp_->Decode(ids, &s).ok(), "SentencePiece cannot decode");
    return s;
  }

 private:
  std::string name_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string* why) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    *why = status.ToString();
    return nullptr;
  }
  if (sp->GetPieceSize() <= 0 || sp->bos_id() < 0 || sp->eos_id() < 0) {
    *why = "the model has no pieces, or no BOS or EOS id";
    return nullptr;
  }
  return std::make_unique<SentencePieceTokenizer>(
      "sentencepiece:" + std::filesystem::path(path).filename().string(), std::move(sp));
}

}  // namespace tmt
