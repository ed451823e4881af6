#!/usr/bin/env bash
# Runs every Go native fuzz target of the module for a fixed time each.
#
#   tools/fuzz.sh [fuzztime] [package pattern]    (default: 15s, ./...)
#
# Targets are found by their declaration, `func FuzzName(` at the start of a
# line in a *_test.go file of a package of this module, so new ones are picked
# up without a list. go test fuzzes one target per run, so each gets its own.
# Environment: GO (default go), FUZZPARALLEL (workers, default GOMAXPROCS),
# FUZZTIMEOUT (go test -timeout of one run; default fuzztime + 10m).
#
# A failing input is written by go test to <package>/testdata/fuzz/<Name>/;
# from then on the package's ordinary tests replay it and fail until it is
# fixed. This script runs every target, then exits 1 naming each failure.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
fuzztime=${1:-15s}
pattern=${2:-./...}
# go test's default -timeout (10m) also ends a fuzz run: give each run its
# fuzz time and ten minutes for building and the seed corpus.
case $fuzztime in
*[0-9]h) secs=$((${fuzztime%h} * 3600)) ;;
*[0-9]m) secs=$((${fuzztime%m} * 60)) ;;
*[0-9]s) secs=${fuzztime%s} ;;
*) secs=0 ;; # a count such as 1000x
esac
timeout=${FUZZTIMEOUT:-$((secs + 600))s}
parallel=()
if [[ -n ${FUZZPARALLEL:-} ]]; then
	parallel=(-parallel "$FUZZPARALLEL")
fi

# Package directory and import path of every package of this module (nested
# modules such as tools/gnmic are not in ./...).
mapfile -t pkgs < <($GO list -f '{{.Dir}} {{.ImportPath}}' "$pattern")

root=$PWD
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
targets=0
failed=()
for line in "${pkgs[@]}"; do
	dir=${line%% *}
	pkg=${line#* }
	names=$(grep -ho '^func Fuzz[A-Za-z0-9_]*(' "$dir"/*_test.go 2>/dev/null | sed 's/^func //; s/($//' | sort -u) || true
	for name in $names; do
		targets=$((targets + 1))
		rel=${dir#"$root"/}
		echo "=== fuzz $name in ./$rel for $fuzztime"
		start=$(date +%s)
		touch "$marker"
		if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -timeout "$timeout" "${parallel[@]}" "./$rel"; then
			failed+=("$name in $pkg")
			echo "!!! FUZZ FAILURE: $name in ./$rel"
			echo "!!! new inputs under ./$rel/testdata/fuzz/$name/ (replay: $GO test -run '^$name\$' ./$rel):"
			find "$rel/testdata/fuzz/$name" -type f -newer "$marker" 2>/dev/null | sed 's/^/!!!   /' || true
		fi
		echo "--- $name: $(($(date +%s) - start))s"
	done
done

if ((targets == 0)); then
	echo "fuzz: no fuzz targets found in $pattern" >&2
	exit 1
fi
if ((${#failed[@]} > 0)); then
	echo
	echo "!!! ${#failed[@]} of $targets fuzz targets FAILED:"
	printf '!!!   %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: $targets targets passed, $fuzztime each"
