// The parse callback tracks the path of the value being read, so a duplicate key or a nesting
// limit names where it is; the limit stops the parser before anything recursive (dump, copy,
// comparison) meets a document a hostile file nested a million levels deep.
#include "core/json.h"

#include <cctype>
#include <cmath>
#include <set>

#include "core/error.h"

namespace kiln::detail {
namespace {

using nlohmann::json;

bool plain_identifier(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  for (char c : key)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

// The parser's position: one frame per open object or array.
struct Frame {
  bool object = false;
  std::set<std::string> keys;
  std::optional<std::string> key;  // the member being read (objects)
  size_t index = 0;                // elements begun so far (arrays)
};

std::string frames_path(const std::vector<Frame>& frames) {
  std::string path = "$";
  for (const auto& f : frames) {
    if (f.object) {
      if (f.key) path = json_path_member(path, *f.key);
    } else if (f.index > 0) {
      path += "[" + std::to_string(f.index - 1) + "]";
    }
    if (path.size() > 200) return path.substr(0, 200) + "...";
  }
  return path;
}

std::string quoted(std::string_view s, size_t max = 60) {
  std::string out = json(std::string(s.substr(0, max))).dump();
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace

std::string json_path_member(const std::string& path, std::string_view key) {
  if (plain_identifier(key)) return path + "." + std::string(key);
  return path + "[" + quoted(key) + "]";
}

std::string json_text(const nlohmann::json& j) {
  std::string text;
  try {
    // Values held by a JsonIn come from parse_json, so their depth is bounded.
    text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const json::exception&) { text = "?"; }
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

std::string json_brief(const nlohmann::json& j) {
  const std::string text = json_text(j);
  const char* type = j.is_number_integer() ? "integer" : j.is_number_float() ? "number" : j.type_name();
  if (j.is_object() || j.is_array() || j.is_null()) return std::string(j.type_name()) + " " + text;
  return std::string(type) + " " + text;
}

nlohmann::json parse_json(std::string_view text, const std::string& source, int max_depth, size_t byte_offset) {
  std::vector<Frame> frames;
  auto begin_value = [&] {
    if (!frames.empty() && !frames.back().object) ++frames.back().index;
  };
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        begin_value();
        if (depth >= max_depth)
          fail(source, ": JSON nested deeper than ", max_depth, " levels at ", frames_path(frames),
               "; the file is corrupt or was not written by kiln");
        frames.emplace_back();
        frames.back().object = event == json::parse_event_t::object_start;
        break;
      case json::parse_event_t::key: {
        Frame& f = frames.back();
        std::string key = parsed.get<std::string>();
        if (!f.keys.insert(key).second) {
          f.key = key;
          fail(source, ": duplicate key ", quoted(key), " at ", frames_path(frames),
               "; each key may appear once (which one is meant is ambiguous)");
        }
        f.key = std::move(key);
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case json::parse_event_t::value: begin_value(); break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::parse_error& e) {
    if (byte_offset) fail(source, ": invalid JSON near byte offset ", byte_offset + e.byte, ": ", e.what());
    fail(source, ": invalid JSON near character ", e.byte, " of ", text.size(), ": ", e.what());
  } catch (const json::exception& e) {  // numbers out of range, invalid UTF-8 in keys, ...
    fail(source, ": invalid JSON: ", e.what());
  }
}

std::string dump_json(const nlohmann::json& j, const std::string& what) {
  try {
    return j.dump();
  } catch (const json::type_error& e) {
    fail(what, ": a name or value is not valid UTF-8 text (", e.what(),
         "); JSON, and so this file, "
         "holds UTF-8 only: pass names, paths and strings as UTF-8");
  }
}

// ------------------------------------------------------------------------------------ JsonIn

JsonIn::JsonIn(const nlohmann::json& j, std::string source, std::string hint)
    : j_(&j), ctx_(std::make_shared<Context>(Context{std::move(source), std::move(hint)})), path_("$") {}

void JsonIn::fail(const std::string& what) const {
  kiln::fail(ctx_->source, ": ", path_, " ", what, ", got ", json_brief(*j_), ctx_->hint.empty() ? "" : "; ",
             ctx_->hint);
}

const JsonIn& JsonIn::object() const {
  if (!j_->is_object()) fail("must be a JSON object");
  return *this;
}

const JsonIn& JsonIn::array(size_t max_size) const {
  if (!j_->is_array()) fail("must be a JSON array");
  if (j_->size() > max_size)
    fail("may hold at most " + std::to_string(max_size) + " elements (it holds " + std::to_string(j_->size()) + ")");
  return *this;
}

JsonIn JsonIn::operator[](std::string_view key) const {
  object();
  auto it = j_->find(key);
  if (it == j_->end()) fail("has no member " + quoted(key));
  return JsonIn(&*it, ctx_, json_path_member(path_, key));
}

JsonIn JsonIn::operator[](size_t index) const {
  array();
  if (index >= j_->size())
    fail("has no element " + std::to_string(index) + " (it holds " + std::to_string(j_->size()) + ")");
  return JsonIn(&(*j_)[index], ctx_, path_ + "[" + std::to_string(index) + "]");
}

std::optional<JsonIn> JsonIn::find(std::string_view key) const {
  object();
  auto it = j_->find(key);
  if (it == j_->end()) return std::nullopt;
  return JsonIn(&*it, ctx_, json_path_member(path_, key));
}

bool JsonIn::has(std::string_view key) const { return find(key).has_value(); }

size_t JsonIn::size() const {
  if (!j_->is_array() && !j_->is_object()) fail("must be a JSON array or object");
  return j_->size();
}

std::vector<JsonIn> JsonIn::elements(size_t max_size) const {
  array(max_size);
  std::vector<JsonIn> out;
  out.reserve(j_->size());
  for (size_t i = 0; i < j_->size(); ++i) out.push_back(JsonIn(&(*j_)[i], ctx_, path_ + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<std::pair<std::string, JsonIn>> JsonIn::members() const {
  object();
  std::vector<std::pair<std::string, JsonIn>> out;
  for (auto it = j_->begin(); it != j_->end(); ++it)
    out.emplace_back(it.key(), JsonIn(&*it, ctx_, json_path_member(path_, it.key())));
  return out;
}

int64_t JsonIn::as_int(int64_t lo, int64_t hi) const {
  auto range = [&] {
    constexpr int64_t min = std::numeric_limits<int64_t>::min(), max = std::numeric_limits<int64_t>::max();
    if (lo == min && hi == max) return std::string("must be an integer");
    if (hi == max) return "must be an integer >= " + std::to_string(lo);
    if (lo == min) return "must be an integer <= " + std::to_string(hi);
    return "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  };
  int64_t v = 0;
  if (j_->is_number_unsigned()) {
    uint64_t u = j_->get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail(range());
    v = int64_t(u);
  } else if (j_->is_number_integer()) {
    v = j_->get<int64_t>();
  } else if (j_->is_number_float()) {
    double d = j_->get<double>();
    // 2^63 is the first double past int64's range; -2^63 is its least value.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != std::trunc(d)) fail(range());
    v = int64_t(d);
  } else {
    fail(range());
  }
  if (v < lo || v > hi) fail(range());
  return v;
}

size_t JsonIn::as_index(size_t bound) const {
  if (bound == 0) fail("must be an index, but there is nothing to index");
  return size_t(as_int(0, int64_t(std::min<size_t>(bound - 1, size_t(std::numeric_limits<int64_t>::max())))));
}

size_t JsonIn::as_size(size_t hi) const {
  return size_t(as_int(0, int64_t(std::min<size_t>(hi, size_t(std::numeric_limits<int64_t>::max())))));
}

double JsonIn::as_double() const {
  if (!j_->is_number()) fail("must be a number");
  return j_->get<double>();
}

bool JsonIn::as_bool() const {
  if (!j_->is_boolean()) fail("must be true or false");
  return j_->get<bool>();
}

std::string JsonIn::as_string() const {
  if (!j_->is_string()) fail("must be a string");
  return j_->get<std::string>();
}

std::vector<double> JsonIn::as_doubles(size_t max_size) const {
  std::vector<double> out;
  for (const auto& e : elements(max_size)) out.push_back(e.as_double());
  return out;
}

std::vector<int64_t> JsonIn::as_ints(int64_t lo, int64_t hi) const {
  std::vector<int64_t> out;
  for (const auto& e : elements()) out.push_back(e.as_int(lo, hi));
  return out;
}

}  // namespace kiln::detail
