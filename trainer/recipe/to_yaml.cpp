// A recipe written back as YAML, every key of the schema with its resolved value
// (run.dir/recipe.resolved.yaml, and the recipe stored in checkpoints).
#include <fmt/format.h>

#include <sstream>

#include "trainer/recipe/recipe.h"
#include "trainer/recipe/schema.h"

namespace tmt {
namespace {

using recipe_detail::SectionSpec;
using recipe_detail::Spec;

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A scalar as YAML: numbers in the shortest form that reads back exactly, strings quoted.
template <class T>
std::string scalar(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return quoted(v);
  } else if constexpr (std::is_enum_v<T>) {
    return std::string(name_of(v));
  } else {
    return fmt::format("{}", v);
  }
}

// The schema's writer: one `key: value` line per key, nested sections indented by two spaces.
class Writer {
 public:
  Writer(const Recipe& recipe, YamlKeys keys) : recipe_(recipe), keys_(keys) {}
  template <class T>
  void key(std::string_view name, const T& field, const Spec<T>& spec) {
    const bool unset =
        (spec.null_when && spec.null_when()) || (!spec.later.empty() && field == T{}) ||
        (keys_ == YamlKeys::kDerivedAsNull && outer_ != "model" && is_derived(field, spec));
    line(name, unset ? "null" : scalar(field));
  }
  template <class E>
  void choice(std::string_view name, const E& field, const Spec<E>&) {
    line(name, scalar(field));
  }
  template <class O>
  void optional(std::string_view name, const O& field, const Spec<typename O::value_type>&) {
    line(name, field ? scalar(*field) : "null");
  }
  template <class L>
  void list(std::string_view name, const L& field, const Spec<L>&) {
    std::vector<std::string> items;
    for (const auto& x : field) items.push_back(scalar(x));
    line(name, fmt::format("[{}]", fmt::join(items, ", ")));
  }
  template <class S>
  void section(std::string_view name, const S& sub, const SectionSpec&) {
    out_ << fmt::format("{:{}}{}:\n", "", indent_, name);
    if (indent_ == 0) outer_ = name;
    indent_ += 2;
    recipe_detail::visit(*this, sub);
    indent_ -= 2;
  }
  template <class O>
  void optional_section(std::string_view name, const O& field, const SectionSpec& spec) {
    if (field) return section(name, *field, spec);
    line(name, "null");
  }
  std::string text() const { return out_.str(); }

 private:
  // Whether the value is what its derivation from the other keys gives.
  template <class T>
  bool is_derived(const T& field, const Spec<T>& spec) const {
    if (!spec.derive) return false;
    try {
      const std::optional<T> derived = spec.derive(recipe_);
      return derived && *derived == field;
    } catch (const InputError&) {
      return false;
    }
  }
  void line(std::string_view name, const std::string& value) {
    out_ << fmt::format("{:{}}{}: {}\n", "", indent_, name, value);
  }
  const Recipe& recipe_;
  YamlKeys keys_;
  std::string_view outer_;  // the top-level section being written
  std::ostringstream out_;
  int indent_ = 0;
};

}  // namespace

std::string to_yaml(const Recipe& r, YamlKeys keys) {
  Writer w(r, keys);
  recipe_detail::visit(w, r);
  return w.text();
}

}  // namespace tmt
