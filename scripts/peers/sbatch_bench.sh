#!/usr/bin/env bash
# Slurm peer for scripts/bench: submits N trivial jobs to the cluster named by
# $SLURM_CONF the way a user would (one `sbatch --wrap true` process per job,
# one after another) and waits until all have left the queue. Prints one JSON
# object: {"submitted": N, "submit_s": S, "total_s": T}, both times from the
# first submission (submit_s: until the last sbatch returned; total_s: until
# every job reached a final state). Progress goes to stderr. Fails if a job
# ends in any state but COMPLETED. For a local cluster: scripts/slurm start DIR.
#   SLURM_CONF=/tmp/gantry-slurm/slurm.conf scripts/peers/sbatch_bench.sh N
# SBATCH_BENCH_POLL: seconds between squeue calls (default 0.1).
set -euo pipefail

me="sbatch_bench"
TIMEOUT_S=${SBATCH_BENCH_TIMEOUT:-600}   # for the whole run
POLL_S=${SBATCH_BENCH_POLL:-0.1}   # seconds between squeue calls

log() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { log "$*"; exit 1; }

(($# == 1)) && [[ $1 =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: SLURM_CONF=PATH $0 N   submit N trivial sbatch jobs and time them; prints one JSON line" >&2
    exit 2
}
n=$1
[[ -n ${SLURM_CONF:-} ]] || die "SLURM_CONF is not set (e.g. export SLURM_CONF=\$(scripts/slurm start /tmp/gantry-slurm))"
[[ -r $SLURM_CONF ]] || die "SLURM_CONF=$SLURM_CONF is not a readable file"
export SLURM_CONF
for b in sbatch squeue scancel; do
    command -v "$b" >/dev/null || die "$b not found (apt-get install slurm-client)"
done

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

ids=()
cancel_ours() {
    ((${#ids[@]} == 0)) || scancel "${ids[@]}" >/dev/null 2>&1 || true
}

# Jobs the controller has already forgotten (after MinJobAge) are looked up in
# the job completion file when the cluster writes one (jobcomp/filetxt).
jobcomp=""
if [[ $(scontrol show config 2>/dev/null | awk '$1 == "JobCompType" { print $3 }') == jobcomp/filetxt ]]; then
    jobcomp=$(scontrol show config | awk '$1 == "JobCompLoc" { print $3 }')
fi

t0=$EPOCHREALTIME
step=$(( n >= 10 ? n / 10 : 1 ))
for ((i = 1; i <= n; i++)); do
    if ! out=$(sbatch --parsable --wrap true -o /dev/null -J sbatch-bench 2>&1); then
        cancel_ours
        die "sbatch failed on job $i of $n: $out"
    fi
    id=${out%%;*}
    [[ $id =~ ^[0-9]+$ ]] || { cancel_ours; die "sbatch printed no job id on job $i of $n: $out"; }
    ids+=("$id")
    ((i % step && i != n)) || log "submitted $i/$n"
done
submit_s=$(elapsed "$t0")
idlist=$(IFS=,; echo "${ids[*]}")
idfile=$(mktemp)
trap 'rm -f "$idfile"' EXIT
printf '%s\n' "${ids[@]}" >"$idfile"

# Prints "ACTIVE COMPLETED SEEN BAD" for our jobs: BAD lists "id:STATE" of jobs
# that ended in another final state, or "-".
states() {
    local out
    # squeue -j with a job the controller no longer knows fails; then read the
    # whole queue and keep ours.
    out=$(squeue -h -t all -j "$idlist" -o '%i %T' 2>/dev/null) ||
        out=$(squeue -h -t all -o '%i %T' 2>/dev/null) || return 1
    printf '%s\n' "$out" | awk -v idfile="$idfile" '
        BEGIN { while ((getline id < idfile) > 0) ours[id] = 1 }
        !($1 in ours) || seen[$1]++ { next }
        { n++ }
        $2 == "COMPLETED" { done++; next }
        $2 ~ /^(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE|OUT_OF_MEMORY|REVOKED)$/ {
            bad = bad (bad == "" ? "" : ",") $1 ":" $2; next
        }
        { active++ }
        END { printf "%d %d %d %s\n", active, done, n, (bad == "" ? "-" : bad) }'
}

# Final states from the job completion file, for jobs squeue no longer lists:
# prints "id:STATE" of those that did not complete, or nothing.
jobcomp_bad() {
    [[ -n $jobcomp && -r $jobcomp ]] || return 0
    awk -v idfile="$idfile" '
        BEGIN { while ((getline id < idfile) > 0) ours[id] = 1 }
        {
            id = ""; st = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^JobId=/) id = substr($i, 7)
                else if ($i ~ /^JobState=/) st = substr($i, 10)
            }
            if (id in ours && st != "COMPLETED") printf "%s%s:%s", (bad++ ? "," : ""), id, st
        }' "$jobcomp"
}

last_done=-1
while :; do
    if read -r active done seen bad < <(states); then
        if [[ $bad != - ]]; then
            cancel_ours
            die "jobs did not complete: $bad"
        fi
        if ((active == 0)); then
            total_s=$(elapsed "$t0")
            if ((seen < n)); then
                bad=$(jobcomp_bad)
                [[ -z $bad ]] || die "jobs did not complete: $bad"
            fi
            break
        fi
        if ((done / step != last_done / step)); then
            log "completed $done/$n"
            last_done=$done
        fi
    fi
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$TIMEOUT_S" 'BEGIN { exit !(b - a > t) }'; then
        cancel_ours
        die "jobs still queued after ${TIMEOUT_S}s (SBATCH_BENCH_TIMEOUT); cancelled them"
    fi
    sleep "$POLL_S"
done
log "completed $n/$n"

printf '{"submitted": %d, "submit_s": %s, "total_s": %s}\n' "$n" "$submit_s" "$total_s"
