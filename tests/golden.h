// Reads the float64/int64 safetensors files of tests/golden (PyTorch's reference values).
#pragma once

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "helpers.h"

namespace kiln::test {

class Golden {
 public:
  explicit Golden(const std::string& name) {
    std::string path = golden_dir() + "/" + name;
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot open golden file " << path << " (set KILN_GOLDEN_DIR)");
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    f.read(header.data(), std::streamsize(n));
    bytes_.assign(std::istreambuf_iterator<char>(f), {});
    json_ = nlohmann::json::parse(header);
  }

  bool has(const std::string& key) const { return json_.contains(key); }

  // The entries whose names start with prefix (in name order).
  std::vector<std::string> keys(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : json_.items())
      if (k.rfind(prefix, 0) == 0) out.push_back(k);
    return out;
  }

  Tensor get(const std::string& key) const {
    REQUIRE_MESSAGE(json_.contains(key), "golden entry " << key << " missing");
    const auto& e = json_[key];
    Shape shape = e["shape"].get<Shape>();
    size_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    std::string dt = e["dtype"];
    DType dtype = dt == "F64" ? DType::f64 : dt == "I64" ? DType::i64 : DType::f32;
    REQUIRE(end - begin == size_t(detail_numel(shape)) * element_size(dtype));
    return from_buffer(bytes_.data() + begin, shape, dtype);
  }

 private:
  static int64_t detail_numel(const Shape& s) {
    int64_t n = 1;
    for (auto v : s) n *= v;
    return n;
  }
  nlohmann::json json_;
  std::vector<char> bytes_;
};

}  // namespace kiln::test
