#!/usr/bin/env bash
# A Ray cluster of several processes on this machine: one head and N worker nodes, each its
# own `ray start --block`, for trying the service against a real multi-node cluster without
# a second machine. Worker nodes declare fake GPUs (--num-gpus): Ray schedules GPU trials on
# them, which then train on the CPU (docs/deploy.md, "A local multi-process cluster").
#
#   deploy/local-cluster.sh start [--workers 2] [--gpus-per-worker 1] [--cpus-per-worker 2]
#                                 [--head-cpus 1] [--port 6380] [--dashboard-port 8266]
#                                 [--object-store-mb 512] [--temp-root /tmp/adf-ray-6380] [--dir DIR]
#   deploy/local-cluster.sh add-worker [--gpus-per-worker 1] [--cpus-per-worker 2] [--dir DIR]
#   deploy/local-cluster.sh status [--dir DIR]
#   deploy/local-cluster.sh stop [--dir DIR] [--stop-wait 60]
#
# --dir (default ${ADF_DATA_DIR:-~/.adf-service}/local-cluster) holds the nodes' pids (pids),
# logs (*.log) and addresses (cluster.env). Each node's `ray start --block` runs in a session
# of its own; its pid is recorded with its start time, so that a later process given the same
# pid is never taken for it. `stop` sends SIGTERM to exactly those processes (each then stops
# its own node's processes) and waits until no process of their sessions is left (--stop-wait
# seconds, then SIGKILL to those); nothing is ever found or stopped by name.
#
# Ports: the defaults (GCS 6380, dashboard 8266) differ from Ray's (6379, 8265), so that this
# cluster never meets the head `adf-service serve` starts for itself; every other port (the
# dashboard agents, the client server, the workers') is chosen free per node, and each node
# keeps its sessions, sockets and logs under a temp dir of its own (--temp-root/<node>).
# Ray's token authentication follows Ray's rules (RAY_AUTH_MODE, ~/.ray/auth_token).

set -euo pipefail

usage() {
    sed -n "7,12p" "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

command=${1:-}
[[ -n $command ]] || usage
shift

workers=2
gpus_per_worker=1
cpus_per_worker=2
head_cpus=1
gcs_port=6380
dashboard_port=8266
object_store_mb=512
temp_root=""
state_dir="${ADF_DATA_DIR:-$HOME/.adf-service}/local-cluster"
stop_wait=60

while [[ $# -gt 0 ]]; do
    [[ $1 == -h || $1 == --help ]] && usage
    [[ $# -ge 2 ]] || { echo "local-cluster.sh: $1 needs a value" >&2; exit 2; }
    case $1 in
        --workers) workers=$2 ;;
        --gpus-per-worker) gpus_per_worker=$2 ;;
        --cpus-per-worker) cpus_per_worker=$2 ;;
        --head-cpus) head_cpus=$2 ;;
        --port) gcs_port=$2 ;;
        --dashboard-port) dashboard_port=$2 ;;
        --object-store-mb) object_store_mb=$2 ;;
        --temp-root) temp_root=$2 ;;
        --dir) state_dir=$2 ;;
        --stop-wait) stop_wait=$2 ;;
        *) echo "local-cluster.sh: unknown option '$1'" >&2; usage ;;
    esac
    shift 2
done

for value in "$workers" "$gpus_per_worker" "$cpus_per_worker" "$head_cpus" "$gcs_port" "$dashboard_port" \
             "$object_store_mb" "$stop_wait"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "local-cluster.sh: '$value' is not a whole number" >&2; exit 2; }
done

pid_file=$state_dir/pids
env_file=$state_dir/cluster.env

ray_bin=${RAY:-$(command -v ray || true)}
[[ -n $ray_bin ]] || { echo "local-cluster.sh: no 'ray' on PATH (activate the venv, or set RAY=/path/to/ray)" >&2; exit 1; }
command -v setsid > /dev/null || { echo "local-cluster.sh: needs setsid (util-linux)" >&2; exit 1; }
python_bin=$(dirname "$ray_bin")/python
[[ -x $python_bin ]] || python_bin=python3

# The start time of pid (clock ticks after boot) and its state, from /proc/<pid>/stat.
proc_start_state() {
    local stat fields
    { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
    read -r -a fields <<< "${stat##*) }"  # from field 3 (state) on; field 22 is the start time
    echo "${fields[19]} ${fields[0]}"
}

# Whether pid is still the process this script started at start time $2 (not one that got its
# pid later) and alive (not a zombie). Its command line is no test: it is still the script's
# own until `ray start` has been exec'd.
is_ours() {
    local pid=$1 started=$2 info start state
    info=$(proc_start_state "$pid") || return 1
    read -r start state <<< "$info"
    [[ -n $started && $start == "$started" && $state != Z ]]
}

# A port free now and not one this cluster was given (a port the kernel
# hands out can be one given by --port / --dashboard-port that is not bound yet),
# chosen below the kernel's ephemeral range: Ray takes the ports it is not given
# (an agent's metrics port, workers' ports) from that range, so a port chosen
# there can be taken by Ray between this choice and its bind. The fault schedule
# met it: a new head's agent found its port taken, never served, and the Jobs API
# took no job on that head (docs/reliability.md).
free_port() {
    "$python_bin" -c '
import random, socket, sys
taken = {int(p) for p in sys.argv[1:] if p.isdigit()}
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral = int(f.read().split()[0])
except OSError:  # not Linux: below 32768 is below every usual ephemeral range
    ephemeral = 32768
while True:
    port = random.randrange(10000, ephemeral)
    if port in taken:
        continue
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            continue
    print(port)
    break
' "$gcs_port" "$dashboard_port"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

live_pids() {
    [[ -f $pid_file ]] || return 0
    local pid role started
    while read -r pid role started; do
        if is_ours "$pid" "$started"; then echo "$pid $role"; fi
    done < "$pid_file"
}

# Start one node: `ray start --block` in a session of its own (Ctrl-C or closing the terminal
# leaves it running), its pid and start time appended to the pid file.
start_node() {
    local role=$1; shift
    local log=$state_dir/$role.log pid start
    : > "$log"  # now, not in the background job: wait_started must not read the last run's log
    setsid "$ray_bin" start --block --disable-usage-stats --node-ip-address=127.0.0.1 \
        --temp-dir="$temp_root/$role" --object-store-memory=$((object_store_mb * 1024 * 1024)) \
        --min-worker-port=0 --max-worker-port=0 --dashboard-agent-listen-port="$(free_port)" \
        "$@" > "$log" 2>&1 < /dev/null &
    pid=$!
    read -r start _ <<< "$(proc_start_state "$pid")"
    echo "$pid $role $start" >> "$pid_file"
}

# Wait until every node started so far (or only node $1) says "Ray runtime started." (its raylet
# joined the GCS).
wait_started() {
    local deadline=$((SECONDS + 120)) only=${1:-} pid role started
    while read -r pid role started; do
        [[ -n $only && $role != "$only" ]] && continue
        until grep -q "Ray runtime started" "$state_dir/$role.log" 2>/dev/null; do
            if ! is_ours "$pid" "$started"; then
                echo "local-cluster.sh: node '$role' (pid $pid) exited; its log:" >&2
                tail -n 30 "$state_dir/$role.log" >&2
                return 1
            fi
            if ((SECONDS > deadline)); then
                echo "local-cluster.sh: node '$role' (pid $pid) did not start in 120 s; see $state_dir/$role.log" >&2
                return 1
            fi
            sleep 0.5
        done
    done < "$pid_file"
}

# The live processes of session $1: a node's `ray start` runs in a session of its own whose id
# is its pid, and every process of that node (GCS, raylet, dashboard, agents) stays in it.
session_members() {
    local sid=$1 f stat state session
    for f in /proc/[0-9]*/stat; do
        { read -r stat < "$f"; } 2>/dev/null || continue
        read -r state _ _ session _ <<< "${stat##*) }"
        if [[ $session == "$sid" && $state != Z ]]; then echo "${f//[^0-9]/}"; fi
    done
}

stop_cluster() {
    local -a pids=() roles=() starts=()
    local pid role started i deadline members
    if [[ ! -f $pid_file ]]; then
        echo "no local cluster recorded in $state_dir"
        return 0
    fi
    while read -r pid role started; do pids+=("$pid"); roles+=("$role"); starts+=("$started"); done < "$pid_file"
    # Workers first, the head last: a head that goes first leaves its workers waiting for it.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[i]} role=${roles[i]}
        if ! is_ours "$pid" "${starts[i]}"; then
            members=$(session_members "$pid")
            if [[ -n $members ]]; then  # Ray's reaper ends a node whose `ray start` died; not this script
                echo "$role (pid $pid): its 'ray start' has exited; processes of its session remain:" $members >&2
            else
                echo "$role (pid $pid): not running"
            fi
            continue
        fi
        kill -TERM "$pid"  # `ray start --block` then stops its node's processes
        deadline=$((SECONDS + stop_wait))
        while members=$(session_members "$pid"); [[ -n $members ]] && ((SECONDS < deadline)); do sleep 0.3; done
        if [[ -n $members ]]; then  # the session was this node's when SIGTERM went: its id is not reused meanwhile
            echo "$role (pid $pid): still running ${stop_wait} s after SIGTERM; SIGKILL to its processes" $members >&2
            kill -KILL $members 2>/dev/null || true
        fi
        echo "$role (pid $pid): stopped"
    done
    rm -f "$pid_file" "$env_file"
}

print_addresses() {
    # shellcheck disable=SC1090
    source "$env_file"
    cat <<EOF
Ray dashboard (Jobs API): $ADF_RAY_ADDRESS
Ray GCS address:          $RAY_ADDRESS   (ray status --address / adf-service run --address)

Run the service against it:
  adf-service serve --ray-address $ADF_RAY_ADDRESS
  # or: ADF_RAY_ADDRESS=$ADF_RAY_ADDRESS adf-service serve
EOF
    if [[ ${RAY_AUTH_MODE:-} == token || ( -z ${RAY_AUTH_MODE:-} && -f $HOME/.ray/auth_token ) ]]; then
        echo "  # Ray token authentication is on (~/.ray/auth_token): export RAY_AUTH_MODE=token first"
    fi
    echo
    echo "Stop it: $0 stop${state_dir_arg}"
}

state_dir_arg=""
[[ $state_dir == "${ADF_DATA_DIR:-$HOME/.adf-service}/local-cluster" ]] || state_dir_arg=" --dir $state_dir"

case $command in
    start)
        mkdir -p "$state_dir"
        if [[ -n $(live_pids) ]]; then
            echo "local-cluster.sh: a cluster recorded in $state_dir still runs:" >&2
            live_pids >&2
            echo "stop it first: $0 stop${state_dir_arg}" >&2
            exit 1
        fi
        for port in "$gcs_port" "$dashboard_port"; do
            if port_open "$port"; then
                echo "local-cluster.sh: port $port is in use; choose --port / --dashboard-port" >&2
                exit 1
            fi
        done
        temp_root=${temp_root:-${TMPDIR:-/tmp}/adf-ray-$gcs_port}
        # Ray's sockets live under the temp dir, and a Unix socket path has at most 107 bytes.
        if ((${#temp_root} > 40)); then
            echo "local-cluster.sh: --temp-root '$temp_root' is too long for Ray's socket paths (40 characters at most)" >&2
            exit 2
        fi
        : > "$pid_file"
        trap 'echo "local-cluster.sh: start failed; stopping what it started" >&2; stop_cluster >&2' ERR
        start_node head --head --port="$gcs_port" --dashboard-host=127.0.0.1 --dashboard-port="$dashboard_port" \
            --ray-client-server-port="$(free_port)" --num-cpus="$head_cpus" --num-gpus=0
        wait_started
        for ((i = 1; i <= workers; i++)); do
            start_node "worker-$i" --address="127.0.0.1:$gcs_port" --num-cpus="$cpus_per_worker" \
                --num-gpus="$gpus_per_worker"
        done
        wait_started
        deadline=$((SECONDS + 60))
        until port_open "$dashboard_port"; do
            ((SECONDS < deadline)) || { echo "local-cluster.sh: no dashboard on port $dashboard_port after 60 s; see $state_dir/head.log" >&2; false; }
            sleep 0.5
        done
        trap - ERR
        cat > "$env_file" <<EOF
RAY_ADDRESS=127.0.0.1:$gcs_port
ADF_RAY_ADDRESS=http://127.0.0.1:$dashboard_port
LOCAL_CLUSTER_TEMP_ROOT=$temp_root
LOCAL_CLUSTER_OBJECT_STORE_MB=$object_store_mb
EOF
        echo "Started a Ray head and $workers worker node(s) ($gpus_per_worker fake GPU(s), $cpus_per_worker CPU(s) each);"
        echo "pids in $pid_file, logs in $state_dir/*.log and $temp_root/<node>/session_latest/logs"
        echo
        print_addresses
        ;;
    add-worker)  # one more worker node, e.g. in place of one whose raylet died
        if [[ -z $(live_pids) || ! -f $env_file ]]; then
            echo "local-cluster.sh: no local cluster runs in $state_dir: start one first" >&2
            exit 1
        fi
        # shellcheck disable=SC1090
        source "$env_file"
        temp_root=$LOCAL_CLUSTER_TEMP_ROOT object_store_mb=$LOCAL_CLUSTER_OBJECT_STORE_MB
        gcs_port=${RAY_ADDRESS##*:}
        n=$(grep -c ' worker-' "$pid_file" || true)
        role="worker-$((n + 1))"
        start_node "$role" --address="$RAY_ADDRESS" --num-cpus="$cpus_per_worker" --num-gpus="$gpus_per_worker"
        wait_started "$role"
        echo "Started $role ($gpus_per_worker fake GPU(s), $cpus_per_worker CPU(s)) in the cluster at $RAY_ADDRESS"
        ;;
    status)
        if [[ -z $(live_pids) ]]; then
            echo "no local cluster runs (state: $state_dir)"
            exit 1
        fi
        live_pids | while read -r pid role; do echo "$role: pid $pid"; done
        [[ -f $env_file ]] && print_addresses
        ;;
    stop)
        stop_cluster
        ;;
    *)
        usage
        ;;
esac
