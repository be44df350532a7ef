#version 450
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
// The foreign reader: copies `words` words from a raw device address that belongs to
// another tenant's process into this tenant's buffer.

layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Words { uint w[]; };
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) buffer Out { uint copy[]; };
layout(push_constant) uniform Params {
    uvec2 address;
    uint words;
} p;

void main() {
    Words src = Words(p.address);
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.words; i += stride) {
        copy[i] = src.w[i];
    }
}
