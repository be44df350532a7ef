#version 450
// An empty kernel of one invocation (launch latency).
layout(local_size_x = 1) in;
void main() {}
