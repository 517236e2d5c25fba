#!/usr/bin/env bash
# Builds and inspects the packages for the other families from the release binary
# packaging/build-deb.sh built (run it first; tests/run-all.sh does), so the LTO build is not
# repeated, and puts the .deb through lintian:
#   - the RPM: rpmbuild -bb --with prebuilt of packaging/stockade.spec, then rpm -qpl and
#     rpm -qpR/--recommends checked for the binary, units, profiles, man pages, completions
#     and requirements;
#   - the Arch package: makepkg --repackage of packaging/PKGBUILD (its package() function;
#     build() is the same cargo build), then its file list and .PKGINFO checked;
#   - lintian of target/debian/*.deb: no errors (warnings are printed).
# rpmbuild, makepkg and lintian come from Debian's rpm, makepkg/pacman-package-manager and
# lintian packages (tests/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
fail() { echo "packaging/check-packages.sh: $*" >&2; exit 1; }
for f in target/release/stockade target/completions/stockade.bash target/completions/_stockade target/completions/stockade.fish; do
  [ -s "$f" ] || fail "$f is missing: run packaging/build-deb.sh first"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
work=$(mktemp -d)
chmod 0755 "$work"   # makepkg runs as nobody below
trap 'rm -rf "$work"' EXIT

# A release tarball as the recipes expect it, holding the prebuilt binary and completions.
src="$work/stockade-$version"
mkdir -p "$src"
git ls-files -z | xargs -0 cp --parents -t "$src"
cp --parents -t "$src" target/release/stockade target/completions/*
tar -C "$work" -czf "$work/stockade-$version.tar.gz" "stockade-$version"

# Everything a package must ship, as paths below /usr (and /var for the volume directory).
expected=(
  /usr/bin/stockade
  /usr/lib/systemd/system/stockade@.service
  /usr/lib/systemd/system/stockade.slice
  /usr/lib/systemd/system/stockade-metrics.service
  /usr/share/stockade/profiles/include/base.toml
  /usr/share/bash-completion/completions/stockade
  /usr/share/zsh/site-functions/_stockade
  /usr/share/fish/vendor_completions.d/stockade.fish
  /var/lib/stockade/volumes
)
for p in examples/*.toml; do expected+=("/usr/share/stockade/profiles/$(basename "$p")"); done
for p in man/*.1; do expected+=("/usr/share/man/man1/$(basename "$p")"); done
expected+=(/usr/share/man/man5/stockade.toml.5)
# Man pages may be compressed by the packager.
check_list() {
  local what=$1 list=$2 missing=0
  for p in "${expected[@]}"; do
    grep -qxE "$(printf '%s' "$p" | sed 's/[.[\*^$+?(){}|]/\\&/g')(\.gz|\.zst|\.xz)?" "$list" || { echo "$what lacks $p" >&2; missing=1; }
  done
  [ $missing = 0 ] || fail "$what is incomplete (its files: $list)"
}

# Where packaging/release-build.sh linked with an order (packaging/link-ordered.sh leaves the
# order it used beside the binary it linked), the launch's functions must open .text: the
# peak RSS figure of BENCH.md rests on it, and nothing else would notice it being lost.
host=$(rustc -vV | sed -n 's/^host: //p')
order=$(ls -t "target/$host/release/deps/"stockade-*.order 2>/dev/null | sed -n 1p || true)
if [ -n "$order" ] && cmp -s target/release/stockade "target/$host/release/stockade"; then
  # The listed functions must lie together at the start of .text: nine tenths of their bytes
  # within its first 1.5 times their size (unordered, they spread over all of it).
  span=$(nm -n -S -t d --defined-only target/release/stockade | awk -v order="$order" '
    BEGIN { while ((getline l < order) > 0) want[l] = 1 }
    $3 ~ /^[tTwW]$/ && start == "" { start = $1 + 0 }
    $3 ~ /^[tTwW]$/ && ($4 in want) { n++; at[n] = $1 - start; len[n] = $2; size += $2 }
    END { for (i = 1; i <= n; i++) if (at[i] + len[i] <= size * 1.5) near += len[i]; printf "%d %d\n", size, near }')
  read -r size near <<<"$span"
  echo "the launch's functions: $((size / 1024)) KiB, $((near / 1024)) KiB of them within the first $((size * 3 / 2048)) KiB of .text"
  [ "$size" -gt 0 ] && [ $((near * 10)) -ge $((size * 9)) ] \
    || fail "the launch's functions do not open .text: was packaging/link-ordered.sh the linker?"
fi

echo "== rpmbuild -bb packaging/stockade.spec"
mkdir -p "$work/rpm/SOURCES"
cp "$work/stockade-$version.tar.gz" "$work/rpm/SOURCES/"
# --nodeps: the BuildRequires name Fedora packages, which Debian's rpm database does not hold.
rpmbuild -bb --nodeps --with prebuilt --define "_topdir $work/rpm" packaging/stockade.spec >"$work/rpmbuild.log" 2>&1 \
  || { cat "$work/rpmbuild.log" >&2; fail "rpmbuild failed"; }
rpm=$(ls "$work"/rpm/RPMS/*/stockade-"$version"-*.rpm)
rpm -qpl "$rpm" >"$work/rpm.files"
check_list "the RPM" "$work/rpm.files"
rpm -qpR "$rpm" >"$work/rpm.requires"
echo "requires:"; sed 's/^/  /' "$work/rpm.requires"
# What the binary needs at run time is what the RPM must require, no more: every shared
# library it names (none for the static-pie packaging/release-build.sh makes where it can).
needed=$(readelf -dW target/release/stockade | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "the binary needs: ${needed:-no shared library (statically linked)}"
for lib in libc.so.6 libgcc_s.so.1 libseccomp.so.2; do
  if grep -qx "$lib" <<<"$needed"; then
    grep -q "^${lib//./\\.}" "$work/rpm.requires" || fail "the binary needs $lib, the RPM does not require it"
  else
    ! grep -q "^${lib%%.so*}\.so" "$work/rpm.requires" || fail "the RPM requires $lib, which the binary does not need"
  fi
done
[ -n "$needed" ] || ! grep -q '\.so' "$work/rpm.requires" || fail "the RPM requires shared libraries of a static binary"
rpm -qp --recommends "$rpm" | grep -qx systemd || fail "the RPM does not recommend systemd"
echo "ok: $(basename "$rpm"), $(wc -l <"$work/rpm.files") files"

echo "== makepkg --repackage packaging/PKGBUILD"
if command -v makepkg >/dev/null; then
  arch="$work/arch"
  mkdir -p "$arch/src"
  cp packaging/PKGBUILD "$arch/"
  tar -C "$arch/src" -xzf "$work/stockade-$version.tar.gz"
  chown -R nobody "$arch"
  # makepkg refuses root; --repackage runs package() only (build() is the cargo build the
  # .deb made), --nodeps since Debian has no pacman database to satisfy depends from.
  (cd "$arch" && setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$arch" PKGDEST="$arch" PKGEXT=.pkg.tar.gz \
      makepkg --repackage --nodeps --noextract --force) >"$work/makepkg.log" 2>&1 \
    || { cat "$work/makepkg.log" >&2; fail "makepkg failed"; }
  pkg=$(ls "$arch"/stockade-"$version"-1-*.pkg.tar.gz)
  tar -tzf "$pkg" | grep -v '^\.' | sed 's,^,/,; s,/$,,' >"$work/arch.files"
  check_list "the Arch package" "$work/arch.files"
  tar -xzOf "$pkg" .PKGINFO >"$work/PKGINFO"
  for dep in gcc-libs libseccomp; do
    grep -qx "depend = $dep" "$work/PKGINFO" || fail "the Arch package does not depend on $dep"
  done
  echo "ok: $(basename "$pkg"), $(wc -l <"$work/arch.files") entries"
else
  echo "makepkg not installed (Debian package makepkg): the PKGBUILD was not checked" >&2
  exit 1
fi

echo "== lintian target/debian/*.deb"
deb=$(ls target/debian/stockade_*.deb | tail -1)
# --tag-display-limit 0: every warning, listed for the release notes.
lintian --tag-display-limit 0 "$deb" >"$work/lintian.txt" 2>&1 || true
cat "$work/lintian.txt"
! grep -q '^E: ' "$work/lintian.txt" || fail "lintian reports errors for $deb"
echo "ok: lintian reports $(grep -c '^W: ' "$work/lintian.txt" || true) warnings and no errors"
