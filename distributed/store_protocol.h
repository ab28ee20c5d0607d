// PyTorch's TCPStore wire protocol (c10d), as kiln's client and server speak it. Not installed.
//
// A query is one command byte and its fields, no frame length: a u32 (VALIDATE's magic, PING's
// nonce), an i64 (ADD's delta), a u64 count (CHECK, WAIT, MULTI_GET, MULTI_SET) or a string (u64
// length, then the bytes). Integers are little-endian. Replies have no command byte: one byte
// (WAIT, CHECK, CANCEL_WAIT), an i64 (ADD, GETNUMKEYS, DELETE_KEY), a u32 (PING) or strings (GET,
// COMPARE_SET, MULTI_GET). SET, APPEND and MULTI_SET have no reply.
//
// Two dialects: PyTorch up to 2.1 numbers the commands from SET = 0 and starts with no handshake
// (`legacy`); PyTorch 2.2 on puts VALIDATE = 0 first, shifting the others by one, and a client's
// first query must be VALIDATE with the magic number (`current`). kiln adds one command, AUTH
// (a string: the job token, answered by one byte), that only kiln's clients send to kiln's
// server; PyTorch's servers close a connection that sends it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kiln::distributed::detail {

inline constexpr uint32_t kValidateMagic = 0x3C85F7CE;
inline constexpr uint8_t kAuthCode = 0x4B;

enum class Op : uint8_t {
  validate,
  set,
  compare_set,
  get,
  add,
  check,
  wait,
  num_keys,
  watch_key,
  erase,
  append,
  multi_get,
  multi_set,
  cancel_wait,
  ping,
  queue_push,
  queue_pop,
  queue_len,
  auth
};
const char* op_name(Op op);

enum class Dialect : uint8_t { legacy, current };

// The command byte of `op` in `dialect`; nullopt where the dialect has no such command.
std::optional<uint8_t> op_code(Op op, Dialect dialect);
std::optional<Op> op_of(uint8_t code, Dialect dialect);

inline constexpr uint8_t kStopWaiting = 0, kWaitCanceled = 1;  // WAIT, CANCEL_WAIT
inline constexpr uint8_t kReady = 0, kNotReady = 1;            // CHECK
inline constexpr uint8_t kAuthAccepted = 0, kAuthRefused = 1;  // AUTH

// Appends little-endian fields to a query or reply.
inline void put_u8(std::string& b, uint8_t v) { b.push_back(char(v)); }
inline void put_u32(std::string& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
inline void put_u64(std::string& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
inline void put_str(std::string& b, const std::string& s) {
  put_u64(b, s.size());
  b += s;
}
inline uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}
inline uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

}  // namespace kiln::distributed::detail
