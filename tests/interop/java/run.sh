#!/usr/bin/env bash
# Java interop: generate grpc-java stubs from protos/ with Maven's protobuf plugin (protoc
# and protoc-gen-grpc-java come from Maven Central), compile the client and run it against
# $THREADS_TARGET (host:port, plaintext). Needs only a JDK 17+ and Maven 3.8+ on PATH;
# everything else is downloaded into ~/.m2 on the first run. Exits non-zero on the first
# failed check. Normally run by `python -m tests.interop java`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
: "${THREADS_TARGET:?set THREADS_TARGET=host:port of a running threads server}"

command -v java >/dev/null || { echo "java interop: java not found on PATH" >&2; exit 1; }
command -v mvn >/dev/null || { echo "java interop: mvn not found on PATH" >&2; exit 1; }

prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$HERE/pom.xml" | sed -n 1p; }
echo "java interop: $(java -version 2>&1 | sed -n 1p); $(mvn -v 2>/dev/null | sed -n 1p | sed 's/\x1b\[[0-9;]*m//g')"
echo "java interop: grpc-java $(prop grpc.version), protoc/protobuf-java $(prop protobuf.version)," \
  "proto-google-common-protos $(prop common-protos.version); protos from $ROOT/protos"

# compile: protoc + grpc plugin -> target/generated-sources, javac -> target/classes.
# dependency:build-classpath: runtime classpath -> target/classpath.txt.
# (sed: Maven 3.8 -q still prints stray ANSI resets; pipefail keeps mvn's exit status.)
mvn -B -q -ntp -f "$HERE/pom.xml" compile dependency:build-classpath 2>&1 | sed 's/\x1b\[[0-9;]*m//g'

exec java -cp "$HERE/target/classes:$(cat "$HERE/target/classpath.txt")" \
  dev.threads.interop.InteropClient
