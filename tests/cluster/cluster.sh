#!/usr/bin/env bash
# Throw-away RabbitMQ 3.10 nodes for integration tests: a 3-node cluster (for
# quorum-queue failover tests) and a standalone mutual-TLS node, both running
# beside the machine's own broker (rabbit@localhost:5672) without touching it.
#
#   cluster.sh start      BASEDIR BASEPORT   3-node cluster; uses ports BASEPORT..BASEPORT+9
#   cluster.sh start-tls  BASEDIR PORT       TLS node + certificates; uses ports PORT..PORT+4
#   cluster.sh stop       BASEDIR            kill every process of BASEDIR, remove BASEDIR (idempotent)
#   cluster.sh stop-node  BASEDIR N          graceful stop of node N's Erlang VM (waits until it exited)
#   cluster.sh start-node BASEDIR N          start node N again (same data: it rejoins the cluster)
#   cluster.sh kill-node  BASEDIR N          SIGKILL node N's Erlang VM (waits until it is gone)
#   cluster.sh status     BASEDIR            one line per node
#   cluster.sh ctl        BASEDIR N ARGS...  rabbitmqctl -n <node N> ARGS... with this BASEDIR's cookie
#                                            (N may be "tls")
#
# stdout carries only machine-readable "key value" lines (see NOTES.md);
# progress and errors go to stderr.  See NOTES.md for the why of every choice.
#
# Layout of BASEDIR (everything the nodes own belongs to the rabbitmq user):
#   .wr-cluster            marker: stop only deletes a directory that has it
#   home/.erlang.cookie    this run's own cookie; HOME of nodes and CLI calls
#   rabbitmq-env.conf      our RABBITMQ_CONF_ENV_FILE (replaces /etc/rabbitmq/rabbitmq-env.conf)
#   node1..3/, tls/        per node: rabbitmq.conf, enabled_plugins, mnesia/, log/,
#                          beam.pid, stdout.log, node.env
#   certs/                 CA, server and client certificates (start-tls)
set -Eeuo pipefail

RMQ_BIN=/usr/lib/rabbitmq/bin          # the real scripts, not the /usr/sbin wrappers (see NOTES.md)
BOOT_TIMEOUT=${WR_CLUSTER_BOOT_TIMEOUT:-120}   # seconds, per wait
STOP_TIMEOUT=${WR_CLUSTER_STOP_TIMEOUT:-60}
# How nodes 2 and 3 join node 1: "config" (default: classic_config peer
# discovery during their first and only boot, ~4-6s faster) or "cli" (boot
# standalone, then stop_app / join_cluster / start_app).
FORMATION=${WR_CLUSTER_FORMATION:-config}
[[ $FORMATION == cli || $FORMATION == config ]] || { echo "WR_CLUSTER_FORMATION must be cli or config" >&2; exit 2; }
# TLS versions the TLS node accepts, e.g. "tlsv1.2" to make a refused client
# certificate fail inside the handshake (with TLS 1.3 it fails on first read).
TLS_VERSIONS=${WR_CLUSTER_TLS_VERSIONS:-tlsv1.3 tlsv1.2}

T0=$EPOCHREALTIME
log() { printf '[cluster.sh %6ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Seconds since this script started, e.g. 12.34 (bash 5's EPOCHREALTIME).
elapsed() {
    local now=${EPOCHREALTIME/./} t0=${T0/./}
    local d=$(( (now - t0) / 10000 ))
    printf '%d.%02d' $(( d / 100 )) $(( d % 100 ))
}
out() { printf '%s\n' "$*"; }   # machine-readable line on stdout

# The nodes run as the rabbitmq user when we are root (like Debian's own
# wrapper does); as any other user they simply run as that user.
if [[ $(id -u) == 0 ]]; then
    AS_RMQ=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups)
    OWNER=rabbitmq:rabbitmq
else
    AS_RMQ=()
    OWNER=$(id -un):$(id -gn)
fi

# ---------------------------------------------------------------- helpers

canon_base() {
    [[ -n ${1:-} ]] || die "BASEDIR missing"
    local b
    b=$(realpath -m -- "$1")
    [[ $b != / && $b != /tmp && $b != /root && $b != /var/lib/rabbitmq* && $b != /etc* ]] \
        || die "refusing to use $b as BASEDIR"
    printf '%s' "$b"
}

check_port_arg() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && (( $1 >= 1024 && $1 + $2 <= 65535 )) || die "bad port '${1:-}'"
}

# Node name: the port is part of it, so two runs at the same time never
# register the same name in the (shared) epmd.
node_name() {  # BASE N
    local base=$1 n=$2
    if [[ $n == tls ]]; then
        echo "wrtls_$(cat "$base/tls/port")@localhost"
    else
        echo "wrc${n}_$(cat "$base/baseport")@localhost"
    fi
}
node_dir() { [[ $2 == tls ]] && echo "$1/tls" || echo "$1/node$2"; }

# Is a TCP port in LISTEN state (0A) on any address?  Reads /proc/net/tcp
# directly: polled every 0.1s, and cheaper than ss; no connection is made,
# so the nodes' logs stay free of "client closed connection" noise.
listening() {
    local hex
    printf -v hex '%04X' "$1"
    grep -q "^ *[0-9]*: [0-9A-F]*:$hex [0-9A-F]*:[0-9A-F]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Beam pid of a node, if that process is alive (pid file written by RabbitMQ
# itself during boot).
beam_pid() {  # NODEDIR
    local p
    p=$(cat "$1/beam.pid" 2>/dev/null) || return 1
    [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null || return 1
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == beam.smp ]] || return 1   # not a recycled pid
    echo "$p"
}

# All processes started for BASE, found by the marker variable we put into
# their environment (inherited by beam.smp, erl_child_setup, inet_gethost and
# CLI runs).  Works even when pid files were never written.  epmd is excluded:
# if our node had to start it, the system broker may be using it by now.
marked_pids() {  # BASE
    local base=$1 f p
    # One grep over all environ files (-z: NUL-separated entries, -x: whole entry).
    for f in $(grep -lzxF "WR_CLUSTER_BASE=$base" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}; p=${p%/environ}
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == epmd ]] && continue
        echo "$p"
    done
}

# rabbitmqctl against one of our nodes.  Clean environment: our cookie (via
# HOME), our env file (not /etc/rabbitmq/rabbitmq-env.conf, which would set
# NODENAME=rabbit@localhost), and a CLI distribution port range of our own so
# parallel runs and other tests' CLI calls do not compete for 35672-35682.
ctl() {  # BASE N args...
    local base=$1 n=$2; shift 2
    local lo hi
    if [[ $n == tls ]]; then
        lo=$(( $(cat "$base/tls/port") + 2 )); hi=$(( lo + 2 ))
    else
        lo=$(( $(cat "$base/baseport") + 6 )); hi=$(( lo + 3 ))
    fi
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        HOME="$base/home" WR_CLUSTER_BASE="$base" \
        RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf" \
        RABBITMQ_CTL_DIST_PORT_MIN="$lo" RABBITMQ_CTL_DIST_PORT_MAX="$hi" \
        "$RMQ_BIN/rabbitmqctl" -q -n "$(node_name "$base" "$n")" "$@"
}

# One-time set-up of BASE shared by `start` and `start-tls` (both may run
# on the same BASE, even concurrently: guarded by flock).
prepare_base() {  # BASE
    local base=$1
    mkdir -p "$base"
    [[ -e $base/.wr-cluster ]] || [[ -z $(ls -A "$base") ]] \
        || die "$base exists, is not empty and was not made by cluster.sh"
    touch "$base/.wr-cluster"
    register_starter "$base"
    exec 8>"$base/.lock"
    flock 8
    if [[ ! -f $base/home/.erlang.cookie ]]; then
        # Our own cookie: the system broker's cookie stays unread and unchanged,
        # and our nodes could not even talk to rabbit@localhost by mistake.
        mkdir -p "$base/home"
        ( umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F \
              > "$base/home/.erlang.cookie" )
        chmod 400 "$base/home/.erlang.cookie"
        # What /etc/rabbitmq/rabbitmq-env.conf does for the system broker, minus
        # NODENAME: epmd and distribution on loopback only.
        cat > "$base/rabbitmq-env.conf" <<'EOF'
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
        chown -R "$OWNER" "$base/home"
        chown "$OWNER" "$base"
        chmod 755 "$base"
    fi
    flock -u 8
    # The rabbitmq user must be able to reach BASE (e.g. not below a 0700 dir).
    "${AS_RMQ[@]}" test -w "$base/home" -a -r "$base/home/.erlang.cookie" \
        || die "the node user cannot use $base (is a parent directory private?)"
}

# Write node.env for a node: the exact environment its VM is started with;
# start-node re-reads it.
write_node_env() {  # BASE N DISTPORT
    local base=$1 n=$2 dist=$3 nd
    nd=$(node_dir "$base" "$n")
    mkdir -p "$nd/mnesia" "$nd/log" "$nd/conf.d"
    # No plugins at all (management would add seconds to every boot) unless
    # the caller wrote enabled_plugins already (the TLS node does).
    [[ -f $nd/enabled_plugins ]] || echo '[].' > "$nd/enabled_plugins"
    cat > "$nd/node.env" <<EOF
PATH=/usr/sbin:/usr/bin:/sbin:/bin
LANG=C.UTF-8
LC_ALL=C.UTF-8
HOME=$base/home
WR_CLUSTER_BASE=$base
RABBITMQ_CONF_ENV_FILE=$base/rabbitmq-env.conf
RABBITMQ_NODENAME=$(node_name "$base" "$n")
RABBITMQ_CONFIG_FILE=$nd/rabbitmq.conf
RABBITMQ_CONFIG_FILES=$nd/conf.d
RABBITMQ_ADVANCED_CONFIG_FILE=$nd/advanced.config
RABBITMQ_DIST_PORT=$dist
RABBITMQ_MNESIA_BASE=$nd/mnesia
RABBITMQ_LOG_BASE=$nd/log
RABBITMQ_PID_FILE=$nd/beam.pid
RABBITMQ_ENABLED_PLUGINS_FILE=$nd/enabled_plugins
RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=${WR_CLUSTER_ERL_ARGS:-}
EOF
    if [[ $n != tls && $FORMATION == config ]]; then
        # A virgin node enables every feature flag during its `database` boot
        # step, and the migrations need all table replicas active.  With peer
        # discovery, nodes 2/3 join node 1 exactly in that window, and node 1
        # then dies with {incompatible_feature_flags, {not_active, "All
        # replicas on diskfull nodes are not active yet", ...}} (seen in 1 of
        # ~10 starts).  So: no flags at boot (empty RABBITMQ_FEATURE_FLAGS),
        # and `enable_feature_flag all` once the three nodes are running.
        echo "RABBITMQ_FEATURE_FLAGS=" >> "$nd/node.env"
    fi
    chown -R "$OWNER" "$nd"
}

# Start a node's VM in the background and return at once.  The foreground
# rabbitmq-server script (run in its own session so a test runner's Ctrl-C
# process group does not hit it) forks beam.smp and waits for it; its
# stdout/stderr (boot errors, e.g. config typos) go to stdout.log.
launch() {  # BASE N
    local base=$1 n=$2 nd
    nd=$(node_dir "$base" "$n")
    rm -f "$nd/beam.pid"
    local -a envs
    mapfile -t envs < "$nd/node.env"
    ( cd "$nd" && exec setsid "${AS_RMQ[@]}" env -i "${envs[@]}" \
          "$RMQ_BIN/rabbitmq-server" >>"$nd/stdout.log" 2>&1 </dev/null ) &
    echo $! > "$nd/launcher.pid"
}

# Wait until every given node listens on its port (the listener is started
# by the last boot steps), failing early when a VM died.
wait_listening() {  # BASE "N:PORT"...
    local base=$1; shift
    local deadline=$(( $(date +%s) + BOOT_TIMEOUT )) spec n port nd pending
    while :; do
        pending=0
        for spec in "$@"; do
            n=${spec%%:*}; port=${spec#*:}; nd=$(node_dir "$base" "$n")
            listening "$port" && continue
            pending=1
            if ! kill -0 "$(cat "$nd/launcher.pid")" 2>/dev/null; then
                tail -n 30 "$nd/stdout.log" >&2 || true
                die "node $n died during boot (see $nd/stdout.log and $nd/log/)"
            fi
        done
        (( pending )) || return 0
        (( $(date +%s) < deadline )) || die "timeout waiting for nodes to listen: $*"
        sleep 0.1
    done
}

# If start/start-tls fails or is interrupted half-way, kill what it started
# (the directory stays for post-mortem; `stop` removes it).  While a start
# command runs, BASE/.starter.<pid> names it, so that a `stop` issued in the
# meantime (a test that gave up waiting) can kill it before it launches more.
FAIL_BASE=""
FAIL_NODE_DIR=""
STARTER_FILE=""
arm_failure_trap() { FAIL_BASE=$1; FAIL_NODE_DIR=${2:-}; }
disarm_failure_trap() { FAIL_BASE=""; FAIL_NODE_DIR=""; }
register_starter() { STARTER_FILE=$1/.starter.$$; echo $$ > "$STARTER_FILE"; }
on_exit() {
    local pg
    if [[ $1 != 0 && -n $FAIL_NODE_DIR ]]; then
        # start-node failed: kill only that node (its launcher's session/process
        # group holds the rabbitmq-server script and beam.smp), not the others.
        log "start-node failed; killing that node"
        pg=$(cat "$FAIL_NODE_DIR/launcher.pid" 2>/dev/null) && kill -KILL -- "-$pg" 2>/dev/null || true
    elif [[ $1 != 0 && -n $FAIL_BASE ]]; then
        log "start failed; killing this run's processes (directory kept for post-mortem; run stop)"
        kill_all "$FAIL_BASE"
    fi
    [[ -z $STARTER_FILE ]] || rm -f "$STARTER_FILE"
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

kill_starters() {  # BASE
    local f p
    for f in "$1"/.starter.*; do
        [[ -e $f ]] || continue
        p=${f##*.}
        if [[ $p != "$$" ]] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q 'cluster\.sh'; then
            log "killing cluster.sh (pid $p) still starting in $1"
            kill -KILL "$p" 2>/dev/null || true
            pkill -KILL -P "$p" 2>/dev/null || true   # its subshells, by parent pid
        fi
        rm -f "$f"
    done
}

kill_all() {  # BASE
    local base=$1 pids i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(marked_pids "$base" | tr '\n' ' ')
        [[ -z ${pids// } ]] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    done
    log "WARNING: processes still alive: $(marked_pids "$base" | tr '\n' ' ')"
}

print_node_lines() {  # BASE
    local base=$1 bp n
    bp=$(cat "$base/baseport")
    for n in 1 2 3; do
        out "node$n amqp://guest:guest@127.0.0.1:$(( bp + n - 1 ))/%2f"
        out "nodename$n $(node_name "$base" "$n")"
    done
}

# ---------------------------------------------------------------- commands

cmd_start() {
    [[ $# == 2 ]] || die "usage: start BASEDIR BASEPORT"
    local base bp n
    base=$(canon_base "$1"); bp=$2
    check_port_arg "$bp" 9
    for n in $(seq "$bp" $(( bp + 9 ))); do
        listening "$n" && die "port $n (BASEPORT..BASEPORT+9) is already in use"
    done
    prepare_base "$base"
    [[ ! -e $base/baseport ]] || die "$base already has a cluster"
    echo "$bp" > "$base/baseport"
    echo "$FORMATION" > "$base/formation"
    arm_failure_trap "$base"

    for n in 1 2 3; do
        write_node_env "$base" "$n" $(( bp + 2 + n ))
        cat > "$base/node$n/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(( bp + n - 1 ))
loopback_users.guest = true
log.file.level = info
log.console = false
# Low, so that a nearly full /tmp cannot raise a disk alarm that would block
# publishers in the middle of a test.
disk_free_limit.absolute = 10MB
EOF
        if [[ $FORMATION == config && $n != 1 ]]; then
            # Peer discovery: a blank node 2/3 joins node 1 while booting,
            # retrying every 0.5s until node 1's database is up.  Only used
            # on first boot; later restarts use the node's own cluster
            # membership.
            cat >> "$base/node$n/rabbitmq.conf" <<EOF
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name "$base" 1)
cluster_formation.discovery_retry_limit = $(( BOOT_TIMEOUT * 2 ))
cluster_formation.discovery_retry_interval = 500
EOF
        fi
        chown "$OWNER" "$base/node$n/rabbitmq.conf"
    done

    # All three VMs boot in parallel.
    for n in 1 2 3; do launch "$base" "$n"; done
    log "launched 3 nodes ($FORMATION)"
    wait_listening "$base" "1:$bp" "2:$(( bp + 1 ))" "3:$(( bp + 2 ))"
    log "3 nodes listening"
    if [[ $FORMATION == cli ]]; then
        # The issue's recipe, minus `reset`: join_cluster resets the node itself
        # in 3.10 (and these nodes are brand new anyway).  await_startup and
        # stop_app run per node in parallel; the joins run one at a time
        # (concurrent schema changes against the same seed are asking for
        # trouble); start_app again in parallel.
        local -a jobs=()
        ctl "$base" 1 await_startup --timeout "$BOOT_TIMEOUT" >&2 & jobs+=($!)
        for n in 2 3; do
            { ctl "$base" "$n" await_startup --timeout "$BOOT_TIMEOUT" \
                  && ctl "$base" "$n" stop_app; } >&2 & jobs+=($!)
        done
        for n in "${jobs[@]}"; do wait "$n"; done
        log "node 1 booted; stop_app done on 2 and 3"
        for n in 2 3; do ctl "$base" "$n" join_cluster "$(node_name "$base" 1)" >&2; done
        log "2 and 3 joined"
        jobs=()
        for n in 2 3; do ctl "$base" "$n" start_app >&2 & jobs+=($!); done
        for n in "${jobs[@]}"; do wait "$n"; done
    fi
    # In config mode nodes 2 and 3 joined node 1 by themselves during boot.
    ctl "$base" 1 await_online_nodes 3 --timeout "$BOOT_TIMEOUT" >&2
    if [[ $FORMATION == config ]]; then
        # See write_node_env: the flags (quorum_queue among them) are enabled
        # now, cluster-wide, with every node up.
        ctl "$base" 1 enable_feature_flag all >&2
    fi
    disarm_failure_trap
    log "cluster of 3 ready"
    print_node_lines "$base"
    out "cluster_ready_secs $(elapsed)"
}

make_certs() {  # CERTDIR
    local d=$1
    mkdir -p "$d"
    (
    cd "$d"
    # EC P-256 keys: generated instantly (RSA-2048 takes noticeable CPU), and
    # accepted by Erlang/OTP 25, OpenSSL, Python and rustls alike.
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ca() {  # NAME CN
        key "$1-key.pem"
        openssl req -new -x509 -key "$1-key.pem" -out "$1.pem" -days 30 -subj "/CN=$2" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    }
    leaf() {  # NAME CN CA EKU [SAN]
        key "$1-key.pem"
        openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
        {
            echo "basicConstraints=critical,CA:FALSE"
            echo "keyUsage=critical,digitalSignature"
            echo "extendedKeyUsage=$4"
            echo "subjectKeyIdentifier=hash"
            echo "authorityKeyIdentifier=keyid"
            if [[ -n ${5:-} ]]; then echo "subjectAltName=$5"; fi
        } > "$1.ext"
        openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3-key.pem" -CAcreateserial \
            -out "$1.pem" -days 30 -extfile "$1.ext" 2>/dev/null
        rm -f "$1.csr" "$1.ext"
    }
    ca ca "wr-test-ca"
    leaf server localhost ca serverAuth "DNS:localhost,IP:127.0.0.1"
    leaf client wr-client ca clientAuth
    # Unrelated CA, and a client cert from it with the *same* CN: a negative
    # test then proves that trust comes from the CA, not from the name.
    ca other-ca "wr-other-ca"
    leaf other-client wr-client other-ca clientAuth
    # PKCS#12 bundles (password "wr-test") for clients that want one
    # (lapin/tcp-stream Identity::PKCS12).
    for c in client other-client; do
        openssl pkcs12 -export -in "$c.pem" -inkey "$c-key.pem" -certfile "${c%client}ca.pem" \
            -name "$c" -passout pass:wr-test -out "$c.p12" 2>/dev/null
    done
    rm -f ./*.srl
    chmod 644 ./*.pem ./*.p12
    )
}

# Password hash as rabbit_password_hashing_sha256 computes it, for the
# definitions file: base64(salt ++ sha256(salt ++ password)).
pw_hash() {
    local salt hex
    salt=$(openssl rand -hex 4)
    hex=$( { printf '%b' "$(sed 's/../\\x&/g' <<<"$salt")"; printf '%s' "$1"; } \
           | openssl dgst -sha256 -binary | od -An -tx1 | tr -d ' \n')
    printf '%b' "$(sed 's/../\\x&/g' <<<"$salt$hex")" | base64 -w0
}

cmd_start_tls() {
    [[ $# == 2 ]] || die "usage: start-tls BASEDIR PORT"
    local base port nd c
    base=$(canon_base "$1"); port=$2
    check_port_arg "$port" 4
    for c in $(seq "$port" $(( port + 4 ))); do
        listening "$c" && die "port $c (PORT..PORT+4) is already in use"
    done
    prepare_base "$base"
    nd=$base/tls
    [[ ! -e $nd/port ]] || die "$base already has a TLS node"
    mkdir -p "$nd"
    echo "$port" > "$nd/port"
    arm_failure_trap "$base"

    make_certs "$base/certs"
    log "certificates made"
    # EXTERNAL: the client cert's CN is the user name (no password).  The
    # user must exist: a definitions file creates it at boot (before the
    # listener opens), together with guest, so both PLAIN and EXTERNAL work.
    cat > "$nd/definitions.json" <<EOF
{
  "users": [
    {"name": "guest", "password_hash": "$(pw_hash guest)",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"},
    {"name": "wr-client", "password_hash": "",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}
  ],
  "vhosts": [{"name": "/"}],
  "permissions": [
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "wr-client", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
  ]
}
EOF
    echo '[rabbitmq_auth_mechanism_ssl].' > "$nd/enabled_plugins"
    write_node_env "$base" tls $(( port + 1 ))
    cat > "$nd/rabbitmq.conf" <<EOF
# TLS only: no plain AMQP listener on this node.
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$port
ssl_options.cacertfile = $base/certs/ca.pem
ssl_options.certfile = $base/certs/server.pem
ssl_options.keyfile = $base/certs/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
$(i=0; for v in $TLS_VERSIONS; do i=$((i + 1)); echo "ssl_options.versions.$i = $v"; done)
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
load_definitions = $nd/definitions.json
loopback_users.guest = true
log.file.level = info
log.console = false
disk_free_limit.absolute = 10MB
EOF
    chown -R "$OWNER" "$nd" "$base/certs"
    launch "$base" tls
    log "launched TLS node"
    wait_listening "$base" "tls:$port"
    ctl "$base" tls await_startup --timeout "$BOOT_TIMEOUT" >&2
    disarm_failure_trap
    log "TLS node ready"
    out "tls amqps://guest:guest@localhost:$port/%2f"
    out "tls_external amqps://localhost:$port/%2f?auth_mechanism=external"
    out "tlsnodename $(node_name "$base" tls)"
    out "tls_ca $base/certs/ca.pem"
    out "tls_server_cert $base/certs/server.pem"
    out "tls_client_cert $base/certs/client.pem"
    out "tls_client_key $base/certs/client-key.pem"
    out "tls_client_p12 $base/certs/client.p12"
    out "tls_other_ca $base/certs/other-ca.pem"
    out "tls_other_client_cert $base/certs/other-client.pem"
    out "tls_other_client_key $base/certs/other-client-key.pem"
    out "tls_other_client_p12 $base/certs/other-client.p12"
    out "tls_p12_password wr-test"
    out "tls_ready_secs $(elapsed)"
}

cmd_stop() {
    [[ $# == 1 ]] || die "usage: stop BASEDIR"
    local base
    base=$(canon_base "$1")
    # SIGKILL straight away: the data is deleted anyway, and it is instant.
    [[ -d $base ]] && kill_starters "$base"
    kill_all "$base"
    if [[ -d $base ]]; then
        if [[ -e $base/.wr-cluster ]]; then
            rm -rf -- "$base"
        elif [[ -z $(ls -A "$base") ]]; then
            rmdir -- "$base"
        else
            die "$base has no .wr-cluster marker: not deleting it"
        fi
    fi
    log "stopped and removed $base"
}

check_node_arg() {  # BASE N
    [[ $2 =~ ^[123]$ || $2 == tls ]] || die "node must be 1, 2, 3 or tls"
    [[ -f $(node_dir "$1" "$2")/node.env ]] || die "no node $2 in $1"
}

wait_gone() {  # PID TIMEOUT
    local deadline=$(( $(date +%s) + $2 ))
    while kill -0 "$1" 2>/dev/null; do
        (( $(date +%s) < deadline )) || return 1
        sleep 0.05
    done
}

cmd_stop_node() {
    [[ $# == 2 ]] || die "usage: stop-node BASEDIR N"
    local base n nd pid
    base=$(canon_base "$1"); n=$2; check_node_arg "$base" "$n"
    nd=$(node_dir "$base" "$n")
    pid=$(beam_pid "$nd") || { log "node $n is not running"; return 0; }
    # SIGTERM to beam.smp = orderly shutdown of RabbitMQ and then the VM
    # (same as `rabbitmqctl stop`/`shutdown`, without a CLI VM start).
    kill -TERM "$pid"
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "node $n did not stop within ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "node $n (pid $pid) survives SIGKILL"
    fi
    log "node $n stopped"
    out "node_stopped $n $(elapsed)"
}

cmd_kill_node() {
    [[ $# == 2 ]] || die "usage: kill-node BASEDIR N"
    local base n nd pid
    base=$(canon_base "$1"); n=$2; check_node_arg "$base" "$n"
    nd=$(node_dir "$base" "$n")
    pid=$(beam_pid "$nd") || { log "node $n is not running"; return 0; }
    kill -KILL "$pid"
    wait_gone "$pid" 10 || die "node $n (pid $pid) survives SIGKILL"
    log "node $n killed"
    out "node_killed $n $(elapsed)"
}

cmd_start_node() {
    [[ $# == 2 ]] || die "usage: start-node BASEDIR N"
    local base n nd port
    base=$(canon_base "$1"); n=$2; check_node_arg "$base" "$n"
    nd=$(node_dir "$base" "$n")
    if beam_pid "$nd" >/dev/null; then log "node $n is already running"; return 0; fi
    register_starter "$base"
    arm_failure_trap "$base" "$nd"   # a node that fails to come back up is killed, not left half-booted
    if [[ $n == tls ]]; then port=$(cat "$nd/port"); else port=$(( $(cat "$base/baseport") + n - 1 )); fi
    # A killed node leaves epmd registration and port behind for a moment.
    local deadline=$(( $(date +%s) + 10 ))
    while listening "$port" && (( $(date +%s) < deadline )); do sleep 0.1; done
    launch "$base" "$n"
    wait_listening "$base" "$n:$port"
    ctl "$base" "$n" await_startup --timeout "$BOOT_TIMEOUT" >&2
    disarm_failure_trap
    log "node $n running"
    out "node_started $n $(elapsed)"
}

cmd_status() {
    [[ $# == 1 ]] || die "usage: status BASEDIR"
    local base n nd pid state any=""
    base=$(canon_base "$1")
    [[ -d $base ]] || { out "absent $base"; return 0; }
    for n in 1 2 3 tls; do
        nd=$(node_dir "$base" "$n")
        [[ -f $nd/node.env ]] || continue
        if pid=$(beam_pid "$nd"); then state=running; [[ -n $any ]] || any=$n; else state=stopped; pid=-; fi
        if [[ $n == tls ]]; then
            out "tls $state pid=$pid name=$(node_name "$base" tls) port=$(cat "$nd/port")"
        else
            out "node$n $state pid=$pid name=$(node_name "$base" "$n") port=$(( $(cat "$base/baseport") + n - 1 ))"
        fi
    done
    # Cluster view from the first running cluster node, for humans (stderr).
    if [[ -n $any && $any != tls ]]; then
        ctl "$base" "$any" cluster_status >&2 || true
    fi
}

cmd_ctl() {
    [[ $# -ge 3 ]] || die "usage: ctl BASEDIR N ARGS..."
    local base n
    base=$(canon_base "$1"); n=$2; shift 2; check_node_arg "$base" "$n"
    ctl "$base" "$n" "$@"
}

cmd=${1:-}; shift || true
case $cmd in
    start)      cmd_start "$@" ;;
    start-tls)  cmd_start_tls "$@" ;;
    stop)       cmd_stop "$@" ;;
    stop-node)  cmd_stop_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    kill-node)  cmd_kill_node "$@" ;;
    status)     cmd_status "$@" ;;
    ctl)        cmd_ctl "$@" ;;
    *) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
