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

// A network as a fixed list of steps over buffers of fixed shapes: oneDNN convolution,
// transposed-convolution and pooling primitives created once (weights reordered once,
// PReLU as a post-op), and two element-wise passes of our own: a per-channel affine map
// with PReLU into a channel slice (batch norm of a concatenation, written part by part), and
// an ESP module's merge (HFF, residual, batch norm, PReLU, and optionally the batch norm
// of the concatenation it joins) in one pass over the branch outputs.
// Built and loaded at run time by onednn_plan.py, which says why and checks the arguments;
// every buffer is N x C x H x W in NHWC order, float32 or bf16.

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace
{

using dnnl::memory;

enum DType : int { F32 = 0, BF16 = 1 };

// Channels an ESP merge holds per pixel on the stack.
constexpr int64_t MAX_MERGE_CHANNELS = 1024;
constexpr int MAX_BRANCHES = 8;
constexpr size_t ALIGNMENT = 64;

struct Buffer
{
  int64_t channels, height, width;
  int dtype;
  void * data;
  bool owned;
  memory mem;
};

struct Plan
{
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  int64_t batch;
  int threads;
  std::vector<Buffer> buffers;
  std::vector<std::function<void()>> steps;
  std::vector<std::vector<float>> constants;  // per-channel arrays of the passes
  std::string error;

  ~Plan()
  {
    for (auto & buffer : buffers) {
      if (buffer.owned) {std::free(buffer.data);}
    }
  }
};

memory::data_type onednn_type(int dtype)
{
  return dtype == BF16 ? memory::data_type::bf16 : memory::data_type::f32;
}

memory::desc buffer_desc(const Plan & plan, const Buffer & buffer)
{
  return memory::desc({plan.batch, buffer.channels, buffer.height, buffer.width},
                      onednn_type(buffer.dtype), memory::format_tag::nhwc);
}

// float32 to bf16, rounding to nearest even, as PyTorch and oneDNN round.
inline uint16_t to_bf16(float value)
{
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

template<bool BF16_OUT>
inline void store(void * base, int64_t index, float value)
{
  if constexpr (BF16_OUT) {
    static_cast<uint16_t *>(base)[index] = to_bf16(value);
  } else {
    static_cast<float *>(base)[index] = value;
  }
}

// A channel slice of a buffer: where each pixel's channels start, and the pixel stride.
struct Slice
{
  void * base;
  int64_t stride;
  bool bf16;
};

inline float prelu(float value, float slope)
{
  return value >= 0.0f ? value : value * slope;
}

// y[p, c] = prelu(x[p, c] * scale[c] + shift[c], slope[c]) over one pixel's channels.
template<bool BF16_OUT>
void affine_pixels(
  const float * __restrict source, int64_t source_stride, void * target,
  int64_t target_stride, int64_t channels, const float * __restrict scale,
  const float * __restrict shift, const float * __restrict slope, int64_t pixels, int threads)
{
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    const float * __restrict in = source + p * source_stride;
    for (int64_t c = 0; c < channels; ++c) {
      store<BF16_OUT>(target, p * target_stride + c,
                      prelu(in[c] * scale[c] + shift[c], slope[c]));
    }
  }
}

struct Merge
{
  int branches;
  const float * branch[MAX_BRANCHES];
  int64_t first, width, channels;
  const float * residual;
  const float * scale1, * shift1, * slope1;
  Slice out1;  // base null: not stored
  const float * scale2, * shift2, * slope2;
  Slice out2;  // base null: no second map
};

// One pixel's HFF: the first branch as it is, then the running sums of the others.
inline void fuse_pixel(const Merge & m, int64_t p, float * __restrict merged)
{
  const float * __restrict first = m.branch[0] + p * m.first;
  for (int64_t c = 0; c < m.first; ++c) {merged[c] = first[c];}
  float * __restrict total = merged + m.first;
  const float * __restrict second = m.branch[1] + p * m.width;
  for (int64_t c = 0; c < m.width; ++c) {total[c] = second[c];}
  for (int k = 2; k < m.branches; ++k) {
    const float * __restrict next = m.branch[k] + p * m.width;
    float * __restrict previous = merged + m.first + (k - 2) * m.width;
    float * __restrict sum = previous + m.width;
    for (int64_t c = 0; c < m.width; ++c) {sum[c] = previous[c] + next[c];}
  }
  if (m.residual != nullptr) {
    const float * __restrict added = m.residual + p * m.channels;
    for (int64_t c = 0; c < m.channels; ++c) {merged[c] += added[c];}
  }
}

template<bool BF16_1, bool BF16_2>
void merge_pixels(const Merge & m, int64_t pixels, int threads)
{
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    alignas(ALIGNMENT) float merged[MAX_MERGE_CHANNELS];
    fuse_pixel(m, p, merged);
    for (int64_t c = 0; c < m.channels; ++c) {
      merged[c] = prelu(merged[c] * m.scale1[c] + m.shift1[c], m.slope1[c]);
    }
    if (m.out1.base != nullptr) {
      for (int64_t c = 0; c < m.channels; ++c) {
        store<BF16_1>(m.out1.base, p * m.out1.stride + c, merged[c]);
      }
    }
    if (m.out2.base != nullptr) {
      for (int64_t c = 0; c < m.channels; ++c) {
        store<BF16_2>(m.out2.base, p * m.out2.stride + c,
                      prelu(merged[c] * m.scale2[c] + m.shift2[c], m.slope2[c]));
      }
    }
  }
}

void run_merge(const Merge & m, int64_t pixels, int threads)
{
  const bool bf16_1 = m.out1.base != nullptr && m.out1.bf16;
  const bool bf16_2 = m.out2.base != nullptr && m.out2.bf16;
  if (bf16_1) {
    bf16_2 ? merge_pixels<true, true>(m, pixels, threads) :
    merge_pixels<true, false>(m, pixels, threads);
  } else {
    bf16_2 ? merge_pixels<false, true>(m, pixels, threads) :
    merge_pixels<false, false>(m, pixels, threads);
  }
}

bool valid(const Plan & plan, int buffer)
{
  return buffer >= 0 && static_cast<size_t>(buffer) < plan.buffers.size();
}

const float * keep(Plan & plan, const float * values, int64_t count)
{
  plan.constants.emplace_back(values, values + count);
  return plan.constants.back().data();
}

// A memory holding a copy of user weights, reordered into what the primitive asked for.
memory packed_weights(
  Plan & plan, const memory::desc & user_desc, const float * values,
  const memory::desc & wanted)
{
  memory user(user_desc, plan.engine);
  std::memcpy(user.get_data_handle(), values, user_desc.get_size());
  memory packed(wanted, plan.engine);
  dnnl::reorder(user, packed).execute(plan.stream, user, packed);
  plan.stream.wait();
  return packed;
}

memory vector_memory(Plan & plan, const float * values, const memory::dims & dims)
{
  memory result({dims, memory::data_type::f32,
      dims.size() == 1 ? memory::format_tag::a : memory::format_tag::abcd}, plan.engine);
  std::memcpy(result.get_data_handle(), values, result.get_desc().get_size());
  return result;
}

// Right padding that gives the destination's size (PyTorch pads both sides alike and may
// leave the last rows unused; oneDNN wants the padding that is read).
int64_t right_padding(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t left,
  int64_t dilation)
{
  return (out - 1) * stride + (kernel - 1) * dilation + 1 - in - left;
}

int fail(Plan & plan, const std::string & message)
{
  plan.error = message;
  return -1;
}

template<typename Body>
int guarded(Plan & plan, Body body)
{
  try {
    return body();
  } catch (const dnnl::error & error) {
    return fail(plan, std::string("oneDNN: ") + error.what());
  } catch (const std::exception & error) {
    return fail(plan, error.what());
  }
}

// Return body(plan, src buffer, dst buffer) for two valid buffers, oneDNN's errors caught.
template<typename Body>
int with_buffers(void * handle, int src, int dst, Body body)
{
  Plan & plan = *static_cast<Plan *>(handle);
  if (!valid(plan, src) || !valid(plan, dst)) {return fail(plan, "no such buffer");}
  return guarded(plan, [&]() {return body(plan, plan.buffers[src], plan.buffers[dst]);});
}

using Arguments = std::unordered_map<int, memory>;

void add_primitive(Plan & plan, const dnnl::primitive & primitive, const Arguments & arguments)
{
  plan.steps.emplace_back(
    [&plan, primitive, arguments]() {primitive.execute(plan.stream, arguments);});
}

memory::desc bias_desc(const Buffer & out, const float * bias)
{
  return bias == nullptr ? memory::desc() :
         memory::desc({out.channels}, memory::data_type::f32, memory::format_tag::a);
}

// PReLU with a slope per output channel as a post-op, where slopes are given.
dnnl::primitive_attr prelu_attributes(const float * slopes)
{
  dnnl::post_ops post;
  if (slopes != nullptr) {post.append_prelu(1 << 1);}
  dnnl::primitive_attr attributes;
  attributes.set_post_ops(post);
  return attributes;
}

// Add a (transposed) convolution: its weights packed once from the user's float32 layout,
// its bias and PReLU slopes copied.
template<typename Primitive>
void add_weighted(
  Plan & plan, const typename Primitive::primitive_desc & description, const Buffer & in,
  const Buffer & out, const memory::dims & weight_dims, memory::format_tag user_layout,
  const float * weight, const float * bias, const float * slopes)
{
  Arguments arguments{{DNNL_ARG_SRC, in.mem}, {DNNL_ARG_DST, out.mem}};
  arguments[DNNL_ARG_WEIGHTS] = packed_weights(
    plan, memory::desc(weight_dims, memory::data_type::f32, user_layout), weight,
    description.weights_desc());
  if (bias != nullptr) {
    arguments[DNNL_ARG_BIAS] = vector_memory(plan, bias, {out.channels});
  }
  if (slopes != nullptr) {
    arguments[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_WEIGHTS] =
      vector_memory(plan, slopes, {1, out.channels, 1, 1});
  }
  add_primitive(plan, Primitive(description), arguments);
}

}  // namespace

extern "C" {

void * espnet_plan_new(int64_t batch, int threads)
{
  try {
    auto * plan = new Plan();
    plan->batch = batch;
    plan->threads = threads;
    return plan;
  } catch (...) {
    return nullptr;
  }
}

void espnet_plan_free(void * handle)
{
  delete static_cast<Plan *>(handle);
}

const char * espnet_plan_error(void * handle)
{
  return static_cast<Plan *>(handle)->error.c_str();
}

// A buffer of N x channels x height x width in NHWC; external: memory the caller keeps.
int espnet_plan_buffer(
  void * handle, int64_t channels, int64_t height, int64_t width, int dtype,
  void * external)
{
  Plan & plan = *static_cast<Plan *>(handle);
  return guarded(plan, [&]() {
             Buffer buffer{channels, height, width, dtype, external, external == nullptr, {}};
             const size_t element = dtype == BF16 ? 2 : 4;
             const size_t bytes = static_cast<size_t>(plan.batch * channels * height * width) *
             element;
             if (buffer.owned) {
               const size_t rounded = (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
               buffer.data = std::aligned_alloc(ALIGNMENT, rounded);
               if (buffer.data == nullptr) {return fail(plan, "out of memory for a buffer");}
               std::memset(buffer.data, 0, rounded);
             }
             buffer.mem = memory(buffer_desc(plan, buffer), plan.engine, buffer.data);
             plan.buffers.push_back(buffer);
             return static_cast<int>(plan.buffers.size() - 1);
           });
}

// dst = prelu(conv(src, weight) + bias): weight C_out x C_in x kh x kw float32 (rounded to
// bf16 when src is bf16), bias and slopes C_out or null; dilation as PyTorch counts it.
int espnet_plan_conv(
  void * handle, int src, int dst, const float * weight, const float * bias,
  int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding, int64_t dilation,
  const float * slopes)
{
  return with_buffers(
    handle, src, dst, [&](Plan & plan, const Buffer & in, const Buffer & out) {
      const memory::dims weight_dims{out.channels, in.channels, kernel_h, kernel_w};
      const memory::dims left{padding, padding};
      const memory::dims right{
        right_padding(in.height, out.height, kernel_h, stride, padding, dilation),
        right_padding(in.width, out.width, kernel_w, stride, padding, dilation)};
      dnnl::convolution_forward::primitive_desc description(
        plan.engine, dnnl::prop_kind::forward_inference,
        dnnl::algorithm::convolution_direct, in.mem.get_desc(),
        memory::desc(weight_dims, onednn_type(in.dtype), memory::format_tag::any),
        bias_desc(out, bias), out.mem.get_desc(), {stride, stride},
        {dilation - 1, dilation - 1}, left, right, prelu_attributes(slopes));
      add_weighted<dnnl::convolution_forward>(
        plan, description, in, out, weight_dims, memory::format_tag::oihw, weight, bias,
        slopes);
      return 0;
    });
}

// dst = prelu(conv_transpose(src, weight) + bias), stride = kernel, no padding: weight
// C_in x C_out x kh x kw float32, as PyTorch's ConvTranspose2d keeps it.
int espnet_plan_upsample(
  void * handle, int src, int dst, const float * weight, const float * bias, int64_t kernel,
  const float * slopes)
{
  return with_buffers(
    handle, src, dst, [&](Plan & plan, const Buffer & in, const Buffer & out) {
      const memory::dims weight_dims{out.channels, in.channels, kernel, kernel};
      dnnl::deconvolution_forward::primitive_desc description(
        plan.engine, dnnl::prop_kind::forward_inference,
        dnnl::algorithm::deconvolution_direct, in.mem.get_desc(),
        memory::desc(weight_dims, onednn_type(in.dtype), memory::format_tag::any),
        bias_desc(out, bias), out.mem.get_desc(), {kernel, kernel}, {0, 0}, {0, 0},
        prelu_attributes(slopes));
      add_weighted<dnnl::deconvolution_forward>(
        plan, description, in, out, weight_dims, memory::format_tag::iohw, weight, bias,
        slopes);
      return 0;
    });
}

// dst = average pooling of src over kernel x kernel windows, zero padding counted.
int espnet_plan_average_pool(
  void * handle, int src, int dst, int64_t kernel, int64_t stride,
  int64_t padding)
{
  return with_buffers(
    handle, src, dst, [&](Plan & plan, const Buffer & in, const Buffer & out) {
      const memory::dims right{
        right_padding(in.height, out.height, kernel, stride, padding, 1),
        right_padding(in.width, out.width, kernel, stride, padding, 1)};
      dnnl::pooling_forward::primitive_desc description(
        plan.engine, dnnl::prop_kind::forward_inference,
        dnnl::algorithm::pooling_avg_include_padding, in.mem.get_desc(),
        out.mem.get_desc(), {stride, stride}, {kernel, kernel}, {0, 0},
        {padding, padding}, right);
      add_primitive(plan, dnnl::pooling_forward(description),
                    {{DNNL_ARG_SRC, in.mem}, {DNNL_ARG_DST, out.mem}});
      return 0;
    });
}

// dst[:, dst_offset + c] = prelu(src[:, src_offset + c] * scale[c] + shift[c], slope[c])
// for c < channels: one part of a normalised concatenation (scale 1, shift 0, slope 1: a
// copy, to bf16 where dst is bf16).
int espnet_plan_affine(
  void * handle, int src, int64_t src_offset, int dst, int64_t dst_offset,
  int64_t channels, const float * scale, const float * shift, const float * slope)
{
  Plan & plan = *static_cast<Plan *>(handle);
  if (!valid(plan, src) || !valid(plan, dst)) {return fail(plan, "no such buffer");}
  const Buffer & in = plan.buffers[src];
  const Buffer & out = plan.buffers[dst];
  if (in.dtype != F32 || in.height != out.height || in.width != out.width ||
    src_offset + channels > in.channels || dst_offset + channels > out.channels)
  {
    return fail(plan, "affine pass: shapes do not fit");
  }
  const float * source = static_cast<const float *>(in.data) + src_offset;
  const int64_t source_stride = in.channels;
  const size_t element = out.dtype == BF16 ? 2 : 4;
  void * target = static_cast<char *>(out.data) + dst_offset * element;
  const int64_t target_stride = out.channels;
  const float * kept_scale = keep(plan, scale, channels);
  const float * kept_shift = keep(plan, shift, channels);
  const float * kept_slope = keep(plan, slope, channels);
  const int64_t pixels = plan.batch * in.height * in.width;
  const bool bf16 = out.dtype == BF16;
  Plan * owner = &plan;
  plan.steps.emplace_back(
    [ = ]() {
      (bf16 ? affine_pixels<true>: affine_pixels<false>)(
        source, source_stride, target, target_stride, channels, kept_scale, kept_shift,
        kept_slope, pixels, owner->threads);
    });
  return 0;
}

// An ESP module's merge: HFF of the branch buffers (the first n_1 channels, the others d
// each), plus the residual buffer (or -1), then y = prelu(x * scale1 + shift1, slope1)
// stored at out1 (or -1), and if out2 >= 0, prelu(y * scale2 + shift2, slope2) stored there;
// each output at a channel offset of its buffer.
int espnet_plan_merge(
  void * handle, int branches, const int * branch_buffers, int residual,
  const float * scale1, const float * shift1, const float * slope1, int out1,
  int64_t out1_offset, const float * scale2, const float * shift2, const float * slope2,
  int out2, int64_t out2_offset)
{
  Plan & plan = *static_cast<Plan *>(handle);
  if (branches < 2 || branches > MAX_BRANCHES) {return fail(plan, "merge: 2 to 8 branches");}
  for (int k = 0; k < branches; ++k) {
    if (!valid(plan, branch_buffers[k])) {return fail(plan, "no such buffer");}
  }
  if ((residual != -1 && !valid(plan, residual)) || (out1 != -1 && !valid(plan, out1)) ||
    (out2 != -1 && !valid(plan, out2)) || (out1 == -1 && out2 == -1))
  {
    return fail(plan, "merge: bad residual or outputs");
  }
  Merge m{};
  m.branches = branches;
  const Buffer & first = plan.buffers[branch_buffers[0]];
  m.first = first.channels;
  m.width = plan.buffers[branch_buffers[1]].channels;
  m.channels = m.first + (branches - 1) * m.width;
  if (m.channels > MAX_MERGE_CHANNELS) {return fail(plan, "merge: too many channels");}
  for (int k = 0; k < branches; ++k) {
    const Buffer & part = plan.buffers[branch_buffers[k]];
    if (part.dtype != F32 || part.height != first.height || part.width != first.width ||
      (k > 0 && part.channels != m.width))
    {
      return fail(plan, "merge: branch shapes do not fit");
    }
    m.branch[k] = static_cast<const float *>(part.data);
  }
  if (residual != -1) {
    const Buffer & added = plan.buffers[residual];
    if (added.dtype != F32 || added.channels != m.channels || added.height != first.height ||
      added.width != first.width)
    {
      return fail(plan, "merge: residual shape does not fit");
    }
    m.residual = static_cast<const float *>(added.data);
  }
  m.scale1 = keep(plan, scale1, m.channels);
  m.shift1 = keep(plan, shift1, m.channels);
  m.slope1 = keep(plan, slope1, m.channels);
  auto slice = [&](int buffer, int64_t offset, Slice & target) {
      if (buffer == -1) {return true;}
      const Buffer & out = plan.buffers[buffer];
      if (out.height != first.height || out.width != first.width ||
        offset + m.channels > out.channels)
      {
        return false;
      }
      const size_t element = out.dtype == BF16 ? 2 : 4;
      target = Slice{static_cast<char *>(out.data) + offset * element, out.channels,
        out.dtype == BF16};
      return true;
    };
  if (!slice(out1, out1_offset, m.out1) || !slice(out2, out2_offset, m.out2)) {
    return fail(plan, "merge: output shape does not fit");
  }
  if (out2 != -1) {
    m.scale2 = keep(plan, scale2, m.channels);
    m.shift2 = keep(plan, shift2, m.channels);
    m.slope2 = keep(plan, slope2, m.channels);
  }
  const int64_t pixels = plan.batch * first.height * first.width;
  Plan * owner = &plan;
  plan.steps.emplace_back([ = ]() {run_merge(m, pixels, owner->threads);});
  return 0;
}

// Run every step in order on the calling thread's oneDNN and OpenMP; 0, or -1 and the error.
int espnet_plan_run(void * handle)
{
  Plan & plan = *static_cast<Plan *>(handle);
  return guarded(plan, [&]() {
             omp_set_num_threads(plan.threads);
             for (auto & step : plan.steps) {step();}
             plan.stream.wait();
             return 0;
           });
}

int64_t espnet_plan_steps(void * handle)
{
  return static_cast<int64_t>(static_cast<Plan *>(handle)->steps.size());
}

// espnet_plan_run, adding each step's wall-clock milliseconds to milliseconds[step] (the
// profile of a plan: espnet_ros.tools.layer_profile).
int espnet_plan_run_timed(void * handle, double * milliseconds)
{
  Plan & plan = *static_cast<Plan *>(handle);
  return guarded(plan, [&]() {
             omp_set_num_threads(plan.threads);
             for (size_t index = 0; index < plan.steps.size(); ++index) {
               const auto start = std::chrono::steady_clock::now();
               plan.steps[index]();
               plan.stream.wait();
               const std::chrono::duration<double, std::milli> spent =
               std::chrono::steady_clock::now() - start;
               milliseconds[index] += spent.count();
             }
             return 0;
           });
}

}  // extern "C"
