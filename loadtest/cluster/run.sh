#!/usr/bin/env bash
# The scale-out topology of docs/scale-out.md on one machine, in network namespaces:
# Postfix (the MX tier) relays each recipient to the Mayfly node owning its partition,
# HAProxy routes reads to the same node, and a client namespace blasts mail through
# Postfix and reads it all back through HAProxy (smtp-blaster --verify). Mid-run one node
# is killed with SIGKILL and restarted: Postfix queues its mail meanwhile, and with its
# journal the node loses nothing it acknowledged.
#
#   loadtest/cluster/run.sh [--messages N] [--rate PER_SEC] [--inboxes N] [--down-secs S] [--work DIR] [--keep]
#
# Needs root (network namespaces), iproute2, Debian's postfix and haproxy, and release
# builds of mayfly and smtp-blaster (MAYFLY_BIN, BLASTER_BIN override the paths). Every
# address is private (10.77.0.0/24) and lives only inside the namespaces this script
# creates, behind a bridge in a namespace of its own; nothing is routed anywhere else.
# Exit status: 0 ok, 1 lost or unreadable mail, 2 could not run (what is missing is
# printed), 3 a step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

messages=600
rate=150
inboxes=72
down_secs=3
work=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) messages=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --inboxes) inboxes=$2; shift 2 ;;
        --down-secs) down_secs=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

mayfly=${MAYFLY_BIN:-target/release/mayfly}
blaster=${BLASTER_BIN:-target/release/smtp-blaster}
missing=()
[ "$(id -u)" -eq 0 ] || missing+=("root (network namespaces)")
command -v ip >/dev/null 2>&1 || missing+=("iproute2")
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing+=("postfix")
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=("haproxy")
[ -x "$mayfly" ] || missing+=("$mayfly (cargo build --release)")
[ -x "$blaster" ] || missing+=("$blaster (cargo build --release -p smtp-blaster)")
if [ ${#missing[@]} -eq 0 ]; then
    # Root may still lack the right to make namespaces (a container without CAP_SYS_ADMIN).
    probe="mfcprobe$$"
    if ip netns add "$probe" 2>/dev/null; then
        if ! { ip -n "$probe" link add br0 type bridge &&
            ip -n "$probe" link add va type veth peer name vb; } 2>/dev/null; then
            missing+=("bridge and veth interfaces in a network namespace")
        fi
        ip netns del "$probe"
    else
        missing+=("the right to create network namespaces")
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "cluster: cannot run, missing: ${missing[*]}" >&2
    exit 2
fi
export PATH="$PATH:/usr/sbin:/sbin"
mayfly=$(realpath "$mayfly")
blaster=$(realpath "$blaster")
if [ -z "$work" ]; then work=$(mktemp -d /tmp/mayfly-cluster.XXXXXX); fi
mkdir -p "$work"
work=$(realpath "$work")
# Postfix drops privileges: its user must reach its queue and data directories.
chmod 755 "$work"
# Namespace names carry the pid, so two runs never share one.
ns="mfc$$"
nodes=(n1 n2 n3)
node_ip=(10.77.0.11 10.77.0.12 10.77.0.13)
node_partitions=("0-9,a-h" "i-r" "s-z,other")
mx_ip=10.77.0.2
lb_ip=10.77.0.3
client_ip=10.77.0.4
# The node killed mid-run.
victim=1

pids=()
cleanup() {
    set +e
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    ip netns exec "${ns}mx" postfix -c "$work/postfix" stop >/dev/null 2>&1
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    for name in hub mx lb client "${nodes[@]}"; do ip netns del "${ns}${name}" 2>/dev/null; done
    if [ "$keep" -eq 0 ]; then rm -rf "$work"; else echo "cluster: kept $work" >&2; fi
}
trap cleanup EXIT
step() { echo "cluster: $*" >&2; }
fail() { echo "cluster: FAILED: $*" >&2; exit 3; }

step "namespaces and a bridge (${ns}*)"
ip netns add "${ns}hub"
ip -n "${ns}hub" link add br0 type bridge
ip -n "${ns}hub" link set br0 up
attach() { # attach NAME IP: a namespace with one veth into the bridge
    local name=$1 addr=$2
    ip netns add "${ns}${name}"
    ip -n "${ns}${name}" link set lo up
    ip link add "${ns}${name}" type veth peer name eth0 netns "${ns}${name}"
    ip link set "${ns}${name}" netns "${ns}hub"
    ip -n "${ns}hub" link set "${ns}${name}" master br0 up
    ip -n "${ns}${name}" addr add "$addr/24" dev eth0
    ip -n "${ns}${name}" link set eth0 up
}
for idx in "${!nodes[@]}"; do attach "${nodes[$idx]}" "${node_ip[$idx]}"; done
attach mx "$mx_ip"
attach lb "$lb_ip"
attach client "$client_ip"

step "the partition map and what mayfly partition-map makes of it"
{
    echo "# node  smtp  http  partitions"
    for idx in "${!nodes[@]}"; do
        echo "${nodes[$idx]} ${node_ip[$idx]}:2525 ${node_ip[$idx]}:8025 ${node_partitions[$idx]}"
    done
} > "$work/partitions"
"$mayfly" partition-map "$work/partitions" "$work" "$lb_ip:80" >/dev/null

start_node() { # start_node IDX: one Mayfly node with a journal, in its namespace
    local idx=$1 name=${nodes[$1]}
    mkdir -p "$work/$name/data"
    ip netns exec "${ns}${name}" "$mayfly" --cores 1 --max-memory 128MiB \
        --smtp "${node_ip[$idx]}:2525" --http "${node_ip[$idx]}:8025" \
        --domain example.test --owned-partitions "${node_partitions[$idx]}" \
        --data-dir "$work/$name/data" --durability journal \
        --client-limit-exempt 10.77.0.0/24 --shutdown-grace 1s \
        >>"$work/$name/stdout" 2>>"$work/$name/log" &
    node_pid[$idx]=$!
    pids+=("${node_pid[$idx]}")
}
wait_http() { # wait_http NS URL: until it answers 200
    local deadline=$((SECONDS + 30))
    until ip netns exec "$1" curl -sf -o /dev/null "$2"; do
        [ $SECONDS -lt $deadline ] || fail "no answer from $2"
        sleep 0.2
    done
}
declare -a node_pid
for idx in "${!nodes[@]}"; do start_node "$idx"; done
for idx in "${!nodes[@]}"; do wait_http "${ns}${nodes[$idx]}" "http://${node_ip[$idx]}:8025/healthz"; done

step "HAProxy on $lb_ip:80"
ip netns exec "${ns}lb" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_http "${ns}client" "http://$lb_ip:80/healthz"

step "Postfix on $mx_ip:25, relaying by $work/postfix-transport.regexp"
mkdir -p "$work/postfix/queue" "$work/postfix/data"
chown postfix "$work/postfix/data"
cp /etc/postfix/master.cf "$work/postfix/master.cf" 2>/dev/null ||
    cp /usr/share/postfix/master.cf.dist "$work/postfix/master.cf"
cat > "$work/postfix/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $work/postfix/queue
data_directory = $work/postfix/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = $mx_ip
inet_protocols = ipv4
myhostname = mx.cluster.test
mydestination =
relay_domains = example.test
transport_maps = regexp:$work/postfix-transport.regexp
mynetworks = 10.77.0.0/24
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $work/postfix/maillog
maillog_file_prefixes = $work
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
# Retry a node that is down within seconds, not Postfix's default 5 minutes.
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 2s
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
EOF
cp "$work/postfix-transport.pcre" "$work/postfix-transport.regexp"
postconf -c "$work/postfix" -F '*/*/chroot = n' >/dev/null
postfix -c "$work/postfix" set-permissions >/dev/null 2>&1 || true
ip netns exec "${ns}mx" postfix -c "$work/postfix" start >/dev/null 2>&1 ||
    fail "postfix did not start: $(grep -v "warning:" "$work/postfix/maillog" 2>/dev/null | tail -5)"
deadline=$((SECONDS + 30))
until ip netns exec "${ns}client" bash -c "exec 3<>/dev/tcp/$mx_ip/25" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "postfix is not listening"
    sleep 0.2
done

step "$messages messages to $inboxes inboxes through Postfix; node ${nodes[$victim]} killed and restarted meanwhile"
(
    sleep 1
    kill -9 "${node_pid[$victim]}"
    sleep "$down_secs"
    start_node "$victim"
    echo "${node_pid[$victim]}" > "$work/restarted.pid"
) &
killer=$!
# Meanwhile one inbox is watched through HAProxy as the page watches it: a long poll and
# the WebSocket, each routed to the inbox's node.
ip netns exec "${ns}client" python3 loadtest/cluster/watch_inbox.py "$lb_ip:80" \
    0-user0@example.test 60 >"$work/watch.out" 2>&1 &
watcher=$!
sleep 1
# The blaster sends at a fixed rate (so the kill lands mid-run), then reads every inbox
# back through HAProxy until all it got a 250 for is there (--verify-wait): mail Postfix
# queued for the dead node arrives after the node is back.
blast_status=0
ip netns exec "${ns}client" "$blaster" "$mx_ip:25" --allow-non-loopback \
    --messages "$messages" --rate "$rate" --connections 8 --inboxes "$inboxes" \
    --spread-inboxes --domain example.test --size 2048 \
    --verify "http://$lb_ip:80" --verify-wait 120 --json >"$work/blast.json" 2>"$work/blast.log" ||
    blast_status=$?
wait "$killer"
pids+=("$(cat "$work/restarted.pid")")
watch_status=0
wait "$watcher" || watch_status=$?
cat "$work/watch.out"
[ "$watch_status" -eq 0 ] || { echo "cluster: reads through HAProxy failed" >&2; exit 1; }
[ -s "$work/blast.json" ] || fail "the blast failed ($blast_status): $(tail -3 "$work/blast.log")"
wait_http "${ns}${nodes[$victim]}" "http://${node_ip[$victim]}:8025/healthz"
queued=$(find "$work/postfix/queue/incoming" "$work/postfix/queue/active" \
    "$work/postfix/queue/deferred" -type f 2>/dev/null | wc -l)
for idx in "${!nodes[@]}"; do
    n=$(ip netns exec "${ns}client" curl -sf "http://${node_ip[$idx]}:8025/metrics" |
        awk '$1 == "mayfly_messages_accepted_total" { print $2 }')
    echo "cluster: node ${nodes[$idx]} (${node_partitions[$idx]}) acknowledged ${n:-0} since its (re)start" >&2
done
python3 - "$work/blast.json" "$queued" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
verify = report.get("verify") or {}
accepted = report["messages_accepted"]
found = verify.get("found_intact", 0)
lost = verify.get("missing", 0) + verify.get("corrupted", 0)
print(f"accepted by Postfix (250): {accepted}, at {report['messages_per_sec']:.0f} msg/s")
print(f"read back through HAProxy: {found}")
print(f"lost (missing or corrupted): {lost}")
# A node killed after it journaled a message but before Postfix read its 250 gets that
# message again when Postfix retries: SMTP's at-least-once (RFC 5321 6.1), counted here.
print(f"unexpected (duplicates after the crash, or a wrong inbox): {verify.get('unexpected', 0)}")
print(f"Postfix queue left: {sys.argv[2]}")
print(f"time until every message was readable after the blast: {report.get('verify_waited_secs', 0):.1f} s")
sys.exit(0 if accepted > 0 and lost == 0 and found == accepted else 1)
EOF
