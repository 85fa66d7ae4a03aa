# Shell functions the bench scripts share (sourced; bash). The caller
# defines die, port_busy, stop_pid, the arrays PIDS and NAMES of what it
# started, and RUN (its run folder, logs in $RUN/logs).

edit() {   # edit FILE SED-SCRIPT WHAT: apply, and fail when nothing changed
    local before
    before=$(cksum < "$1")
    sed -i -e "$2" "$1"
    [ "$(cksum < "$1")" != "$before" ] || die "cannot $3 in $1 (has its template changed?)"
}

# shellcheck disable=SC2317  # called through the trap
cleanup() {
    local i
    for i in "${!PIDS[@]}"; do
        if [ -n "${PIDS[$i]}" ]; then stop_pid "${PIDS[$i]}" "${NAMES[$i]}"; fi
    done
    PIDS=()
}

wait_listen() {   # wait_listen PID PORT NAME SECONDS
    local i
    for i in $(seq 1 $(($4 * 20))); do
        if ! kill -0 "$1" 2>/dev/null; then
            tail -20 "$RUN/logs/$3".*.log >&2 2>/dev/null || true
            die "$3 exited at start"
        fi
        port_busy "$2" && return 0
        sleep 0.05
    done
    die "$3 does not listen on 127.0.0.1:$2"
}
