// Element types of kiln tensors and the two 16-bit float types kiln stores on the CPU.
//   kiln::DType::bf16, kiln::element_size(DType::f16) == 2, kiln::dtype_name(DType::i64) == "int64"
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string_view>

namespace kiln {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8, boolean };

// IEEE binary16, converted through float (round to nearest even).
struct Half {
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(from_float(f)) {}  // NOLINT: implicit like a built-in float type
  operator float() const { return to_float(bits); }
  static uint16_t from_float(float f);
  static float to_float(uint16_t h);
};

// bfloat16: the upper half of a float32, rounded to nearest even; NaN stays NaN.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(from_float(f)) {}  // NOLINT
  operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

size_t element_size(DType t);
std::string_view dtype_name(DType t);  // PyTorch's names: float32, bfloat16, int64, bool, ...
bool is_floating(DType t);
bool is_integral(DType t);              // integers and bool
DType promote_types(DType a, DType b);  // PyTorch's promotion lattice
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// The C++ type stored for each dtype.
template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<Half> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<BFloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::boolean;
};
template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace kiln

// Calls F with a value of the C++ type that stores dtype T: KILN_DISPATCH(t, "op", [&](auto tag) {
//   using scalar_t = decltype(tag); ... })
#define KILN_DISPATCH_CASE(DT, CT, ...) \
  case ::kiln::DType::DT:               \
    return __VA_ARGS__(CT{});
#define KILN_DISPATCH_ALL(dtype, opname, ...)                 \
  [&] {                                                       \
    switch (dtype) {                                          \
      KILN_DISPATCH_CASE(f32, float, __VA_ARGS__)             \
      KILN_DISPATCH_CASE(f64, double, __VA_ARGS__)            \
      KILN_DISPATCH_CASE(f16, ::kiln::Half, __VA_ARGS__)      \
      KILN_DISPATCH_CASE(bf16, ::kiln::BFloat16, __VA_ARGS__) \
      KILN_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)           \
      KILN_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)           \
      KILN_DISPATCH_CASE(u8, uint8_t, __VA_ARGS__)            \
      KILN_DISPATCH_CASE(boolean, bool, __VA_ARGS__)          \
    }                                                         \
    ::kiln::fail(opname, ": unsupported dtype ", dtype);      \
  }()
#define KILN_DISPATCH_FLOAT(dtype, opname, ...)                              \
  [&] {                                                                      \
    switch (dtype) {                                                         \
      KILN_DISPATCH_CASE(f32, float, __VA_ARGS__)                            \
      KILN_DISPATCH_CASE(f64, double, __VA_ARGS__)                           \
      KILN_DISPATCH_CASE(f16, ::kiln::Half, __VA_ARGS__)                     \
      KILN_DISPATCH_CASE(bf16, ::kiln::BFloat16, __VA_ARGS__)                \
      default: break;                                                        \
    }                                                                        \
    ::kiln::fail(opname, ": expected a floating-point tensor, got ", dtype); \
  }()
