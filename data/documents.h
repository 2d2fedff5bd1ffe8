// The documents of `tramontane prepare`'s inputs, read in order, a chunk at a time.
//
//   text   each input file is one document (its bytes as they are)
//   jsonl  each line of each file is one JSON object; the document is its string field `json_key`.
//          Empty lines (nothing but whitespace) are skipped. A line that is not a JSON object, lacks
//          the key, or whose value is not a string is an InputError naming file:line.
// The reader only splits lines; parsing a JSON line (`document_text`) is left to the threads that
// tokenize, so a chunk's lines are parsed in parallel.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace tmt {

enum class InputFormat { kText, kJsonl };

struct Document {
  std::string raw;   // the file (text) or the line (jsonl)
  size_t file = 0;   // index into the inputs
  int64_t line = 0;  // 1-based line of a jsonl document; 0 for text
};

class DocumentReader {
 public:
  // Throws InputError naming a path that is a directory or cannot be read.
  DocumentReader(std::vector<std::string> paths, InputFormat format);

  // Replaces `out` with the next documents, about `max_bytes` of them (at least one); false when
  // every input has been read.
  bool next_chunk(size_t max_bytes, std::vector<Document>& out);

  int64_t total_bytes() const { return total_bytes_; }  // of every input, from their sizes
  int64_t bytes_read() const { return bytes_read_; }
  // "file:line" (jsonl) or "file" (text), for errors.
  std::string where(const Document& d) const;

 private:
  bool open_next();

  std::vector<std::string> paths_;
  InputFormat format_;
  size_t next_file_ = 0;
  std::ifstream in_;
  size_t file_ = 0;
  int64_t line_ = 0;
  int64_t total_bytes_ = 0;
  int64_t bytes_read_ = 0;
};

// The text of a document: `raw` for text; the string `json_key` of the line's object for jsonl.
// Throws InputError (without the file: the caller adds `where`).
std::string document_text(const Document& d, InputFormat format, const std::string& json_key);

}  // namespace tmt
