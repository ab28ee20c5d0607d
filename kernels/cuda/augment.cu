// Backend::augment_images on the GPU (kernels/augment.h): one thread per output pixel; each reads
// one source byte (the batch's images are gathered by index from the dataset held on the device)
// and writes one float, so a batch of B x 3 x 32 x 32 moves ~3 KB in and 12 KB out per image and
// is bound by the launch at the recipe's sizes. The random choices are recomputed per pixel from
// the entry's Philox counter (ten rounds of integer multiplies), cheaper than a second pass.
#include "kernels/cuda/common.cuh"

namespace kiln::kernels::cuda {
namespace {

__global__ void augment_kernel(AugmentParams p, float* __restrict__ out, int64_t* __restrict__ out_labels,
                               const uint8_t* __restrict__ images, const int64_t* __restrict__ labels,
                               const int64_t* __restrict__ indices, int64_t n) {
  const int64_t plane = p.h_out * p.w_out, per = p.channels * plane, total = p.batch * per;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t b = i / per, rest = i % per, ch = rest / plane, y = (rest % plane) / p.w_out, x = rest % p.w_out;
    const int64_t k = indices[b];
    const bool valid = k >= 0 && k < n;
    if (rest == 0) out_labels[b] = valid ? labels[k] : -1;
    if (!valid) {
      out[i] = 0.0f;
      continue;
    }
    const AugmentChoice c = augment_choice(p, b);
    out[i] = augment_pixel(p, images + k * p.channels * p.h_in * p.w_in, c, ch, y, x);
  }
}

}  // namespace

void CudaBackend::augment_images(const AugmentParams& p, const View& out, const View& out_labels, const View& images,
                                 const View& labels, const View& indices) {
  KILN_CHECK(p.channels > 0 && p.channels <= kAugmentMaxChannels, "augment_images: ", p.channels, " channels; at most ",
             kAugmentMaxChannels, " are supported");
  const int64_t total = p.batch * p.channels * p.h_out * p.w_out;
  if (!total) return;
  augment_kernel<<<grid_for(total), kThreads, 0, current_stream()>>>(
      p, out.ptr<float>(), out_labels.ptr<int64_t>(), images.ptr<const uint8_t>(), labels.ptr<const int64_t>(),
      indices.ptr<const int64_t>(), images.sizes[0]);
  KILN_LAUNCH_CHECK("augment_images");
}

}  // namespace kiln::kernels::cuda
