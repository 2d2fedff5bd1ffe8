#include "parallel/nccl_comm.h"

#include "kernels/base/check.h"

#if TMT_WITH_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "parallel/watchdog.h"
#endif

namespace tmt {

#if TMT_WITH_CUDA
namespace {

// A failed NCCL call is fatal, in the form of the CUDA checks (kernels/cuda/check.cuh).
#define TMT_NCCL_CHECK(call)                                                     \
  do {                                                                           \
    const ncclResult_t tmt_nccl_rc_ = (call);                                    \
    if (tmt_nccl_rc_ != ncclSuccess) [[unlikely]] {                              \
      ::tmt::fatal(__FILE__, __LINE__, #call, ncclGetErrorString(tmt_nccl_rc_)); \
    }                                                                            \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kF64:
      return ncclFloat64;
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return ncclUint8;  // moved only (FP8 rows and their scales, fp8_pack_rows)
    default:
      break;
  }
  TMT_CHECK(false, "NCCL: no NCCL type for {}", dtype_name(t));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

size_t count(const Tensor& t) { return static_cast<size_t>(t.numel()); }
size_t row_elements(const Tensor& t) {
  return t.rank() > 0 && t.size(0) > 0 ? count(t) / static_cast<size_t>(t.size(0)) : 0;
}
void* at_row(const Tensor& t, int64_t row) {
  return static_cast<std::byte*>(t.data) +
         static_cast<size_t>(row) * row_elements(t) * dtype_size(t.dtype);
}

// A call whose tensors are not all on the device goes through the MPI twin.
bool on_host(const Tensor& a, const Tensor& b) {
  return a.device == Device::kCpu || b.device == Device::kCpu;
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The collectives this communicator queued that the GPU has not finished, oldest first, each
// with an event recorded after it: what the watchdog polls (watchdog_add_probe). The main thread
// adds, the watchdog's thread looks; both drop the finished ones from the front.
class InFlight {
 public:
  explicit InFlight(int device) : device_(device) {}
  ~InFlight() {
    for (const Op& op : ops_) cudaEventDestroy(op.done);
    for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  void queued(const char* op, const char* group, cudaStream_t stream) {
    std::lock_guard lock(mutex_);
    drop_finished();
    cudaEvent_t e = nullptr;
    if (spare_.empty()) {
      TMT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    } else {
      e = spare_.back();
      spare_.pop_back();
    }
    TMT_CUDA_CHECK(cudaEventRecord(e, stream));
    ops_.push_back({e, {op, group, wall_now()}});
  }

  // On the watchdog's thread.
  std::optional<PendingWork> oldest() {
    std::lock_guard lock(mutex_);
    cudaSetDevice(device_);  // the events' device, current on this thread too
    drop_finished();
    if (ops_.empty()) return std::nullopt;
    return ops_.front().work;
  }

 private:
  struct Op {
    cudaEvent_t done;
    PendingWork work;
  };
  void drop_finished() {
    while (!ops_.empty() && cudaEventQuery(ops_.front().done) == cudaSuccess) {
      spare_.push_back(ops_.front().done);
      ops_.pop_front();
    }
  }
  int device_;
  std::mutex mutex_;
  std::deque<Op> ops_;
  std::vector<cudaEvent_t> spare_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> mpi, ncclComm_t comm, cudaStream_t stream)
      : mpi_(std::move(mpi)), comm_(comm), stream_(stream) {
    int device = 0;
    TMT_CUDA_CHECK(cudaGetDevice(&device));
    in_flight_ = std::make_unique<InFlight>(device);
    // When the watchdog ends the job, kernels waiting on a peer that stopped must not keep the
    // GPU: ncclCommAbort stops them before MPI_Abort.
    abort_hook_ = watchdog_add_abort_hook([comm] { ncclCommAbort(comm); });
    probe_ = watchdog_add_probe([this] { return in_flight_->oldest(); });
  }
  ~NcclCommunicator() override {
    watchdog_remove_probe(probe_);
    watchdog_remove_abort_hook(abort_hook_);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    if (size() == 1 || t.numel() == 0) return;  // (a one-rank data-parallel group's gradients)
    if (t.device == Device::kCpu) return mpi_->all_reduce(t, op);
    TMT_NCCL_CHECK(
        ncclAllReduce(t.data, t.data, count(t), nccl_type(t.dtype), nccl_op(op), comm_, stream_));
    in_flight_->queued("all_reduce", name(), stream_);
  }

  void reduce_scatter(const Tensor& out, const Tensor& in) override {
    if (on_host(in, out)) return mpi_->reduce_scatter(out, in);
    TMT_CHECK(count(in) == count(out) * static_cast<size_t>(size()), "reduce_scatter: {} into {}",
              in.str(), out.str());
    TMT_NCCL_CHECK(ncclReduceScatter(in.data, out.data, count(out), nccl_type(in.dtype), ncclSum,
                                     comm_, stream_));
    in_flight_->queued("reduce_scatter", name(), stream_);
  }

  void all_gather(const Tensor& out, const Tensor& in) override {
    if (on_host(in, out)) return mpi_->all_gather(out, in);
    TMT_CHECK(count(out) == count(in) * static_cast<size_t>(size()), "all_gather: {} into {}",
              in.str(), out.str());
    // In place when `in` is this rank's chunk of `out`: NCCL accepts that as it is.
    TMT_NCCL_CHECK(
        ncclAllGather(in.data, out.data, count(in), nccl_type(in.dtype), comm_, stream_));
    in_flight_->queued("all_gather", name(), stream_);
  }

  void all_to_all_v(const Tensor& out, const std::vector<int64_t>& recv_rows, const Tensor& in,
                    const std::vector<int64_t>& send_rows,
                    const std::vector<int64_t>& send_first) override {
    if (on_host(in, out)) return mpi_->all_to_all_v(out, recv_rows, in, send_rows, send_first);
    const auto n = static_cast<size_t>(size());
    TMT_CHECK(send_rows.size() == n && recv_rows.size() == n &&
                  (send_first.empty() || send_first.size() == n),
              "all_to_all_v: {} send and {} receive counts for {} ranks", send_rows.size(),
              recv_rows.size(), n);
    const ncclDataType_t type = nccl_type(in.dtype);
    TMT_NCCL_CHECK(ncclGroupStart());
    int64_t s_row = 0, r_row = 0;
    for (size_t peer = 0; peer < n; ++peer) {
      const int64_t first = send_first.empty() ? s_row : send_first[peer];
      if (send_rows[peer] > 0) {
        TMT_NCCL_CHECK(ncclSend(at_row(in, first),
                                static_cast<size_t>(send_rows[peer]) * row_elements(in), type,
                                static_cast<int>(peer), comm_, stream_));
      }
      if (recv_rows[peer] > 0) {
        TMT_NCCL_CHECK(ncclRecv(at_row(out, r_row),
                                static_cast<size_t>(recv_rows[peer]) * row_elements(out), type,
                                static_cast<int>(peer), comm_, stream_));
      }
      s_row += send_rows[peer];
      r_row += recv_rows[peer];
    }
    TMT_NCCL_CHECK(ncclGroupEnd());
    in_flight_->queued("all_to_all_v", name(), stream_);
  }

  // Point to point through the MPI twin (nccl_comm.h says why).
  void send(const Tensor& t, int peer, int tag) override { mpi_->send(t, peer, tag); }
  void recv(const Tensor& t, int peer, int tag) override { mpi_->recv(t, peer, tag); }
  std::unique_ptr<SendRequest> isend(const Tensor& t, int peer, int tag) override {
    return mpi_->isend(t, peer, tag);
  }

  void broadcast(const Tensor& t, int root) override {
    if (size() == 1) return;
    if (t.device == Device::kCpu) return mpi_->broadcast(t, root);
    TMT_NCCL_CHECK(
        ncclBroadcast(t.data, t.data, count(t), nccl_type(t.dtype), root, comm_, stream_));
    in_flight_->queued("broadcast", name(), stream_);
  }

  void barrier() override {
    const InCollective mark("barrier", name());
    TMT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    mpi_->barrier();
  }

  std::unique_ptr<Communicator> split(int color, int key) const override {
    const InCollective mark("split", name());
    auto mpi = mpi_->split(color, key);
    ncclComm_t sub = nullptr;
    TMT_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, nullptr));
    return std::make_unique<NcclCommunicator>(std::move(mpi), sub, stream_);
  }

 private:
  std::unique_ptr<Communicator> mpi_;  // the same ranks over MPI: bootstrap and host tensors
  ncclComm_t comm_;
  cudaStream_t stream_;
  std::unique_ptr<InFlight> in_flight_;
  int abort_hook_ = -1, probe_ = -1;
};

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> nccl_communicator(const Communicator& mpi, void* stream) {
  auto twin = mpi.split(0, mpi.rank());
  ncclUniqueId id{};
  if (twin->rank() == 0) TMT_NCCL_CHECK(ncclGetUniqueId(&id));
  static_assert(sizeof(id) % sizeof(int32_t) == 0, "ncclUniqueId is a whole number of words");
  twin->broadcast(Tensor{&id, DType::kI32, Device::kCpu,
                         Shape{static_cast<int64_t>(sizeof(id) / sizeof(int32_t))}},
                  0);
  ncclComm_t comm = nullptr;
  {
    const InCollective mark("ncclCommInitRank", "world");
    TMT_NCCL_CHECK(ncclCommInitRank(&comm, twin->size(), id, twin->rank()));
  }
  return std::make_unique<NcclCommunicator>(std::move(twin), comm,
                                            static_cast<cudaStream_t>(stream));
}

#else

bool nccl_built() { return false; }

std::unique_ptr<Communicator> nccl_communicator(const Communicator&, void*) {
  TMT_CHECK(false, "NCCL: this build has no CUDA backend");
}

#endif

}  // namespace tmt
