#!/usr/bin/env bash
# Run one InBedder job from cron: no overlapping runs (flock), one log file per run,
# old logs pruned, the job's exit status passed on (non-zero on any failure).
#
#   crontab:  15 2 * * *  /opt/inbedder/jobs/cron/inbedder-cron.sh /etc/inbedder/job.yaml
#
# Environment: INBEDDER_BIN (default: inbedder on PATH), INBEDDER_LOG_DIR (default
# /var/log/inbedder), INBEDDER_LOCK_FILE (default: LOG_DIR/<config name>.lock),
# INBEDDER_KEEP_LOG_DAYS (default 30). Exit 75 when another run holds the lock.
set -euo pipefail

config=${1:?usage: inbedder-cron.sh JOB_CONFIG.yaml [--set field=value ...]}
shift
name=$(basename "$config" .yaml)
log_dir=${INBEDDER_LOG_DIR:-/var/log/inbedder}
lock=${INBEDDER_LOCK_FILE:-$log_dir/$name.lock}
inbedder=${INBEDDER_BIN:-inbedder}
mkdir -p "$log_dir"
log="$log_dir/$name-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"

exec 9>"$lock"
if ! flock --nonblock 9; then
    echo "$(date -u +%FT%TZ) another run of $name holds $lock: not starting an overlapping run" | tee -a "$log" >&2
    exit 75
fi

find "$log_dir" -maxdepth 1 -name "$name-*.log" -mtime +"${INBEDDER_KEEP_LOG_DAYS:-30}" -delete

echo "$(date -u +%FT%TZ) starting: $inbedder embed --config $config $*" >>"$log"
status=0
"$inbedder" embed --config "$config" "$@" >>"$log" 2>&1 || status=$?
echo "$(date -u +%FT%TZ) finished with exit status $status" >>"$log"
if [ "$status" -ne 0 ]; then
    echo "inbedder job $name failed (exit $status); log: $log" >&2
fi
exit "$status"
