#!/usr/bin/env bash
# The linker of stockade's release builds (packaging/release-env.sh makes it cargo's linker):
# `cc` with every argument passed on, plus, for the stockade binary itself, an lld symbol
# ordering file that puts the functions a launch runs first in .text, next to each other.
#
# Why: the kernel maps a binary's text in 64 KiB windows around every page a process
# touches (fault-around), so a launch whose few hundred KiB of code are spread over 4 MB of
# text maps most of it, and that is most of stockade's peak RSS (BENCH.md, "Peak RSS").
#
# packaging/launch-order.txt lists those functions (tools/launch-order.py measures them) by
# a key that outlives a rebuild: the symbol without the hashes a toolchain, the build's
# flags or the crate's metadata put in it. Here each key becomes the symbols of this link's
# objects that have it; C symbols (libc, libseccomp) are their own key. A key that matches
# nothing is left out, so a stale list costs memory, never a failed build.
set -euo pipefail

# The key of each symbol name on stdin, as "key TAB symbol" (the one definition: the tool
# calls `link-ordered.sh --keys` too).
keys() { sed -E 'h; s/17h[0-9a-f]{16}E$/E/; s/Cs[0-9A-Za-z]+_//g; s/\.(llvm\.)?[0-9]+$//; G; s/\n/\t/'; }
if [ "${1:-}" = --keys ]; then keys; exit; fi

cc=${STOCKADE_LINK_CC:-cc}
out= prev=
for arg in "$@"; do
  [ "$prev" = -o ] && out=$arg
  prev=$arg
done
list=$(dirname "$(readlink -f "$0")")/launch-order.txt
case "$out" in */stockade-*) ;; *) exec "$cc" "$@" ;; esac
[ -s "$list" ] || exec "$cc" "$@"

objects=()
for arg in "$@"; do
  case "$arg" in
    @*) exec "$cc" "$@" ;; # a response file: rare for this link; linked without an order
    *.o) objects+=("$arg") ;;
  esac
done
order=$out.order
nm --defined-only --format=just-symbols "${objects[@]}" 2>/dev/null | sort -u | keys >"$order.keys"
awk -F '\t' 'NR == FNR { real[$1] = real[$1] "\n" $2; next }
  $0 == "" || /^#/ { next }
  $0 in real { printf "%s", substr(real[$0], 2) "\n"; next }
  { print }' "$order.keys" "$list" >"$order"
rm -f "$order.keys"
"$cc" "$@" -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering
