// The GPU algorithm on the CPU: torch.ops.rnnpool_emulated.forward / backward run
// csrc/gpu/pipeline.cpp with a runner that executes the recurrences' code on the CPU in place
// of the CUDA kernels. Tests compare it with the reference, so the whole CUDA path except the
// kernels' launch statements is checked without a GPU.
//
// RNNPOOL_EMULATED_SCHEDULE (read at each call) chooses how:
//   loop     (default) one CPU thread per sequence runs all of the sequence's units in turn
//   forward  every GPU block of the kernel (csrc/gpu/sequence_block.h: the same layout, shared
//   reverse  memory and barriers) with each of its threads a fiber; between two barriers the fibers
//            run one after the other, in increasing or decreasing thread order. A value read before
//            the barrier that should order it after its write gives different results in the two
//            orders, which is how the tests catch a missing barrier.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ucontext.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "gpu/sequence_block.h"
#include "gpu/pipeline.h"
#include "schemas.h"

namespace rnnpool {
namespace {

enum class Schedule { Loop, Forward, Reverse };

Schedule schedule_from_environment() {
  const char* text = std::getenv("RNNPOOL_EMULATED_SCHEDULE");
  if (text == nullptr || *text == '\0' || std::strcmp(text, "loop") == 0) return Schedule::Loop;
  if (std::strcmp(text, "forward") == 0) return Schedule::Forward;
  TORCH_CHECK_VALUE(std::strcmp(text, "reverse") == 0,
                    "RNNPOOL_EMULATED_SCHEDULE must be 'loop', 'forward' or 'reverse', got '", text, "'");
  return Schedule::Reverse;
}

// The threads of one GPU block as fibers on the calling CPU thread.
class FiberBlock {
 public:
  // Runs body(thread, sync) for every thread; sync() switches to the next fiber, and a round of
  // switches ends when every unfinished fiber has reached its next barrier or its end.
  void run(int threads, bool reverse, const std::function<void(int, const std::function<void()>&)>& body) {
    body_ = &body;
    fibers_.assign(threads, ucontext_t{});
    finished_.assign(threads, 0);
    stacks_.resize(threads);
    for (int i = 0; i < threads; ++i) {
      if (!stacks_[i]) stacks_[i].reset(new char[kStackBytes]);
      getcontext(&fibers_[i]);
      fibers_[i].uc_stack.ss_sp = stacks_[i].get();
      fibers_[i].uc_stack.ss_size = kStackBytes;
      fibers_[i].uc_link = &scheduler_;
      makecontext(&fibers_[i], &FiberBlock::entry, 0);
    }
    for (bool any = true; any;) {
      any = false;
      for (int k = 0; k < threads; ++k) {
        const int i = reverse ? threads - 1 - k : k;
        if (finished_[i]) continue;
        any = true;
        current_ = i;
        running_ = this;
        swapcontext(&scheduler_, &fibers_[i]);
      }
    }
  }

 private:
  static constexpr size_t kStackBytes = 256 * 1024;

  static void entry() {
    FiberBlock* self = running_;
    const int i = self->current_;
    const std::function<void()> sync = [self, i] { swapcontext(&self->fibers_[i], &self->scheduler_); };
    (*self->body_)(i, sync);
    self->finished_[i] = 1;  // returning resumes the scheduler (uc_link)
  }

  static thread_local FiberBlock* running_;
  const std::function<void(int, const std::function<void()>&)>* body_ = nullptr;
  ucontext_t scheduler_{};
  std::vector<ucontext_t> fibers_;
  std::vector<char> finished_;
  std::vector<std::unique_ptr<char[]>> stacks_;
  int current_ = 0;
};

thread_local FiberBlock* FiberBlock::running_ = nullptr;

class EmulatedRunner final : public SequenceRunner {
 public:
  EmulatedRunner() : schedule_(schedule_from_environment()) {}

  void forward(const SequenceJob<float>& job) const override { run<false>(job); }
  void forward(const SequenceJob<double>& job) const override { run<false>(job); }
  void backward(const SequenceJob<float>& job) const override { run<true>(job); }
  void backward(const SequenceJob<double>& job) const override { run<true>(job); }

 private:
  // A small grid, so that the fibers' blocks also stride over several rounds of sequences.
  static constexpr int64_t kEmulatedMaxBlocks = 3;

  template <bool kBackward, class T>
  void run(const SequenceJob<T>& job) const {
    if (schedule_ == Schedule::Loop)
      run_loop<kBackward>(job);
    else
      run_blocks<kBackward>(job);
  }

  template <bool kBackward, class T>
  static void run_loop(const SequenceJob<T>& job) {
    const int64_t scratch_size =
        kBackward ? backward_scratch_size(job.hidden, job.gates()) : forward_scratch_size(job.hidden);
    at::parallel_for(0, job.num_sequences, 64, [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(scratch_size);
      for (int64_t q = begin; q < end; ++q) {
        SequenceTeam<T> team(job, q, /*active=*/true, Units{0, 1}, scratch.data());
        if (kBackward)
          team.backward([] {});
        else
          team.forward([] {});
      }
    });
  }

  template <bool kBackward, class T>
  void run_blocks(const SequenceJob<T>& job) const {
    if (job.num_sequences == 0) return;
    const LaunchShape shape = launch_shape(job, kBackward, kEmulatedMaxBlocks);
    at::parallel_for(0, shape.blocks, 1, [&](int64_t begin, int64_t end) {
      FiberBlock fibers;
      std::vector<T> shared(shape.shared_bytes / sizeof(T));
      for (int64_t block = begin; block < end; ++block)
        fibers.run(shape.threads_per_block, schedule_ == Schedule::Reverse,
                   [&](int thread, const std::function<void()>& sync) {
                     sequence_block<kBackward>(job, shape, block, thread, shared.data(), sync);
                   });
    });
  }

  Schedule schedule_;
};

}  // namespace

// Built only when setup.py is run with RNNPOOL_BUILD_TEST_OPS=1 (run.sh does): test support, not
// part of the installed package.
TORCH_LIBRARY(rnnpool_emulated, m) {
  m.def("forward" SWEEP_FORWARD_SIGNATURE);
  m.def("backward" SWEEP_BACKWARD_SIGNATURE);
}

TORCH_LIBRARY_IMPL(rnnpool_emulated, CPU, m) {
  m.impl("forward", &sequence_sweep_forward_kernel<EmulatedRunner>);
  m.impl("backward", &sequence_sweep_backward_kernel<EmulatedRunner>);
}

}  // namespace rnnpool
