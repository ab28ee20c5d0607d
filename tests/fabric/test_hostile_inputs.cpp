// Hostile inputs: every crafted file of tests/hostile (cases.json says which reader and which
// message) and the inputs too big or too special to commit (gzip bombs, huge sparse files,
// FIFOs, directories, /dev/zero, nesting a hundred thousand deep) end in a kiln::Error that
// says what is wrong; none aborts, crashes, hangs or escapes as another exception.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <typeinfo>

#include "core/json.h"
#include "core/parse.h"
#include "data/data.h"
#include "fabric/checkpoint.h"
#include "fabric/safetensors.h"
#include "helpers.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path hostile_dir() {
  const char* root = std::getenv("KILN_SOURCE_ROOT");
  return fs::path(root ? root : ".") / "tests" / "hostile";
}

fs::path scratch(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_hostile_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The state the crafted checkpoints were made for: Linear(2, 2), SGD with momentum, StepLR,
// a GradScaler and an epoch.
struct Target {
  std::shared_ptr<nn::Linear> model = std::make_shared<nn::Linear>(2, 2);
  std::shared_ptr<optim::SGD> opt =
      std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  std::shared_ptr<optim::StepLR> sched = std::make_shared<optim::StepLR>(*opt, 2, 0.5);
  std::shared_ptr<optim::GradScaler> scaler = std::make_shared<optim::GradScaler>();
  State state{{"model", model}, {"optimizer", opt}, {"scheduler", sched}, {"scaler", scaler}, {"epoch", int64_t(0)}};
};

// Runs a reader on `path`: "" when it succeeds, the message of its kiln::Error otherwise. Any
// other exception fails the test, naming its type.
std::string outcome(const std::string& loader, const std::string& path) {
  try {
    if (loader == "safetensors") {
      load_safetensors(path);
    } else if (loader == "checkpoint") {
      Target t;
      load_checkpoint(path, t.state);
    } else if (loader == "consolidate") {
      consolidate_checkpoint(path, (scratch("consolidate") / "out.safetensors").string());
    } else if (loader == "idx") {
      data::read_idx(path);
    } else if (loader == "cifar") {
      data::read_cifar10_file(path);
    } else if (loader == "tar") {
      data::extract_tar_gz(path, (scratch("tar") / "out").string());
    } else if (loader == "gzip") {
      data::read_file_maybe_gzip(path);
    } else if (loader == "md5") {
      data::md5_file(path);
    } else {
      FAIL("unknown loader " << loader);
    }
  } catch (const Error& e) { return e.what(); } catch (const std::exception& e) {
    FAIL("a " << typeid(e).name() << " escaped the " << loader << " reader on " << path << ": " << e.what());
  }
  return "";
}

void expect_error(const std::string& loader, const std::string& path, const std::string& expect) {
  INFO(loader << " " << path);
  std::string err = outcome(loader, path);
  CHECK_MESSAGE(err.find(expect) != std::string::npos,
                "expected an error containing \"" << expect << "\", got \"" << err << "\"");
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// `members` gzip members, each `chunk` zero bytes deflated once: a cheap file that inflates to
// members * chunk bytes (the shape of a gzip bomb), after an optional plain prefix member.
void write_gzip_bomb(const fs::path& p, const std::string& prefix, size_t chunk, size_t members) {
  auto deflate_gz = [](const std::string& data) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, uLong(data.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = uInt(data.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
  };
  std::string zeros = deflate_gz(std::string(chunk, '\0'));
  std::ofstream f(p, std::ios::binary);
  if (!prefix.empty()) f << deflate_gz(prefix);
  for (size_t i = 0; i < members; ++i) f.write(zeros.data(), std::streamsize(zeros.size()));
}

}  // namespace

TEST_CASE("hostile inputs: each crafted file of tests/hostile is a kiln::Error with its message") {
  const fs::path dir = hostile_dir();
  std::ifstream in(dir / "cases.json");
  REQUIRE_MESSAGE(in.good(), "missing " << (dir / "cases.json").string());
  auto cases = nlohmann::json::parse(in);
  REQUIRE(cases.size() > 50);
  for (const auto& c : cases) {
    const std::string file = (dir / "files" / c["file"].get<std::string>()).string();
    const std::string expect = c["expect"], loader = c["loader"];
    INFO(c["file"].get<std::string>() << " (" << c["why"].get<std::string>() << ")");
    std::string err = outcome(loader, file);
    if (expect.empty())
      CHECK_MESSAGE(err.empty(), "the control case failed: " << err);
    else
      CHECK_MESSAGE(err.find(expect) != std::string::npos, "expected \"" << expect << "\", got \"" << err << "\"");
  }
}

TEST_CASE("hostile inputs: the crafted controls load with their values") {
  const fs::path dir = hostile_dir() / "files";
  for (const char* f : {"valid.safetensors", "sharded_valid/last.safetensors"}) {
    INFO(f);
    Target t;
    load_checkpoint((dir / f).string(), t.state);
    CHECK(t.model->weight.to_vector<double>() == std::vector<double>{1, 2, 3, 4});
    CHECK(std::get<int64_t>(t.state["epoch"]) == 3);
    CHECK(t.sched->last_epoch() == 1);
    auto st = t.opt->state_tensors();
    test::check_values(st.at("state.0.momentum_buffer"), {0.1, 0.2, 0.3, 0.4}, 1e-7);
    test::check_values(st.at("state.1.momentum_buffer"), {0.5, 0.6}, 1e-7);
  }
}

TEST_CASE("hostile inputs: what is not a regular file is refused at once, by every reader") {
  auto dir = scratch("special");
  const std::string fifo = (dir / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Nobody writes the FIFO: a reader that opened it blocking would hang here.
  for (const char* loader : {"safetensors", "checkpoint", "consolidate", "idx", "cifar", "tar", "gzip", "md5"}) {
    expect_error(loader, fifo, "is a FIFO (named pipe), not a regular file");
    expect_error(loader, dir.string(), "is a directory");
    expect_error(loader, "/dev/zero", "is a character device, not a regular file");
  }
  CHECK(!is_sharded_checkpoint((dir / "absent").string()));
  CHECK_THROWS_WITH_AS(is_sharded_checkpoint(fifo), doctest::Contains("FIFO"), Error);
  // A checkpoint path under a regular file: the folder cannot exist.
  write_bytes(dir / "plain", "x");
  expect_error("checkpoint", (dir / "plain" / "ck.safetensors").string(), "does not exist");
  CHECK_THROWS_WITH_AS(save_checkpoint((dir / "plain" / "ck.safetensors").string(), {{"x", int64_t(1)}}),
                       doctest::Contains("does not exist"), Error);
  expect_error("safetensors", "", "the path is empty");
  fs::remove_all(dir);
}

TEST_CASE("hostile inputs: gzip bombs and huge declared sizes are refused before they are inflated") {
  auto dir = scratch("bombs");
  // An IDX header declaring 8 GiB, then 64 MiB of zeros in 64 KiB of gzip.
  std::string header{'\0', '\0', '\x08', '\x03', '\0', '\0', '\x20', '\0',
                     '\0', '\0', '\x04', '\0',   '\0', '\0', '\x04', '\0'};
  write_gzip_bomb(dir / "train-images-idx3-ubyte.gz", header, 1 << 20, 64);
  expect_error("idx", (dir / "train-images-idx3-ubyte.gz").string(), "kiln reads from one IDX file");
  // The same inside a Fashion-MNIST folder.
  CHECK_THROWS_WITH_AS(data::FashionMNIST(dir.string(), true), doctest::Contains("kiln reads from one IDX file"),
                       Error);
  // A bomb of zeros where an IDX file belongs: refused at its first four bytes.
  write_gzip_bomb(dir / "zeros.gz", "", 1 << 20, 64);
  expect_error("idx", (dir / "zeros.gz").string(), "element type 0x0");
  // A valid header for 1 MiB followed by 64 MiB of zeros: the extra data is counted, not kept.
  std::string small{'\0', '\0', '\x08', '\x01', '\0', '\x10', '\0', '\0'};
  write_gzip_bomb(dir / "long.gz", small, 1 << 20, 65);
  expect_error("idx", (dir / "long.gz").string(), "(1048576 bytes of data) but the file holds more than");
  // read_file_maybe_gzip stops at its limit instead of growing its buffer to the bomb's size.
  try {
    data::read_file_maybe_gzip((dir / "zeros.gz").string(), 1 << 20);
    FAIL("a 64 MiB bomb was read under a 1 MiB limit");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("inflates to more than 1048576 bytes") != std::string::npos);
  }
  // Sparse files: sizes are checked before anything is read.
  const fs::path big = dir / "big.bin";
  write_bytes(big, "");
  fs::resize_file(big, uint64_t(4) << 30);
  expect_error("cifar", big.string(), "far more than a CIFAR-10 batch file");
  fs::resize_file(big, uint64_t(3073) * 1000000);  // 3 GB of whole records: still not a batch
  expect_error("cifar", big.string(), "far more than a CIFAR-10 batch file");
  fs::remove_all(dir);
}

TEST_CASE("hostile inputs: JSON nested 100,000 deep is refused without recursion") {
  auto dir = scratch("deep");
  std::string deep = std::string(100000, '[') + "1" + std::string(100000, ']');
  std::string json = "{\"__metadata__\":{\"kiln.state\":\"{}\"},\"w\":{\"dtype\":\"F32\",\"shape\":" + deep +
                     ",\"data_offsets\":[0,4]}}";
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t n = json.size();
  std::string file(reinterpret_cast<const char*>(&n), 8);
  file += json + std::string(4, '\0');
  write_bytes(dir / "deep.safetensors", file);
  expect_error("safetensors", (dir / "deep.safetensors").string(), "nested deeper than 64 levels at $.w.shape");
  // Inside kiln.state, a string of the header: the second parse is limited too.
  std::string state = "{\\\"epoch\\\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  json = "{\"__metadata__\":{\"kiln.format_version\":\"1\",\"kiln.state\":\"" + state + "\"}}";
  json.append((8 - json.size() % 8) % 8, ' ');
  n = json.size();
  file.assign(reinterpret_cast<const char*>(&n), 8);
  write_bytes(dir / "deep_state.safetensors", file + json);
  expect_error("checkpoint", (dir / "deep_state.safetensors").string(),
               "kiln.state: JSON nested deeper than 64 levels at $.epoch");
  fs::remove_all(dir);
}

TEST_CASE("hostile inputs: the checked JSON view names the path, the value and the range") {
  auto j =
      detail::parse_json(R"({"a": {"b": [1, "x", 2.5, 1e30, -3, 18446744073709551615]}, "odd key": null})", "test");
  detail::JsonIn in(j, "src", "do this");
  CHECK(in["a"]["b"][0].as_int() == 1);
  CHECK_THROWS_WITH_AS(in["a"]["b"][1].as_int(), "src: $.a.b[1] must be an integer, got string \"x\"; do this", Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"][2].as_int(), doctest::Contains("$.a.b[2] must be an integer, got number 2.5"),
                       Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"][3].as_int(), doctest::Contains("got number 1e+30"), Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"][4].as_int(0, 9), doctest::Contains("must be an integer in [0, 9], got integer -3"),
                       Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"][5].as_int(), doctest::Contains("must be an integer"), Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"][9], doctest::Contains("$.a.b has no element 9 (it holds 6)"), Error);
  CHECK_THROWS_WITH_AS(in["a"]["c"], doctest::Contains("$.a has no member \"c\""), Error);
  CHECK_THROWS_WITH_AS(in["odd key"].as_string(), doctest::Contains("$[\"odd key\"] must be a string, got null"),
                       Error);
  CHECK_THROWS_WITH_AS(in["a"]["b"].array(3), doctest::Contains("may hold at most 3 elements"), Error);
  CHECK_THROWS_WITH_AS(detail::parse_json(R"({"a": {"b": 1, "b": 2}})", "src"),
                       doctest::Contains("duplicate key \"b\" at $.a.b"), Error);
  CHECK_THROWS_WITH_AS(detail::parse_json(R"([[{"x": [1, {"y": 1, "y": 2}]}]])", "src"),
                       doctest::Contains("at $[0][0].x[1].y"), Error);
  CHECK_THROWS_WITH_AS(detail::parse_json("[1, 2", "src"), doctest::Contains("src: invalid JSON near character"),
                       Error);
  CHECK_THROWS_WITH_AS(detail::parse_json("[1e999]", "src"), doctest::Contains("src: invalid JSON"), Error);
  CHECK_NOTHROW(detail::parse_json(std::string(64, '[') + std::string(64, ']'), "src"));
  CHECK_THROWS_AS(detail::parse_json(std::string(65, '[') + std::string(65, ']'), "src"), Error);
}

TEST_CASE("hostile inputs: numbers typed by users are range-checked") {
  CHECK(detail::parse_int("42", "--n", 0, 100) == 42);
  CHECK(detail::parse_int("+7", "--n", 0, 100) == 7);
  CHECK_THROWS_WITH_AS(detail::parse_int("99999999999", "--devices", 1, 4096),
                       "--devices expects an integer in [1, 4096], got '99999999999' (out of range)", Error);
  CHECK_THROWS_WITH_AS(detail::parse_int("99999999999999999999999", "--n", 0, 9), doctest::Contains("out of range"),
                       Error);
  for (const char* bad : {"", " 1", "1 ", "1x", "0x10", "--1", "1e3", "nan"})
    CHECK_THROWS_AS(detail::parse_int(bad, "--n", -100, 100), Error);
  CHECK(detail::parse_double("3e-4", "--lr", 0, 1) == doctest::Approx(3e-4));
  for (const char* bad : {"", "nan", "inf", "-1", "1e400", "0.1x", " 0.1"})
    CHECK_THROWS_AS(detail::parse_double(bad, "--lr", 0, 10), Error);
}

TEST_CASE("hostile inputs: a DataLoader with absurd worker counts is refused") {
  auto ds = std::make_shared<data::TensorDataset>(zeros({4, 2}), zeros({4}, {.dtype = DType::i64}));
  CHECK_THROWS_WITH_AS(data::DataLoader(ds, {.num_workers = 100000}),
                       doctest::Contains("num_workers must be in [0, 1024], got 100000"), Error);
}

TEST_CASE("hostile inputs: names and strings that are not UTF-8 are a kiln::Error when saved") {
  // Found by fuzz_checkpoint: nlohmann's type_error escaped from the header's dump.
  auto dir = scratch("utf8");
  const std::string path = (dir / "c.safetensors").string();
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"w", ones({1})}}, {{"note", "caf\xe9"}}),
                       doctest::Contains("save_safetensors: a name or value is not valid UTF-8"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"w\xff", ones({1})}}), doctest::Contains("not valid UTF-8"), Error);
  const std::string want = "save_checkpoint " + path + ": a name or value is not valid UTF-8";
  CHECK_THROWS_WITH_AS(save_checkpoint(path, {{"tag", std::string("\xbd")}}), doctest::Contains(want.c_str()), Error);
  CHECK(!fs::exists(path));
  fs::remove_all(dir);
}
