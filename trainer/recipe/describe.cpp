// The schema in words: `tramontane check --schema` and the README's recipe table.
#include <fmt/format.h>

#include <algorithm>

#include "trainer/recipe/reader.h"
#include "trainer/recipe/recipe.h"
#include "trainer/recipe/schema.h"

namespace tmt {
namespace {

using recipe_detail::SectionSpec;
using recipe_detail::Spec;

template <class T>
std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) {
    return "boolean";
  } else if constexpr (std::is_same_v<T, double>) {
    return "number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "string";
  } else if constexpr (std::is_enum_v<T>) {
    std::vector<std::string> names;
    for (const auto& [name, value] : Names<T>::list) names.emplace_back(name);
    return fmt::format("{}", fmt::join(names, " | "));
  } else {
    return "integer";
  }
}

template <class T>
std::string shown(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return fmt::format("\"{}\"", v);
  } else if constexpr (std::is_enum_v<T>) {
    return std::string(name_of(v));
  } else {
    return fmt::format("{}", v);
  }
}

// The schema's describer: one KeyInfo per key, with its dotted path.
class Describer {
 public:
  template <class T>
  void key(std::string_view name, const T&, const Spec<T>& spec) {
    std::string fallback = "required";
    if (spec.fallback) {
      fallback = shown(*spec.fallback);
    } else if (!spec.derived.empty()) {
      fallback = std::string(spec.derived);
    } else if (!spec.later.empty()) {
      fallback = std::string(spec.later);
    }
    add(name, type_name<T>(), fallback, recipe_detail::range_text(spec.range), spec.meaning);
  }
  template <class E>
  void choice(std::string_view name, const E&, const Spec<E>& spec) {
    add(name, type_name<E>(), spec.fallback ? shown(*spec.fallback) : "required", "", spec.meaning);
  }
  template <class O>
  void optional(std::string_view name, const O&, const Spec<typename O::value_type>& spec) {
    add(name, type_name<typename O::value_type>() + " or null", "null",
        recipe_detail::range_text(spec.range), spec.meaning);
  }
  template <class L>
  void list(std::string_view name, const L&, const Spec<L>& spec) {
    using T = typename L::value_type;
    const std::string items = std::is_enum_v<T> ? fmt::format("({})", type_name<T>())
                                                : fmt::format("{}s", type_name<T>());
    add(name, fmt::format("list of {}", items), "[]", "", spec.meaning);
  }
  template <class S>
  void section(std::string_view name, const S& sub, const SectionSpec&) {
    prefix_.emplace_back(name);
    recipe_detail::visit(*this, sub);
    prefix_.pop_back();
  }
  template <class O>
  void optional_section(std::string_view name, const O&, const SectionSpec& spec) {
    add(name, "section or null", "null", "", spec.meaning);
    const typename O::value_type sub{};
    section(name, sub, spec);
  }
  std::vector<KeyInfo> keys;

 private:
  void add(std::string_view name, std::string type, std::string fallback, std::string range,
           std::string_view meaning) {
    std::string path;
    for (const std::string& p : prefix_) path += p + ".";
    keys.push_back({path + std::string(name), std::move(type), std::move(fallback),
                    std::move(range), std::string(meaning)});
  }
  std::vector<std::string> prefix_;
};

}  // namespace

std::vector<KeyInfo> recipe_keys() {
  const Recipe empty;
  Describer d;
  recipe_detail::visit(d, empty);
  return d.keys;
}

std::string schema_text() {
  const std::vector<KeyInfo> keys = recipe_keys();
  size_t path = 0, type = 0, fallback = 0;
  for (const KeyInfo& k : keys) {
    path = std::max(path, k.path.size());
    type = std::max(type, k.type.size());
    fallback = std::max(fallback, k.fallback.size());
  }
  std::string out;
  for (const KeyInfo& k : keys) {
    std::string line = fmt::format("{:<{}}  {:<{}}  default {:<{}}", k.path, path, k.type, type,
                                   k.fallback, fallback);
    if (!k.range.empty()) line += "  range " + k.range;
    if (!k.meaning.empty()) line += "  -- " + k.meaning;
    out += line + "\n";
  }
  return out;
}

std::string schema_markdown() {
  // A '|' inside a cell would end it.
  const auto cell = [](std::string s) {
    std::string out;
    for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
    return out;
  };
  std::string out = "| key | type | default | range | meaning |\n|---|---|---|---|---|\n";
  for (const KeyInfo& k : recipe_keys()) {
    out += fmt::format("| `{}` | {} | {} | {} | {} |\n", k.path, cell(k.type), cell(k.fallback),
                       cell(k.range), cell(k.meaning));
  }
  return out;
}

}  // namespace tmt
