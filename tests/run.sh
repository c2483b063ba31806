#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it:
# a virtualenv with the project and its test extras, a private PostgreSQL
# server (installed from Debian's packages when missing) on a free port, and
# pytest over tests/. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# PostgreSQL: Debian's server binaries, a throwaway cluster owned by the
# 'postgres' user, listening on loopback only.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
fi
pg_dir=""
cleanup() {
  if [[ -n $pg_dir ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ -n $pg_bin && -x $pg_bin/initdb ]]; then
  pg_dir=$(mktemp -d /tmp/dialer-pg.XXXXXX)
  trap cleanup EXIT
  [[ $(id -u) -eq 0 ]] && chown postgres "$pg_dir"
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U dialer --auth=trust -E UTF8 >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  export DIALER_TEST_PG_URL="postgresql+psycopg://dialer@127.0.0.1:$port/postgres"
elif [[ ${CI:-} == true ]]; then
  echo "tests/run.sh: PostgreSQL is required in CI but could not be installed" >&2
  exit 1
fi

# Chromium and its driver for the browser tests (tests/test_web_browser.py):
# Debian's packages, installed when missing.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]] && [[ $(id -u) -eq 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
fi

# Asterisk for the real-Asterisk tests (marker asterisk): the tarball in
# ../shared/asterisk/, checked against its .sha256 and unpacked once into a
# cache folder outside the repository, keyed by that hash.
shared_ast="$root/../shared/asterisk"
if [[ -z ${DIALER_TEST_ASTERISK:-} && -d $shared_ast ]]; then
  tarball=$(ls "$shared_ast"/asterisk-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $tarball && -f $tarball.sha256 ]]; then
    want=$(awk '{print $1; exit}' "$tarball.sha256")
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/dialer-test-asterisk/$want"
    name=$(basename "$tarball" .tar.xz)
    if [[ ! -x $cache/$name/sbin/asterisk ]]; then
      have=$(sha256sum "$tarball" | awk '{print $1}')
      if [[ $have != "$want" ]]; then
        echo "tests/run.sh: $tarball: sha256 $have does not match $tarball.sha256" >&2
        exit 1
      fi
      rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
      tar -C "$cache.tmp" -xJf "$tarball"
      rm -rf "$cache" && mv "$cache.tmp" "$cache"
    fi
    export DIALER_TEST_ASTERISK="$cache/$name"
    # Runtime libraries (present on Debian 12 Python images), only when missing.
    if ! "$DIALER_TEST_ASTERISK/sbin/asterisk" -V >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >/dev/null
      apt-get install -y -q libedit2 libjansson4 libxml2 libxslt1.1 libsqlite3-0 libssl3 libuuid1 libcrypt1 >/dev/null
    fi
  fi
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "tests/run.sh: pytest collected no tests" >&2
  status=1
fi
exit $status
