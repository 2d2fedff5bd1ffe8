// Reading a recipe with exact errors: unknown keys (with a suggestion), duplicate keys, wrong
// types and values out of range, each reported at the key's file:line:col or the --set flag that
// set it. Section reads one YAML mapping; Reader walks the schema (schema.h) over the sections.
#pragma once

#include <yaml-cpp/yaml.h>

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernels/base/check.h"
#include "trainer/recipe/schema.h"

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

// A range in words: ">= 1", "> 0", "(0, 1]"; "" for no bounds.
std::string range_text(const Range& range);
// The message for a value outside its range ("must be >= 1, got 0"), or "" when it is inside.
std::string range_violation(double value, const Range& range, const std::string& shown);

// The names of a section's own keys (and nested sections), in schema order.
template <class S>
std::vector<std::string> key_names();

// The schema's reader: visit(reader, recipe) fills the recipe from the YAML tree, checking each
// given value's type and range as it goes; finish() then computes the derived defaults and checks
// their ranges. Keys absent or null take their defaults.
class Reader {
 public:
  Reader(const Sources& sources, const YAML::Node& root, Recipe& recipe);
  void finish();

  template <class T>
  void key(std::string_view name, T& field, const Spec<T>& spec);
  template <class E>
  void choice(std::string_view name, E& field, const Spec<E>& spec);
  template <class O>
  void optional(std::string_view name, O& field, const Spec<typename O::value_type>& spec);
  template <class L>
  void list(std::string_view name, L& field, const Spec<L>& spec);
  template <class S>
  void section(std::string_view name, S& sub, const SectionSpec& spec);
  template <class O>
  void optional_section(std::string_view name, O& field, const SectionSpec& spec);

 private:
  Section& current() { return *open_.back(); }
  template <class S>
  void read_section(std::string_view name, S& sub);
  template <class T>
  T scalar(Section& s, const std::string& key);
  template <class T>
  void check(Section& s, const std::string& key, const T& value, const Range& range);

  Recipe* recipe_;
  std::deque<Section> sections_;  // every section read, kept for the checks that run in finish()
  std::vector<Section*> open_;    // the section being read and those around it
  std::vector<std::function<void()>> derived_;  // in schema order
};

// ---- implementation ---------------------------------------------------------------------------

// Collects a section's key names without reading anything.
struct NameLister {
  std::vector<std::string> names;
  template <class T>
  void key(std::string_view name, T&, const Spec<std::remove_const_t<T>>&) {
    names.emplace_back(name);
  }
  template <class E>
  void choice(std::string_view name, E&, const Spec<std::remove_const_t<E>>&) {
    names.emplace_back(name);
  }
  template <class O>
  void optional(std::string_view name, O&, const Spec<typename O::value_type>&) {
    names.emplace_back(name);
  }
  template <class L>
  void list(std::string_view name, L&, const Spec<std::remove_const_t<L>>&) {
    names.emplace_back(name);
  }
  template <class S>
  void section(std::string_view name, S&, const SectionSpec&) {
    names.emplace_back(name);
  }
  template <class O>
  void optional_section(std::string_view name, O&, const SectionSpec&) {
    names.emplace_back(name);
  }
};

template <class S>
std::vector<std::string> key_names() {
  S empty{};
  NameLister lister;
  visit(lister, empty);
  return lister.names;
}

template <class T>
T Reader::scalar(Section& s, const std::string& key) {
  if constexpr (std::is_same_v<T, bool>) {
    return s.boolean(key, false);
  } else if constexpr (std::is_same_v<T, double>) {
    return s.number(key, std::nullopt);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return s.text(key, std::nullopt);
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    const int64_t v = s.integer(key, std::nullopt);
    if (v < 0) s.fail(key, fmt::format("must be >= 0, got {}", v));
    return static_cast<uint64_t>(v);
  } else {
    static_assert(std::is_same_v<T, int64_t>,
                  "a recipe scalar is int64, uint64, double, bool or a string");
    return s.integer(key, std::nullopt);
  }
}

template <class T>
void Reader::check(Section& s, const std::string& key, const T& value, const Range& range) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const std::string message =
        range_violation(static_cast<double>(value), range, fmt::format("{}", value));
    if (!message.empty()) s.fail(key, message);
  }
}

template <class T>
void Reader::key(std::string_view name, T& field, const Spec<T>& spec) {
  Section& s = current();
  const std::string k(name);
  if (s.has(k) && !s.is_null(k)) {
    field = scalar<T>(s, k);
    check(s, k, field, spec.range);
  } else if (spec.fallback) {
    field = *spec.fallback;
  } else if (spec.derive) {
    derived_.push_back([this, &s, &field, k, derive = spec.derive, range = spec.range] {
      const std::optional<T> v = derive(*recipe_);
      if (!v) s.fail(k, "required key is missing");
      field = *v;
      check(s, k, field, range);
    });
  } else if (!spec.later.empty()) {
    field = T{};
  } else {
    s.fail(k, "required key is missing");
  }
}

template <class E>
void Reader::choice(std::string_view name, E& field, const Spec<E>& spec) {
  Section& s = current();
  const std::string k(name);
  std::vector<std::string> allowed;
  for (const auto& [spelling, value] : Names<E>::list) allowed.emplace_back(spelling);
  TMT_CHECK(spec.fallback.has_value(), "recipe schema: choice {} has no default", k);
  const std::string got = s.choice(k, std::string(name_of(*spec.fallback)), allowed);
  for (const auto& [spelling, value] : Names<E>::list) {
    if (spelling == got) field = value;
  }
}

template <class O>
void Reader::optional(std::string_view name, O& field, const Spec<typename O::value_type>& spec) {
  Section& s = current();
  const std::string k(name);
  field.reset();
  if (!s.has(k) || s.is_null(k)) return;
  field = scalar<typename O::value_type>(s, k);
  check(s, k, *field, spec.range);
}

template <class L>
void Reader::list(std::string_view name, L& field, const Spec<L>&) {
  Section& s = current();
  const std::string k(name);
  using T = typename L::value_type;
  if constexpr (std::is_same_v<T, std::string>) {
    field = s.texts(k);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    field = s.integers(k);
  } else {  // a list of choices
    field.clear();
    std::vector<std::string> allowed;
    for (const auto& [spelling, value] : Names<T>::list) allowed.emplace_back(spelling);
    for (const std::string& item : s.texts(k)) {
      bool found = false;
      for (const auto& [spelling, value] : Names<T>::list) {
        if (spelling == item) {
          field.push_back(value);
          found = true;
        }
      }
      if (!found) s.fail(k, fmt::format("'{}' is not one of: {}", item, fmt::join(allowed, ", ")));
    }
  }
}

template <class S>
void Reader::read_section(std::string_view name, S& sub) {
  sections_.push_back(current().section(std::string(name), key_names<S>()));
  open_.push_back(&sections_.back());
  visit(*this, sub);
  open_.pop_back();
}

template <class S>
void Reader::section(std::string_view name, S& sub, const SectionSpec& spec) {
  const std::string k(name);
  if (spec.required && !current().has(k)) current().fail(k, "required section is missing");
  read_section(name, sub);
}

template <class O>
void Reader::optional_section(std::string_view name, O& field, const SectionSpec&) {
  const std::string k(name);
  if (!current().has(k) || current().is_null(k)) {
    field.reset();
    return;
  }
  field.emplace();
  read_section(name, *field);
}

}  // namespace tmt::recipe_detail
