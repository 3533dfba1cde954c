// Bitmask NMS on the GPU, 64 boxes per thread block.
//
// Rule (identical to cpu_nms): boxes sorted by descending score; box j is suppressed by a kept box i
// when IoU(i, j) >= thresh, with inclusive-pixel widths (x2 - x1 + 1) and float32 arithmetic.
// Pass 1 (kernel): for every (row block, column block) pair, each thread takes one box i of the row
// block and sets bit k of mask[i][col_block] when box (col_block*64 + k) comes after i and overlaps it.
// Pass 2 (host): walk the boxes in order, OR-ing the masks of kept boxes into a "removed" bitset.
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>
#include "gpu_nms.hpp"

#define CUDA_CHECK(call)                                                                 \
  do {                                                                                   \
    cudaError_t err_ = (call);                                                           \
    if (err_ != cudaSuccess) {                                                           \
      std::snprintf(errbuf, errlen, "%s:%d %s", __FILE__, __LINE__, cudaGetErrorString(err_)); \
      return -1;                                                                         \
    }                                                                                    \
  } while (0)

static const int kThreads = 64;  // bits in unsigned long long

__device__ inline float iou_plus1(const float* a, const float* b) {
  float w = fmaxf(0.0f, fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + 1.0f);
  float h = fmaxf(0.0f, fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + 1.0f);
  float inter = w * h;
  float area_a = (a[2] - a[0] + 1.0f) * (a[3] - a[1] + 1.0f);
  float area_b = (b[2] - b[0] + 1.0f) * (b[3] - b[1] + 1.0f);
  return __fdiv_rn(inter, area_a + area_b - inter);
}

__global__ void nms_mask_kernel(int n, float thresh, const float* boxes, unsigned long long* mask) {
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;  // only boxes after i matter
  const int row_size = min(n - row_block * kThreads, kThreads);
  const int col_size = min(n - col_block * kThreads, kThreads);
  __shared__ float block_boxes[kThreads * 5];
  if (threadIdx.x < col_size) {
    for (int k = 0; k < 5; ++k)
      block_boxes[threadIdx.x * 5 + k] = boxes[(kThreads * col_block + threadIdx.x) * 5 + k];
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int i = kThreads * row_block + threadIdx.x;
    const float* cur = boxes + i * 5;
    unsigned long long bits = 0;
    const int start = (row_block == col_block) ? threadIdx.x + 1 : 0;
    for (int k = start; k < col_size; ++k) {
      if (iou_plus1(cur, block_boxes + k * 5) >= thresh) bits |= 1ULL << k;
    }
    const int col_blocks = (n + kThreads - 1) / kThreads;
    mask[i * col_blocks + col_block] = bits;
  }
}

int gpu_nms_sorted(const float* host_boxes, int n, float thresh, int device_id, int* keep_out,
                   char* errbuf, int errlen) {
  if (n == 0) return 0;
  CUDA_CHECK(cudaSetDevice(device_id));
  const int col_blocks = (n + kThreads - 1) / kThreads;
  float* dev_boxes = nullptr;
  unsigned long long* dev_mask = nullptr;
  CUDA_CHECK(cudaMalloc(&dev_boxes, sizeof(float) * 5 * n));
  CUDA_CHECK(cudaMalloc(&dev_mask, sizeof(unsigned long long) * n * col_blocks));
  CUDA_CHECK(cudaMemcpy(dev_boxes, host_boxes, sizeof(float) * 5 * n, cudaMemcpyHostToDevice));
  // No memset: the kernel writes every word the host pass reads (column blocks >= the row's own block).
  dim3 blocks(col_blocks, col_blocks);
  nms_mask_kernel<<<blocks, kThreads>>>(n, thresh, dev_boxes, dev_mask);
  CUDA_CHECK(cudaGetLastError());
  const size_t words = static_cast<size_t>(n) * col_blocks;
  std::unique_ptr<unsigned long long[]> mask(new unsigned long long[words]);  // left uninitialised
  CUDA_CHECK(cudaMemcpy(mask.get(), dev_mask, sizeof(unsigned long long) * words, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaFree(dev_boxes));
  CUDA_CHECK(cudaFree(dev_mask));
  std::vector<unsigned long long> removed(col_blocks, 0ULL);
  int num_keep = 0;
  for (int i = 0; i < n; ++i) {
    const int blk = i / kThreads, bit = i % kThreads;
    if (removed[blk] & (1ULL << bit)) continue;
    keep_out[num_keep++] = i;
    const unsigned long long* row = mask.get() + static_cast<size_t>(i) * col_blocks;
    for (int j = blk; j < col_blocks; ++j) removed[j] |= row[j];
  }
  return num_keep;
}
