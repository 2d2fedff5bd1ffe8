// The accelerators `tramontane plan` models: peak rates, memory and links per GPU. The one table
// is hardware.cpp; docs/PLANNING.md lists each figure's source.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tmt {

struct Hardware {
  std::string name;         // h100 | h200 | h800 | b200 | gb200
  std::string description;  // for people
  double bf16_tflops = 0;   // dense peak, TFLOP/s
  double fp8_tflops = 0;    // dense peak, TFLOP/s
  double hbm_gb = 0;        // device memory as marketed, GB
  double memory_gib = 0;    // what the driver reports as total (nvidia-smi), GiB
  double hbm_tbps = 0;      // device memory bandwidth, TB/s
  double nvlink_gbps = 0;   // NVLink per GPU, one direction, GB/s
  double network_gbps = 0;  // scale-out network (InfiniBand / RoCE) per GPU, one direction, GB/s
  int nvlink_domain = 8;    // GPUs one NVLink domain joins (8: HGX, 72: NVL72)
};

const std::vector<Hardware>& hardware_table();
// The entry named `name`; InputError naming --hw and the known names otherwise.
const Hardware& hardware(std::string_view name);

}  // namespace tmt
