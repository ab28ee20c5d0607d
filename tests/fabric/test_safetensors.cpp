// safetensors: round trips for every dtype, the format's layout read back by an independent parser,
// and corrupt or truncated files rejected with errors that name the key or byte offset.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fabric/safetensors.h"
#include "helpers.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::map<std::string, Tensor> all_dtypes() {
  std::map<std::string, Tensor> m;
  m["f32"] = tensor(std::vector<float>{1.5f, -2.25f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  m["f64"] = tensor(std::vector<double>{1e-300, 2.5}, {2});
  m["f16"] = tensor(std::vector<double>{0.5, -1.0, 65504.0}, {3}).to(DType::f16);
  m["bf16"] = tensor(std::vector<double>{0.5, -3.0}, {1, 2}).to(DType::bf16);
  m["i32"] = tensor(std::vector<int32_t>{-7, 8}, {2});
  m["i64"] = tensor(std::vector<int64_t>{int64_t(1) << 40}, {});
  m["u8"] = tensor(std::vector<uint8_t>{0, 255, 7}, {3});
  m["bool"] = tensor(std::vector<bool>{true, false}, {2});
  m["empty"] = zeros({0, 4});
  return m;
}

std::string error_of(const std::string& bytes) {
  try {
    parse_safetensors(bytes, "x.safetensors");
  } catch (const Error& e) { return e.what(); }
  return "";
}

// A file with the given header JSON (padded) and data bytes.
std::string make_file(const std::string& json, const std::string& data) {
  std::string h = json;
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t n = h.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips through a file with metadata") {
  auto dir = temp_dir("st_roundtrip");
  auto src = all_dtypes();
  src["view"] = arange(12.0, {.dtype = DType::f32}).view({3, 4}).t();  // non-contiguous
  save_safetensors((dir / "a.safetensors").string(), src, {{"format", "pt"}, {"epoch", "3"}});
  auto got = load_safetensors((dir / "a.safetensors").string());
  CHECK(got.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"epoch", "3"}});
  REQUIRE(got.tensors.size() == src.size());
  for (auto& [k, t] : src) {
    INFO(k);
    const Tensor& g = got.tensors.at(k);
    CHECK(g.dtype() == t.dtype());
    CHECK(g.sizes() == t.sizes());
    CHECK(g.to_vector<double>() == t.to_vector<double>());
  }
  // No temporary file is left behind.
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: the layout follows the format, read by an independent parser") {
  auto bytes = serialize_safetensors(all_dtypes(), {{"k", "v"}});
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(header["__metadata__"]["k"] == "v");
  CHECK(header["f32"]["dtype"] == "F32");
  CHECK(header["bf16"]["dtype"] == "BF16");
  CHECK(header["bool"]["dtype"] == "BOOL");
  CHECK(header["f32"]["shape"] == nlohmann::json::array({2, 3}));
  size_t b = header["f32"]["data_offsets"][0], e = header["f32"]["data_offsets"][1];
  REQUIRE(e - b == 24);
  float v[6];
  std::memcpy(v, bytes.data() + 8 + n + b, 24);
  CHECK(v[0] == 1.5f);
  CHECK(v[1] == -2.25f);
  uint16_t bf;
  size_t bb = header["bf16"]["data_offsets"][0];
  std::memcpy(&bf, bytes.data() + 8 + n + bb + 2, 2);
  CHECK(bf == 0xC040);  // -3.0 in bfloat16
}

TEST_CASE("safetensors: corrupt and truncated files are errors naming the key or offset") {
  std::string good = serialize_safetensors({{"w", ones({2, 2})}});
  CHECK(error_of(good.substr(0, 5)).find("truncated") != std::string::npos);
  CHECK(error_of(good.substr(0, good.size() - 3)).find("'w'") != std::string::npos);

  std::string huge = good;
  uint64_t big = uint64_t(1) << 40;
  std::memcpy(huge.data(), &big, 8);
  CHECK(error_of(huge).find("byte offset 0") != std::string::npos);
  std::string past = good;
  uint64_t over = good.size();
  std::memcpy(past.data(), &over, 8);
  CHECK(error_of(past).find("past the end") != std::string::npos);

  CHECK(error_of(make_file("{\"w\": [1,", "")).find("invalid JSON near byte offset") != std::string::npos);
  CHECK(error_of(make_file("[1]", "")).find("not a JSON object") != std::string::npos);
  std::string d16(16, '\0');
  CHECK(error_of(make_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", d16)).find("needs 16") !=
        std::string::npos);
  CHECK(error_of(make_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,32]}})", d16)).find("past the end") !=
        std::string::npos);
  CHECK(
      error_of(make_file(R"({"w":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}})", d16)).find("'w' has dtype I8") !=
      std::string::npos);
  CHECK(error_of(make_file(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", d16)).find("negative") !=
        std::string::npos);
  CHECK(error_of(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                              "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                           d16))
            .find("overlap") != std::string::npos);
  CHECK(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d16)).find("unaccounted") !=
        std::string::npos);
  CHECK(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", d16)).find("'a'") != std::string::npos);
  CHECK(error_of(make_file(R"({"__metadata__":{"x":1}})", "")).find("'x'") != std::string::npos);
  CHECK_THROWS_AS(load_safetensors("/nonexistent/x.safetensors"), Error);
}

TEST_CASE("safetensors: a failed save leaves the previous file intact") {
  auto dir = temp_dir("st_atomic");
  auto path = (dir / "c.safetensors").string();
  save_safetensors(path, {{"w", ones({3})}});
  CHECK_THROWS_AS(save_safetensors(path, {{"w", ones({3})}, {"__metadata__", ones({1})}}), Error);
  CHECK(load_safetensors(path).tensors.at("w").to_vector<double>() == std::vector<double>{1, 1, 1});
  CHECK_THROWS_AS(save_safetensors((dir / "missing" / "x.safetensors").string(), {}), Error);
  fs::remove_all(dir);
}
