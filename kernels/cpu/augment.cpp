// Backend::augment_images on host memory: the CPU side of kernels/augment.h, one image per
// iteration of a loop over kiln's CPU threads.
#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels {

void Backend::augment_images(const AugmentParams& p, const View& out, const View& out_labels, const View& images,
                             const View& labels, const View& indices) {
  KILN_CHECK(p.channels > 0 && p.channels <= kAugmentMaxChannels, "augment_images: ", p.channels, " channels; at most ",
             kAugmentMaxChannels, " are supported");
  const int64_t n = images.sizes[0];
  const auto* src = images.ptr<const uint8_t>();
  const auto* lab = labels.ptr<const int64_t>();
  const auto* idx = indices.ptr<const int64_t>();
  for (int64_t b = 0; b < p.batch; ++b)
    KILN_CHECK(idx[b] >= 0 && idx[b] < n, "augment_images: index ", idx[b], " of entry ", b,
               " is outside the dataset's ", n, " images");
  float* o = out.ptr<float>();
  int64_t* ol = out_labels.ptr<int64_t>();
  const int64_t plane = p.h_out * p.w_out, image = p.channels * p.h_in * p.w_in;
  cpu::parallel_for(0, p.batch, cpu::max_threads(), [&](int64_t b) {
    const AugmentChoice c = augment_choice(p, b);
    const uint8_t* img = src + idx[b] * image;
    float* ob = o + b * p.channels * plane;
    for (int64_t ch = 0; ch < p.channels; ++ch)
      for (int64_t y = 0; y < p.h_out; ++y)
        for (int64_t x = 0; x < p.w_out; ++x) ob[(ch * p.h_out + y) * p.w_out + x] = augment_pixel(p, img, c, ch, y, x);
    ol[b] = lab[idx[b]];
  });
}

}  // namespace kiln::kernels
