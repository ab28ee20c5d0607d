// JSON that came from a file: a parser that refuses deep nesting and duplicate keys, and JsonIn, a
// checked view of the result whose accessors name the JSON path of a value that is missing or of
// the wrong type or range. Every reader of untrusted JSON (checkpoints, sharded indexes, optimizer
// and scheduler state) goes through them instead of nlohmann's bare get<T>(), so malformed input
// is one kiln::Error and never a nlohmann exception, a crash or a silent conversion.
//   auto j = kiln::detail::parse_json(text, "load_checkpoint c.safetensors: kiln.state");
//   kiln::detail::JsonIn in(j, "load_checkpoint c.safetensors: kiln.state");
//   int64_t epoch = in["epoch"]["value"].as_int(0);
//   // load_checkpoint c.safetensors: kiln.state: $.epoch.value must be an integer >= 0, got -3
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::detail {

// Deeper nesting than this is refused: kiln's own files nest four or five levels.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`; a syntax error, a number out of range, nesting deeper than max_depth or a key
// repeated within one object is a kiln::Error starting with `source` that says where. When the
// text lies in a file at byte_offset, syntax errors name the file's byte offset.
nlohmann::json parse_json(std::string_view text, const std::string& source, int max_depth = kMaxJsonDepth,
                          size_t byte_offset = 0);

// "$.a.b[3]" style paths; keys that are not plain identifiers are quoted: $["model.fc1"].
std::string json_path_member(const std::string& path, std::string_view key);

class JsonIn {
 public:
  // `source` starts every message; `hint` (what to do) ends it.
  JsonIn(const nlohmann::json& j, std::string source, std::string hint = {});

  // A member that must exist (an object is required), an element that must exist (an array is
  // required).
  JsonIn operator[](std::string_view key) const;
  JsonIn operator[](size_t index) const;
  // A member that may be absent (an object is required).
  std::optional<JsonIn> find(std::string_view key) const;
  bool has(std::string_view key) const;

  bool is_object() const { return j_->is_object(); }
  bool is_array() const { return j_->is_array(); }
  bool is_null() const { return j_->is_null(); }
  // Checked kinds: these return the view itself.
  const JsonIn& object() const;
  const JsonIn& array(size_t max_size = std::numeric_limits<size_t>::max()) const;
  // The elements of an array (at most max_size) or the members of an object, in order.
  std::vector<JsonIn> elements(size_t max_size = std::numeric_limits<size_t>::max()) const;
  std::vector<std::pair<std::string, JsonIn>> members() const;
  size_t size() const;  // of an array or object

  // An integer in [lo, hi]; a float is taken only when it is integral (1e30 is out of range).
  int64_t as_int(int64_t lo = std::numeric_limits<int64_t>::min(),
                 int64_t hi = std::numeric_limits<int64_t>::max()) const;
  // An index below `bound`.
  size_t as_index(size_t bound) const;
  size_t as_size(size_t hi = size_t(std::numeric_limits<int64_t>::max())) const;
  double as_double() const;  // any number
  bool as_bool() const;
  std::string as_string() const;
  std::vector<double> as_doubles(size_t max_size = std::numeric_limits<size_t>::max()) const;
  std::vector<int64_t> as_ints(int64_t lo = std::numeric_limits<int64_t>::min(),
                               int64_t hi = std::numeric_limits<int64_t>::max()) const;

  const nlohmann::json& json() const { return *j_; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return ctx_->source; }
  // Throws "<source>: <path> <what>, got <the value>; <hint>".
  [[noreturn]] void fail(const std::string& what) const;

 private:
  struct Context {
    std::string source, hint;
  };
  JsonIn(const nlohmann::json* j, std::shared_ptr<const Context> ctx, std::string path)
      : j_(j), ctx_(std::move(ctx)), path_(std::move(path)) {}
  const nlohmann::json* j_;
  std::shared_ptr<const Context> ctx_;
  std::string path_;
};

// j.dump(), with a string that is not UTF-8 (JSON holds only UTF-8) a kiln::Error starting with
// `what` instead of nlohmann's type_error.
std::string dump_json(const nlohmann::json& j, const std::string& what);

// A short description of a JSON value for messages: its type and, cut to a few dozen
// characters, its text.
std::string json_brief(const nlohmann::json& j);
// The value's JSON text alone, cut the same way ("\"AdamW\"").
std::string json_text(const nlohmann::json& j);

}  // namespace kiln::detail
