// What one GPU block of the sequence kernels does, written once for the CUDA kernel
// (csrc/gpu/sweep_cuda.cu) and for the CPU emulation of a block's threads
// (csrc/testing/emulated_ops.cpp), which runs each thread as a fiber and switches between them
// at every barrier, so the tests exercise the kernel's thread layout, shared-memory layout and
// barriers without a GPU.
//
// A block runs several sequences at once, a team of `hidden` threads each (thread r computes
// hidden unit r at every step). It first copies the cell's recurrent weight and biases into shared
// memory, rows padded to hidden + 1 elements: at a step the team's threads read one row each,
// element c at the same time, and the padding puts those reads in different banks. Each team's
// state lives in shared memory after the weights.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/platform.h"
#include "sequence.h"

RNNPOOL_BEGIN_ISA_NAMESPACE

constexpr int kTargetThreadsPerBlock = 128;
// A team is one block at most; at 512 threads the kernels' registers (up to 96 each) still fit an SM.
constexpr int kMaxTeamHidden = 512;
// Weights above this stay in global memory (read through L1) rather than in shared memory.
constexpr int64_t kMaxSharedWeightBytes = 96 * 1024;

// How a job is laid out on the GPU.
struct LaunchShape {
  int teams_per_block, threads_per_block;
  bool weights_shared;
  int64_t weight_elems, scratch_per_team;  // in elements of the job's type
  size_t shared_bytes;
  int64_t blocks;
};

// max_blocks caps the grid; the blocks then stride over the rest of the sequences.
template <class T>
LaunchShape launch_shape(const SequenceJob<T>& job, bool backward, int64_t max_blocks) {
  const int H = job.hidden, gates = job.gates();
  LaunchShape s;
  s.teams_per_block = kTargetThreadsPerBlock / H > 1 ? kTargetThreadsPerBlock / H : 1;
  s.threads_per_block = s.teams_per_block * H;
  const int64_t weights = int64_t(gates) * H * (H + 1) + 2 * int64_t(gates) * H;
  s.weights_shared = weights * int64_t(sizeof(T)) <= kMaxSharedWeightBytes;
  s.weight_elems = s.weights_shared ? weights : 0;
  s.scratch_per_team = backward ? backward_scratch_size(H, gates) : forward_scratch_size(H);
  s.shared_bytes = static_cast<size_t>((s.weight_elems + s.teams_per_block * s.scratch_per_team) * int64_t(sizeof(T)));
  const int64_t needed = (job.num_sequences + s.teams_per_block - 1) / s.teams_per_block;
  s.blocks = needed < max_blocks ? needed : max_blocks;
  return s;
}

// Thread `thread` of block `block` (of shape.blocks); `shared` is the block's shared memory and
// sync() its barrier. Every thread of the block reaches every barrier the same number of times.
template <bool kBackward, class T, class Sync>
RNNPOOL_HD void sequence_block(SequenceJob<T> job, const LaunchShape& shape, int64_t block, int thread, T* shared,
                               Sync sync) {
  const int H = job.hidden;
  if (shape.weights_shared) {
    const int64_t rows = int64_t(job.gates()) * H, stride = H + 1;
    T* recurrent = shared;
    T* bias_a = recurrent + rows * stride;
    T* bias_b = bias_a + rows;
    for (int64_t i = thread; i < rows * H; i += shape.threads_per_block)
      recurrent[i / H * stride + i % H] = job.recurrent[i];
    for (int64_t i = thread; i < rows; i += shape.threads_per_block) {
      bias_a[i] = job.bias_a[i];
      bias_b[i] = job.bias_b[i];
    }
    job.recurrent = recurrent;
    job.recurrent_stride = static_cast<int>(stride);
    job.bias_a = bias_a;
    job.bias_b = bias_b;
  }
  sync();
  const int team = thread / H;
  T* scratch = shared + shape.weight_elems + team * shape.scratch_per_team;
  const Units units{thread % H, H};
  for (int64_t first = block * shape.teams_per_block; first < job.num_sequences;
       first += shape.blocks * shape.teams_per_block) {
    const int64_t q = first + team;
    const bool active = q < job.num_sequences;
    SequenceTeam<T> t(job, active ? q : 0, active, units, scratch);
    if (kBackward)
      t.backward(sync);
    else
      t.forward(sync);
    sync();  // the next round reuses the scratch
  }
}

RNNPOOL_END_ISA_NAMESPACE
