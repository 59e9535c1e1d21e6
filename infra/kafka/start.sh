#!/usr/bin/env bash
# Start a throwaway single-node Apache Kafka broker (KRaft: broker + controller in one JVM) on
# loopback, for Herald integration tests / CI. No Docker: the jars come from Maven Central.
#
# Usage:  export KAFKA_BROKERS=$(infra/kafka/start.sh)
#
# Prints exactly one line on stdout (the bootstrap address, 127.0.0.1:PORT); everything else
# goes to stderr (and the broker's own log to $DIR/kafka.log) so the command substitution above
# stays clean. Idempotent: if a broker started by this script already runs on the port, it only
# re-checks readiness.
#
# Needs Java 17+ and Maven (mvn). The first run fetches org.apache.kafka:kafka_2.13 and its
# runtime dependencies (~45 MB) into the cache; later runs start from the cache.
#
# Env:  HERALD_KAFKA_VERSION          Kafka version             (default 4.4.0)
#       HERALD_KAFKA_CACHE            jar cache                 (default ~/.cache/herald-kafka;
#                                     jars under <cache>/<version>/libs)
#       HERALD_KAFKA_PORT             client port               (default 19092)
#       HERALD_KAFKA_CONTROLLER_PORT  KRaft controller port     (default client port + 1)
#       HERALD_KAFKA_DIR              data dir                  (default a new mktemp dir,
#                                     remembered in /tmp/herald-kafka-<port>.dir for stop.sh)
#       HERALD_KAFKA_HEAP             JVM heap options          (default -Xms256m -Xmx1g)
# Stop with infra/kafka/stop.sh [--clean].
set -euo pipefail

VERSION="${HERALD_KAFKA_VERSION:-4.4.0}"
CACHE_ROOT="${HERALD_KAFKA_CACHE:-$HOME/.cache/herald-kafka}"
PORT="${HERALD_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${HERALD_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
HEAP="${HERALD_KAFKA_HEAP:--Xms256m -Xmx1g}"
READY_TIMEOUT=90
POINTER="/tmp/herald-kafka-${PORT}.dir"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

log() { echo "[herald-kafka] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- prerequisites: Java 17+ and Maven --------------------------------------------------------
command -v java >/dev/null 2>&1 \
  || die "java not found: Kafka ${VERSION} needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
JAVA_MAJOR=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')
JAVA_MAJOR="${JAVA_MAJOR#1.}"
[[ "$JAVA_MAJOR" =~ ^[0-9]+$ ]] || die "could not read the Java version from 'java -XshowSettings:properties -version'"
(( JAVA_MAJOR >= 17 )) || die "Java ${JAVA_MAJOR} found, Kafka ${VERSION} needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"

LIBS="$CACHE_ROOT/$VERSION/libs"

# --- fetch the jars (once per version) --------------------------------------------------------
if [[ ! -f "$CACHE_ROOT/$VERSION/.complete" ]]; then
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found: Maven fetches Kafka ${VERSION} from Maven Central (Debian: apt-get install maven)"
  log "fetching Kafka ${VERSION} (org.apache.kafka:kafka_2.13 + runtime dependencies) into $LIBS"
  started=$SECONDS
  work=$(mktemp -d /tmp/herald-kafka-fetch.XXXXXX)
  trap 'rm -rf -- "$work"' EXIT
  # A throwaway pom: its runtime dependency closure is the broker's classpath.
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.herald.infra</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${VERSION}</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf -- "$LIBS"
  mkdir -p "$LIBS"
  # Maven's output goes to a log, shown on failure: stdout is reserved for the bootstrap address.
  FETCH_LOG="$CACHE_ROOT/$VERSION/fetch.log"
  mvn_fetch() {
    mvn -B -f "$work/pom.xml" "$@" >>"$FETCH_LOG" 2>&1 || { tail -n 30 "$FETCH_LOG" >&2; return 1; }
  }
  mvn_fetch dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" \
    || die "mvn could not fetch org.apache.kafka:kafka_2.13:${VERSION} (is Maven Central reachable? is ${VERSION} published?); log: $FETCH_LOG"
  # Kafka logs through slf4j, and kafka_2.13 brings slf4j-api and log4j-core but not the bridge
  # between them (the distribution tarball adds it): fetch it in the version of that log4j-core.
  LOG4J_VERSION=$(find "$LIBS" -name 'log4j-core-*.jar' -printf '%f\n' | sed -E 's/^log4j-core-(.*)\.jar$/\1/' | head -n1)
  [[ -n "$LOG4J_VERSION" ]] || die "no log4j-core among Kafka's dependencies in $LIBS"
  mvn_fetch dependency:copy -Dartifact="org.apache.logging.log4j:log4j-slf4j-impl:${LOG4J_VERSION}" -DoutputDirectory="$LIBS" \
    || die "mvn could not fetch org.apache.logging.log4j:log4j-slf4j-impl:${LOG4J_VERSION}; log: $FETCH_LOG"
  [[ -f "$LIBS/kafka_2.13-${VERSION}.jar" ]] || die "kafka_2.13-${VERSION}.jar missing from $LIBS after the fetch"
  touch "$CACHE_ROOT/$VERSION/.complete"
  rm -rf -- "$work"
  trap - EXIT
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
fi
CLASSPATH_JARS="$LIBS/*"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- data dir: reuse the one of a broker already started on this port -------------------------
if [[ -n "${HERALD_KAFKA_DIR:-}" ]]; then
  DIR="$HERALD_KAFKA_DIR"
elif [[ -f "$POINTER" && -d "$(cat "$POINTER")" ]]; then
  DIR="$(cat "$POINTER")"
else
  DIR="$(mktemp -d /tmp/herald-kafka.XXXXXX)"
fi
# Refuse to take over something unexpected, e.g. a mistyped HERALD_KAFKA_DIR.
if [[ -d "$DIR" && ! -f "$DIR/server.properties" && -n "$(ls -A "$DIR")" ]]; then
  die "$DIR is not empty and has no server.properties; remove it or set HERALD_KAFKA_DIR"
fi
mkdir -p "$DIR"
echo "$DIR" >"$POINTER"
LOGFILE="$DIR/kafka.log"
PIDFILE="$DIR/kafka.pid"

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if running; then
  log "broker already running (pid $(cat "$PIDFILE"), data $DIR)"
else
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $p is already in use by another process (set HERALD_KAFKA_PORT / HERALD_KAFKA_CONTROLLER_PORT)"
  done

  # Single node, broker + controller, loopback only. Replication factors of 1 for the internal
  # topics (there is one broker); no delay before the first consumer-group rebalance (tests
  # start consumers and expect them to join at once); topics are created by the application
  # (KafkaBus), never implicitly by a metadata request.
  cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${DIR}/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.retention.hours=24
EOF

  cat >"$DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
EOF

  JAVA_OPTS=(-server $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
             -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dkafka.logs.dir="$DIR")

  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    CLUSTER_ID=$(java -cp "$CLASSPATH_JARS" "${JAVA_OPTS[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOGFILE" | tail -n1)
    [[ -n "$CLUSTER_ID" ]] || die "kafka.tools.StorageTool random-uuid printed nothing; see $LOGFILE"
    log "formatting storage in $DIR/data (cluster $CLUSTER_ID)"
    java -cp "$CLASSPATH_JARS" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
        -t "$CLUSTER_ID" -c "$DIR/server.properties" >>"$LOGFILE" 2>&1 \
      || { tail -n 30 "$LOGFILE" >&2; die "kafka.tools.StorageTool format failed"; }
  fi

  log "starting Kafka ${VERSION} on 127.0.0.1:${PORT} (controller ${CONTROLLER_PORT}, data $DIR, log $LOGFILE)"
  # setsid: the broker outlives this script and the shell that ran it; stop.sh ends it by pid.
  setsid java -cp "$CLASSPATH_JARS" "${JAVA_OPTS[@]}" kafka.Kafka "$DIR/server.properties" \
    >>"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
fi

# --- readiness: port open, the broker says it started, and a metadata request answers ---------
deadline=$((SECONDS + READY_TIMEOUT))
wait_for() {
  local what="$1"; shift
  until "$@"; do
    running || { log "broker exited; last lines of $LOGFILE:"; tail -n 40 "$LOGFILE" >&2; exit 1; }
    if (( SECONDS >= deadline )); then
      log "$what not reached after ${READY_TIMEOUT}s; last lines of $LOGFILE:"
      tail -n 40 "$LOGFILE" >&2
      exit 1
    fi
    sleep 0.2
  done
}
wait_for "client port 127.0.0.1:${PORT} open" port_open "$PORT"
wait_for "'Kafka Server started' in $LOGFILE" grep -q 'Kafka Server started' "$LOGFILE"

# Through kafkajs (the client Herald uses), when the repo's dependencies are installed: a
# metadata request answers, and the group coordinator has loaded (describeGroups finds it; the
# first consumer would otherwise crash on "coordinator is loading" and restart). Without them,
# the broker's own 'started' line above is the readiness signal.
NODE="$REPO_ROOT/node_modules/.bin/node"
[[ -x "$NODE" ]] || NODE="$(command -v node || true)"
if [[ -n "$NODE" && -d "$REPO_ROOT/node_modules/kafkajs" ]]; then
  kafkajs_ready() {
    (cd "$REPO_ROOT" && "$NODE" --input-type=module -e "
      import kafkajs from 'kafkajs';
      const admin = new kafkajs.Kafka({ brokers: ['127.0.0.1:${PORT}'], logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 0 } }).admin();
      await admin.connect();
      try {
        await admin.listTopics();
        await admin.describeGroups(['herald-readiness-probe']);
      } finally {
        await admin.disconnect();
      }
    " >/dev/null 2>&1)
  }
  wait_for "kafkajs: metadata answered and group coordinator loaded" kafkajs_ready
fi

log "ready (pid $(cat "$PIDFILE"))"
echo "127.0.0.1:${PORT}"
