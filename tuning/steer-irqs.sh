#!/usr/bin/env bash
# Checks (default) or sets up a NIC for `--steer-connections`: one receive queue per
# executor CPU, queue i's interrupt on CPU i, RPS off, irqbalance not moving them.
#
# Usage: tuning/steer-irqs.sh [--apply] NIC [CPU_LIST]
#   NIC       the interface Mayfly's mail arrives on (eth0, ens5, ...)
#   CPU_LIST  the executors' CPUs, as a taskset list (default: every online CPU, which is
#             where `--cores` executors go when it is not lowered)
#   --apply   set the interrupt affinities and clear RPS (as root; lost at reboot, and
#             irqbalance must be stopped first or it moves them back)
#
# Without --apply nothing is changed: one line per receive queue with its interrupt and the
# CPUs it may run on, then a verdict. Exit status 1 when the NIC is not fit for steering.
# The queue count itself is the driver's (`ethtool -L NIC combined N`); this script does
# not change it.
set -euo pipefail

apply=0
if [[ "${1:-}" == "--apply" ]]; then
    apply=1
    shift
fi
nic="${1:?usage: steer-irqs.sh [--apply] NIC [CPU_LIST]}"
cpu_list="${2:-$(cat /sys/devices/system/cpu/online)}"

sys="/sys/class/net/$nic"
[[ -d "$sys" ]] || { echo "no interface $nic" >&2; exit 2; }

# "0-2,5" -> 0 1 2 5
expand() {
    local part out=()
    IFS=, read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ "$part" == *-* ]]; then
            out+=($(seq "${part%-*}" "${part#*-}"))
        else
            out+=("$part")
        fi
    done
    echo "${out[@]}"
}
read -ra cpus <<<"$(expand "$cpu_list")"

# Receive-queue interrupts: the /proc/interrupts lines of this NIC's device whose name is
# a receive or combined queue (virtio: virtioN-input.I; most drivers: NIC-rx-I, NIC-TxRx-I).
device=""
[[ -e "$sys/device" ]] && device="$(basename "$(readlink -f "$sys/device")")"
mapfile -t irq_lines < <(awk -v nic="$nic" -v dev="$device" '
    $1 ~ /^[0-9]+:$/ {
        name = $NF
        mine = index(name, nic "-") == 1 || (dev != "" && index(name, dev "-") == 1)
        rx = name ~ /(input|rx|TxRx|comp)/
        if (mine && rx) { sub(":", "", $1); print $1, name }
    }' /proc/interrupts)
n_rx_queues=$(find "$sys/queues" -maxdepth 1 -name 'rx-*' | wc -l)

echo "$nic: $n_rx_queues receive queues, ${#irq_lines[@]} receive interrupts found, executor CPUs: ${cpus[*]}"
fit=1
for i in "${!irq_lines[@]}"; do
    read -r irq name <<<"${irq_lines[$i]}"
    want="${cpus[$((i % ${#cpus[@]}))]}"
    have="$(cat "/proc/irq/$irq/smp_affinity_list" 2>/dev/null || echo '?')"
    if (( apply )); then
        echo "$want" >"/proc/irq/$irq/smp_affinity_list"
        echo "irq $irq ($name): CPUs $have -> $want"
    else
        echo "irq $irq ($name): CPUs $have (steering wants $want)"
        [[ "$have" == "$want" ]] || fit=0
    fi
done
for rps in "$sys"/queues/rx-*/rps_cpus; do
    [[ -e "$rps" ]] || continue
    if (( apply )); then
        echo 0 >"$rps"
    elif [[ "$(tr -d '0,\n' <"$rps")" != "" ]]; then
        echo "$rps is $(cat "$rps"): RPS moves packets off the interrupt's CPU"
        fit=0
    fi
done
if systemctl is-active --quiet irqbalance 2>/dev/null; then
    echo "irqbalance is running: it moves interrupts (systemctl disable --now irqbalance, or --banirq)"
    fit=0
fi
if (( ${#irq_lines[@]} < ${#cpus[@]} )); then
    echo "verdict: NOT fit: ${#irq_lines[@]} receive interrupts for ${#cpus[@]} executor CPUs;" \
        "with --steer-connections every connection would go to the executors on the interrupts' CPUs"
    exit 1
fi
if (( apply )); then
    echo "verdict: applied; check again with: tuning/steer-irqs.sh $nic $cpu_list"
elif (( fit )); then
    echo "verdict: fit for --steer-connections"
else
    echo "verdict: NOT fit yet: run with --apply (as root) after stopping irqbalance"
    exit 1
fi
