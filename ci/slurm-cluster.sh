#!/usr/bin/env bash
# A two-node Slurm cluster on this machine, for CI: munged, slurmctld and two slurmd
# (nodes n1 and n2, both on localhost with ports of their own), started and stopped by
# this script without systemd. Each node has two GPUs in GRES, as `File=` device nodes
# made with mknod (Slurm 22.05 drops GRES that have a count and no file). Everything the
# cluster keeps (configuration, keys, spool, logs) lives under one state directory.
#
#   ci/slurm-cluster.sh up     # start it; prints the SLURM_CONF to export
#   ci/slurm-cluster.sh down   # stop it and remove its state
#   ci/slurm-cluster.sh env    # `export SLURM_CONF=...` for the running cluster
#
# HILT_SLURM_DIR sets the state directory (default target/slurm-cluster);
# HILT_SLURM_PORT the first of its three ports (default 16817). Needs root (mknod, and
# slurmd launches jobs) and Debian's slurmctld, slurmd, slurm-client and munge.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${HILT_SLURM_DIR:-$PWD/target/slurm-cluster}
port=${HILT_SLURM_PORT:-16817}
conf=$state/etc/slurm.conf
nodes=(n1 n2)

die() { echo "slurm-cluster: $*" >&2; exit 1; }

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
  local limit=$1; shift
  local i
  for ((i = 0; i < limit * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}

# Stops the daemon whose pid file is $1, if it runs.
stop_pidfile() {
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait_for 10 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root: slurmd starts jobs and the GRES device nodes are made with mknod"
  for program in munged slurmctld slurmd sbatch sinfo scontrol; do
    command -v "$program" >/dev/null 2>&1 || die "$program is missing (Debian: munge slurmctld slurmd slurm-client)"
  done
  [ ! -e "$state/run/slurmctld.pid" ] || die "a cluster already runs from $state (ci/slurm-cluster.sh down first)"
  rm -rf "$state"
  mkdir -p "$state"/{etc,munge,run,log,dev,ctld} "${nodes[@]/#/$state/spool/}"
  chmod 0700 "$state/munge"

  # munge: a key of its own, a socket of its own.
  dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$state/munge/munge.key"
  munged --force --key-file="$state/munge/munge.key" --socket="$state/munge/munge.socket" \
    --pid-file="$state/run/munged.pid" --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munged.seed"
  wait_for 10 test -S "$state/munge/munge.socket" || die "munged did not start; see $state/log/munged.log"

  # Two GPUs per node, as character devices (the major and minor of /dev/nvidia0 and 1:
  # nothing opens them).
  local n i
  for n in "${nodes[@]}"; do
    for i in 0 1; do mknod -m 0666 "$state/dev/$n-gpu$i" c 195 "$i"; done
  done

  : >"$state/etc/plugstack.conf"
  cat >"$conf" <<CONF
ClusterName=hilt-ci
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
CredType=cred/munge
PlugStackConfig=$state/etc/plugstack.conf
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool/%n
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd-%n.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port + 1)) CPUs=1 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((port + 2)) CPUs=1 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=ci Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
CONF
  cat >"$state/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=n1 Name=gpu File=$state/dev/n1-gpu[0-1]
NodeName=n2 Name=gpu File=$state/dev/n2-gpu[0-1]
CONF

  export SLURM_CONF=$conf
  slurmctld -f "$conf" -i
  wait_for 20 scontrol ping || die "slurmctld did not answer; see $state/log/slurmctld.log"
  for n in "${nodes[@]}"; do
    slurmd -f "$conf" -N "$n"
  done
  wait_for 60 bash -c "[ \"\$(sinfo -h -N -o %T | sort -u)\" = idle ]" || {
    sinfo -N >&2 || true
    die "the nodes did not come up idle; see $state/log/"
  }
  echo "export SLURM_CONF=$conf"
}

down() {
  local n
  export SLURM_CONF=$conf
  for n in "${nodes[@]}"; do stop_pidfile "$state/run/slurmd-$n.pid"; done
  stop_pidfile "$state/run/slurmctld.pid"
  stop_pidfile "$state/run/munged.pid"
  rm -rf "$state"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: ci/slurm-cluster.sh up|down|env" >&2; exit 2 ;;
esac
