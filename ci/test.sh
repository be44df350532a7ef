#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing (Debian's
# packages with apt-get, NVIDIA's NVRTC wheel and securesystemslib with pip), then runs
# every test.
# `.ci/run` calls this same script after formatting and lint checks.
#
#   ci/test.sh                 # all tests
#   ci/test.sh --test opencl   # arguments go to `cargo test --workspace --no-fail-fast`
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Debian packages the tests use, installed when missing (root, or sudo).
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
packages=(
  openssl                # tests/signing.rs: OpenSSL verifies hilt's signatures
  pocl-opencl-icd        # tests/opencl.rs: a real OpenCL runtime on the CPU
  ocl-icd-libopencl1     # ... and the OpenCL ICD loader
  chromium               # tests/reports.rs, tests/compare.rs, tests/fleet.rs: render the HTML pages
  mesa-vulkan-drivers    # tests/vulkan.rs: lavapipe, a real Vulkan driver on the CPU
  libvulkan1             # ... the Vulkan loader
  vulkan-validationlayers # ... the Khronos validation layer the Vulkan checks run under
  glslc                  # ... recompiles the checked-in SPIR-V to prove it matches its GLSL
  munge                  # tests/deploy.rs: a two-node Slurm cluster (ci/slurm-cluster.sh) ...
  slurmctld              # ... its controller
  slurmd                 # ... its two node daemons
  slurm-client           # ... and sbatch, squeue, scontrol, sinfo
)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
# A virtual environment for kubernetes-validate (Debian's python3 needs python3-venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
need=()
for p in "${packages[@]}"; do installed "$p" || need+=("$p"); done
# A package that is not installed through dpkg but is on the PATH (chromium, python3, glslc
# from elsewhere) is good enough.
need=($(for p in "${need[@]}"; do case "$p" in chromium | python3 | glslc) command -v "$p" >/dev/null 2>&1 || echo "$p" ;; *) echo "$p" ;; esac; done))
if ((${#need[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci/test.sh: these Debian packages are missing and there is no apt-get: ${need[*]}" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "ci/test.sh: installing ${need[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Here no OpenCL or Vulkan device, or no glslc, is a failure, not an ignored test; so is a
# Slurm cluster that cannot be started, or manifests that cannot be validated
# (`HILT_REQUIRE_SLURM=0 ci/test.sh` where the machine cannot run slurmd, as without root).
export HILT_REQUIRE_OPENCL=1
export HILT_REQUIRE_VULKAN=1
export HILT_REQUIRE_GLSLC=1
export HILT_REQUIRE_SLURM=${HILT_REQUIRE_SLURM:-1}
export HILT_REQUIRE_KUBERNETES_VALIDATE=${HILT_REQUIRE_KUBERNETES_VALIDATE:-1}

# kubernetes-validate (PyPI), pinned with everything it needs in
# ci/kubernetes-validate.txt, in a virtual environment kept under target/ between runs:
# tests/deploy.rs validates every Kubernetes manifest with it.
kv_dir=$PWD/target/kubernetes-validate-$(sha256sum ci/kubernetes-validate.txt | cut -c1-12)
if [ ! -x "$kv_dir/bin/kubernetes-validate" ]; then
  rm -rf "$kv_dir"
  if ! { python3 -m venv "$kv_dir" && "$kv_dir/bin/python3" -m pip install --quiet --disable-pip-version-check \
    -r ci/kubernetes-validate.txt; }; then
    echo "note: kubernetes-validate could not be installed; the manifest test will say so" >&2
    rm -rf "$kv_dir"
  fi
fi
[ ! -x "$kv_dir/bin/kubernetes-validate" ] || export HILT_KUBERNETES_VALIDATE=$kv_dir/bin/kubernetes-validate

# NVIDIA's NVRTC from its PyPI wheel (no driver or GPU needed), so that tests/cuda.rs
# compiles the CUDA kernels for sm_80, sm_89 and sm_90 with the compiler hilt uses on a
# GPU. Fetched by name and version with pip, its sha256 checked by pip (--require-hashes);
# kept between runs under target/. Where the wheel cannot be fetched, the kernel test is
# reported as ignored, with the reason, and the rest goes on.
nvrtc_version=12.6.85
nvrtc_sha=800927308ccc5dd6246d3f61f7fcef2ed7ec4e59e199090d360d3293f78bd5a2
nvrtc_dir=$PWD/target/nvrtc-$nvrtc_version
if [ "$(uname -m)" = x86_64 ] && [ ! -e "$nvrtc_dir/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]; then
  dl=$(mktemp -d)
  echo "nvidia-cuda-nvrtc-cu12==$nvrtc_version --hash=sha256:$nvrtc_sha" >"$dl/requirements.txt"
  if python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --platform manylinux_2_12_x86_64 --python-version 3.11 \
    -r "$dl/requirements.txt" -d "$dl/wheel"; then
    rm -rf "$nvrtc_dir.tmp" && mkdir -p "$nvrtc_dir.tmp"
    # A wheel is a zip file.
    python3 -m zipfile -e "$dl"/wheel/*.whl "$nvrtc_dir.tmp"
    rm -rf "$nvrtc_dir" && mv "$nvrtc_dir.tmp" "$nvrtc_dir"
  else
    echo "note: NVRTC wheel not fetched; the CUDA kernel compile test will be ignored" >&2
  fi
  rm -rf "$dl"
fi
if [ -e "$nvrtc_dir/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]; then
  export LD_LIBRARY_PATH="$nvrtc_dir/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export HILT_REQUIRE_NVRTC=1
fi

# Python's securesystemslib, a DSSE implementation that shares no code with hilt:
# tests/signing.rs has it verify what hilt signs and sign what hilt must verify. Pinned
# versions, installed by name with pip into target/ (nothing system-wide), once.
sslib_version=1.6.0
cryptography_version=50.0.2
sslib_dir=$PWD/target/python-securesystemslib-$sslib_version
if [ ! -e "$sslib_dir/.installed" ]; then
  rm -rf "$sslib_dir"
  if python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --target "$sslib_dir" \
    "securesystemslib[crypto]==$sslib_version" "cryptography==$cryptography_version"; then
    touch "$sslib_dir/.installed"
  else
    echo "note: securesystemslib $sslib_version not installed; its interoperability tests will fail" >&2
  fi
fi
export PYTHONPATH="$sslib_dir${PYTHONPATH:+:$PYTHONPATH}"
# Here a missing securesystemslib is a failure, not a skipped test.
export HILT_REQUIRE_SECURESYSTEMSLIB=1

# Every test binary runs (--no-fail-fast), so one failing binary does not hide how the
# others fare; the totals over all of them are printed last.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
