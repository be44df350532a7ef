// Shared by hilt's compute shaders: 64-bit arithmetic on (low, high) pairs of 32-bit
// words, so that no shader needs shaderInt64 (many mobile GPUs lack it), and the canary
// block every backend writes.

// a + b, wrapping.
uvec2 add64(uvec2 a, uint b) {
    uint carry;
    uint lo = uaddCarry(a.x, b, carry);
    return uvec2(lo, a.y + carry);
}

// a * b, wrapping: the low 64 bits of the product.
uvec2 mul64(uvec2 a, uvec2 b) {
    uint hi, lo;
    umulExtended(a.x, b.x, hi, lo);
    return uvec2(lo, hi + a.x * b.y + a.y * b.x);
}

// Canary block `i` of the key (marker, x, m) as eight 32-bit words, `lo` then `hi`:
// [marker, i, t, ~t ^ marker] as little-endian 64-bit words, with t = (i ^ x) * m.
void canary_block(uvec2 i, uvec2 marker, uvec2 x, uvec2 m, out uvec4 lo, out uvec4 hi) {
    uvec2 t = mul64(i ^ x, m);
    lo = uvec4(marker, i);
    hi = uvec4(t, ~t ^ marker);
}
