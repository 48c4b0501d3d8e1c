#!/usr/bin/env bash
# citus-build.sh [TARBALL] — builds and installs the Citus extension for the
# local PostgreSQL (the one `pg_config` names, preferring the versioned
# /usr/lib/postgresql/N/bin/pg_config), from a Citus release source tarball,
# or, without one, from the source of CITUS_VERSION downloaded from GitHub.
# Installs missing build dependencies with apt-get. Does nothing when
# citus.so of that version is already installed.
# Env: CITUS_VERSION (download, default 13.2.2), PG_CONFIG, JOBS (make -j,
# default nproc), BUILD_DIR (default a temporary directory, removed after).
set -euo pipefail

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

if [ -n "${PG_CONFIG:-}" ]; then :;
elif command -v pg_config >/dev/null 2>&1; then PG_CONFIG=$(command -v pg_config)
else PG_CONFIG=$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1); fi
[ -n "${PG_CONFIG:-}" ] || { echo "citus-build: no pg_config (install postgresql and its server headers)" >&2; exit 2; }
PGMAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
# Debian's /usr/bin/pg_config follows the newest server-dev package; the
# versioned one agrees with the server's headers and library directory.
if [ -x "/usr/lib/postgresql/$PGMAJOR/bin/pg_config" ]; then
    PG_CONFIG=/usr/lib/postgresql/$PGMAJOR/bin/pg_config
fi

BUILD_DIR=${BUILD_DIR:-}
cleanup=""
if [ -z "$BUILD_DIR" ]; then
    BUILD_DIR=$(mktemp -d)
    cleanup=$BUILD_DIR
fi
trap '[ -z "$cleanup" ] || rm -rf "$cleanup"' EXIT

TARBALL=${1:-}
if [ -n "$TARBALL" ]; then
    TARBALL=$(readlink -f "$TARBALL")
    [ -f "$TARBALL" ] || { echo "citus-build: no such tarball: $TARBALL" >&2; exit 2; }
    # The version, from the tarball's configure.ac: AC_INIT([Citus], [X.Y.Z]).
    VERSION=$(tar -xzOf "$TARBALL" --wildcards '*/configure.ac' 2>/dev/null \
        | sed -nE 's/^AC_INIT\(\[Citus\], \[([^]]+)\]\).*/\1/p' | head -1)
    [ -n "$VERSION" ] || { echo "citus-build: cannot read the Citus version of $TARBALL" >&2; exit 2; }
else
    VERSION=${CITUS_VERSION:-13.2.2}
fi

PKGLIB=$("$PG_CONFIG" --pkglibdir)
if [ -f "$PKGLIB/citus.so" ] && grep -aq "Citus $VERSION" "$PKGLIB/citus.so"; then
    echo "citus-build: Citus $VERSION is installed for PostgreSQL $PGMAJOR ($PKGLIB/citus.so)"
    exit 0
fi

need=()
for p in build-essential autoconf flex bison "postgresql-server-dev-$PGMAJOR" \
         liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libxslt1-dev \
         libxml2-dev libpam0g-dev libreadline-dev libssl-dev zlib1g-dev \
         libicu-dev binutils curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "citus-build: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "$TARBALL" ]; then
    TARBALL=$BUILD_DIR/citus-$VERSION.tar.gz
    echo "citus-build: downloading the source of Citus $VERSION"
    curl -fsSL -o "$TARBALL" "https://github.com/citusdata/citus/archive/refs/tags/v$VERSION.tar.gz"
fi

src=$BUILD_DIR/src
rm -rf "$src"
mkdir -p "$src"
tar -xzf "$TARBALL" -C "$src" --strip-components=1
cd "$src"
# Recent PostgreSQL 15 minor releases (15.20) export have_createdb_privilege()
# from commands/dbcommands.h, and Citus 13's pg_version_compat.h defines a
# static copy of it for PostgreSQL < 16: "static declaration follows
# non-static declaration". When the server's headers declare it, Citus's
# copy is renamed so that the server's function is used.
INCDIR=$("$PG_CONFIG" --includedir-server)
if grep -q "extern bool have_createdb_privilege" "$INCDIR/commands/dbcommands.h" 2>/dev/null \
    && grep -q "^have_createdb_privilege(void)" src/include/pg_version_compat.h 2>/dev/null; then
    echo "citus-build: renaming Citus's have_createdb_privilege() (the server's headers export it)"
    sed -i 's/^have_createdb_privilege(void)$/citus_compat_unused_have_createdb_privilege(void)/' \
        src/include/pg_version_compat.h
fi
start=$(date +%s)
./configure PG_CONFIG="$PG_CONFIG" --without-libcurl >/dev/null
make -s -j"${JOBS:-$(nproc)}" >/dev/null
$sudo make -s install >/dev/null
echo "citus-build: Citus $VERSION installed for PostgreSQL $PGMAJOR in $(( $(date +%s) - start )) s ($PKGLIB/citus.so)"
