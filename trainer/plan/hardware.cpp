#include "trainer/plan/hardware.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/base/check.h"

namespace tmt {

// Dense (not 2:4 sparse) peaks and per-direction link rates from NVIDIA's datasheets, SXM
// parts; docs/PLANNING.md gives the sources. The network is one 400 Gb/s NIC per GPU (ConnectX-7),
// as HGX and NVL72 systems ship.
const std::vector<Hardware>& hardware_table() {
  static const std::vector<Hardware> table = {
      {.name = "h100",
       .description = "NVIDIA H100 SXM 80 GB (HGX, NVLink 4)",
       .bf16_tflops = 989,
       .fp8_tflops = 1979,
       .hbm_gb = 80,
       .memory_gib = 79.6,  // 81559 MiB
       .hbm_tbps = 3.35,
       .nvlink_gbps = 450,
       .network_gbps = 50,
       .nvlink_domain = 8},
      {.name = "h200",
       .description = "NVIDIA H200 SXM 141 GB (HGX, NVLink 4)",
       .bf16_tflops = 989,
       .fp8_tflops = 1979,
       .hbm_gb = 141,
       .memory_gib = 140.4,  // 143771 MiB
       .hbm_tbps = 4.8,
       .nvlink_gbps = 450,
       .network_gbps = 50,
       .nvlink_domain = 8},
      {.name = "h800",
       .description = "NVIDIA H800 SXM 80 GB (HGX, NVLink 4 at 400 GB/s)",
       .bf16_tflops = 989,
       .fp8_tflops = 1979,
       .hbm_gb = 80,
       .memory_gib = 79.6,  // as the H100
       .hbm_tbps = 3.35,
       .nvlink_gbps = 200,
       .network_gbps = 50,
       .nvlink_domain = 8},
      {.name = "b200",
       .description = "NVIDIA B200 180 GB (HGX, NVLink 5)",
       .bf16_tflops = 2250,
       .fp8_tflops = 4500,
       .hbm_gb = 180,
       .memory_gib = 178.0,  // nominal less ~1%, as the Hopper parts; no part measured here
       .hbm_tbps = 8.0,
       .nvlink_gbps = 900,
       .network_gbps = 50,
       .nvlink_domain = 8},
      {.name = "gb200",
       .description = "NVIDIA GB200 NVL72, per Blackwell GPU 186 GB (NVLink 5 across 72)",
       .bf16_tflops = 2500,
       .fp8_tflops = 5000,
       .hbm_gb = 186,
       .memory_gib = 184.0,  // nominal less ~1%, as the Hopper parts; no part measured here
       .hbm_tbps = 8.0,
       .nvlink_gbps = 900,
       .network_gbps = 50,
       .nvlink_domain = 72},
  };
  return table;
}

const Hardware& hardware(std::string_view name) {
  std::vector<std::string> names;
  for (const Hardware& h : hardware_table()) {
    if (h.name == name) return h;
    names.push_back(h.name);
  }
  input_error("--hw: unknown accelerator '{}' (known: {})", name, fmt::join(names, ", "));
}

}  // namespace tmt
