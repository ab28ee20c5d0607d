// MD5 (RFC 1321), a streaming gzip reader on zlib, a ustar/GNU tar reader and external downloads.
// Every file is written under a temporary name and renamed when complete, so an interruption
// never leaves a half-written file under its final name.
#include "data/archive.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

#include "core/error.h"
#include "core/file.h"
#include "data/gz_reader.h"

extern char** environ;

namespace kiln::data {
namespace fs = std::filesystem;
using detail::GzReader;
namespace {

class Md5 {
 public:
  void update(const uint8_t* p, size_t n) {
    length_ += n;
    while (n > 0) {
      size_t take = std::min(n, size_t(64) - used_);
      std::memcpy(block_.data() + used_, p, take);
      used_ += take, p += take, n -= take;
      if (used_ == 64) compress(block_.data()), used_ = 0;
    }
  }
  std::string hex() {
    const uint64_t bits = length_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(bits >> (8 * i));
    update(len, 8);
    std::string out;
    char buf[3];
    for (uint32_t word : state_)
      for (int i = 0; i < 4; ++i)
        std::snprintf(buf, sizeof buf, "%02x", unsigned((word >> (8 * i)) & 0xff)), out += buf;
    return out;
  }

 private:
  static uint32_t rotl(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }
  static const std::array<uint32_t, 64>& sines() {
    // K[i] = floor(|sin(i + 1)| * 2^32), exact in double precision.
    static const auto k = [] {
      std::array<uint32_t, 64> t{};
      for (int i = 0; i < 64; ++i)
        t[size_t(i)] = uint32_t(std::floor(std::fabs(std::sin(double(i + 1))) * 4294967296.0));
      return t;
    }();
    return k;
  }
  void compress(const uint8_t* p) {
    static constexpr int shifts[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};
    uint32_t m[16];
    for (int i = 0; i < 16; ++i)
      m[i] = uint32_t(p[4 * i]) | uint32_t(p[4 * i + 1]) << 8 | uint32_t(p[4 * i + 2]) << 16 |
             uint32_t(p[4 * i + 3]) << 24;
    uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
    for (int i = 0; i < 64; ++i) {
      uint32_t f;
      int g;
      switch (i / 16) {
        case 0: f = (b & c) | (~b & d), g = i; break;
        case 1: f = (d & b) | (~d & c), g = (5 * i + 1) % 16; break;
        case 2: f = b ^ c ^ d, g = (3 * i + 5) % 16; break;
        default: f = c ^ (b | ~d), g = (7 * i) % 16; break;
      }
      f += a + sines()[size_t(i)] + m[g];
      a = d, d = c, c = b;
      b += rotl(f, shifts[i / 16][i % 4]);
    }
    state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
  }
  std::array<uint32_t, 4> state_{0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
  std::array<uint8_t, 64> block_{};
  size_t used_ = 0;
  uint64_t length_ = 0;
};

// Writes to `path`.part, renamed to `path` by commit(); removed if never committed.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), part_(path + ".part"), out_(part_, std::ios::binary) {
    KILN_CHECK(out_.good(), "cannot write ", part_, ": ", std::strerror(errno));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (!committed_) {
      out_.close();
      std::error_code ec;
      fs::remove(part_, ec);
    }
  }
  void write(const void* p, size_t n) {
    out_.write(static_cast<const char*>(p), std::streamsize(n));
    KILN_CHECK(out_.good(), "writing ", part_, " failed (disk full?)");
  }
  void commit() {
    out_.close();
    KILN_CHECK(!out_.fail(), "writing ", part_, " failed (disk full?)");
    std::error_code ec;
    fs::rename(part_, path_, ec);
    KILN_CHECK(!ec, "renaming ", part_, " to ", path_, " failed: ", ec.message());
    committed_ = true;
  }

 private:
  std::string path_, part_;
  std::ofstream out_;
  bool committed_ = false;
};

uint64_t parse_octal(const char* field, size_t width, const std::string& archive, const char* what) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) v = v * 8 + uint64_t(field[i] - '0');
  KILN_CHECK(i == width || field[i] == '\0' || field[i] == ' ', archive, ": malformed tar header (", what,
             " field is not octal); the archive is damaged");
  return v;
}

std::string field_string(const char* field, size_t width) { return std::string(field, strnlen(field, width)); }

// A member name made safe to join below the extraction directory.
fs::path safe_member_path(std::string name, const std::string& archive) {
  while (name.starts_with("./")) name.erase(0, 2);
  fs::path p(name);
  KILN_CHECK(!name.empty() && !p.is_absolute(), archive, ": refusing member '", name, "' (absolute or empty path)");
  for (const auto& part : p)
    KILN_CHECK(part != "..", archive, ": refusing member '", name, "' (it leaves the target directory)");
  return p;
}

// The "path" record of a pax extended header ("<length> path=<name>\n" records), if any. A
// malformed record ends the search: the member then keeps its plain name.
std::string pax_path(const std::string& records) {
  size_t pos = 0;
  while (pos < records.size()) {
    size_t space = records.find(' ', pos);
    if (space == std::string::npos || space == pos || space - pos > 20) break;
    uint64_t len = 0;
    for (size_t i = pos; i < space; ++i) {
      if (records[i] < '0' || records[i] > '9') return {};
      len = len * 10 + uint64_t(records[i] - '0');
    }
    if (len < space - pos + 2 || len > records.size() - pos) break;
    std::string kv = records.substr(space + 1, pos + len - space - 2);  // without the trailing '\n'
    if (kv.starts_with("path=")) return kv.substr(5);
    pos += len;
  }
  return {};
}

void make_dirs(const fs::path& dir, const std::string& archive) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  KILN_CHECK(!ec, archive, ": cannot create folder ", dir.string(), ": ", ec.message());
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

int run_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

std::string md5(std::span<const uint8_t> bytes) {
  Md5 h;
  h.update(bytes.data(), bytes.size());
  return h.hex();
}

std::string md5_file(const std::string& path) {
  auto in = kiln::detail::RegularFile::open(path, "md5_file");
  Md5 h;
  std::vector<uint8_t> buf(1 << 20);
  while (size_t got = in.read(buf.data(), buf.size())) h.update(buf.data(), got);
  return h.hex();
}

bool check_integrity(const std::string& path, const std::string& expected_md5) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::string want = expected_md5;
  for (char& ch : want) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return md5_file(path) == want;
}

std::vector<std::string> extract_tar_gz(const std::string& archive, const std::string& to_dir, uint64_t max_bytes) {
  GzReader in(archive, "extract_tar_gz");
  make_dirs(to_dir, archive);
  std::vector<std::string> written;
  std::string long_name;
  std::vector<char> buf(1 << 20);
  uint64_t extracted = 0;
  for (;;) {
    char h[512];
    size_t got = in.read(h, 512);
    if (got == 0) break;  // archives may end without the two zero blocks
    KILN_CHECK(got == 512, archive, ": truncated tar header; the archive is incomplete");
    if (std::all_of(h, h + 512, [](char c) { return c == 0; })) break;
    uint64_t sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? uint8_t(' ') : uint8_t(h[i]);
    KILN_CHECK(sum == parse_octal(h + 148, 8, archive, "checksum"), archive,
               ": tar header checksum mismatch; the file is not a tar archive or is damaged");
    const uint64_t size = parse_octal(h + 124, 12, archive, "size");
    const char type = h[156];
    std::string name = field_string(h, 100);
    if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345]) name = field_string(h + 345, 155) + "/" + name;
    if (!long_name.empty()) name = std::move(long_name), long_name.clear();
    if (type == 'L' || type == 'x')
      KILN_CHECK(size <= (1u << 20), archive, ": a ", type == 'L' ? "long-name" : "pax", " header of ",
                 kiln::detail::bytes_str(size), " (at most 1 MiB is read); the archive is damaged");
    // What a member declares must fit in what the archive can still hold.
    const uint64_t room = in.max_output() - std::min(in.max_output(), in.position());
    KILN_CHECK(size <= room, archive, ": member '", name, "' declares ", kiln::detail::bytes_str(size),
               " but the archive (", kiln::detail::bytes_str(in.compressed_size()),
               ") cannot hold that much; it is damaged or not a tar archive");

    // Stream the member's content (padded to 512-byte blocks) to `sink`.
    auto consume = [&](auto&& sink) {
      uint64_t left = size;
      while (left > 0) {
        size_t n = size_t(std::min<uint64_t>(left, buf.size()));
        KILN_CHECK(in.read(buf.data(), n) == n, archive, ": truncated member '", name, "'; the archive is incomplete");
        sink(buf.data(), n);
        left -= n;
      }
      size_t pad = size_t((512 - size % 512) % 512);
      KILN_CHECK(in.read(buf.data(), pad) == pad, archive, ": truncated after member '", name, "'");
    };
    if (type == 'L' || type == 'x') {  // GNU long name / pax header: names the next member
      std::string content;
      consume([&](const char* p, size_t n) { content.append(p, n); });
      long_name = type == 'L' ? std::string(content.c_str()) : pax_path(content);
    } else if (type == '0' || type == '\0' || type == '7') {
      extracted += size;
      KILN_CHECK(extracted <= max_bytes, archive, ": extracting it would write more than ",
                 kiln::detail::bytes_str(max_bytes), " (member '", name,
                 "'); pass a larger max_bytes if "
                 "the archive is genuine");
      fs::path target = fs::path(to_dir) / safe_member_path(name, archive);
      make_dirs(target.parent_path(), archive);
      AtomicFile out(target.string());
      consume([&](const char* p, size_t n) { out.write(p, n); });
      out.commit();
      written.push_back(target.string());
    } else if (type == '5') {
      fs::path target = fs::path(to_dir) / safe_member_path(name, archive);
      make_dirs(target, archive);
      consume([](const char*, size_t) {});
    } else {
      consume([](const char*, size_t) {});  // links, devices, global pax headers: not needed
    }
  }
  return written;
}

void download_url(const std::string& url, const std::string& path, const std::string& hint) {
  const std::string part = path + ".part";
  std::vector<std::string> cmd;
  if (std::string curl = find_program("curl"); !curl.empty()) {
    cmd = {curl, "--fail", "--location", "--silent", "--show-error", "--connect-timeout", "20", "--output", part, url};
  } else if (std::string wget = find_program("wget"); !wget.empty()) {
    cmd = {wget, "--quiet", "--timeout=20", "--tries=2", "--output-document=" + part, url};
  } else {
    fail("download_url: cannot download ", url, ": neither curl nor wget is installed. ", hint);
  }
  if (fs::path(path).has_parent_path()) make_dirs(fs::path(path).parent_path(), "download_url");
  int rc = run_program(cmd);
  if (rc != 0) {
    std::error_code ec;
    fs::remove(part, ec);
    fail("download_url: downloading ", url, " with ", fs::path(cmd[0]).filename().string(), " failed (exit code ", rc,
         "; no network?). ", hint);
  }
  std::error_code ec;
  fs::rename(part, path, ec);
  KILN_CHECK(!ec, "download_url: renaming ", part, " to ", path, " failed: ", ec.message());
}

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, uint64_t max_bytes) {
  GzReader in(path, "read_file_maybe_gzip");
  const uint64_t limit = std::min(max_bytes, in.max_output());
  std::vector<uint8_t> out;
  size_t used = 0;
  for (;;) {
    // Grow by doubling, never past the limit (plus one byte, to notice data beyond it).
    uint64_t want = std::min<uint64_t>(std::max<size_t>(out.size() * 2, 1 << 20), limit + 1);
    try {
      out.resize(size_t(want));
    } catch (const std::bad_alloc&) {
      fail("read_file_maybe_gzip: cannot allocate ", kiln::detail::bytes_str(want), " to read ", path,
           " (out of memory)");
    }
    size_t got = in.read(out.data() + used, out.size() - used);
    used += got;
    if (used < out.size()) break;
    KILN_CHECK(used <= limit, "read_file_maybe_gzip: ", path, " inflates to more than ",
               kiln::detail::bytes_str(max_bytes),
               ", the most kiln reads into memory for it (a gzip "
               "bomb, or the wrong file); pass a larger max_bytes if it is genuine");
  }
  out.resize(used);
  return out;
}

}  // namespace kiln::data
