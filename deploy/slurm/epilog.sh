#!/bin/bash
# A Slurm Epilog: after every job, a smoke run of hilt on the node's accelerators, so
# that a device that starts leaking (a driver update, a bad reset) is taken out of
# service before the next tenant gets it. Slurm drains a node whose epilog fails; this
# script fails only when the node is not conformant (hilt's exit 1), never because hilt
# could not decide (exit 3, such as a device lock another run holds) or could not run.
#
# slurm.conf:
#   Epilog=/etc/slurm/epilog.d/hilt.sh
# with this file there, and HILT (the executable), HILT_EPILOG_RESULTS, HILT_SIGN_KEY
# (and any other HILT_* setting, such as HILT_LOCK_DIR) set below or in /etc/default/hilt
# (or the file HILT_DEFAULTS names), as VAR=value lines: every variable the file sets is
# exported to hilt. The smoke tier takes seconds per device; the epilog holds the node
# (state COMPLETING) until it ends, so keep it to the smoke tier.
#
# Every job adds a run folder to HILT_EPILOG_RESULTS: the epilog keeps the newest
# HILT_EPILOG_KEEP of them (default 200; 0 keeps all) and removes older ones, never the
# one `latest` points to and nothing that is not a run folder (YYYYMMDDTHHMMSSZ-8 hex).
set -u
defaults=${HILT_DEFAULTS:-/etc/default/hilt}
if [ -r "$defaults" ]; then
  # A defaults file holds plain VAR=value lines: export what it sets, or hilt would
  # never see HILT_SIGN_KEY and sign with a one-off key.
  set -a
  . "$defaults"
  set +a
fi
hilt=${HILT:-/usr/local/bin/hilt}
out=${HILT_EPILOG_RESULTS:-/var/lib/hilt/epilog}
node=${SLURMD_NODENAME:-$(hostname -s)}
mkdir -p "$out"
timeout "${HILT_EPILOG_TIMEOUT:-600}" "$hilt" run -q --tier smoke --node "$node" --out "$out" \
  --lock-timeout 60 >>"$out/epilog.log" 2>&1
rc=$?
keep=${HILT_EPILOG_KEEP:-200}
if [ "$keep" -gt 0 ] 2>/dev/null; then
  current=$(readlink "$out/latest" 2>/dev/null || true)
  # Run folder names sort by their UTC start time.
  LC_ALL=C ls -1 "$out" | LC_ALL=C grep -E '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$' | LC_ALL=C sort | head -n "-$keep" |
    while read -r old; do
      # Only a run's folder itself: never a file or a link that bears such a name.
      if [ "$old" != "$current" ] && [ -d "$out/$old" ] && [ ! -L "$out/$old" ]; then
        rm -rf -- "${out:?}/$old"
      fi
    done
fi
case $rc in
  0) exit 0 ;;
  1)
    logger -t hilt "node $node is not conformant after job ${SLURM_JOB_ID:-?}: draining it (results in $out)"
    exit 1
    ;;
  *)
    logger -t hilt "hilt could not decide on node $node after job ${SLURM_JOB_ID:-?} (exit $rc); see $out/epilog.log"
    exit 0
    ;;
esac
