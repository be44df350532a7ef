#version 450
// LeftoverLocals listener: every work-group copies the shared memory it never wrote to
// dump[group * SHARED_WORDS ...].

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint SHARED_WORDS = 8;
shared uint lm[SHARED_WORDS];

layout(std430, set = 0, binding = 0) buffer Dump { uint dump[]; };
layout(push_constant) uniform Params {
    // Never equal to the value below: a store the compiler cannot rule out, so that it
    // must read shared memory rather than treat it as never written.
    uint poison;
} p;

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint ls = gl_WorkGroupSize.x;
    uint g = gl_WorkGroupID.x;
    if (p.poison == 0x68696c74u) {
        lm[lid] = p.poison;
    }
    memoryBarrierShared();
    barrier();
    for (uint w = lid; w < SHARED_WORDS; w += ls) {
        dump[g * SHARED_WORDS + w] = lm[w];
    }
}
