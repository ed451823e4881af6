#!/usr/bin/env bash
# Prints the packages of a lane of `make test`, one import path a line.
#
#   tools/lanes.sh main    every package the race lane leaves, and ALSO_MAIN's;
#                          MAIN_FIRST's first, in their order
#   tools/lanes.sh race    RACE_PKGS' packages
#
# The Makefile passes RACE_PKGS, ALSO_MAIN and MAIN_FIRST in the environment
# and says what each is for.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
race() { $GO list $RACE_PKGS; }
case ${1:-} in
main)
	also=$($GO list $ALSO_MAIN)
	only_race=$(race | grep -vxF "$also")
	$GO list $MAIN_FIRST ./... | awk '!seen[$0]++' | grep -vxF "$only_race"
	;;
race) race ;;
*)
	echo "usage: $0 main|race" >&2
	exit 2
	;;
esac
