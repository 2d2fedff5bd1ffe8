// copy: dst = src (same dtype, same number of elements, same device). On CUDA: one
// cudaMemcpyAsync on ctx.stream, any dtype.
//
// copy_to_host / copy_from_host: between a tensor on ctx.device and t.nbytes() bytes of host
// memory. They return when the copy is done, after the work queued before them on ctx.stream (so a
// kernel's output can be read at once). On the CPU a memcpy.
//
// zero: t = 0 (any dtype), on ctx.stream.
//
// synchronize: returns when the work queued on ctx.stream is done (at once on the CPU): for timing.
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void copy(const Context& ctx, const Tensor& dst, const Tensor& src);
void copy_to_host(const Context& ctx, void* dst, const Tensor& src);
void copy_from_host(const Context& ctx, const Tensor& dst, const void* src);
void zero(const Context& ctx, const Tensor& t);
void synchronize(const Context& ctx);

}  // namespace tmt
