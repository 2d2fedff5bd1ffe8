// Reading one YAML mapping of a recipe with exact errors: unknown keys (with a suggestion),
// duplicate keys, wrong types, each reported at the key's file:line:col or the --set flag that set
// it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernels/base/check.h"

namespace tmt::recipe_detail {

// Where values came from: the file, and the --set flags that overrode keys.
struct Sources {
  std::string file;  // the recipe's path as given (or the embedded name)
  std::map<std::string, std::string> overrides;           // key path -> "--set key=value"
  std::map<std::string, std::string>* origins = nullptr;  // filled as keys are read

  // "--set ..." when the key (or a key below it) was set by a flag, else file:line:col of the mark.
  std::string where(const std::string& key, const YAML::Mark& mark) const;
};

// One mapping of the recipe (a section, or a nested mapping like model.moe).
class Section {
 public:
  // `path` is the section's key path ("model.moe"); `allowed` its valid keys. A missing node is an
  // empty section. Throws InputError for a non-mapping, unknown or duplicate keys.
  Section(const Sources& sources, std::string path, const YAML::Node& node, const YAML::Mark& mark,
          std::vector<std::string> allowed);

  bool has(const std::string& key) const { return entries_.count(key) > 0; }
  bool is_null(const std::string& key) const;

  int64_t integer(const std::string& key, std::optional<int64_t> fallback);  // nullopt = required
  double number(const std::string& key, std::optional<double> fallback);
  bool boolean(const std::string& key, bool fallback);
  std::string text(const std::string& key, std::optional<std::string> fallback);
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed);
  std::optional<int64_t> optional_integer(const std::string& key);  // absent or null = nullopt
  std::optional<double> optional_number(const std::string& key);
  std::vector<std::string> texts(const std::string& key);  // a list of strings (or one string)
  std::vector<int64_t> integers(const std::string& key);
  Section section(const std::string& key, std::vector<std::string> allowed);

  std::string key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  // file:line:col (or the flag) of a key of this section, or of the section when the key is absent.
  std::string where(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  struct Entry {
    YAML::Node value;
    YAML::Mark mark;  // the key's position
  };
  const Entry& entry(const std::string& key) const;
  YAML::Node scalar(const std::string& key, const char* expected) const;

  const Sources* sources_;
  std::string path_;
  YAML::Mark mark_;
  std::map<std::string, Entry> entries_;
};

// The nearest of `candidates` to `word` when it is plausibly a typo of it, else "".
std::string nearest_key(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace tmt::recipe_detail
