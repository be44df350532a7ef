#version 450
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
// The faulting tenant: one invocation writes a word at a raw device address far beyond
// its own buffer (the buffer's device address plus an offset, added on the host).

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Word { uint value; };
layout(local_size_x = 1) in;
layout(push_constant) uniform Params {
    uvec2 address;
} p;

void main() {
    Word(p.address).value = 0x6f6f626fu;
}
