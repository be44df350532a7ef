#version 450
#extension GL_GOOGLE_include_directive : require
// Global canary: block b of the bound window is canary block `first + b`.
#include "canary.glsl"

layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Window { uvec4 words[]; };
layout(push_constant) uniform Params {
    uvec2 marker;
    uvec2 x;
    uvec2 m;
    uvec2 first;  // the index of the window's first block
    uint blocks;  // blocks in the window
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint b = gl_GlobalInvocationID.x; b < p.blocks; b += stride) {
        uvec4 lo, hi;
        canary_block(add64(p.first, b), p.marker, p.x, p.m, lo, hi);
        words[2u * b] = lo;
        words[2u * b + 1u] = hi;
    }
}
