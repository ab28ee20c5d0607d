#include "fabric/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/file.h"
#include "core/json.h"
#include "fabric/atomic_file.h"

namespace kiln {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; kiln writes it as the host lays it out");

// The header may not exceed this (the reference implementation's limit).
constexpr uint64_t kMaxHeader = 100u * 1000 * 1000;
// More dimensions than any tensor has; a longer shape is a corrupt header.
constexpr size_t kMaxDims = 64;
// A file is read whole into memory; this only refuses sizes no checkpoint has.
constexpr uint64_t kMaxFile = uint64_t(1) << 40;

const std::pair<DType, const char*> kDTypes[] = {{DType::f32, "F32"},   {DType::f64, "F64"},     {DType::f16, "F16"},
                                                 {DType::bf16, "BF16"}, {DType::i32, "I32"},     {DType::i64, "I64"},
                                                 {DType::u8, "U8"},     {DType::boolean, "BOOL"}};

DType parse_dtype(const std::string& name, const std::string& key, const std::string& source) {
  for (auto& [d, n] : kDTypes)
    if (name == n) return d;
  fail("safetensors ", source, ": tensor '", key, "' has dtype ", name,
       ", which kiln does not support (F32 F64 F16 BF16 I32 I64 U8 BOOL); convert it when saving");
}

struct Prepared {
  std::string header;                                   // length prefix + padded JSON
  std::vector<std::pair<std::string, Tensor>> tensors;  // contiguous CPU tensors in data order
};

Prepared prepare(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata) {
  Prepared p;
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [key, t] : tensors) {
    KILN_CHECK(!key.empty() && key != "__metadata__", "save_safetensors: invalid tensor name '", key,
               "'; use a non-empty name other than __metadata__");
    KILN_CHECK(t.defined(), "save_safetensors: tensor '", key, "' is undefined");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    uint64_t n = uint64_t(c.numel()) * c.element_size();
    header[key] = {
        {"dtype", safetensors_dtype_name(c.dtype())}, {"shape", c.sizes()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    p.tensors.emplace_back(key, c);
  }
  std::string json = detail::dump_json(header, "save_safetensors");
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t len = json.size();
  p.header.assign(reinterpret_cast<const char*>(&len), 8);
  p.header += json;
  return p;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  for (auto& [d, n] : kDTypes)
    if (d == dtype) return n;
  fail("safetensors: unsupported dtype ", dtype);
}

std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Prepared p = prepare(tensors, metadata);
  std::string out = p.header;
  for (auto& [key, t] : p.tensors)
    out.append(static_cast<const char*>(t.raw_data()), size_t(t.numel()) * t.element_size());
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  Prepared p = prepare(tensors, metadata);
  AtomicFile f(path);
  f.write(p.header);
  for (auto& [key, t] : p.tensors)
    if (t.numel()) f.write(t.raw_data(), size_t(t.numel()) * t.element_size());
  f.commit();
}

SafetensorsData parse_safetensors(const std::string& bytes, const std::string& source) {
  const std::string& src = source;
  KILN_CHECK(bytes.size() >= 8, "safetensors ", src, ": truncated, the file is ", bytes.size(),
             " bytes but starts with an 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  KILN_CHECK(n <= kMaxHeader, "safetensors ", src, ": header length ", n,
             " at byte offset 0 exceeds the 100 MB limit; the file is corrupt or not safetensors");
  KILN_CHECK(n <= bytes.size() - 8, "safetensors ", src, ": header length ", n,
             " at byte offset 0 reaches past the end of the file (", bytes.size(),
             " bytes); the file is truncated or corrupt");
  std::string_view text(bytes.data() + 8, n);
  nlohmann::json header =
      detail::parse_json(text, "safetensors " + src + ": JSON header", detail::kMaxJsonDepth, /*byte_offset=*/8);
  KILN_CHECK(header.is_object(), "safetensors ", src, ": the header at byte offset 8 is not a JSON object");

  SafetensorsData out;
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = bytes.size() - data_start;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const auto& e = it.value();
    if (key == "__metadata__") {
      KILN_CHECK(e.is_object(), "safetensors ", src, ": __metadata__ must be a JSON object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        KILN_CHECK(m.value().is_string(), "safetensors ", src, ": __metadata__ entry '", m.key(), "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { fail("safetensors ", src, ": tensor '", key, "': ", what); };
    if (key.empty()) bad("an empty tensor name is not allowed");
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      bad("entry needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) bad("dtype is not a string");
    DType dtype = parse_dtype(e["dtype"].get<std::string>(), key, src);
    const auto& js = e["shape"];
    if (!js.is_array()) bad("shape is not an array");
    if (js.size() > kMaxDims) bad("shape " + js.dump() + " has more than " + std::to_string(kMaxDims) + " dimensions");
    Shape shape;
    // The element count and byte size, checked against overflow: a shape such as
    // [2305843009213693953] must not wrap around to a small byte count.
    // `span` counts zero sizes as one, as strides do: [0, 2^40, 2^40] holds nothing but its
    // strides would still overflow.
    uint64_t numel = 1, span = 1;
    for (const auto& d : js) {
      if (!d.is_number_unsigned()) bad("shape has a negative or non-integer size " + d.dump());
      uint64_t v = d.get<uint64_t>();
      const uint64_t m = std::max<uint64_t>(v, 1);
      if (v > uint64_t(INT64_MAX) || span > uint64_t(INT64_MAX) / m)
        bad("shape " + js.dump() + " has more than 2^63 elements; the header is corrupt");
      span *= m;
      numel *= v;
      shape.push_back(int64_t(v));
    }
    const uint64_t esize = element_size(dtype);
    if (numel > uint64_t(INT64_MAX) / esize)
      bad("shape " + js.dump() + " of " + e["dtype"].get<std::string>() +
          " needs more than 2^63 bytes; the header is corrupt");
    const auto& jo = e["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      bad("data_offsets must be two non-negative integers, got " + jo.dump());
    uint64_t begin = jo[0].get<uint64_t>(), end = jo[1].get<uint64_t>();
    if (begin > end) bad("data_offsets " + jo.dump() + " end before they begin");
    if (end > data_size)
      bad("data_offsets " + jo.dump() + " reach byte offset " +
          (end > UINT64_MAX - data_start ? jo[1].dump() + " + " + std::to_string(data_start)
                                         : std::to_string(data_start + end)) +
          ", past the end of the file (" + std::to_string(bytes.size()) + " bytes); the file is truncated or corrupt");
    uint64_t expect = numel * esize;
    if (end - begin != expect)
      bad("data_offsets " + jo.dump() + " hold " + std::to_string(end - begin) + " bytes but " +
          e["dtype"].get<std::string>() + " " + js.dump() + " needs " + std::to_string(expect));
    ranges.emplace_back(begin, end, key);
    out.tensors[key] = from_buffer(bytes.data() + data_start + begin, shape, dtype);
  }
  // The data must be covered exactly: no overlaps, no holes, nothing after the last tensor.
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (auto& [b, e, key] : ranges) {
    KILN_CHECK(b == pos, "safetensors ", src, ": tensor '", key, "' starts at data offset ", b, " (byte offset ",
               data_start + b, ") but the previous tensor ends at ", pos,
               b < pos ? ": ranges overlap" : ": the data has a hole");
    pos = e;
  }
  KILN_CHECK(pos == data_size, "safetensors ", src, ": the tensors cover ", pos, " bytes of data but the file holds ",
             data_size, " after the header (byte offset ", data_start + pos, " onwards is unaccounted for)");
  return out;
}

SafetensorsData load_safetensors(const std::string& path) {
  auto file = detail::RegularFile::open(path, "load_safetensors");
  return parse_safetensors(file.read_all(kMaxFile), path);
}

}  // namespace kiln
