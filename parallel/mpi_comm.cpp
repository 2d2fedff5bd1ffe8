// The Communicator over MPI. Host tensors go to MPI as they are; device tensors are staged through
// host buffers (after waiting for the device's queued work), which is slow but lets several ranks
// share one GPU (tests) and keeps the trainer's code the same on every device. MPI has no 16-bit
// float types: bf16|f16 tensors move as 16-bit words and are reduced through f32 copies (summed in
// f32, rounded once at the end).
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/base/check.h"
#include "parallel/comm.h"
#include "parallel/watchdog.h"

#if TMT_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

#define TMT_MPI_CHECK(call)                                                     \
  do {                                                                          \
    const int tmt_rc_ = (call);                                                 \
    if (tmt_rc_ != MPI_SUCCESS) [[unlikely]] {                                  \
      char tmt_msg_[MPI_MAX_ERROR_STRING];                                      \
      int tmt_len_ = 0;                                                         \
      MPI_Error_string(tmt_rc_, tmt_msg_, &tmt_len_);                           \
      ::tmt::fatal(__FILE__, __LINE__, #call, std::string(tmt_msg_, tmt_len_)); \
    }                                                                           \
  } while (0)

namespace tmt {
namespace {

MPI_Datatype mpi_type(const Tensor& t) {
  switch (t.dtype) {
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kBF16:
    case DType::kF16:
      return MPI_UINT16_T;  // moved, never reduced as such (see Widened)
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return MPI_BYTE;  // moved only (FP8 rows and their scales, fp8_pack_rows)
    default:
      TMT_CHECK(false, "MPI communicator: no MPI type for {}", t.str());
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

int count_of(int64_t n) {
  TMT_CHECK(n >= 0 && n <= INT32_MAX, "MPI communicator: {} elements exceed one call's int count",
            n);
  return static_cast<int>(n);
}

// MPI counts are ints: a tensor of more elements moves in pieces of at most this many (INT_MAX;
// TMT_MPI_MAX_COUNT lowers it, for the tests that check the pieces without 8 GiB tensors).
int64_t max_count() {
  static const int64_t n = [] {
    const char* v = std::getenv("TMT_MPI_MAX_COUNT");
    const long long c = v != nullptr ? std::atoll(v) : 0;
    return c > 0 && c < INT32_MAX ? static_cast<int64_t>(c) : static_cast<int64_t>(INT32_MAX);
  }();
  return n;
}

// f(first, count) over [0, n) in pieces of at most max_count() elements.
template <class F>
void in_pieces(int64_t n, F&& f) {
  const int64_t step = max_count();
  for (int64_t first = 0; first < n; first += step) f(first, count_of(std::min(step, n - first)));
}

std::byte* at(void* base, int64_t element, size_t element_bytes) {
  return static_cast<std::byte*>(base) + static_cast<size_t>(element) * element_bytes;
}

// The memory MPI reads or writes for one tensor in one call: the tensor's own on the host; for a
// device tensor a host buffer, filled from the device first when MPI reads it (`in`) and copied
// back by finish() when MPI writes it (`out`).
class Staged {
 public:
  enum Use : uint8_t { kIn = 1, kOut = 2, kInOut = 3 };

  Staged(const Tensor& t, Use use) : t_(t), use_(use) {
    if (t.device == Device::kCpu) {
      data_ = t.data;
      return;
    }
#if TMT_WITH_CUDA
    buffer_.resize(t.nbytes());
    data_ = buffer_.data();
    // Whatever stream produced the tensor, its work must be done before MPI sees it (or, for an
    // output, before the device copy is overwritten).
    cuda::synchronize_device();
    if ((use & kIn) != 0 && !buffer_.empty()) cuda::copy(data_, t.data, buffer_.size());
#else
    TMT_CHECK(false, "MPI communicator: {}: this build has no CUDA backend", t.str());
#endif
  }
  Staged(const Staged&) = delete;
  Staged& operator=(const Staged&) = delete;

  void* data() const { return data_; }
  // After the MPI call: the result (its first `bytes`, by default all) to the device.
  void finish(size_t bytes = SIZE_MAX) {
#if TMT_WITH_CUDA
    bytes = std::min(bytes, buffer_.size());
    if (t_.device != Device::kCpu && (use_ & kOut) != 0 && bytes > 0)
      cuda::copy(t_.data, data_, bytes);
#else
    (void)bytes;
#endif
  }

 private:
  Tensor t_;
  Use use_;
  void* data_ = nullptr;
  std::vector<std::byte> buffer_;
};

bool is_half(DType t) { return t == DType::kBF16 || t == DType::kF16; }

// A bf16|f16 tensor's values as f32 on the host, for a reduction: load() fills them from the
// tensor (staged from the device), store() rounds them back into it.
class Widened {
 public:
  explicit Widened(const Tensor& t) : t_(t), values_(static_cast<size_t>(t.numel())) {}
  float* data() { return values_.data(); }
  void load() {
    Staged st(t_, Staged::kIn);
    const auto* bits = static_cast<const uint16_t*>(st.data());
    for (size_t i = 0; i < values_.size(); ++i)
      values_[i] = t_.dtype == DType::kBF16 ? bf16_to_float(bits[i]) : f16_to_float(bits[i]);
  }
  void store() {
    Staged st(t_, Staged::kOut);
    auto* bits = static_cast<uint16_t*>(st.data());
    for (size_t i = 0; i < values_.size(); ++i)
      bits[i] = t_.dtype == DType::kBF16 ? float_to_bf16(values_[i]) : float_to_f16(values_[i]);
    st.finish();
  }

 private:
  Tensor t_;
  std::vector<float> values_;
};

struct MpiSendRequest final : SendRequest {
  const char* group = "world";        // the communicator's name, for the watchdog
  std::vector<MPI_Request> requests;  // one a piece (in_pieces)
  std::unique_ptr<Staged> staged;     // a device tensor's host copy, kept until the send is done
  ~MpiSendRequest() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
    }
  }
  void wait() override {
    const InCollective mark("isend (wait)", group);
    TMT_MPI_CHECK(
        MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
  }
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    TMT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    TMT_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    const InCollective mark("all_reduce", name());
    if (size_ == 1 || t.numel() == 0) return;
    const auto reduce = [&](void* data, MPI_Datatype type, size_t bytes) {
      in_pieces(t.numel(), [&](int64_t first, int count) {
        TMT_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, at(data, first, bytes), count, type, mpi_op(op), comm_));
      });
    };
    if (is_half(t.dtype)) {
      Widened w(t);
      w.load();
      reduce(w.data(), MPI_FLOAT, sizeof(float));
      return w.store();
    }
    Staged st(t, Staged::kInOut);
    reduce(st.data(), mpi_type(t), dtype_size(t.dtype));
    st.finish();
  }

  void reduce_scatter(const Tensor& out, const Tensor& in) override {
    const InCollective mark("reduce_scatter", name());
    TMT_CHECK(in.numel() == out.numel() * size_ && in.dtype == out.dtype,
              "reduce_scatter: {} into {} over {} ranks", in.str(), out.str(), size_);
    // Beyond one call's count, piece by piece: each rank's part of the piece packed side by side.
    const auto reduce = [&](void* from, void* to, MPI_Datatype type, size_t bytes) {
      const int64_t n = out.numel();
      if (n <= max_count()) {
        TMT_MPI_CHECK(MPI_Reduce_scatter_block(from, to, count_of(n), type, MPI_SUM, comm_));
        return;
      }
      std::vector<std::byte> packed(static_cast<size_t>(std::min(n, max_count()) * size_) * bytes);
      in_pieces(n, [&](int64_t first, int count) {
        for (int r = 0; r < size_; ++r) {
          std::memcpy(packed.data() + static_cast<size_t>(r) * static_cast<size_t>(count) * bytes,
                      at(from, r * n + first, bytes), static_cast<size_t>(count) * bytes);
        }
        TMT_MPI_CHECK(MPI_Reduce_scatter_block(packed.data(), at(to, first, bytes), count, type,
                                               MPI_SUM, comm_));
      });
    };
    if (is_half(in.dtype)) {
      Widened win(in), wout(out);
      win.load();
      reduce(win.data(), wout.data(), MPI_FLOAT, sizeof(float));
      return wout.store();
    }
    Staged sin(in, Staged::kIn), sout(out, Staged::kOut);
    reduce(sin.data(), sout.data(), mpi_type(in), dtype_size(in.dtype));
    sout.finish();
  }

  void all_gather(const Tensor& out, const Tensor& in) override {
    const InCollective mark("all_gather", name());
    TMT_CHECK(out.numel() == in.numel() * size_ && in.dtype == out.dtype,
              "all_gather: {} into {} over {} ranks", in.str(), out.str(), size_);
    // `in` may be this rank's own chunk of `out` (gathering in place). Staged, they are two
    // buffers, the chunk copied from the device like any input.
    Staged sin(in, Staged::kIn), sout(out, Staged::kOut);
    const bool in_place = sin.data() == static_cast<std::byte*>(sout.data()) +
                                            static_cast<size_t>(rank_) * in.nbytes();
    const int64_t n = in.numel();
    if (n <= max_count()) {
      TMT_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : sin.data(), count_of(n), mpi_type(in),
                                  sout.data(), count_of(n), mpi_type(in), comm_));
      return sout.finish();
    }
    // Piece by piece: each rank's piece lands one chunk (n elements) after the previous rank's,
    // so the receive type is the piece stretched to a chunk's extent.
    const size_t bytes = dtype_size(in.dtype);
    in_pieces(n, [&](int64_t first, int count) {
      MPI_Datatype piece = MPI_DATATYPE_NULL, chunk = MPI_DATATYPE_NULL;
      TMT_MPI_CHECK(MPI_Type_contiguous(count, mpi_type(in), &piece));
      TMT_MPI_CHECK(MPI_Type_create_resized(piece, 0, static_cast<MPI_Aint>(n * bytes), &chunk));
      TMT_MPI_CHECK(MPI_Type_commit(&chunk));
      TMT_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : at(sin.data(), first, bytes), count,
                                  mpi_type(in), at(sout.data(), first, bytes), 1, chunk, comm_));
      MPI_Type_free(&chunk);
      MPI_Type_free(&piece);
    });
    sout.finish();
  }

  void all_to_all_v(const Tensor& out, const std::vector<int64_t>& recv_rows, const Tensor& in,
                    const std::vector<int64_t>& send_rows,
                    const std::vector<int64_t>& send_first) override {
    const InCollective mark("all_to_all_v", name());
    TMT_CHECK(static_cast<int>(send_rows.size()) == size_ &&
                  static_cast<int>(recv_rows.size()) == size_ && in.dtype == out.dtype,
              "all_to_all_v: {} send and {} receive counts for {} ranks", send_rows.size(),
              recv_rows.size(), size_);
    TMT_CHECK(send_first.empty() || static_cast<int>(send_first.size()) == size_,
              "all_to_all_v: {} send offsets for {} ranks", send_first.size(), size_);
    const int64_t in_row = in.size(0) > 0 ? in.numel() / in.size(0) : 0;
    const int64_t out_row = out.size(0) > 0 ? out.numel() / out.size(0) : 0;
    std::vector<int64_t> sc(static_cast<size_t>(size_)), sd(sc.size()), rc(sc.size()),
        rd(sc.size());
    int64_t s_off = 0, r_off = 0, largest = 0;
    for (size_t i = 0; i < sc.size(); ++i) {
      sc[i] = send_rows[i] * in_row;
      sd[i] = send_first.empty() ? s_off : send_first[i] * in_row;
      if (!send_first.empty()) {
        TMT_CHECK(send_first[i] >= 0 && (send_first[i] + send_rows[i]) * in_row <= in.numel(),
                  "all_to_all_v: rows {}..{} for rank {} leave {}", send_first[i],
                  send_first[i] + send_rows[i], i, in.str());
      }
      rc[i] = recv_rows[i] * out_row;
      rd[i] = r_off;
      s_off += send_rows[i] * in_row;
      r_off += recv_rows[i] * out_row;
      largest = std::max({largest, sc[i], sd[i], rc[i], rd[i]});
    }
    TMT_CHECK((!send_first.empty() || s_off <= in.numel()) && r_off <= out.numel(),
              "all_to_all_v: counts exceed {} / {}", in.str(), out.str());
    Staged sin(in, Staged::kIn), sout(out, Staged::kOut);
    if (largest <= max_count()) {
      const auto ints = [](const std::vector<int64_t>& v) {
        std::vector<int> counts(v.size());
        for (size_t i = 0; i < v.size(); ++i) counts[i] = count_of(v[i]);
        return counts;
      };
      const std::vector<int> isc = ints(sc), isd = ints(sd), irc = ints(rc), ird = ints(rd);
      TMT_MPI_CHECK(MPI_Alltoallv(sin.data(), isc.data(), isd.data(), mpi_type(in), sout.data(),
                                  irc.data(), ird.data(), mpi_type(out), comm_));
    } else {
      // Counts or offsets beyond an int: every block as messages of at most max_count() elements.
      constexpr int kTag = 32000;
      const size_t bytes = dtype_size(in.dtype);
      std::vector<MPI_Request> requests;
      for (int r = 0; r < size_; ++r) {
        in_pieces(rc[static_cast<size_t>(r)], [&](int64_t first, int count) {
          requests.push_back(MPI_REQUEST_NULL);
          TMT_MPI_CHECK(MPI_Irecv(at(sout.data(), rd[static_cast<size_t>(r)] + first, bytes), count,
                                  mpi_type(out), r, kTag, comm_, &requests.back()));
        });
      }
      for (int r = 0; r < size_; ++r) {
        in_pieces(sc[static_cast<size_t>(r)], [&](int64_t first, int count) {
          requests.push_back(MPI_REQUEST_NULL);
          TMT_MPI_CHECK(MPI_Isend(at(sin.data(), sd[static_cast<size_t>(r)] + first, bytes), count,
                                  mpi_type(in), r, kTag, comm_, &requests.back()));
        });
      }
      TMT_MPI_CHECK(
          MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
    }
    sout.finish(static_cast<size_t>(r_off) * dtype_size(out.dtype));  // rows past them: untouched
  }

  // Messages of more than one call's count go as several, in order (MPI keeps the order of
  // messages between two ranks with one tag).
  void send(const Tensor& t, int peer, int tag) override {
    const InCollective mark("send", name());
    Staged st(t, Staged::kIn);
    in_pieces(t.numel(), [&](int64_t first, int count) {
      TMT_MPI_CHECK(MPI_Send(at(st.data(), first, dtype_size(t.dtype)), count, mpi_type(t), peer,
                             tag, comm_));
    });
  }

  void recv(const Tensor& t, int peer, int tag) override {
    const InCollective mark("recv", name());
    Staged st(t, Staged::kOut);
    in_pieces(t.numel(), [&](int64_t first, int count) {
      TMT_MPI_CHECK(MPI_Recv(at(st.data(), first, dtype_size(t.dtype)), count, mpi_type(t), peer,
                             tag, comm_, MPI_STATUS_IGNORE));
    });
    st.finish();
  }

  std::unique_ptr<SendRequest> isend(const Tensor& t, int peer, int tag) override {
    auto request = std::make_unique<MpiSendRequest>();
    request->group = name();
    request->staged = std::make_unique<Staged>(t, Staged::kIn);
    in_pieces(t.numel(), [&](int64_t first, int count) {
      request->requests.push_back(MPI_REQUEST_NULL);
      TMT_MPI_CHECK(MPI_Isend(at(request->staged->data(), first, dtype_size(t.dtype)), count,
                              mpi_type(t), peer, tag, comm_, &request->requests.back()));
    });
    return request;
  }

  void broadcast(const Tensor& t, int root) override {
    const InCollective mark("broadcast", name());
    Staged st(t, rank_ == root ? Staged::kIn : Staged::kOut);
    in_pieces(t.numel(), [&](int64_t first, int count) {
      TMT_MPI_CHECK(
          MPI_Bcast(at(st.data(), first, dtype_size(t.dtype)), count, mpi_type(t), root, comm_));
    });
    st.finish();
  }

  void barrier() override {
    const InCollective mark("barrier", name());
    TMT_MPI_CHECK(MPI_Barrier(comm_));
  }

  std::unique_ptr<Communicator> split(int color, int key) const override {
    const InCollective mark("split", name());
    MPI_Comm sub;
    TMT_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiCommunicator>(sub, true);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

double Communicator::all_reduce_scalar(double v, ReduceOp op) {
  Tensor t;
  t.data = &v;
  t.dtype = DType::kF64;
  t.shape = Shape{1};
  all_reduce(t, op);
  return v;
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine) {
  const auto n = static_cast<size_t>(comm.size());
  std::vector<int64_t> lengths(n);
  auto my_length = static_cast<int64_t>(mine.size());
  comm.all_gather(Tensor{lengths.data(), DType::kI64, Device::kCpu, Shape{comm.size()}},
                  Tensor{&my_length, DType::kI64, Device::kCpu, Shape{1}});
  int64_t words = 1;
  for (int64_t l : lengths) words = std::max(words, (l + 7) / 8);
  std::vector<int64_t> packed(static_cast<size_t>(words), 0), all(n * static_cast<size_t>(words));
  std::memcpy(packed.data(), mine.data(), mine.size());
  comm.all_gather(Tensor{all.data(), DType::kI64, Device::kCpu, Shape{comm.size() * words}},
                  Tensor{packed.data(), DType::kI64, Device::kCpu, Shape{words}});
  std::vector<std::string> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].assign(reinterpret_cast<const char*>(all.data() + i * static_cast<size_t>(words)),
                  static_cast<size_t>(lengths[i]));
  }
  return out;
}

std::unique_ptr<Communicator> mpi_world() {
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}
std::unique_ptr<Communicator> mpi_self() {
  return std::make_unique<MpiCommunicator>(MPI_COMM_SELF, false);
}

}  // namespace tmt
