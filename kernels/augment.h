// The recipe's image augmentation as one pass from uint8 images to a normalised float batch:
// fixed zero padding (Pad), RandomHorizontalFlip, RandomCrop with zero padding, ToTensor (/255)
// and Normalize, for batch entry b taken from image indices[b]. The random choices of entry b come
// from Philox(seed, offset + b), so the CPU and CUDA backends (which both use this header) build
// bit-identical batches, and a batch depends only on its seed, offset and indices.
//   AugmentParams p{...};  backend.augment_images(p, out, out_labels, images, labels, indices);
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/philox.h"

namespace kiln::kernels {

constexpr int kAugmentMaxChannels = 4;

struct AugmentParams {
  int64_t batch = 0;                         // entries to build
  int64_t channels = 0, h_in = 0, w_in = 0;  // source images uint8 [N, channels, h_in, w_in]
  int64_t h_out = 0, w_out = 0;
  int64_t pad = 0;           // zero border added to the source first (torchvision's Pad)
  int64_t crop_padding = 0;  // RandomCrop's zero padding around the padded image
  bool random_flip = false;  // each entry flipped left-right with probability 1/2
  bool random_crop = false;  // else the crop is centred
  // ToTensor + Normalize folded into one fused multiply-add per pixel, the same on every
  // device: out = fma(byte, scale, shift), scale = 1 / (255 std), shift = -mean / std.
  float scale[kAugmentMaxChannels] = {};
  float shift[kAugmentMaxChannels] = {};
  uint64_t seed = 0, offset = 0;
};

// Entry b's flip and crop corner in the canvas (source + pad + crop_padding on every side).
struct AugmentChoice {
  bool flip;
  int64_t dy, dx;
};

KILN_HD AugmentChoice augment_choice(const AugmentParams& p, int64_t b) {
  const int64_t range_y = p.h_in + 2 * (p.pad + p.crop_padding) - p.h_out + 1;
  const int64_t range_x = p.w_in + 2 * (p.pad + p.crop_padding) - p.w_out + 1;
  if (!p.random_flip && !p.random_crop) return {false, (range_y - 1) / 2, (range_x - 1) / 2};
  const Philox4 r = philox4x32_10(p.seed, p.offset + uint64_t(b));
  AugmentChoice c{p.random_flip && (r.v[0] & 1u), (range_y - 1) / 2, (range_x - 1) / 2};
  if (p.random_crop) {
    c.dy = int64_t(r.v[1] % uint32_t(range_y));
    c.dx = int64_t(r.v[2] % uint32_t(range_x));
  }
  return c;
}

// Output pixel (ch, y, x) of an entry whose source image starts at `img`.
KILN_HD float augment_pixel(const AugmentParams& p, const uint8_t* img, const AugmentChoice& c, int64_t ch, int64_t y,
                            int64_t x) {
  const int64_t border = p.pad + p.crop_padding;
  const int64_t r = y + c.dy - border;
  int64_t col = x + c.dx - border;  // in the unflipped padded image, shifted to the source's origin
  // Flipping the padded image maps column j to (w_in + 2 pad - 1 - j); in source coordinates
  // (j = col + pad) that is w_in - 1 - col.
  if (c.flip) col = p.w_in - 1 - col;
  float v = 0.0f;
  if (r >= 0 && r < p.h_in && col >= 0 && col < p.w_in) v = float(img[(ch * p.h_in + r) * p.w_in + col]);
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(v, p.scale[ch], p.shift[ch]);
#else
  return std::fma(v, p.scale[ch], p.shift[ch]);
#endif
}

}  // namespace kiln::kernels
