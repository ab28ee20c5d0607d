// Reading and writing the safetensors format (https://github.com/huggingface/safetensors): an
// 8-byte little-endian header length, a JSON header (padded with spaces to 8 bytes) naming each
// tensor's dtype, shape and byte range, then the raw data. Files are written atomically and
// checked strictly on read: every problem is a kiln::Error naming the key or the byte offset.
//   kiln::save_safetensors("w.safetensors", {{"weight", w}}, {{"format", "pt"}});
//   auto file = kiln::load_safetensors("w.safetensors");
//   kiln::Tensor w2 = file.tensors.at("weight");
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace kiln {

struct SafetensorsData {
  std::map<std::string, Tensor> tensors;        // on the CPU, contiguous
  std::map<std::string, std::string> metadata;  // the "__metadata__" entry
};

// Writes every tensor (any device, any layout) and the metadata; the file appears whole or not at
// all. Names may not be empty or "__metadata__".
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsData load_safetensors(const std::string& path);

// The same format in memory; `source` names the bytes in error messages.
std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
SafetensorsData parse_safetensors(const std::string& bytes, const std::string& source = "buffer");

// The format's dtype names: F32 F64 F16 BF16 I32 I64 U8 BOOL.
std::string safetensors_dtype_name(DType dtype);

}  // namespace kiln
