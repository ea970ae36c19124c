#!/usr/bin/env bash
# Compiles the pure-Java core module and its JUnit 4 tests with javac and runs them.
# Needs Debian's default-jdk-headless and junit4 (junit4.jar + hamcrest). Outputs go to build/.
# The tests read the shared contract fixtures (tests/fixtures/contracts) and write the result
# documents they produce to build/contract-results/ for the Python schema check
# (tests/android_app/test_java_contract.py). Exit status is non-zero when anything fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILD="$HERE/build"
CONTRACTS="${CONTRACTS_DIR:-$REPO/tests/fixtures/contracts}"
RESULTS_OUT="${RESULTS_OUT:-$BUILD/contract-results}"

find_jar() {
    for j in "$@"; do
        if [ -f "$j" ]; then echo "$j"; return 0; fi
    done
    return 1
}
JUNIT="$(find_jar "${JUNIT_JAR:-}" /usr/share/java/junit4.jar /usr/share/java/junit4-4.13.2.jar)" || {
    echo "junit4.jar not found: install Debian's junit4 package (apt-get install -y junit4) or set JUNIT_JAR" >&2
    exit 2
}
HAMCREST="$(find_jar "${HAMCREST_JAR:-}" /usr/share/java/hamcrest-core.jar /usr/share/java/hamcrest.jar)" || {
    echo "hamcrest jar not found: install Debian's junit4 package (it pulls libhamcrest-java) or set HAMCREST_JAR" >&2
    exit 2
}
command -v javac >/dev/null || {
    echo "javac not found: install Debian's default-jdk-headless" >&2
    exit 2
}

rm -rf "$BUILD/classes" "$BUILD/test-classes" "$RESULTS_OUT"
mkdir -p "$BUILD/classes" "$BUILD/test-classes" "$RESULTS_OUT"

# Main code: Java 8 language and library level, so it runs on Android API 26 without desugaring
# surprises (no String.isBlank, List.of, ...).
javac --release 8 -Xlint:all -Xlint:-options -Werror -encoding UTF-8 -d "$BUILD/classes" \
    $(find "$HERE/src/main/java" -name '*.java')
# Tests use the JDK's com.sun.net.httpserver, so they compile for the running JDK.
javac -Xlint:all -Xlint:-options -encoding UTF-8 -d "$BUILD/test-classes" \
    -cp "$BUILD/classes:$JUNIT:$HAMCREST" $(find "$HERE/src/test/java" -name '*.java')

TEST_CLASSES=$(cd "$BUILD/test-classes" && find . -name '*Test.class' ! -name '*$*' \
    | sed -e 's|^\./||' -e 's|\.class$||' -e 's|/|.|g' | sort)

cd "$HERE"
java -Djava.awt.headless=true -Dcontracts.dir="$CONTRACTS" -Dresults.out="$RESULTS_OUT" \
    -cp "$BUILD/classes:$BUILD/test-classes:$JUNIT:$HAMCREST" org.junit.runner.JUnitCore $TEST_CLASSES
