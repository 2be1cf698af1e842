#!/usr/bin/env bash
# Applies, or only checks, the kernel settings Mayfly wants, and reports each one.
#
#   tuning/apply.sh --check [FILE...]   compare only; exit 1 if anything differs
#   tuning/apply.sh [FILE...]           set what differs (root), re-read, report
#
# FILE defaults to tuning/99-mayfly.conf. Lines are "key = value" as in sysctl.d(5); a
# "# check: min" comment line before a key means the current value may also be larger.
# Besides the sysctls it checks transparent huge pages (Mayfly's rings ask for them with
# MADV_HUGEPAGE) and reports, without changing them, RLIMIT_MEMLOCK and irqbalance.
# Changes are made at run time only (like `sysctl -w`); they are lost at reboot unless the
# file is installed in /etc/sysctl.d. Every change is printed with a command that undoes it.
#
# Exit status: 0 all as wanted (or now set), 1 something differs (--check) or could not be
# set, 2 usage error.
set -u

here=$(cd "$(dirname "$0")" && pwd)
check_only=0
files=()
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "apply.sh: unknown option $arg" >&2; exit 2 ;;
        *) files+=("$arg") ;;
    esac
done
[ ${#files[@]} -eq 0 ] && files=("$here/99-mayfly.conf")
if [ "$check_only" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "apply.sh: setting kernel parameters needs root; use --check to compare only" >&2
    exit 2
fi

n_differ=0
n_failed=0
undo=()

# Collapses runs of blanks and tabs (/proc/sys prints ranges with a tab).
normalize() { echo "$*" | tr -s ' \t' ' ' | sed 's/^ //; s/ $//'; }

# satisfied MODE CURRENT WANTED: true when CURRENT is as wanted.
satisfied() {
    local mode=$1 current=$2 wanted=$3
    if [ "$mode" = min ]; then
        [[ "$current" =~ ^[0-9]+$ && "$wanted" =~ ^[0-9]+$ ]] || return 1
        [ "$current" -ge "$wanted" ]
    else
        [ "$current" = "$wanted" ]
    fi
}

report() { printf '%-8s %-36s current=%-22s wanted=%s\n' "$1" "$2" "$3" "$4"; }

check_sysctl() {
    local key=$1 wanted=$2 mode=$3
    local path="/proc/sys/${key//.//}"
    local shown_wanted=$wanted
    [ "$mode" = min ] && shown_wanted=">= $wanted"
    if [ ! -e "$path" ]; then
        if [ "$key" = kernel.io_uring_disabled ]; then
            # Kernels before 6.6 have no switch: io_uring is always allowed there.
            report ok "$key" "(absent)" "$shown_wanted (absent before Linux 6.6: allowed)"
        else
            report ABSENT "$key" "(absent)" "$shown_wanted"
            n_differ=$((n_differ + 1))
        fi
        return
    fi
    local current
    current=$(normalize "$(cat "$path" 2>/dev/null)")
    if satisfied "$mode" "$current" "$wanted"; then
        report ok "$key" "$current" "$shown_wanted"
        return
    fi
    if [ "$check_only" -eq 1 ]; then
        report DIFFERS "$key" "$current" "$shown_wanted"
        n_differ=$((n_differ + 1))
        return
    fi
    if printf '%s\n' "$wanted" > "$path" 2>/dev/null; then
        local now
        now=$(normalize "$(cat "$path")")
        if satisfied "$mode" "$now" "$wanted"; then
            report CHANGED "$key" "$current -> $now" "$shown_wanted"
            undo+=("sysctl -w $key='$current'")
            return
        fi
        report FAILED "$key" "$now (wrote $wanted, kernel kept $now)" "$shown_wanted"
    else
        report FAILED "$key" "$current (not writable here)" "$shown_wanted"
    fi
    n_failed=$((n_failed + 1))
}

check_file() {
    local file=$1 mode=exact line key value
    if [ ! -r "$file" ]; then
        echo "apply.sh: cannot read $file" >&2
        exit 2
    fi
    echo "== $file"
    while IFS= read -r line || [ -n "$line" ]; do
        line=$(normalize "$line")
        case "$line" in
            "# check: min") mode=min; continue ;;
            ""|"#"*|";"*) continue ;;
        esac
        if [[ "$line" != *=* ]]; then
            echo "apply.sh: $file: not a key = value line: $line" >&2
            exit 2
        fi
        key=$(normalize "${line%%=*}")
        value=$(normalize "${line#*=}")
        # sysctl.d allows a leading "-" meaning "ignore if absent"; treat it the same.
        key=${key#-}
        check_sysctl "$key" "$value" "$mode"
        mode=exact
    done < "$file"
}

check_thp() {
    local path=/sys/kernel/mm/transparent_hugepage/enabled current
    if [ ! -r "$path" ]; then
        report ABSENT "transparent_hugepage/enabled" "(absent)" "always or madvise"
        n_differ=$((n_differ + 1))
        return
    fi
    current=$(sed 's/.*\[\(.*\)\].*/\1/' "$path")
    case "$current" in
        always|madvise) report ok "transparent_hugepage/enabled" "$current" "always or madvise" ;;
        *)
            if [ "$check_only" -eq 1 ]; then
                report DIFFERS "transparent_hugepage/enabled" "$current" "always or madvise"
                n_differ=$((n_differ + 1))
            elif echo madvise > "$path" 2>/dev/null; then
                report CHANGED "transparent_hugepage/enabled" "$current -> madvise" "always or madvise"
                undo+=("echo $current > $path")
            else
                report FAILED "transparent_hugepage/enabled" "$current (not writable here)" "always or madvise"
                n_failed=$((n_failed + 1))
            fi
            ;;
    esac
}

# Reported only: these belong to the service (LimitMEMLOCK= in the unit) or to the operator.
report_info() {
    local memlock
    memlock=$(ulimit -l)
    [ "$memlock" != unlimited ] && memlock="${memlock} KiB"
    report info "RLIMIT_MEMLOCK (this shell)" "$memlock" "unlimited for the service (LimitMEMLOCK=infinity; CAP_IPC_LOCK is exempt)"
    local irqbalance="not running"
    if pgrep -x irqbalance > /dev/null 2>&1; then irqbalance="running"; fi
    report info "irqbalance" "$irqbalance" "see tuning/README.md (IRQ affinity)"
}

for file in "${files[@]}"; do
    check_file "$file"
done
echo "== host"
check_thp
report_info

if [ ${#undo[@]} -gt 0 ]; then
    echo "== to undo the changes above (run-time values only):"
    printf '  %s\n' "${undo[@]}"
fi
if [ "$check_only" -eq 1 ] && [ "$n_differ" -gt 0 ]; then
    echo "== $n_differ setting(s) differ; run without --check as root to apply"
    exit 1
fi
if [ "$n_failed" -gt 0 ]; then
    echo "== $n_failed setting(s) could not be set"
    exit 1
fi
if [ "$check_only" -eq 0 ] && [ "$n_differ" -gt 0 ]; then
    # Absent keys cannot be applied.
    exit 1
fi
echo "== all as wanted"
exit 0
