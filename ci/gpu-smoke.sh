#!/usr/bin/env bash
# ci/gpu-smoke.sh OUTDIR: hilt's smoke tier on GPU 0 of an NVIDIA machine, in one go.
#
# Builds hilt in release (or uses HILT_BIN), records the machine (nvidia-smi -q, the
# libraries found, hilt devices), makes a signing key, runs the smoke tier on cuda0
# signed with it, verifies the signed result, and, while time is left, runs the standard
# tier's fault-containment and performance checks too. Everything goes under OUTDIR:
#
#   OUTDIR/summary.txt       one line per step (exit status, seconds), then the verdicts
#   OUTDIR/logs/STEP.log     each step's output
#   OUTDIR/machine.txt       date, kernel, commit, and the sha256 of the hilt binary used
#   OUTDIR/libraries.txt     the CUDA, NVML and NVRTC libraries the loader knows
#   OUTDIR/nvidia-smi.txt    nvidia-smi -q, where nvidia-smi is installed
#   OUTDIR/devices.txt/json  hilt devices
#   OUTDIR/key/smoke.{key,pub}  the signing key made for this run
#   OUTDIR/run/latest/       result.json, result.dsse.json, events.jsonl (smoke tier; latest
#                            points to the run's own folder, <UTC start>-<run id>/)
#   OUTDIR/run-junit.xml     the smoke tier as JUnit
#   OUTDIR/run-standard/latest/  the same for the standard-tier checks, if time allowed,
#   OUTDIR/run-standard-junit.xml  with its JUnit
#   OUTDIR/run-sweep/latest/ the certification tier's global residue check across contexts
#                            (the whole-device sweep) and, in the same run, the on-device
#                            copy benchmark, if time allowed
#   OUTDIR/throughput.txt    the device detector's, the listener's and the fill kernel's
#                            throughput (GiB/s), the detector's against the copy median of
#                            the same run, the sweep's coverage and each residue check's time
#   OUTDIR/cuda-any.toml     the catch-all profile, written only for a GPU with no profile
#   OUTDIR/vulkan-devices.json  what hilt's Vulkan backend finds (the driver's Vulkan ICD)
#   OUTDIR/run-vulkan/       the smoke tier on the same GPU through Vulkan, where the driver
#   OUTDIR/run-vulkan-junit.xml  provides a Vulkan ICD and time allowed (vulkan-gpu.toml)
#
# The Vulkan run needs the Vulkan loader (libvulkan.so.1) and the NVIDIA driver's Vulkan
# ICD (nvidia_icd.json, shipped with the driver's graphics libraries); where either is
# missing the script says so and goes on.
#
# Needs: the NVIDIA driver (libcuda.so.1; libnvidia-ml.so.1 for NVML facts), NVRTC
# (libnvrtc.so from the CUDA toolkit or the nvidia-cuda-nvrtc wheel; searched for below)
# to build hilt's kernels, and either HILT_BIN=/path/to/hilt (a release build made
# elsewhere) or a Rust toolchain >= 1.95 (cargo) with crates.io or a vendored registry.
# Each step has its own timeout and the whole script keeps under 9 minutes; a failed step
# is logged and the script goes on to collect what it can (a failed build stops it; with
# no cargo at all an existing target/release/hilt is used, its sha256 recorded). Exit
# status: 0 when every outcome on the GPU passed or does not apply, the run finished and
# its signed result verified (the host's own findings are reported, not counted); 1
# otherwise; 2 when a prerequisite is missing.
#
# GPU_SMOKE_DEVICE=sim0 runs the same steps on hilt's simulated device, to try the script
# on a machine without a GPU (nothing it records is about a GPU then). It asks for the
# simulated device explicitly (HILT_BACKENDS=sim, --device sim0): a run that falls back to
# it for want of a GPU exits 3, never 0.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT/logs"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
START=$(date +%s)
BUDGET=${GPU_SMOKE_BUDGET_S:-540}

say() { echo "gpu-smoke: $*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_S CMD...: runs CMD with a timeout (never past the budget), output in
# logs/NAME.log; records its status and never stops the script.
LAST_RC=0
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 10 ]; then
    say "$name: skipped, out of time"
    LAST_RC=124
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0 rc=0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1 || rc=$?
  LAST_RC=$rc
  say "$name: exit $rc in $(($(date +%s) - t0)) s (limit $limit s)$([ "$rc" -eq 124 ] && echo ', TIMED OUT')"
  return 0
}

# The machine.
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$OUT/machine.txt"
if command -v nvidia-smi >/dev/null 2>&1; then
  step nvidia-smi 60 nvidia-smi -q
  cp "$OUT/logs/nvidia-smi.log" "$OUT/nvidia-smi.txt"
else
  say "nvidia-smi: not installed"
fi
(ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvidia-ml\.so|libnvrtc' || true) >"$OUT/libraries.txt"

# NVRTC: hilt (cudarc) loads exactly libnvrtc.so, .so.12, .so.11, .so.10, .so.9 or .so.1
# through the dynamic loader. If none of those names resolves (a toolkit outside the
# loader's path, or only libnvrtc.so.13), the newest NVRTC whose major version the driver
# supports is linked into OUTDIR/lib under the plain name: a cubin from an NVRTC newer than
# the driver would not load.
driver_cuda=$( (nvidia-smi 2>/dev/null || true) | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -n 1)
if ! grep -qE 'libnvrtc\.so(\.(12|11|10|9|1))? ' "$OUT/libraries.txt"; then
  site=$(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
  candidates=$(ls /usr/local/cuda/lib64/libnvrtc.so.* /usr/local/cuda-*/lib64/libnvrtc.so.* \
    /usr/lib/x86_64-linux-gnu/libnvrtc.so.* /usr/lib64/libnvrtc.so.* /opt/conda/lib/libnvrtc.so.* \
    $(for d in $site /usr/local/lib/python3*/dist-packages /usr/lib/python3*/site-packages; do
      echo "$d/nvidia/cuda_nvrtc/lib/libnvrtc.so.*" "$d/nvidia/cu13/lib/libnvrtc.so.*"; done) 2>/dev/null |
    grep -v builtins | sort -V || true)
  nvrtc=""
  for c in $candidates; do
    major=$(basename "$c" | sed -n 's/^libnvrtc\.so\.\([0-9]*\).*/\1/p')
    if [ -z "$driver_cuda" ] || [ -z "$major" ] || [ "$major" -le "$driver_cuda" ]; then nvrtc=$c; fi
  done
  if [ -n "$nvrtc" ]; then
    mkdir -p "$OUT/lib"
    ln -sf "$nvrtc" "$OUT/lib/libnvrtc.so"
    export LD_LIBRARY_PATH="$OUT/lib:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "nvrtc: using $nvrtc"
  else
    say "nvrtc: NOT FOUND (driver CUDA ${driver_cuda:-unknown}); every CUDA check will be an error: install the CUDA toolkit's NVRTC (cuda-nvrtc-12-x) or 'pip install nvidia-cuda-nvrtc-cu12'"
  fi
fi

# hilt itself.
if [ -n "${HILT_BIN:-}" ]; then
  HILT=$HILT_BIN
  say "build: using HILT_BIN=$HILT"
elif command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ]; then
  command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
  step build 360 cargo build --release --locked --bin hilt --target-dir "$ROOT/target"
  HILT="$ROOT/target/release/hilt"
  if [ "$LAST_RC" -ne 0 ]; then
    # Never go on with a binary left from an earlier build: it is not what this tree is.
    say "build: FAILED (see logs/build.log; without network, build elsewhere and set HILT_BIN)"
    exit 2
  fi
elif [ -x "$ROOT/target/release/hilt" ]; then
  HILT="$ROOT/target/release/hilt"
  say "build: no cargo here; using the existing $HILT"
else
  say "build: NEEDS a Rust toolchain >= 1.95 (cargo, from rustup or the distribution) with crates.io or vendored crates, or HILT_BIN=/path/to/a/release/hilt"
  exit 2
fi
if [ ! -x "$HILT" ]; then
  say "no hilt binary at $HILT"
  exit 2
fi
echo "binary: $HILT sha256 $(sha256sum "$HILT" | cut -d' ' -f1)" >>"$OUT/machine.txt"
# cuda0 is the GPU nvidia-smi calls 0.
export CUDA_DEVICE_ORDER=PCI_BUS_ID

# What hilt finds. Only the CUDA backend is probed: the run is about the GPU.
DEVICE=${GPU_SMOKE_DEVICE:-cuda0}
if [ "$DEVICE" = "${DEVICE#sim}" ]; then
  export HILT_BACKENDS=cuda
else
  export HILT_BACKENDS=sim
fi
step devices 60 "$HILT" devices
cp "$OUT/logs/devices.log" "$OUT/devices.txt"
step devices-json 60 "$HILT" devices --json
cp "$OUT/logs/devices-json.log" "$OUT/devices.json"
if ! grep -q "^$DEVICE " "$OUT/devices.txt"; then
  say "no CUDA device found (see devices.txt); nothing to run"
  exit 2
fi

mkdir -p "$OUT/key"
step keygen 30 "$HILT" keygen --out "$OUT/key/smoke"

junit=(--junit "$OUT/run-junit.xml")
# The profile of the later runs: the one hilt picks, or the catch-all written below.
profile_args=()

# The smoke tier on GPU 0 (cuda0), with the profile hilt picks for it by PCI device id. A GPU of
# a class without a profile gets a non-certifying catch-all (recorded in OUTDIR).
run_args=(run --device "$DEVICE" --tier smoke --tenant-timeout 120 --sign-key "$OUT/key/smoke.key" --out "$OUT/run")
step run-smoke 240 "$HILT" "${run_args[@]}" "${junit[@]}"
if [ "$LAST_RC" -eq 2 ] && grep -q 'no profile matches' "$OUT/logs/run-smoke.log"; then
  cat >"$OUT/cuda-any.toml" <<'EOF'
# Written by ci/gpu-smoke.sh for a GPU of a class hilt has no profile for: the base
# checks on any CUDA device, with no thresholds, never certifying.
id = "cuda-any"
title = "Any CUDA device (gpu-smoke fallback; never certifies)"
version = "0.1.0"
extends = "base"
certifying = false

[[match]]
backend = "cuda"
EOF
  say "run-smoke: no profile for this GPU; running again with $OUT/cuda-any.toml"
  step run-smoke-any 240 "$HILT" "${run_args[@]}" "${junit[@]}" --profile "$OUT/cuda-any.toml"
  profile_args=(--profile "$OUT/cuda-any.toml")
fi
SMOKE_RC=$LAST_RC

verified=1
if [ -f "$OUT/run/latest/result.dsse.json" ]; then
  step verify 30 "$HILT" verify --trusted-key "$OUT/key/smoke.pub" "$OUT/run/latest/result.dsse.json"
  verified=$LAST_RC
fi

# While time is left: fault containment and the performance checks of the standard tier.
if [ $((BUDGET - ($(date +%s) - START))) -gt 120 ]; then
  step run-standard 200 "$HILT" run "${profile_args[@]}" --device "$DEVICE" --tier standard --tenant-timeout 120 \
    --sign-key "$OUT/key/smoke.key" --out "$OUT/run-standard" --junit "$OUT/run-standard-junit.xml" \
    --skip residue --skip isolation::foreign_pointer
fi

# While time is left: the certification sweep of the whole device by one global check
# (across contexts: one tenant process per session), for its device time and coverage,
# and in the same run the on-device copy benchmark, whose median the detector's
# throughput is set against (docs/benchmarks.md). A run takes one name filter, so every
# other trial of the tier is skipped by its whole name.
if [ $((BUDGET - ($(date +%s) - START))) -gt 150 ]; then
  wanted=" residue::global::cross_context::$DEVICE performance::device_copy_bandwidth::$DEVICE "
  sweep_args=()
  while IFS= read -r trial; do
    case "$wanted" in *" $trial "*) ;; *) sweep_args+=(--skip "$trial") ;; esac
  done < <("$HILT" run "${profile_args[@]}" --device "$DEVICE" --tier certification --list 2>/dev/null |
    sed -n 's/^\[[^]]*\] \(.*\): test$/\1/p')
  # Without a listing, the sweep alone, as its name says.
  [ ${#sweep_args[@]} -gt 0 ] || sweep_args=("residue::global::cross_context::$DEVICE")
  step run-sweep 140 "$HILT" run "${profile_args[@]}" --device "$DEVICE" --tier certification --tenant-timeout 120 \
    --sign-key "$OUT/key/smoke.key" --out "$OUT/run-sweep" --exact "${sweep_args[@]}"
fi

# The detector's figures: throughput of the device detector (over the writer's memory),
# of the listener's counts and of the fill kernel on every global residue outcome (GiB/s
# of device time), and what the sweep covered.
if command -v python3 >/dev/null 2>&1; then
  for dir in run run-sweep; do
    [ -f "$OUT/$dir/latest/result.json" ] || continue
    python3 - "$OUT/$dir/latest/result.json" "$dir" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
copy = None
for o in r.get("outcomes", []):
    if o["check"] == "performance.device_copy_bandwidth":
        copy = {x["name"]: x["value"] for x in o.get("measurements", [])}.get("bandwidth_median")
        if copy:
            print(f'{sys.argv[2]}: device copy median {copy:.1f} GiB/s')
for o in r.get("outcomes", []):
    if not o["check"].startswith("residue."):
        continue
    m = {x["name"]: x["value"] for x in o.get("measurements", [])}
    e = o.get("evidence", {})
    parts = [f'{sys.argv[2]}: {o["trial"]} {o["verdict"]} in {o["duration_ms"] / 1000:.1f} s']
    for name in ("detector_throughput", "listener_throughput", "fill_throughput"):
        if name in m:
            parts.append(f"{name} {m[name]:.1f} GiB/s")
    if copy and "detector_throughput" in m:
        parts.append(f'detector {m["detector_throughput"] / copy:.2f} of the copy median')
    if "scanned_bytes" in m and o["check"].startswith("residue.global."):
        parts.append(f'scanned {m["scanned_bytes"] / 2**30:.2f} GiB ({m.get("scanned_share", 0) * 100:.1f} % of the device)')
    if "sweep_coverage_of_free" in e:
        parts.append(f'sweep covered {e["sweep_coverage_of_free"] * 100:.1f} % of {e["sweep_free_bytes_at_start"] / 2**30:.2f} GiB free')
    if "leak_probability_bound" in m:
        per_size = e.get("attempts_needed_per_size")
        basis = f', {per_size} needed at each size' if per_size else ''
        parts.append(f'leak bound {m["leak_probability_bound"]:.4f} ({e.get("attempts")} attempts{basis})')
    print(", ".join(parts))
EOF
  done >"$OUT/throughput.txt" 2>&1 || true
fi

# The same GPU through Vulkan, where the driver provides a Vulkan ICD: the device checks
# through a second API (residue, isolation and performance as Vulkan sees them), under a
# non-certifying profile written here with residue rounds of 5 % of device memory.
VK_DEVICE=""
if [ "$DEVICE" = "${DEVICE#sim}" ] && [ $((BUDGET - ($(date +%s) - START))) -gt 100 ]; then
  HILT_BACKENDS=vulkan "$HILT" devices --json >"$OUT/vulkan-devices.json" 2>"$OUT/logs/vulkan-devices.log" || true
  HILT_BACKENDS=vulkan "$HILT" devices >>"$OUT/logs/vulkan-devices.log" 2>&1 || true
  if command -v python3 >/dev/null 2>&1; then
    # The Vulkan device at the PCI address of the CUDA device under test.
    VK_DEVICE=$(python3 - "$OUT/devices.json" "$OUT/vulkan-devices.json" "$DEVICE" <<'EOF'
import json, sys
def load(path):
    text = open(path).read()
    return json.loads(text[text.index("{"):]) if "{" in text else {"devices": []}
cuda = [d for d in load(sys.argv[1])["devices"] if d["id"] == sys.argv[3]]
address = cuda[0].get("pci_address") if cuda else None
for d in load(sys.argv[2])["devices"]:
    if d["backend"] == "vulkan" and address and d.get("pci_address") == address:
        print(d["id"])
        break
EOF
    ) || VK_DEVICE=""
  fi
  if [ -z "$VK_DEVICE" ]; then
    say "vulkan: no Vulkan view of $DEVICE, so no Vulkan run ($(grep -h '^vulkan' "$OUT/logs/vulkan-devices.log" | head -n 3 | tr '\n' ' ')); it needs libvulkan1 and the driver's Vulkan ICD"
  else
    cat >"$OUT/vulkan-gpu.toml" <<'EOF'
# Written by ci/gpu-smoke.sh: the base checks on a GPU through Vulkan, with residue rounds
# of 5 % of device memory (as the NVIDIA class profiles have), never certifying.
id = "vulkan-gpu"
title = "A GPU through Vulkan (gpu-smoke; never certifies)"
version = "0.1.0"
extends = "vulkan-generic"
certifying = false

[[match]]
backend = "vulkan"

[check."residue.global.cross_process"]
params = { share = 0.05, sizes_kib = [64, 1024, 16384] }

[check."residue.global.cross_context"]
params = { share = 0.05, sizes_kib = [64, 1024, 16384] }
EOF
    say "vulkan: $DEVICE is $VK_DEVICE through Vulkan"
    step run-vulkan 150 env HILT_BACKENDS=vulkan "$HILT" run --device "$VK_DEVICE" --tier smoke --tenant-timeout 120 \
      --profile "$OUT/vulkan-gpu.toml" --sign-key "$OUT/key/smoke.key" --out "$OUT/run-vulkan" \
      --junit "$OUT/run-vulkan-junit.xml"
  fi
fi

# Summary: the result lines hilt printed, and the verdict of every outcome.
{
  echo
  echo "== hilt's summary lines"
  grep -h '^hilt: ' "$OUT/logs/run-smoke"*.log "$OUT/logs/run-standard.log" "$OUT/logs/run-sweep.log" "$OUT/logs/run-vulkan.log" 2>/dev/null || true
  if [ -s "$OUT/throughput.txt" ]; then
    echo
    echo "== device detector, listener and fill throughput, and the detector against the copy median"
    cat "$OUT/throughput.txt"
  fi
  for dir in run run-standard run-sweep run-vulkan; do
    [ -f "$OUT/$dir/latest/result.json" ] || continue
    echo
    echo "== $dir: verdicts"
    if command -v python3 >/dev/null 2>&1; then
      python3 - "$OUT/$dir/latest/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for o in r.get("outcomes", []):
    reason = (o.get("reason") or "").replace("\n", " ")[:160]
    print(f'{o["verdict"]:<14} {o["trial"]}  {reason}')
EOF
    else
      grep -o '"trial":"[^"]*"\|"verdict":"[^"]*"' "$OUT/$dir/latest/result.json" | paste - - || true
    fi
  done
  echo
  echo "total: $(($(date +%s) - START)) s"
} | tee -a "$SUMMARY"

# The exit status is about the GPU: every outcome on the device passed (or does not
# apply), through CUDA and, where it ran, through Vulkan, and the signed result verified.
# The host's own checks (secure boot, sshd, ...) are in the summary and the result, but a
# host finding does not fail a GPU smoke test.
device_ok() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
mine = [o for o in r.get("outcomes", []) if o["device"] == sys.argv[2]]
bad = [o for o in mine if o["verdict"] not in ("pass", "not_applicable")]
sys.exit(1 if (not mine or bad or not r["run"]["complete"]) else 0)
EOF
}
gpu_ok=1
if [ -f "$OUT/run/latest/result.json" ] && command -v python3 >/dev/null 2>&1; then
  if device_ok "$OUT/run/latest/result.json" "$DEVICE"; then gpu_ok=0; fi
  if [ -n "$VK_DEVICE" ] && ! { [ -f "$OUT/run-vulkan/latest/result.json" ] && device_ok "$OUT/run-vulkan/latest/result.json" "$VK_DEVICE"; }; then
    say "vulkan: some check on $VK_DEVICE did not pass (see summary.txt)"
    gpu_ok=1
  fi
elif [ "$SMOKE_RC" -eq 0 ]; then
  gpu_ok=0
fi
if [ "$gpu_ok" -eq 0 ]; then gpu="every check on $DEVICE passed or does not apply"; else gpu="some check on $DEVICE did not pass (see summary.txt)"; fi
if [ "$verified" -eq 0 ]; then sig=verified; else sig="NOT verified"; fi
say "gpu: $gpu; signature: $sig"
[ "$gpu_ok" -eq 0 ] && [ "$verified" -eq 0 ] && exit 0
exit 1
