# pier replica supervisor (bash >= 5.1). Started by pier.executors.local as
#
#     bash -p supervisor.sh RUN_DIR -- ARGV...
#
# in its own session. It runs ARGV in its own process group with stdout+stderr combined into
# RUN_DIR/output.log, and records what happened in RUN_DIR/supervisor.log, along with its own
# messages (record formats: runrecord.py, the only reader). It is bash, not Python, because a Python
# interpreter costs ~19 ms to start and this costs <1 ms; for the same reason the hot path uses
# only builtins (printf, read, kill, wait, ulimit): every fork+exec of a helper costs ~1 ms.
#
# `-p` (privileged mode) keeps the job's environment from reprogramming this script: exported
# functions (BASH_FUNC_kill%%), BASH_ENV and SHELLOPTS are ignored here but still passed on.
#
# Optional settings arrive in the environment and are removed before the job starts:
#   PIER_SUP_DATA_KIB  memory limit as RLIMIT_DATA (`ulimit -d`, KiB). Not RLIMIT_AS: CUDA,
#                      the JVM and many allocators reserve far more address space than they
#                      ever touch, so an address-space limit breaks them; RLIMIT_DATA only
#                      counts private writable memory (heap, anonymous mmap) since Linux 4.7.
#   PIER_SUP_CGROUP    a cgroup v2 directory to join (pier created it and set its limits).
#                      Best effort: failing to join is logged and the job runs anyway.

set -f +o posix
dir=$1
shift 2
exec >>"$dir/supervisor.log" 2>&1
mem_kib=${PIER_SUP_DATA_KIB-}
cgroup=${PIER_SUP_CGROUP-}
unset PIER_SUP_DATA_KIB PIER_SUP_CGROUP

pid=
pending=

# Forward TERM/INT to the job's group, so that signalling the supervisor stops the job; pier's
# own stop signals the job's group directly and never the supervisor. A signal that arrives
# before the job exists is delivered right after it starts. HUP gets a no-op trap, not '':
# an ignored signal would be inherited as ignored by the job.
forward() {
    if [[ -n $pid ]]; then
        kill -s "$1" -- "-$pid" 2>/dev/null
    else
        pending=$1
    fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap ':' HUP

# Records are lines "@pier KIND ... end" appended by one printf to supervisor.log (opened
# once, above); the reader ignores a line without the terminator and newline, so a record is
# never seen half-written. No fork, unlike write-to-temp + `mv` (an external command, ~1 ms,
# per record), and no file to create per record (~1-3 ms each on a VM's ext4).
record() {
    printf '@pier %s end\n' "$1"
}

# Start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid it names a
# process exactly, so pier can tell a live supervisor or job from a reused pid.
ticks() {
    local line head fields
    REPLY=0
    read -r line <"/proc/$1/stat" || return 1
    # The last ')' ends the command name (no field after it holds one). A shortest-suffix
    # match finds it in linear time; ${line##*') '} is quadratic (~0.2 ms per call).
    head=${line%')'*}
    [[ $head != "$line" ]] || return 1
    fields=(${line:${#head}+2})
    REPLY=${fields[19]}
}

if [[ -n $cgroup ]]; then
    { echo $$ >"$cgroup/cgroup.procs"; } 2>/dev/null ||
        echo "pier-supervisor: could not join cgroup $cgroup; running without it" >&2
fi

ticks $$
record "supervisor $$ $REPLY $EPOCHREALTIME"

launch() {
    if [[ -n $mem_kib ]]; then
        ulimit -d "$mem_kib" || echo "pier-supervisor: could not set memory limit" >&2
    fi
    exec "$@"
}

# Job control gives the background job its own process group (pgid = its pid), so pier can
# signal the whole job without touching this script, and keeps SIGINT/SIGQUIT un-ignored in
# it. Job notices ("[1]+ Terminated ...") go to this script's stderr, not to output.log.
set -m
launch "$@" >"$dir/output.log" 2>&1 </dev/null &
pid=$!
if [[ -n $pending ]]; then
    kill -s "$pending" -- "-$pid" 2>/dev/null
fi
# A job that already exited (and was reaped by bash) reads as 0 ticks: never signalled.
ticks "$pid"
record "started $$ $pid $pid $REPLY $EPOCHREALTIME"

# `wait` returns early whenever a trapped signal arrives; `-p` leaves `reaped` unset in that
# case, so loop until the job is really reaped. `-f` waits for termination, not a stop.
while :; do
    unset reaped
    wait -n -f -p reaped "$pid"
    rc=$?
    [[ -n ${reaped+x} ]] && break
done
now=$EPOCHREALTIME

# Like a container: when the job's leader exits, whatever it left in its group goes too
# (stray workers would otherwise keep GPUs busy for the next job).
kill -s KILL -- "-$pid" 2>/dev/null
record "exit $rc $now"
exit 0
