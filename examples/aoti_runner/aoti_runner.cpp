// Runs an AOTInductor package of a model that uses rnnpool-ops' fused layers, with no Python: the
// op library (librnnpool_ops.so) is loaded first, which registers torch.ops.rnnpool.* in this
// process, then libtorch's package loader runs the model, whose fused layers call those ops.
//
//   aoti_runner <librnnpool_ops.so> <model.pt2> <input.bin> <N> <C> <H> <W> [output.bin]
//
// input.bin holds N*C*H*W float32 values (row-major NCHW); the output tensor is printed (its shape
// and first values) and, when asked, written to output.bin as raw float32.
#include <dlfcn.h>

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

at::Tensor read_tensor(const std::string& path, const std::vector<int64_t>& shape) {
  at::Tensor tensor = at::empty(shape, at::kFloat);
  std::ifstream file(path, std::ios::binary);
  file.read(reinterpret_cast<char*>(tensor.data_ptr<float>()), tensor.numel() * sizeof(float));
  if (!file) throw std::runtime_error("cannot read " + std::to_string(tensor.numel()) + " floats from " + path);
  return tensor;
}

void write_tensor(const std::string& path, const at::Tensor& tensor) {
  const at::Tensor values = tensor.to(at::kFloat).contiguous();
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(values.data_ptr<float>()), values.numel() * sizeof(float));
  if (!file) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8 && argc != 9) {
    std::fprintf(stderr, "usage: %s <librnnpool_ops.so> <model.pt2> <input.bin> <N> <C> <H> <W> [output.bin]\n",
                 argv[0]);
    return 2;
  }
  // RTLD_GLOBAL is not needed: the library's static initialisers register the ops with libtorch.
  if (dlopen(argv[1], RTLD_NOW) == nullptr) {
    std::fprintf(stderr, "cannot load the op library: %s\n", dlerror());
    return 1;
  }
  try {
    const std::vector<int64_t> shape = {std::atoll(argv[4]), std::atoll(argv[5]), std::atoll(argv[6]),
                                        std::atoll(argv[7])};
    torch::inductor::AOTIModelPackageLoader model(argv[2]);
    const std::vector<at::Tensor> outputs = model.run({read_tensor(argv[3], shape)});
    const at::Tensor& output = outputs.at(0);
    std::printf("output shape:");
    for (int64_t size : output.sizes()) std::printf(" %lld", static_cast<long long>(size));
    std::printf("\nfirst values:");
    const at::Tensor flat = output.flatten();
    for (int64_t i = 0; i < std::min<int64_t>(flat.numel(), 6); ++i) std::printf(" %.6f", flat[i].item<float>());
    std::printf("\n");
    if (argc == 9) write_tensor(argv[8], output);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
