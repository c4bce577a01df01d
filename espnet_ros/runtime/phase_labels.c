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
// followed by the arg-max over its classes (and, if asked, the winning class's softmax
// probability), without writing the class scores out.
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

static block_t select(mask_t where, block_t yes, block_t no)
{
  return (block_t)(((mask_t)yes & where) | ((mask_t)no & ~where));
}

// exp(x) for x <= 0, to float precision (Cephes' expf polynomial after the usual
// reduction x = n ln 2 + r). Below -87 it gives exp(-87), a normal number: the result only
// enters a sum that holds 1, and a subnormal would cost a microcode assist on Intel cores.
static block_t exp_non_positive(block_t x)
{
  const float log2e = 1.44269504088896341f;
  const float ln2_high = 0.693359375f;
  const float ln2_low = -2.12194440e-4f;
  const block_t lowest = splat(-87.0f);
  x = select(x < lowest, lowest, x);
  // Truncation toward zero of a non-positive value: its ceiling, so n rounds to nearest.
  const mask_t n = __builtin_convertvector(x * log2e - 0.5f, mask_t);
  const block_t nf = __builtin_convertvector(n, block_t);
  const block_t r = x - nf * ln2_high - nf * ln2_low;
  block_t p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2**n: n in the exponent bits.
  return (block_t)((mask_t)p + (n << 23));
}

// Where score beats best (strictly: the first largest class wins, as torch.argmax), take it.
static void keep_larger(block_t score, float label, block_t * best, block_t * index)
{
  const mask_t larger = score > *best;
  *best = select(larger, score, *best);
  *index = select(larger, splat(label), *index);
}

// features: images x height x width x channels (channels-last) float32; weight: the
// transposed convolution's channels x classes x 2 x 2 float32; bias: classes float32;
// labels: images x 2 height x 2 width uint8; confidence: the same float32, or NULL for
// labels alone. Returns 0, or 1 for sizes it does not take.
int espnet_phase_labels(
  const float * features, const float * weight, const float * bias, int64_t images,
  int64_t height, int64_t width, int64_t channels, int64_t classes, int32_t threads,
  uint8_t * labels, float * confidence)
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
    block_t probability[PHASES];
    block_t scores[MAX_CLASSES];  // every class's scores, for the confidence's softmax
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
          if (confidence) {
            scores[label + j] = score[j];
          }
        }
      }
      for (; label < classes; ++label) {
        block_t score = splat(bias[label]);
        for (int64_t channel = 0; channel < channels; ++channel) {
          score += column[channel] * weight[(channel * classes + label) * PHASES + phase];
        }
        keep_larger(score, (float)label, &best, &index);
        if (confidence) {
          scores[label] = score;
        }
      }
      found[phase] = index;
      if (confidence) {
        // The winner's softmax probability: 1 / sum over the classes of exp(score - best).
        block_t sum = splat(0.0f);
        for (int64_t k = 0; k < classes; ++k) {
          sum += exp_non_positive(scores[k] - best);
        }
        probability[phase] = 1.0f / sum;
      }
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
      if (confidence) {
        float * near = confidence + image * PHASES * pixels + 2 * y * 2 * width + 2 * x;
        near[0] = probability[0][i];
        near[1] = probability[1][i];
        near[2 * width] = probability[2][i];
        near[2 * width + 1] = probability[3][i];
      }
    }
  }
  return 0;
}
