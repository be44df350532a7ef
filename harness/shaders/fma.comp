#version 450
// `items` invocations each run `iterations` rounds of 16 independent single-precision
// fused multiply-adds (32 flops a round), as on every backend.

layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Out { float sums[]; };
layout(push_constant) uniform Params {
    uint iterations;
    uint items;
} p;

void main() {
    uint id = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x
        + gl_LocalInvocationID.x;
    if (id >= p.items) {
        return;
    }
    vec4 a = vec4(float(id) * 1e-7), b = vec4(0.9999), c = vec4(1e-4);
    vec4 d = a + 1.0, e = a + 2.0, f = a + 3.0;
    for (uint i = 0u; i < p.iterations; i++) {
        a = fma(a, b, c);
        d = fma(d, b, c);
        e = fma(e, b, c);
        f = fma(f, b, c);
    }
    vec4 s = a + d + e + f;
    sums[id] = s.x + s.y + s.z + s.w;
}
