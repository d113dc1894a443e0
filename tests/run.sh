#!/usr/bin/env bash
# Installs what the tests need, builds MailMesh twice (warnings as errors;
# then with AddressSanitizer and UndefinedBehaviorSanitizer) and runs every
# test (unit, fuzz corpus replay, integration) in both builds.
#   tests/run.sh              everything
#   tests/run.sh -L unit      one label (unit, fuzz, integration), both builds
#   MM_SKIP_ASAN=1 tests/run.sh   only the plain build
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

if [ "$(id -u)" -eq 0 ]; then
	bash "$top/deploy/install-deps.sh"
else
	echo "not root: assuming deploy/install-deps.sh has been run" >&2
fi

build() {
	local dir=$1
	shift
	cmake -S "$top" -B "$dir" -DMM_WERROR=ON "$@" >/dev/null
	if ! cmake --build "$dir" -j"$jobs" >"$dir/build.log" 2>&1; then
		cat "$dir/build.log"
		echo "build failed in $dir" >&2
		exit 1
	fi
}

# Unit and fuzz tests run in parallel; each integration test runs alone
# (RUN_SERIAL: it starts its own Dovecot instances and mmnode processes).
run_ctest() {
	local dir=$1
	shift
	(cd "$dir" && ctest --output-on-failure -j"$jobs" "$@")
}

if [ "${MM_SKIP_ASAN:-0}" != 1 ]; then
	echo "== build with ASan+UBSan"
	build "$top/build-asan" -DMM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	echo "== tests with ASan+UBSan"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	run_ctest "$top/build-asan" "$@"
	unset ASAN_OPTIONS UBSAN_OPTIONS
fi

echo "== build"
build "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== tests"
# The run ends with ctest's summary line.
run_ctest "$top/build" "$@"
