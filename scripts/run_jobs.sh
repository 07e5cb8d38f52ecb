#!/usr/bin/env bash
# Run the imssa jobs of a job file side by side: one line = one job ("VERB ARGS ... --out DIR",
# several joined by " && imssa " run in sequence), its log written to DIR.log of its last --out.
#   bash scripts/run_jobs.sh JOBFILE [PARALLEL]
set -u
JOBFILE=$1
PARALLEL=${2:-16}
run_one() {
  local line=$1
  local log=${line##*--out }; log=${log%% *}.log
  mkdir -p "$(dirname "$log")"
  ( set -e; while read -r part; do
      eval "python3 -m imssa $part"
    done <<< "${line// && imssa /$'\n'}" ) > "$log" 2>&1
}
export -f run_one
tr '\n' '\0' < "$JOBFILE" | xargs -0 -P "$PARALLEL" -I {} bash -c 'run_one "$1"' _ {}
