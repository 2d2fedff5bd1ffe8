#include "data/documents.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/base/check.h"

namespace tmt {

namespace fs = std::filesystem;

DocumentReader::DocumentReader(std::vector<std::string> paths, InputFormat format)
    : paths_(std::move(paths)), format_(format) {
  for (const std::string& p : paths_) {
    if (fs::is_directory(p)) input_error("{}: is a directory, not a text file", p);
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec) input_error("{}: cannot read: {}", p, ec.message());
    total_bytes_ += static_cast<int64_t>(size);
  }
}

bool DocumentReader::open_next() {
  if (next_file_ >= paths_.size()) return false;
  file_ = next_file_++;
  in_ = std::ifstream(paths_[file_], std::ios::binary);
  if (!in_) input_error("{}: cannot read: {}", paths_[file_], std::strerror(errno));
  line_ = 0;
  return true;
}

bool DocumentReader::next_chunk(size_t max_bytes, std::vector<Document>& out) {
  out.clear();
  size_t bytes = 0;
  while (bytes < max_bytes) {
    if (!in_.is_open() && !open_next()) break;
    if (format_ == InputFormat::kText) {
      Document d{std::string(std::istreambuf_iterator<char>(in_), {}), file_, 0};
      if (in_.bad()) input_error("{}: cannot read: {}", paths_[file_], std::strerror(errno));
      in_.close();
      bytes += d.raw.size();
      bytes_read_ += static_cast<int64_t>(d.raw.size());
      out.push_back(std::move(d));
      continue;
    }
    std::string line;
    if (!std::getline(in_, line)) {
      if (in_.bad()) input_error("{}: cannot read: {}", paths_[file_], std::strerror(errno));
      in_.close();
      continue;
    }
    ++line_;
    bytes_read_ += static_cast<int64_t>(line.size() + 1);
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;  // an empty line
    bytes += line.size();
    out.push_back({std::move(line), file_, line_});
  }
  return !out.empty();
}

std::string DocumentReader::where(const Document& d) const {
  if (format_ == InputFormat::kText) return paths_[d.file];
  return fmt::format("{}:{}", paths_[d.file], d.line);
}

std::string document_text(const Document& d, InputFormat format, const std::string& json_key) {
  if (format == InputFormat::kText) return d.raw;
  using nlohmann::json;
  json j;
  try {
    j = json::parse(d.raw);
  } catch (const json::parse_error& e) {
    input_error("not a JSON line: syntax error at column {}", e.byte);
  } catch (const json::exception& e) {  // a number past double's range (out_of_range.406)
    input_error("not a JSON line: {}", e.what());
  }
  if (!j.is_object()) input_error("not a JSON object: {}", std::string(j.type_name()));
  const auto it = j.find(json_key);
  if (it == j.end()) input_error("no \"{}\" key (--json-key)", json_key);
  if (!it->is_string()) input_error("\"{}\" is {}, not a string", json_key, it->type_name());
  return it->get<std::string>();
}

}  // namespace tmt
