#!/bin/bash
# hilt.sbatch as a job array over node lists: one array task per line of LISTS (a Slurm
# node list, `gpu[001-016]`), each task on exactly the nodes of its line, all tasks
# writing under one run directory ($HILT_RESULTS/slurm-<array job id>). A job array's
# tasks share one set of options, so the array is submitted held, each task is given
# its node list with `scontrol update`, and the array is released. With
# HILT_TRUSTED_KEY set, a last job runs `hilt fleet` over every list's nodes once the
# whole array has ended (fleet.md, fleet.junit.xml, fleet.json in the run directory).
#
#   deploy/slurm/submit-array.sh lists.txt --gres=gpu:8 --partition=gpu
#
# Prints the array's job id, and the report job's on a second line. Settings as for
# hilt.sbatch (HILT_RESULTS, HILT_SIGN_KEY, HILT, HILT_ARGS, HILT_TRUSTED_KEY).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: submit-array.sh LISTS [sbatch options...]" >&2; exit 2; }
lists=$1
shift
: "${HILT_RESULTS:?set HILT_RESULTS to a directory that every node can write}"
mapfile -t groups < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$lists" | grep -v '^$')
[ ${#groups[@]} -gt 0 ] || { echo "submit-array.sh: $lists holds no node list" >&2; exit 2; }

# The tasks report nothing themselves: the report waits for all of them.
job=$(HILT_TRUSTED_KEY='' HILT_RUN_ID='' sbatch --parsable --hold --array="0-$((${#groups[@]} - 1))" \
  --nodes=1 "$@" "$here/hilt.sbatch")
job=${job%%;*}
run_dir=$HILT_RESULTS/slurm-$job
mkdir -p "$run_dir"
for i in "${!groups[@]}"; do
  count=$(scontrol show hostnames "${groups[$i]}" | wc -l)
  scontrol update JobId="${job}_$i" ReqNodeList="${groups[$i]}" NumNodes="$count"
done
for group in "${groups[@]}"; do scontrol show hostnames "$group"; done >"$run_dir/nodes.txt"
scontrol release "$job"
echo "$job"

if [ -n "${HILT_TRUSTED_KEY:-}" ]; then
  hilt=${HILT:-hilt}
  report="$hilt fleet '$run_dir' --trusted-key '$HILT_TRUSTED_KEY' --expect-nodes '$run_dir/nodes.txt'"
  sbatch --parsable --job-name=hilt-fleet --dependency="afterany:$job" --nodes=1 --ntasks=1 \
    --output="$run_dir/fleet-%j.out" --wrap "
      $report --format junit --out '$run_dir/fleet.junit.xml'
      $report --format json --out '$run_dir/fleet.json'
      rm -f '$run_dir/fleet.md'
      $report --format markdown --out '$run_dir/fleet.md'"
fi
