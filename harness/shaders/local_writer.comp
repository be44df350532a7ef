#version 450
#extension GL_GOOGLE_include_directive : require
// LeftoverLocals writer: every work-group fills all of its shared memory with canary
// numbered from group * BLOCKS, then counts back the blocks it can see (the positive
// control) into seen[group]. Each invocation checks blocks that its neighbour wrote, so
// that no compiler can answer the reads from the values this invocation stored.
#include "canary.glsl"

layout(local_size_x_id = 0) in;
// The device's maxComputeSharedMemorySize, in words; set when the pipeline is made.
layout(constant_id = 1) const uint SHARED_WORDS = 8;
const uint BLOCKS = SHARED_WORDS / 8u;
shared uvec4 lm[BLOCKS * 2u];

layout(std430, set = 0, binding = 0) buffer Seen { uint seen[]; };
layout(push_constant) uniform Params {
    uvec2 marker;
    uvec2 x;
    uvec2 m;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint ls = gl_WorkGroupSize.x;
    uint g = gl_WorkGroupID.x;
    uvec2 base;
    umulExtended(g, BLOCKS, base.y, base.x);
    for (uint b = lid; b < BLOCKS; b += ls) {
        uvec4 lo, hi;
        canary_block(add64(base, b), p.marker, p.x, p.m, lo, hi);
        lm[2u * b] = lo;
        lm[2u * b + 1u] = hi;
    }
    memoryBarrierShared();
    barrier();
    uint ok = 0u;
    for (uint b = (lid + 1u) % ls; b < BLOCKS; b += ls) {
        uvec4 lo, hi;
        canary_block(add64(base, b), p.marker, p.x, p.m, lo, hi);
        ok += (all(equal(lm[2u * b], lo)) && all(equal(lm[2u * b + 1u], hi))) ? 1u : 0u;
    }
    atomicAdd(seen[g], ok);
}
