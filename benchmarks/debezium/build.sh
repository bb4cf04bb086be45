#!/usr/bin/env bash
# Builds the Debezium benchmark peer (benchmarks/debezium/, a test tool, never part of chartlog):
# target/debezium-bench.jar (Debezium 3.6.1, PostgreSQL and MySQL connectors) and
# target/mariadb/debezium-bench.jar (Debezium 3.5.0, MariaDB connector; see pom.xml), each with its
# dependencies in lib/ beside it. Idempotent: does nothing when a jar is newer than pom.xml and the
# sources; fetches the pinned Maven dependencies into the local Maven repository (~/.m2) on the
# first run, builds offline after that.
#
#   bash benchmarks/debezium/build.sh          # prints the two jars' paths
#
# Needs Java ≥ 17 and Maven; exits 3 (with a message) when either is missing, so a caller can
# skip the Debezium baseline instead of failing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ -z ${JAVA_HOME:-} && -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]]; then
  export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
fi
java_bin=${JAVA_HOME:+$JAVA_HOME/bin/}java
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "debezium: java not found (Java 17 is needed: apt-get install openjdk-17-jdk-headless)" >&2
  exit 3
fi
java_major=$("$java_bin" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if ((${java_major%%.*} < 17)); then
  echo "debezium: Java $java_major found, Debezium 3 needs Java 17 or newer" >&2
  exit 3
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "debezium: mvn not found (apt-get install maven)" >&2
  exit 3
fi

# build <jar> [maven profile flag]
build() {
  local jar=$1 fresh=1
  shift
  if [[ -f $jar && -d $(dirname "$jar")/lib ]]; then
    fresh=0
    if [[ -n $(find pom.xml src -newer "$jar" -print -quit) ]]; then fresh=1; fi
  fi
  if ((fresh)); then
    # Offline first (everything already in ~/.m2), online when something is missing: the first
    # build fetches the pinned dependencies and plugins (dependency:go-offline alone misses some
    # plugins' own dependencies). There are no tests here (-Dmaven.test.skip).
    if ! mvn -q -B -o -Dmaven.test.skip=true "$@" package >target-build.log 2>&1; then
      echo "debezium: fetching the pinned dependencies from Maven Central (first build${1:+, $1})" >&2
      mvn -q -B -Dmaven.test.skip=true "$@" package >>target-build.log 2>&1 || { cat target-build.log >&2; exit 1; }
    fi
    rm -f target-build.log
  fi
  echo "$PWD/$jar"
}
build target/debezium-bench.jar
build target/mariadb/debezium-bench.jar -Pmariadb
