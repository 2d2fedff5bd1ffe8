#include "trainer/recipe/reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace tmt::recipe_detail {
namespace {

std::string position(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return fmt::format("{}:{}:{}", file, mark.line + 1, mark.column + 1);
}

// How a value looks in a message: its text for scalars, its kind otherwise.
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? "the string '" + n.Scalar() + "'" : "'" + n.Scalar() + "'";
    default:
      return "nothing";
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string nearest_key(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  const size_t limit = std::max<size_t>(2, std::min(word.size(), best.size()) / 3);
  return best_d <= limit ? best : "";
}

std::string Sources::where(const std::string& key, const YAML::Mark& mark) const {
  if (auto it = overrides.find(key); it != overrides.end()) return it->second;
  for (const auto& [k, flag] : overrides) {
    if (k.rfind(key + ".", 0) == 0) return flag;
  }
  return position(file, mark);
}

Section::Section(const Sources& sources, std::string path, const YAML::Node& node,
                 const YAML::Mark& mark, std::vector<std::string> allowed)
    : sources_(&sources), path_(std::move(path)), mark_(mark) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsMap()) {
    input_error("{}: {}: expected a mapping of keys, got {}", sources.where(path_, mark), path_,
                describe(node));
  }
  if (sources.origins != nullptr && !path_.empty())
    (*sources.origins)[path_] = sources.where(path_, mark);
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Mark key_mark = it->first.Mark();
    if (!it->first.IsScalar()) {  // YAML's complex keys ("? a: 1"): no recipe key is one
      input_error("{}: {}: a key must be a name, got {}", sources.where(path_, key_mark),
                  path_.empty() ? "recipe" : path_, describe(it->first));
    }
    const std::string key = it->first.as<std::string>();
    const std::string full = key_path(key);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      const std::string near = nearest_key(key, allowed);
      input_error("{}: {}: unknown key{}", sources.where(full, key_mark), full,
                  near.empty() ? fmt::format(" (valid here: {})", fmt::join(allowed, ", "))
                               : fmt::format(" (did you mean {}?)", key_path(near)));
    }
    if (entries_.count(key) > 0) {
      input_error("{}: {}: duplicate key (first given at line {})", sources.where(full, key_mark),
                  full, entries_[key].mark.line + 1);
    }
    entries_[key] = Entry{it->second, key_mark};
    // A null value means the default: the key counts as not given.
    if (sources.origins != nullptr && !it->second.IsNull())
      (*sources.origins)[full] = sources.where(full, key_mark);
  }
}

const Section::Entry& Section::entry(const std::string& key) const { return entries_.at(key); }

bool Section::is_null(const std::string& key) const {
  return has(key) && entry(key).value.IsNull();
}

std::string Section::where(const std::string& key) const {
  if (has(key)) return sources_->where(key_path(key), entry(key).mark);
  return sources_->where(path_, mark_);
}

void Section::fail(const std::string& key, const std::string& message) const {
  input_error("{}: {}: {}", where(key), key_path(key), message);
}

YAML::Node Section::scalar(const std::string& key, const char* expected) const {
  const YAML::Node& v = entry(key).value;
  if (!v.IsScalar()) fail(key, fmt::format("expected {}, got {}", expected, describe(v)));
  return v;
}

int64_t Section::integer(const std::string& key, std::optional<int64_t> fallback) {
  if (!has(key) || (is_null(key) && fallback)) {  // null: the default
    if (!fallback) fail(key, "required key is missing");
    return *fallback;
  }
  const YAML::Node v = scalar(key, "an integer");
  const std::string& s = v.Scalar();
  int64_t out = 0;
  const char* begin = s.data() + (s.size() > 1 && s[0] == '+' ? 1 : 0);
  const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), out);
  if (v.Tag() == "!" || ec != std::errc() || end != s.data() + s.size()) {
    fail(key, fmt::format("expected an integer, got {}", describe(v)));
  }
  return out;
}

double Section::number(const std::string& key, std::optional<double> fallback) {
  if (!has(key) || (is_null(key) && fallback)) {  // null: the default
    if (!fallback) fail(key, "required key is missing");
    return *fallback;
  }
  const YAML::Node v = scalar(key, "a number");
  const std::string& s = v.Scalar();
  char* end = nullptr;
  const double out = std::strtod(s.c_str(), &end);
  if (v.Tag() == "!" || s.empty() || end != s.c_str() + s.size() || !std::isfinite(out)) {
    fail(key, fmt::format("expected a finite number, got {}", describe(v)));
  }
  return out;
}

bool Section::boolean(const std::string& key, bool fallback) {
  if (!has(key) || is_null(key)) return fallback;
  const YAML::Node v = scalar(key, "true or false");
  if (v.Tag() != "!" && v.Scalar() == "true") return true;
  if (v.Tag() != "!" && v.Scalar() == "false") return false;
  fail(key, fmt::format("expected true or false, got {}", describe(v)));
}

std::string Section::text(const std::string& key, std::optional<std::string> fallback) {
  if (!has(key) || (is_null(key) && fallback)) {  // null: the default
    if (!fallback) fail(key, "required key is missing");
    return *fallback;
  }
  return scalar(key, "a string").Scalar();
}

std::string Section::choice(const std::string& key, const std::string& fallback,
                            const std::vector<std::string>& allowed) {
  const std::string v = text(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    fail(key, fmt::format("'{}' is not one of: {}", v, fmt::join(allowed, ", ")));
  }
  return v;
}

std::optional<int64_t> Section::optional_integer(const std::string& key) {
  if (!has(key) || is_null(key)) return std::nullopt;
  return integer(key, std::nullopt);
}

std::optional<double> Section::optional_number(const std::string& key) {
  if (!has(key) || is_null(key)) return std::nullopt;
  return number(key, std::nullopt);
}

std::vector<std::string> Section::texts(const std::string& key) {
  std::vector<std::string> out;
  if (!has(key) || is_null(key)) return out;
  const YAML::Node& v = entry(key).value;
  if (v.IsScalar()) return {v.Scalar()};
  if (!v.IsSequence()) fail(key, fmt::format("expected a list of strings, got {}", describe(v)));
  for (const auto& item : v) {
    if (!item.IsScalar())
      fail(key, fmt::format("expected a list of strings, found {} in it", describe(item)));
    out.push_back(item.Scalar());
  }
  return out;
}

std::vector<int64_t> Section::integers(const std::string& key) {
  std::vector<int64_t> out;
  if (!has(key) || is_null(key)) return out;
  const YAML::Node& v = entry(key).value;
  if (!v.IsSequence()) fail(key, fmt::format("expected a list of integers, got {}", describe(v)));
  for (const auto& item : v) {
    int64_t x = 0;
    const std::string& s = item.IsScalar() ? item.Scalar() : std::string();
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
    if (!item.IsScalar() || item.Tag() == "!" || ec != std::errc() || end != s.data() + s.size()) {
      fail(key, fmt::format("expected a list of integers, found {} in it", describe(item)));
    }
    out.push_back(x);
  }
  return out;
}

Section Section::section(const std::string& key, std::vector<std::string> allowed) {
  if (!has(key)) return Section(*sources_, key_path(key), YAML::Node(), mark_, std::move(allowed));
  return Section(*sources_, key_path(key), entry(key).value, entry(key).mark, std::move(allowed));
}

std::string range_violation(double v, const Range& r, const std::string& shown) {
  const bool low = r.min && (r.min_open ? !(v > *r.min) : !(v >= *r.min));
  const bool high = r.max && (r.max_open ? !(v < *r.max) : !(v <= *r.max));
  if (!low && !high) return "";
  return fmt::format("must be {}{}, got {}", r.min && r.max ? "in " : "", range_text(r), shown);
}

std::string range_text(const Range& r) {
  if (r.min && r.max) {
    return fmt::format("{}{}, {}{}", r.min_open ? "(" : "[", *r.min, *r.max,
                       r.max_open ? ")" : "]");
  }
  if (r.min) return fmt::format("{} {}", r.min_open ? ">" : ">=", *r.min);
  if (r.max) return fmt::format("{} {}", r.max_open ? "<" : "<=", *r.max);
  return "";
}

Reader::Reader(const Sources& sources, const YAML::Node& root, Recipe& recipe) : recipe_(&recipe) {
  sections_.emplace_back(sources, "", root, YAML::Mark(), key_names<Recipe>());
  open_.push_back(&sections_.back());
}

void Reader::finish() {
  for (const auto& derive : derived_) derive();
  derived_.clear();
}

}  // namespace tmt::recipe_detail
