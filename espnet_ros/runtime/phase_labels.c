// Copyright 2026 The espnet_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

// The labels head of ESPNet's last layer, fused: a 2x2 stride-2 transposed convolution
// followed by the arg-max over its classes, without writing the class scores out.
// Built and loaded at run time by phase_labels.py, which says why (and checks the
// arguments before calling it).
//
// A 2x2 stride-2 transposed convolution gives input pixel (y, x) four output pixels
// (2y + a, 2x + b), one per phase q = 2a + b, each scored by its own C_in x K product. The
// kernel takes BLOCK input pixels at a time, keeps their C_in features as one vector per
// channel, and for each phase computes GROUP classes' scores at once (independent
// multiply-adds, so the chains overlap) and keeps a running maximum and its class, so the
// scores stay in vector registers. GCC's and Clang's vector extensions lower the vectors to
// whatever the machine has: AVX-512, AVX2 or NEON.

#include <math.h>
#include <stdint.h>

enum
{
  BLOCK = 16,          // input pixels at a time: one AVX-512 vector of floats
  GROUP = 5,           // classes scored at once: enough independent chains to fill the FMA units
  PHASES = 4,          // output pixels per input pixel
  MAX_CHANNELS = 256,  // input channels a block holds on the stack (16 KB)
  MAX_CLASSES = 256,   // labels are uint8
};

typedef float block_t __attribute__((vector_size(BLOCK * sizeof(float))));
typedef int32_t mask_t __attribute__((vector_size(BLOCK * sizeof(int32_t))));

static block_t splat(float value)
{
  const block_t zero = {0};
  return zero + value;
}

// Where score beats best (strictly: the first largest class wins, as torch.argmax), take it.
static void keep_larger(block_t score, float label, block_t * best, block_t * index)
{
  const mask_t larger = score > *best;
  *best = (block_t)(((mask_t)score & larger) | ((mask_t)*best & ~larger));
  *index = (block_t)(((mask_t)splat(label) & larger) | ((mask_t)*index & ~larger));
}

// features: images x height x width x channels (channels-last) float32; weight: the
// transposed convolution's channels x classes x 2 x 2 float32; bias: classes float32;
// labels: images x 2 height x 2 width uint8. Returns 0, or 1 for sizes it does not take.
int espnet_phase_labels(
  const float * features, const float * weight, const float * bias, int64_t images,
  int64_t height, int64_t width, int64_t channels, int64_t classes, int32_t threads,
  uint8_t * labels)
{
  if (channels < 1 || channels > MAX_CHANNELS || classes < 1 || classes > MAX_CLASSES ||
    height < 1 || width < 1 || images < 1 || threads < 1)
  {
    return 1;
  }
  const int64_t pixels = height * width;
  const int64_t blocks = (pixels + BLOCK - 1) / BLOCK;
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t job = 0; job < images * blocks; ++job) {
    const int64_t image = job / blocks;
    const int64_t first = (job % blocks) * BLOCK;
    const int64_t count = pixels - first < BLOCK ? pixels - first : BLOCK;
    const float * pixel = features + (image * pixels + first) * channels;
    block_t column[MAX_CHANNELS];
    for (int64_t channel = 0; channel < channels; ++channel) {
      for (int64_t i = 0; i < BLOCK; ++i) {
        column[channel][i] = i < count ? pixel[i * channels + channel] : 0.0f;
      }
    }
    block_t found[PHASES];
    for (int phase = 0; phase < PHASES; ++phase) {
      block_t best = splat(-INFINITY);
      block_t index = splat(0.0f);
      int64_t label = 0;
      for (; label + GROUP <= classes; label += GROUP) {
        block_t score[GROUP];
        for (int j = 0; j < GROUP; ++j) {
          score[j] = splat(bias[label + j]);
        }
        for (int64_t channel = 0; channel < channels; ++channel) {
          const float * row = weight + (channel * classes + label) * PHASES + phase;
          for (int j = 0; j < GROUP; ++j) {
            score[j] += column[channel] * row[j * PHASES];
          }
        }
        for (int j = 0; j < GROUP; ++j) {
          keep_larger(score[j], (float)(label + j), &best, &index);
        }
      }
      for (; label < classes; ++label) {
        block_t score = splat(bias[label]);
        for (int64_t channel = 0; channel < channels; ++channel) {
          score += column[channel] * weight[(channel * classes + label) * PHASES + phase];
        }
        keep_larger(score, (float)label, &best, &index);
      }
      found[phase] = index;
    }
    uint8_t * out = labels + image * PHASES * pixels;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t y = (first + i) / width;
      const int64_t x = (first + i) % width;
      uint8_t * top = out + 2 * y * 2 * width + 2 * x;
      top[0] = (uint8_t)found[0][i];
      top[1] = (uint8_t)found[1][i];
      top[2 * width] = (uint8_t)found[2][i];
      top[2 * width + 1] = (uint8_t)found[3][i];
    }
  }
  return 0;
}
